"""A model package named by its verified digest: what crosses process boundaries instead of the package.

A :class:`PackageRef` is small, frozen and picklable. A worker process (batch, Spark's Python workers) receives
the reference, and :meth:`PackageRef.load` reads the bytes, checks them against the SHA-256 and deserializes
the package once per process; later loads of the same reference in that process return the same package.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from keel.errors import IntegrityError, ValidationError

if TYPE_CHECKING:
    from keel.artifacts import ArtifactStore
    from keel.catalog import ModelVersionRecord
    from keel.models._package import ModelPackage

__all__ = ["CACHED_PACKAGES", "PackageRef"]

#: How many loaded packages a process keeps (least recently loaded dropped first): a worker scores with one
#: or a few models, and a long-lived process that sees many versions must not keep every one of them.
CACHED_PACKAGES = 8

_DIGEST = re.compile(r"^[0-9a-f]{64}$")

# (digest, format, allow_pickle, trusted) -> the package: the opt-ins are part of the key, so a reference
# without allow_pickle never gets a pickle-based package that another reference was allowed to load.
_Key = tuple[str, str, bool, tuple[str, ...]]
_LOADED: OrderedDict[_Key, ModelPackage] = OrderedDict()
_LOCK = threading.Lock()


def _new_lock() -> None:
    global _LOCK
    _LOCK = threading.Lock()  # a forked child must not inherit a lock held by another thread of its parent


os.register_at_fork(after_in_child=_new_lock)


@dataclass(frozen=True, kw_only=True)
class PackageRef:
    """A model package by its SHA-256: where to read it, how to check it, what loading it may do.

    Give either ``artifacts_uri`` (the artifact store that holds the package under its digest; every process
    reads it there) or ``blob`` (the bytes themselves, for a store other processes cannot reach, such as
    ``memory://``). Build one with :meth:`ModelRegistry.ref <keel.models.ModelRegistry.ref>` or
    :meth:`for_version`.

    Attributes:
        name: the model's name (for messages).
        version: the registered version (``None`` for a package that is not one).
        digest: the package's SHA-256, lowercase hex.
        format: the package's format (``keel``, ``skops`` or ``joblib``).
        artifacts_uri: the artifact store holding the package.
        blob: the package's bytes.
        allow_pickle: load a pickle-based (``joblib``) package; pickle runs code from the file.
        trusted: extra type names the loader may rebuild (the opt-in for a package of the user's own classes).

    Example:
        >>> ref = project.models.ref("churn@champion")  # doctest: +SKIP
        >>> package = ref.load()  # in any process: verified, deserialized once there  # doctest: +SKIP
    """

    name: str
    version: int | None
    digest: str
    format: str
    artifacts_uri: str | None = None
    blob: bytes | None = field(default=None, repr=False)
    allow_pickle: bool = False
    trusted: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.digest, str) or not _DIGEST.match(self.digest):
            raise ValidationError(f"{self.label}: digest must be a SHA-256 in lowercase hex, got {self.digest!r}")
        if (self.artifacts_uri is None) == (self.blob is None):
            raise ValidationError(f"{self.label}: give exactly one of artifacts_uri and blob", field="artifacts_uri")
        given: object = self.trusted  # callers pass lists too: kept as a tuple, so the reference stays hashable
        if isinstance(given, list | set | frozenset):
            object.__setattr__(self, "trusted", tuple(given))

    @classmethod
    def for_version(
        cls,
        version: ModelVersionRecord,
        artifacts: ArtifactStore,
        *,
        allow_pickle: bool = False,
        trusted: tuple[str, ...] = (),
    ) -> PackageRef:
        """The reference of a registered version's package in ``artifacts``.

        A store only this process can read (``memory://``) is not named: its verified bytes are carried
        instead, so that the reference still loads in another process.
        """
        from keel._files import protocol_of

        in_memory = protocol_of(artifacts.fs) == "memory"
        label = f"model {version.name} v{version.version}"
        return cls(
            name=version.name,
            version=version.version,
            digest=version.package_digest,
            format=version.package_format,
            artifacts_uri=None if in_memory else artifacts.uri,
            blob=artifacts.get_bytes(version.package_digest, name=label) if in_memory else None,
            allow_pickle=allow_pickle,
            trusted=trusted,
        )

    @property
    def label(self) -> str:
        """How messages name the package (``model churn v3``)."""
        return f"model {self.name} v{self.version}" if self.version is not None else f"model package {self.name}"

    def read_bytes(self) -> bytes:
        """The package's bytes, verified against :attr:`digest`.

        Raises:
            IntegrityError: the bytes do not hash to the digest.
            NotFoundError: the artifact store has no such package.
        """
        if self.blob is None:
            from keel.artifacts import ArtifactStore

            assert self.artifacts_uri is not None  # __post_init__: one of the two
            return ArtifactStore(self.artifacts_uri).get_bytes(self.digest, name=self.label)  # verifies
        actual = hashlib.sha256(self.blob).hexdigest()
        if actual != self.digest:
            raise IntegrityError(f"{self.label}: the package hashes to {actual}, not {self.digest}; refused")
        return self.blob

    def load(self) -> ModelPackage:
        """The package, verified before it is deserialized, and deserialized once per process.

        A process that already holds the package of this digest (loaded with the same opt-ins) returns it
        without reading the bytes again: the digest is the package's identity.

        Raises:
            IntegrityError: the bytes do not hash to the digest, or the package holds a type it may not.
            ValidationError: the package is pickle-based and ``allow_pickle`` is False.
        """
        key: _Key = (self.digest, self.format, self.allow_pickle, self.trusted)
        with _LOCK:  # held while loading: two threads asking for one package load it once
            package = _LOADED.get(key)
            if package is None:
                package = self._deserialize(self.read_bytes())
                _LOADED[key] = package
                while len(_LOADED) > CACHED_PACKAGES:
                    _LOADED.popitem(last=False)
            else:
                _LOADED.move_to_end(key)
            return package

    def _deserialize(self, blob: bytes) -> ModelPackage:
        from keel.models._serialization import loads

        return loads(blob, self.format, allow_pickle=self.allow_pickle, trusted_types=self.trusted, what=self.label)
