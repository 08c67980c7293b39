"""Verified reads: a version's files are checked against the SHA-256 the catalog recorded before anything reads them.

Every read of a stored version (training sets, materialization, validation, stability, skew, the parent of a push)
asks the offline store for the version's paths, and the store hands them out only once each file is known to hold
the bytes that were published: a flipped byte, a truncated or a replaced file is refused with an
:class:`~keel.errors.IntegrityError` naming the view, the version and the file, never read.

Hashing a whole version at every read would cost a pass over its bytes each time. A file is hashed the first time
this process reads it and remembered with what its filesystem says about it: on a local disk its size, inode and
modification and change times (nanoseconds); elsewhere its size with the ETag, last-modified time or generation the
filesystem reports (``s3://``: ETag and LastModified). A later read costs one ``stat`` (one ``info`` call on an
object store) and hashes the file again only if one of those changed. A filesystem that reports nothing but the
size is trusted for the life of the process once a file was hashed, as long as its size holds.

What the cache cannot see: a file rewritten in place with its size kept and its times put back (``touch -d``
needs the change time too, which only the kernel sets) while this process keeps running. The next process hashes
it again, and ``keel features verify`` re-hashes everything on demand.

Versions recorded before file hashes were kept (a manifest entry without ``sha256``) are read unverified; that
is logged once per version and process.

The engines receive the verified paths; the Spark engine verifies on the driver, before a path reaches Spark.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from keel._files import is_local, storage_errors
from keel.errors import BackendError, IntegrityError

if TYPE_CHECKING:
    from keel.catalog import FeatureVersion
    from keel.offline._store import OfflineStore

log = logging.getLogger(__name__)

__all__ = ["FileCheck", "VerifiedFiles", "verified_files", "verify_version"]

#: Bytes read at a time while hashing.
_CHUNK = 8 << 20
#: What an fsspec ``info`` may report that changes when an object is rewritten (S3, GCS, Azure, memory ...).
_CHANGE_MARKERS = (
    "ETag",
    "etag",
    "LastModified",
    "last_modified",
    "mtime",
    "updated",
    "generation",
    "md5Hash",
    "VersionId",
    "version_id",
    "created",
)


@dataclass(frozen=True)
class FileCheck:
    """One file of a version to check.

    Attributes:
        path: the file's path inside the store's filesystem.
        name: how messages name it (its path relative to the version's folder).
        sha256: the SHA-256 the catalog recorded, or ``None`` for a version recorded without one.
    """

    path: str
    name: str
    sha256: str | None


class VerifiedFiles:
    """The files this process hashed and found intact, each with what its filesystem said about it then.

    One instance serves the whole process (:func:`verified_files`): a file is hashed once per process, whatever the
    project or store object that reads it.

    Attributes:
        hashed: how many times a file was hashed (a counter for tests and benchmarks).
    """

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], tuple[tuple[Any, ...], str]] = {}
        self._noted: set[tuple[str, int]] = set()
        self._lock = threading.Lock()
        self.hashed = 0

    def forget(self) -> None:
        """Forget every file seen: the next read of each hashes it again."""
        with self._lock:
            self._seen.clear()
            self._noted.clear()

    def check(self, fs: Any, version: FeatureVersion, files: Sequence[FileCheck], *, local: bool) -> None:
        """Make sure every file of ``files`` (of ``version``, on ``fs``) holds the bytes recorded for it.

        Raises:
            IntegrityError: a file is missing, or its bytes do not match the recorded SHA-256.
            BackendError: the filesystem could not be read.
        """
        protocol = _protocol(fs)
        unrecorded = [f for f in files if not f.sha256]
        if unrecorded:
            self._note_unrecorded(version, len(unrecorded))
        pending: list[tuple[FileCheck, tuple[Any, ...]]] = []
        for f in files:
            if not f.sha256:
                continue
            marker = self._marker(fs, version, f, local=local)
            with self._lock:
                known = self._seen.get((protocol, f.path))
            if known != (marker, f.sha256):
                pending.append((f, marker))
        if not pending:
            return
        if len(pending) == 1:
            found = [self._hash(fs, version, pending[0][0])]
        else:  # hashlib releases the GIL: the files of a version are hashed side by side
            with ThreadPoolExecutor(max_workers=min(len(pending), os.cpu_count() or 1)) as pool:
                found = list(pool.map(lambda item: self._hash(fs, version, item[0]), pending))
        with self._lock:
            self.hashed += len(pending)
        for (f, marker), digest in zip(pending, found, strict=True):
            if digest != f.sha256:
                with self._lock:
                    self._seen.pop((protocol, f.path), None)
                raise IntegrityError(
                    f"feature view {version.view!r} version {version.version}: file {f.name!r} does not match the "
                    f"SHA-256 recorded when it was written (expected {f.sha256}, found {digest}); the file is "
                    "damaged or was replaced, and is not read. Restore it from a backup, or ingest the view again "
                    "to make a new version; `keel features verify` lists every damaged version"
                )
            with self._lock:
                self._seen[(protocol, f.path)] = (marker, f.sha256)

    def _marker(self, fs: Any, version: FeatureVersion, f: FileCheck, *, local: bool) -> tuple[Any, ...]:
        """What says whether the file changed since it was hashed (see the module docstring)."""
        try:
            if local:
                st = os.stat(f.path)
                return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)
            info = fs.info(f.path)
        except FileNotFoundError as exc:
            raise self._missing(version, f) from exc
        except storage_errors() as exc:  # an S3 endpoint out of reach included
            raise BackendError(
                f"feature view {version.view!r} version {version.version}: cannot look at file {f.name!r}: {exc}"
            ) from exc
        if info.get("type") == "directory":
            raise self._missing(version, f)
        return (info.get("size"), *(str(info.get(k)) for k in _CHANGE_MARKERS if info.get(k) is not None))

    def _hash(self, fs: Any, version: FeatureVersion, f: FileCheck) -> str:
        sha = hashlib.sha256()
        try:
            with open(f.path, "rb") if is_local(fs) else fs.open(f.path, "rb") as fh:
                while chunk := fh.read(_CHUNK):
                    sha.update(chunk)
        except FileNotFoundError as exc:
            raise self._missing(version, f) from exc
        except storage_errors() as exc:  # an S3 endpoint out of reach included
            raise BackendError(
                f"feature view {version.view!r} version {version.version}: cannot read file {f.name!r}: {exc}"
            ) from exc
        return sha.hexdigest()

    @staticmethod
    def _missing(version: FeatureVersion, f: FileCheck) -> IntegrityError:
        return IntegrityError(
            f"feature view {version.view!r} version {version.version}: file {f.name!r} is missing from the offline "
            "store; the version cannot be read. Restore the file from a backup, or ingest the view again to make a "
            "new version; `keel features verify` lists every damaged version"
        )

    def _note_unrecorded(self, version: FeatureVersion, count: int) -> None:
        key = (version.view, version.version)
        with self._lock:
            if key in self._noted:
                return
            self._noted.add(key)
        log.warning(
            "feature view %r version %d: %d file(s) were recorded without a SHA-256 (an older version); they are "
            "read unverified",
            version.view,
            version.version,
            count,
        )


_VERIFIED = VerifiedFiles()


def verify_version(store: OfflineStore, version: FeatureVersion) -> None:
    """Check every file of ``version`` in ``store`` before it is read (see the module docstring).

    Raises:
        IntegrityError: a file is missing, or its bytes do not match the recorded SHA-256.
    """
    checks = []
    for f in version.files:
        relative = f"{f.get('location', version.location)}/{f['path']}"  # a pushed version lists its parent's
        checks.append(FileCheck(f"{store.root.rstrip('/')}/{relative}", relative, f.get("sha256")))
    _VERIFIED.check(store.fs, version, checks, local=store.is_local)


def verified_files() -> VerifiedFiles:
    """The process's record of verified files."""
    return _VERIFIED


def _protocol(fs: Any) -> str:
    protocol = fs.protocol
    return str(protocol if isinstance(protocol, str) else protocol[0])
