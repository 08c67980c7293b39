"""The model registry: immutable, numbered model versions; aliases that move atomically and remember."""

from __future__ import annotations

import hashlib
import numbers
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from keel.errors import BackendError, IntegrityError, NotFoundError, ValidationError
from keel.models._audit import PackageAudit, PackageVerification, audit
from keel.models._package_ref import PackageRef
from keel.models._serialization import loads
from keel.models._trust import trusted_set

if TYPE_CHECKING:
    from keel.artifacts import ArtifactStore
    from keel.catalog import AliasChange, Catalog, ModelVersionRecord, RunRecord
    from keel.models._package import ModelPackage

_REF = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_.-]*)(?:(?P<sep>[@:])(?P<what>[A-Za-z0-9_.-]+))?$")
_ALIAS = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


def parse_model_ref(ref: str) -> tuple[str, int | None, str | None]:
    """``churn@champion`` -> (churn, None, champion); ``churn:3`` -> (churn, 3, None); ``churn`` -> latest."""
    match = _REF.match(ref.strip()) if isinstance(ref, str) else None
    if match is None:
        raise ValidationError(
            f"malformed model reference {ref!r}; expected 'name', 'name:3', 'name@alias' or 'name@latest'",
            field="model",
        )
    name, sep, what = match["name"], match["sep"], match["what"]
    if sep == ":":
        if not what.isdigit() or int(what) < 1:
            raise ValidationError(f"model reference {ref!r}: versions are numbered from 1", field="model")
        return name, int(what), None
    if sep == "@" and what != "latest":
        return name, None, what
    return name, None, None


@dataclass(frozen=True)
class ModelDiff:
    """How two model versions differ.

    Attributes:
        a: the first version.
        b: the second version.
        params: ``{param: (a's value, b's value)}`` for params that differ.
        metrics: ``{metric: (a, b, b - a)}`` for every metric of either.
        features_added: feature references b has and a has not (by view and feature).
        features_removed: those a has and b has not.
        feature_versions_changed: ``{view: (a's version, b's version)}``.
        data_digests_changed: ``{view: (a's digest, b's digest)}``.
        training_set_changed: whether the training sets differ.
        libraries: ``{library: (a's version, b's version)}`` for libraries that differ.
    """

    a: ModelVersionRecord
    b: ModelVersionRecord
    params: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    metrics: dict[str, tuple[Any, Any, float | None]] = field(default_factory=dict)
    features_added: list[str] = field(default_factory=list)
    features_removed: list[str] = field(default_factory=list)
    feature_versions_changed: dict[str, tuple[int | None, int | None]] = field(default_factory=dict)
    data_digests_changed: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    training_set_changed: bool = False
    libraries: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)


class RegistrableRun(Protocol):
    """What :meth:`ModelRegistry.register` needs of a run object: its catalog record.

    A training run (``keel.training.TrainingRun``) is one; the registry reads the run's status, package digest
    and format again from the catalog by the record's id, so the object carries nothing else it relies on.
    """

    @property
    def record(self) -> RunRecord: ...


class ModelRegistry:
    """Register runs as model versions, move aliases, load packages (verified), compare versions.

    Args:
        catalog: where versions, aliases and runs are recorded.
        artifacts: where packages are stored, by SHA-256.
        allow_pickle: load pickle-based (joblib) packages without asking each time.
        trusted_types: full names of the user's own classes (and functions) packages may hold beyond Keel's
            allowlist (``["mypkg.MyTransformer"]``); every load trusts them.
    """

    def __init__(
        self,
        catalog: Catalog,
        artifacts: ArtifactStore,
        *,
        allow_pickle: bool = False,
        trusted_types: Iterable[str] | None = None,
    ) -> None:
        self._catalog = catalog
        self._artifacts = artifacts
        self._allow_pickle = allow_pickle
        self._trusted = trusted_set(trusted_types)

    @property
    def trusted_types(self) -> tuple[str, ...]:
        """The names every load trusts beyond the allowlist (for a process that loads a package itself)."""
        return tuple(sorted(self._trusted))

    # -- registering -----------------------------------------------------------------------------------------
    def _run(self, run: RegistrableRun | RunRecord | str) -> RunRecord:
        if isinstance(run, str):
            return self._catalog.run(run)
        record = run if not hasattr(run, "record") else run.record
        return self._catalog.run(record.id)

    def register(
        self,
        run: RegistrableRun | RunRecord | str,
        *,
        name: str | None = None,
        description: str = "",
        tags: dict[str, str | None] | None = None,
    ) -> ModelVersionRecord:
        """Register a finished run's package as the next version of ``name`` (default: the run's spec).

        Args:
            run: the run: a training run, its catalog record, or its id.
            name: the model's name (default: the run's spec).
            description: a description of the version.
            tags: the version's tags.

        Raises:
            ValidationError: the run did not finish, or has no package.
        """
        record = self._run(run)
        if record.status != "finished" or not record.package_digest or not record.package_format:
            raise ValidationError(
                f"run {record.id} is {record.status}{': ' + record.error if record.error else ''}; only a finished "
                "run can be registered",
                field="run",
            )
        model = name or record.spec
        if not _ALIAS.match(model):
            raise ValidationError(f"invalid model name {model!r}", field="name")
        if not self._artifacts.exists(record.package_digest):
            raise IntegrityError(
                f"the package of run {record.id} ({record.package_digest}) is missing from {self._artifacts.uri!r}"
            )
        version = self._catalog.add_model_version(
            name=model, run_id=record.id, package_digest=record.package_digest, package_format=record.package_format
        )
        if description or tags:
            version = self._catalog.annotate_model_version(model, version.version, description=description, tags=tags)
        return version

    # -- finding ---------------------------------------------------------------------------------------------
    def get(self, ref: str) -> ModelVersionRecord:
        """The version ``ref`` names: ``churn:3``, ``churn@champion``, ``churn@latest`` or ``churn``."""
        name, version, alias = parse_model_ref(ref)
        if alias is not None:
            version = self._catalog.alias(name, alias)
            if version is None:
                self._catalog.model_version(name)  # an unknown model says so first
                known = self._catalog.aliases(name)
                raise NotFoundError(
                    f"model {name!r} has no alias {alias!r}; aliases: "
                    f"{', '.join(f'{a} -> v{v}' for a, v in known.items()) or 'none'}"
                )
        return self._catalog.model_version(name, version)

    def versions(self, name: str | None = None) -> list[ModelVersionRecord]:
        """Every version (of one model, or of all), by name then version."""
        return self._catalog.model_versions(name)

    def run_of(self, ref: str) -> RunRecord:
        """The run that produced a version."""
        return self._catalog.run(self.get(ref).run_id)

    def load(
        self, ref: str, *, allow_pickle: bool | None = None, trusted_types: Iterable[str] | None = None
    ) -> ModelPackage:
        """The package of ``ref``, its SHA-256 verified against the catalog before it is deserialized.

        Only classes on Keel's allowlist are rebuilt, plus ``trusted_types`` (added to the registry's own).

        Raises:
            IntegrityError: the stored package does not match its recorded hash, or names a type outside the
                allowlist and the trusted types (the message names it).
            ValidationError: the package is pickle-based and pickle was not allowed.
        """
        version = self.get(ref)
        label = f"model {version.name} v{version.version}"
        blob = self._artifacts.get_bytes(version.package_digest, name=label)
        allow = self._allow_pickle if allow_pickle is None else allow_pickle
        trusted = self._trusted | trusted_set(trusted_types)
        return loads(blob, version.package_format, allow_pickle=allow, trusted_types=trusted, what=label)

    def verify(self, ref: str, *, trusted_types: Iterable[str] | None = None) -> PackageVerification:
        """Audit the stored package of ``ref`` without loading it: its hash against the catalog's, its format,
        and every type and function it names, each allowed or not (``keel models verify``).

        Nothing the package names is imported unless it is allowlisted, and nothing is built; a pickle-based
        package is listed (its opcodes' globals) but cannot be verified.

        Raises:
            NotFoundError: no such version, or its package is missing from the artifact store.
        """
        version = self.get(ref)
        label = f"model {version.name} v{version.version}"
        blob = self._stored_bytes(version.package_digest, label)
        trusted = self._trusted | trusted_set(trusted_types)
        try:
            report = audit(blob, version.package_format, trusted=trusted, what=label)
        except IntegrityError as exc:  # the bytes are not a package of the recorded format
            report = PackageAudit(version.package_format, [], False, str(exc))
        return PackageVerification(
            version.name, version.version, version.package_digest, hashlib.sha256(blob).hexdigest(), report
        )

    def _stored_bytes(self, digest: str, label: str) -> bytes:
        """The stored bytes, as they are: verifying reports a wrong hash instead of refusing to read it."""
        try:
            with self._artifacts.fs.open(self._artifacts.path(digest), "rb") as f:
                data: bytes = f.read()
        except FileNotFoundError as exc:
            raise NotFoundError(f"the package of {label} ({digest}) is missing from {self._artifacts.uri!r}") from exc
        except OSError as exc:  # a folder where the file belongs, no permission ...
            raise BackendError(
                f"artifact store {self._artifacts.uri!r}: cannot read the package of {label} ({digest}): {exc}"
            ) from exc
        return data

    def ref(self, ref: str, *, allow_pickle: bool | None = None) -> PackageRef:
        """A picklable reference to the package of ``ref``, for loading it in other processes.

        :meth:`PackageRef.load` verifies the bytes against the digest recorded here and deserializes the
        package once per process.
        """
        version = self.get(ref)
        allow = self._allow_pickle if allow_pickle is None else allow_pickle
        return PackageRef.for_version(version, self._artifacts, allow_pickle=allow, trusted=self.trusted_types)

    # -- aliases ---------------------------------------------------------------------------------------------
    def set_alias(
        self, name: str, alias: str, version: int, *, reason: str = "", expect: int | Literal["any"] | None = "any"
    ) -> AliasChange:
        """Point ``alias`` at ``version`` of ``name``, atomically; the move is kept in the alias history.

        Args:
            expect: move only if the alias points at this version now (``None``: at nothing), else a
                :class:`~keel.errors.ConflictError`; ``"any"`` (the default) moves it from wherever.
        """
        if not isinstance(alias, str) or not _ALIAS.match(alias) or alias == "latest":
            raise ValidationError(
                f"invalid alias {alias!r}: letters, digits, '_', '.' and '-', starting with a letter or '_' "
                "('latest' is reserved)",
                field="alias",
            )
        given: object = version  # callers pass anything: check it
        if isinstance(given, bool) or not isinstance(given, numbers.Integral) or int(given) < 1:
            raise ValidationError(f"version must be a number from 1, got {version!r}", field="version")
        return self._catalog.set_alias(name, alias, int(version), reason=reason, expect=expect)

    def promote(self, name: str, version: int, *, alias: str = "champion", reason: str = "") -> AliasChange:
        """Move ``alias`` (``champion`` by default) to ``version``."""
        return self.set_alias(name, alias, version, reason=reason or "promoted")

    def rollback(self, name: str, *, alias: str = "champion", reason: str = "") -> AliasChange:
        """Give ``alias`` back to the version that held it before its last move.

        The rollback is itself a move, kept in the history: rolling back twice returns to where it started.

        Raises:
            NotFoundError: the model, or the alias, does not exist.
            ValidationError: the alias has no earlier holder.
            ConflictError: the alias moved between reading its history and rolling back.
        """
        history = self._catalog.alias_history(name, alias)
        if not history:
            self._catalog.model_version(name)  # an unknown model says so first
            known = self._catalog.aliases(name)
            raise NotFoundError(
                f"model {name!r} has no alias {alias!r} to roll back; aliases: {', '.join(known) or 'none'}"
            )
        last = history[-1]
        if last.from_version is None:
            raise ValidationError(
                f"alias {alias!r} of model {name!r} had no holder before v{last.to_version}; nothing to roll back to",
                field="alias",
            )
        moved_from = f"v{last.to_version}" if last.to_version is not None else "its removal"
        return self._catalog.set_alias(
            name,
            alias,
            last.from_version,
            reason=reason or f"rollback from {moved_from}",
            expect=last.to_version,  # refused if someone moved it since we looked
        )

    def history(self, name: str, alias: str | None = None) -> list[AliasChange]:
        """Every move of the aliases of ``name`` (or of one alias), oldest first."""
        return self._catalog.alias_history(name, alias)

    def tag(self, ref: str, *, description: str | None = None, **tags: str | None) -> ModelVersionRecord:
        """Set a version's description and merge tags (a tag set to ``None`` is removed)."""
        version = self.get(ref)
        return self._catalog.annotate_model_version(
            version.name, version.version, description=description, tags=dict(tags)
        )

    # -- comparing -------------------------------------------------------------------------------------------
    def diff(self, a: str, b: str) -> ModelDiff:
        """How version ``b`` differs from version ``a``: params, metrics, features, data, libraries."""
        va, vb = self.get(a), self.get(b)
        ra, rb = self._catalog.run(va.run_id), self._catalog.run(vb.run_id)
        pa_, pb_ = ra.flat_params(), rb.flat_params()
        params = {k: (pa_.get(k), pb_.get(k)) for k in sorted(set(pa_) | set(pb_)) if pa_.get(k) != pb_.get(k)}
        metrics: dict[str, tuple[Any, Any, float | None]] = {}
        for k in sorted(set(ra.metrics) | set(rb.metrics)):
            ma, mb = ra.metrics.get(k), rb.metrics.get(k)
            delta = mb - ma if isinstance(ma, int | float) and isinstance(mb, int | float) else None
            metrics[k] = (ma, mb, delta)
        fa = _features(ra.lineage.get("features") or ra.lineage.get("feature_refs", []))
        fb = _features(rb.lineage.get("features") or rb.lineage.get("feature_refs", []))
        va_, vb_ = ra.lineage.get("feature_versions", {}), rb.lineage.get("feature_versions", {})
        da, db = ra.lineage.get("feature_digests", {}), rb.lineage.get("feature_digests", {})
        la, lb = ra.lineage.get("libraries", {}), rb.lineage.get("libraries", {})
        return ModelDiff(
            a=va,
            b=vb,
            params=params,
            metrics=metrics,
            features_added=sorted(fb - fa),
            features_removed=sorted(fa - fb),
            feature_versions_changed={
                v: (va_.get(v), vb_.get(v)) for v in sorted(set(va_) | set(vb_)) if va_.get(v) != vb_.get(v)
            },
            data_digests_changed={
                v: (da.get(v), db.get(v)) for v in sorted(set(da) | set(db)) if da.get(v) != db.get(v)
            },
            training_set_changed=ra.lineage.get("training_set_digest") != rb.lineage.get("training_set_digest"),
            libraries={k: (la.get(k), lb.get(k)) for k in sorted(set(la) | set(lb)) if la.get(k) != lb.get(k)},
        )


def _features(refs: list[str]) -> set[str]:
    """References without their version pin (``view@3:f`` -> ``view:f``)."""
    out = set()
    for ref in refs:
        view, _, feature = ref.partition(":")
        out.add(f"{view.split('@')[0]}:{feature}")
    return out
