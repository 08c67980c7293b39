"""The catalog's runs, model versions, annotations and aliases (mixed into :class:`SqlCatalog`)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import sqlalchemy as sa

from keel._process import ProcessOwner
from keel.catalog import _schema
from keel.catalog._lean import LeanReads
from keel.catalog._records import AliasChange, ModelVersionRecord, RunRecord
from keel.errors import ConflictError, NotFoundError, ValidationError

if TYPE_CHECKING:
    T = TypeVar("T")


def _utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is UTC:  # as the driver reads (keel.catalog._lean) give them
        return value
    from keel.catalog._sql import _as_utc

    return _as_utc(value)


def _now() -> datetime:
    from keel.catalog._sql import utcnow

    return utcnow()


def _check_json(**values: Any) -> None:
    """Refuse what JSON cannot hold (NaN, objects), so that SQLite and PostgreSQL store runs alike."""
    from keel.catalog._sql import _json_safe

    for name, value in values.items():
        _json_safe(value, f"the run's {name}", name)


def _v(version: int | str | None) -> str:
    return "nothing" if version is None else f"v{version}"


class ModelCatalog:
    """Runs and the model registry's tables. Needs ``_read``, ``_write``, ``_retrying``, ``_serialize``."""

    if TYPE_CHECKING:

        def _read(self) -> AbstractContextManager[sa.Connection]: ...
        def _write(self) -> AbstractContextManager[sa.Connection]: ...
        def _retrying(self, what: str, fn: Callable[[sa.Connection], T]) -> T: ...
        def _serialize(self, conn: sa.Connection, *key: str) -> None: ...

        _lean: LeanReads

    # -- runs ------------------------------------------------------------------------------------------------
    @staticmethod
    def _run(row: Any) -> RunRecord:
        return RunRecord(
            id=row.id,
            spec=row.spec,
            status=row.status,
            started_at=_utc(row.started_at) or _now(),
            finished_at=_utc(row.finished_at),
            spec_snapshot=dict(row.spec_snapshot),
            params=dict(row.params),
            metrics=dict(row.metrics),
            durations=dict(row.durations),
            lineage=dict(row.lineage),
            error=row.error,
            package_digest=row.package_digest,
            package_format=row.package_format,
            owner=row.owner if isinstance(row.owner, dict) else None,
        )

    def start_run(
        self,
        *,
        run_id: str,
        spec: str,
        spec_snapshot: dict[str, Any],
        params: dict[str, Any],
        owner: ProcessOwner | None = None,
    ) -> RunRecord:
        """Record a run as ``running``, owned by ``owner`` (default: this process): if that process dies before
        completing it, :meth:`fail_dead_runs` records it as failed."""
        _check_json(spec_snapshot=spec_snapshot, params=params)
        r = _schema.runs
        values = {
            "id": run_id,
            "spec": spec,
            "status": "running",
            "started_at": _now(),
            "finished_at": None,
            "spec_snapshot": spec_snapshot,
            "params": params,
            "metrics": {},
            "durations": {},
            "lineage": {},
            "error": None,
            "owner": (owner or ProcessOwner.current()).to_dict(),
        }

        def write(conn: sa.Connection) -> RunRecord:
            conn.execute(sa.insert(r).values(**values))
            return self._run(conn.execute(sa.select(r).where(r.c.id == run_id)).one())

        return self._retrying(f"recording run {run_id}", write)

    def finish_run(
        self,
        run_id: str,
        *,
        status: str,
        params: dict[str, Any],
        metrics: dict[str, Any],
        durations: dict[str, float],
        lineage: dict[str, Any],
        error: str | None = None,
        package_digest: str | None = None,
        package_format: str | None = None,
    ) -> RunRecord:
        """Complete a running run, once; a finished or failed run never changes again."""
        if status not in ("finished", "failed"):
            raise ValidationError(f"a run ends as 'finished' or 'failed', not {status!r}", field="status")
        _check_json(params=params, metrics=metrics, durations=durations, lineage=lineage)
        r = _schema.runs

        def write(conn: sa.Connection) -> RunRecord:
            done = conn.execute(
                sa.update(r)
                .where(r.c.id == run_id, r.c.status == "running")
                .values(
                    status=status,
                    finished_at=_now(),
                    params=params,
                    metrics=metrics,
                    durations=durations,
                    lineage=lineage,
                    error=error,
                    package_digest=package_digest,
                    package_format=package_format,
                )
            )
            if done.rowcount != 1:
                raise ValidationError(f"run {run_id} is not running; a run's record never changes once it ended")
            return self._run(conn.execute(sa.select(r).where(r.c.id == run_id)).one())

        return self._retrying(f"completing run {run_id}", write)

    def fail_dead_runs(self) -> list[RunRecord]:
        """Record as ``failed`` every ``running`` run whose process is known to have died, and return them.

        A process killed (``kill -9``, out of memory), crashed or stopped by a restart of its machine never
        completes its run; its record would say ``running`` for ever. Its error becomes ``process died: ...``.
        A run whose process may still be alive (on another host or in another container, or recorded before
        Keel kept the owner) is left alone: see :class:`keel._process.ProcessOwner` for what "known" means.
        """
        r = _schema.runs
        with self._read() as conn:
            running = conn.execute(sa.select(r.c.id, r.c.owner).where(r.c.status == "running")).all()
        failed = []
        for run_id, recorded in running:
            owner = ProcessOwner.from_dict(recorded)
            if owner is None or not owner.is_dead():
                continue
            error = (
                f"process died: {owner.describe()} ended without completing the run (killed, crashed, or its "
                "machine restarted)"
            )

            def write(conn: sa.Connection, run_id: str = run_id, error: str = error) -> sa.Row[Any] | None:
                done = conn.execute(
                    sa.update(r)
                    .where(r.c.id == run_id, r.c.status == "running")
                    .values(status="failed", finished_at=_now(), error=error)
                )
                return conn.execute(sa.select(r).where(r.c.id == run_id)).one() if done.rowcount == 1 else None

            row = self._retrying(f"recording run {run_id} as failed", write)
            if row is not None:
                failed.append(self._run(row))
        return failed

    def run(self, run_id: str) -> RunRecord:
        """One run by id (a unique prefix of at least 6 characters also works)."""
        r = _schema.runs
        exact = self._lean.all("run", lambda: sa.select(r).where(r.c.id == sa.bindparam("id")), id=run_id)
        if exact:  # the common case, read on the driver (see keel.catalog._lean)
            return self._run(exact[0])
        row = None
        with self._read() as conn:
            if len(run_id) >= 6:
                rows = conn.execute(sa.select(r).where(r.c.id.startswith(run_id, autoescape=True)).limit(2)).all()
                if len(rows) == 2:
                    raise ValidationError(f"run id prefix {run_id!r} is ambiguous; give more characters")
                row = rows[0] if rows else None
        if row is None:
            raise NotFoundError(f"no run {run_id!r}; `keel runs list` shows the runs")
        return self._run(row)

    def runs(self, spec: str | None = None, *, status: str | None = None, limit: int | None = None) -> list[RunRecord]:
        """Runs, newest first, optionally of one spec and/or status."""
        r = _schema.runs
        query = sa.select(r)
        if spec is not None:
            query = query.where(r.c.spec == spec)
        if status is not None:
            query = query.where(r.c.status == status)
        query = query.order_by(r.c.started_at.desc(), r.c.id.desc())
        if limit is not None:
            query = query.limit(limit)
        with self._read() as conn:
            return [self._run(row) for row in conn.execute(query).all()]

    # -- model versions --------------------------------------------------------------------------------------
    def _version_record(self, conn: sa.Connection, row: sa.Row[Any]) -> ModelVersionRecord:
        a, al = _schema.model_annotations, _schema.aliases
        note = conn.execute(sa.select(a).where(a.c.name == row.name, a.c.version == row.version)).first()
        names = conn.execute(
            sa.select(al.c.alias).where(al.c.name == row.name, al.c.version == row.version).order_by(al.c.alias)
        ).scalars()
        return ModelVersionRecord(
            name=row.name,
            version=row.version,
            run_id=row.run_id,
            package_digest=row.package_digest,
            package_format=row.package_format,
            created_at=_utc(row.created_at) or _now(),
            description=note.description if note is not None else "",
            tags=dict(note.tags) if note is not None else {},
            aliases=tuple(names),
        )

    def add_model_version(
        self, *, name: str, run_id: str, package_digest: str, package_format: str
    ) -> ModelVersionRecord:
        """Register the next version of ``name`` (1, 2, 3...; concurrent writers get distinct, gap-free numbers)."""
        mv = _schema.model_versions

        def write(conn: sa.Connection) -> ModelVersionRecord:
            self._serialize(conn, "model_versions", name)
            latest = conn.execute(sa.select(sa.func.max(mv.c.version)).where(mv.c.name == name)).scalar()
            version = (latest or 0) + 1
            conn.execute(
                sa.insert(mv).values(
                    name=name,
                    version=version,
                    run_id=run_id,
                    package_digest=package_digest,
                    package_format=package_format,
                    created_at=_now(),
                )
            )
            row = conn.execute(sa.select(mv).where(mv.c.name == name, mv.c.version == version)).one()
            return self._version_record(conn, row)

        return self._retrying(f"registering a version of model {name!r}", write)

    def model_version(self, name: str, version: int | None = None) -> ModelVersionRecord:
        """One version of a model (the latest when ``version`` is None)."""
        mv = _schema.model_versions
        query = sa.select(mv).where(mv.c.name == name)
        if version is not None:
            query = query.where(mv.c.version == version)
        with self._read() as conn:
            row = conn.execute(query.order_by(mv.c.version.desc()).limit(1)).first()
            if row is None:
                known = (
                    conn.execute(sa.select(mv.c.version).where(mv.c.name == name).order_by(mv.c.version))
                    .scalars()
                    .all()
                )
                if not known:
                    names = conn.execute(sa.select(mv.c.name).distinct().order_by(mv.c.name)).scalars().all()
                    raise NotFoundError(f"no model named {name!r}; registered models: {', '.join(names) or 'none'}")
                raise NotFoundError(f"model {name!r} has no version {version}; versions: {list(known)}")
            return self._version_record(conn, row)

    def model_versions(self, name: str | None = None) -> list[ModelVersionRecord]:
        """Model versions by name then version, of one model or all."""
        mv = _schema.model_versions
        query = sa.select(mv)
        if name is not None:
            query = query.where(mv.c.name == name)
        with self._read() as conn:
            rows = conn.execute(query.order_by(mv.c.name, mv.c.version)).all()
            return [self._version_record(conn, row) for row in rows]

    def annotate_model_version(
        self, name: str, version: int, *, description: str | None = None, tags: dict[str, str | None] | None = None
    ) -> ModelVersionRecord:
        """Set the description and/or merge tags of a model version (tags with a ``None`` value are removed)."""
        self.model_version(name, version)
        a, mv = _schema.model_annotations, _schema.model_versions

        def write(conn: sa.Connection) -> ModelVersionRecord:
            note = conn.execute(sa.select(a).where(a.c.name == name, a.c.version == version)).first()
            current_tags = dict(note.tags) if note is not None else {}
            for key, value in (tags or {}).items():
                if value is None:
                    current_tags.pop(key, None)
                else:
                    current_tags[str(key)] = str(value)
            values = {
                "description": description if description is not None else (note.description if note else ""),
                "tags": current_tags,
                "updated_at": _now(),
            }
            if note is None:
                conn.execute(sa.insert(a).values(name=name, version=version, **values))
            else:
                conn.execute(sa.update(a).where(a.c.name == name, a.c.version == version).values(**values))
            row = conn.execute(sa.select(mv).where(mv.c.name == name, mv.c.version == version)).one()
            return self._version_record(conn, row)

        return self._retrying(f"annotating model {name!r} version {version}", write)

    # -- aliases ---------------------------------------------------------------------------------------------
    def set_alias(
        self,
        name: str,
        alias: str,
        version: int | None,
        *,
        reason: str = "",
        expect: int | Literal["any"] | None = "any",
    ) -> AliasChange:
        """Point ``alias`` of ``name`` at ``version`` (``None`` removes it), atomically, recording the move.

        Args:
            expect: move only if the alias points at this version now (``None``: at nothing); otherwise a
                :class:`ConflictError` says where it points. ``"any"`` (the default) moves it from wherever.

        A move to the version the alias already holds changes nothing and records nothing.
        """
        al, h = _schema.aliases, _schema.alias_history
        if version is not None:
            self.model_version(name, version)

        def write(conn: sa.Connection) -> AliasChange:
            self._serialize(conn, "aliases", name, alias)
            current = conn.execute(
                sa.select(al.c.version).where(al.c.name == name, al.c.alias == alias)
            ).scalar_one_or_none()
            now = _now()
            if expect != "any" and current != expect:
                raise ConflictError(
                    f"alias {alias!r} of model {name!r} points at {_v(current)}, not {_v(expect)}: it was moved "
                    "meanwhile; look at its history and try again"
                )
            if current == version:
                return AliasChange(name, alias, current, version, reason, now)
            if version is None:
                conn.execute(sa.delete(al).where(al.c.name == name, al.c.alias == alias))
            elif current is None:
                conn.execute(sa.insert(al).values(name=name, alias=alias, version=version, updated_at=now))
            else:
                conn.execute(
                    sa.update(al).where(al.c.name == name, al.c.alias == alias).values(version=version, updated_at=now)
                )
            conn.execute(
                sa.insert(h).values(
                    name=name, alias=alias, from_version=current, to_version=version, reason=reason, at=now
                )
            )
            return AliasChange(name, alias, current, version, reason, now)

        return self._retrying(f"moving alias {alias!r} of model {name!r}", write)

    def alias(self, name: str, alias: str) -> int | None:
        """The version ``alias`` points at, or ``None``."""
        al = _schema.aliases
        with self._read() as conn:
            value = conn.execute(
                sa.select(al.c.version).where(al.c.name == name, al.c.alias == alias)
            ).scalar_one_or_none()
        return int(value) if value is not None else None

    def aliases(self, name: str) -> dict[str, int]:
        """Every alias of ``name`` and its version."""
        al = _schema.aliases
        with self._read() as conn:
            rows = conn.execute(sa.select(al.c.alias, al.c.version).where(al.c.name == name).order_by(al.c.alias))
            return {r.alias: int(r.version) for r in rows}

    def alias_history(self, name: str, alias: str | None = None) -> list[AliasChange]:
        """Moves of the aliases of ``name`` (or of one alias), oldest first."""
        h = _schema.alias_history
        query = sa.select(h).where(h.c.name == name)
        if alias is not None:
            query = query.where(h.c.alias == alias)
        with self._read() as conn:
            rows = conn.execute(query.order_by(h.c.id)).all()
        return [
            AliasChange(r.name, r.alias, r.from_version, r.to_version, r.reason, _utc(r.at) or _now()) for r in rows
        ]
