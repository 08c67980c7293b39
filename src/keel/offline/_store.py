"""Where ingested versions live: immutable Parquet folders under the offline store's root.

A version is written to ``<root>/<view>/_tmp-<random>/`` and renamed to ``<root>/<view>/<digest>/`` once every
file is complete; only then is its catalog row committed. On an object store, where a folder cannot be renamed,
the files are copied to their final keys and the version's manifest is written after them (and the catalog
row, by which readers find the files, after the manifest). A crash leaves either nothing visible or an
unreferenced folder that the next ingest of the same data reuses. A process killed while writing leaves its
``_tmp-`` folder behind: the next write to the same view removes those in which nothing has changed for
:data:`STALE_STAGING` (a write still running keeps adding files to its own).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from keel._files import open_filesystem, storage_errors
from keel.engines import PARTITION_ROWS, Written
from keel.engines._arrow_files import write_parts
from keel.errors import BackendError

if TYPE_CHECKING:
    from keel.catalog import FeatureVersion

MANIFEST = "_manifest.json"
STAGING_PREFIX = "_tmp-"
#: A staging folder with no file newer than this is a crashed write's leftover, removed by the next write.
STALE_STAGING = timedelta(hours=6)


class OfflineStore:
    """Immutable Parquet versions of feature views on a local directory or an fsspec URI.

    Args:
        uri: the store's root.
        partition_rows: versions with more rows are split into one file per month of event time.
    """

    def __init__(self, uri: str, *, partition_rows: int = PARTITION_ROWS) -> None:
        self.uri = uri
        try:
            self.fs, self.root, self.is_local = open_filesystem(uri)
        except BackendError as exc:  # an unknown scheme, a missing extra (s3fs for s3://)
            raise BackendError(f"offline store: {exc}") from exc.__cause__
        self.partition_rows = partition_rows

    def _join(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def paths(self, version: FeatureVersion) -> tuple[str, ...]:
        """The version's files as paths DuckDB can read (local paths, or URIs of a registered filesystem), each
        verified first against the SHA-256 the catalog recorded (hashed once per process, then checked by its size
        and times: :mod:`keel.offline._verify`).

        A file entry may name its own ``location``: a version made by a push lists its parent's files, which
        live in the parent's folder, before its own.

        Raises:
            IntegrityError: a file is missing, damaged or replaced; it is not read.
        """
        from keel.offline._verify import verify_version

        uris = self.file_uris(version.location, version.files)
        verify_version(self, version)
        return uris

    def file_uris(self, location: str, files: list[dict[str, Any]]) -> tuple[str, ...]:
        """The files of a version's manifest (each may name its own ``location``) as URIs an engine reads.

        On an object store the folders holding them are listed afresh here, one request each: what the
        verification and the engine then ask of each file (its size, its ETag; the engine opens a file several
        times) is answered from that listing rather than by one request per question.
        """
        paths = [f"{self._join(f.get('location', location))}/{f['path']}" for f in files]
        if not self.is_local:
            for folder in dict.fromkeys(p.rsplit("/", 1)[0] for p in paths):
                with contextlib.suppress(*storage_errors()):  # a failure is reported by the read itself
                    self.fs.ls(folder, detail=False, refresh=True)
        return tuple(self.uri_of(p) for p in paths)

    def uri_of(self, path: str) -> str:
        """A path inside the store's filesystem as an engine reads it (a local path, or a URI)."""
        if self.is_local or "://" in path:
            return path
        protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        return f"{protocol}://{path.lstrip('/')}"

    def _inner(self, uri: str) -> str:
        return str(self.fs._strip_protocol(uri)) if "://" in uri else uri

    def staging(self, view: str) -> str:
        """A fresh folder (as a URI an engine writes to) for a version of ``view`` before it is published; crashed
        writes' leftovers of the view are removed first (see :meth:`sweep_staging`)."""
        self.sweep_staging(view)
        return self.uri_of(self._join(view, f"{STAGING_PREFIX}{uuid.uuid4().hex}"))

    def sweep_staging(self, view: str, *, older_than: timedelta = STALE_STAGING) -> list[str]:
        """Remove ``view``'s staging folders in which nothing changed for ``older_than`` (writes killed midway);
        returns the folders removed. A folder whose times the filesystem does not give is kept."""
        removed: list[str] = []
        folder = self._join(view)
        try:
            entries = self.fs.ls(folder, detail=True)
        except (FileNotFoundError, NotADirectoryError):
            return removed
        except storage_errors() as exc:
            raise BackendError(f"offline store {self.uri!r}: cannot list the folder of {view!r}: {exc}") from exc
        cutoff = datetime.now(UTC) - older_than
        for entry in entries:
            path = str(entry.get("name", ""))
            if entry.get("type") != "directory" or not path.rstrip("/").rsplit("/", 1)[-1].startswith(STAGING_PREFIX):
                continue
            newest = self._newest_change(path)
            if newest is not None and newest < cutoff:
                self._discard(path)
                removed.append(path)
        return removed

    def _newest_change(self, folder: str) -> datetime | None:
        """When anything in ``folder`` (itself included) last changed, or ``None`` when the filesystem does not say."""
        times: list[float] = []
        try:
            for path in [folder, *self.fs.find(folder, withdirs=True)]:
                info = self.fs.info(path)
                modified = info.get("mtime", info.get("LastModified"))  # an object store gives LastModified
                if modified is None:
                    if info.get("type") == "directory" and not self.is_local:
                        continue  # a "folder" of an object store is only a prefix of keys: it has no time
                    return None
                times.append(float(modified.timestamp()) if isinstance(modified, datetime) else float(modified))
        except FileNotFoundError:
            return None
        return datetime.fromtimestamp(max(times), UTC) if times else None

    def publish(self, view: str, staging: str, digest: str, written: Written) -> tuple[str, list[dict[str, Any]]]:
        """Make the files an engine wrote under ``staging`` the version folder named by ``digest``.

        The manifest (files, rows, SHA-256) is written last: on a local disk inside the folder, which is then
        renamed into place; on an object store after the files were copied to their final keys. When the
        version exists already (identical data published before), it is reused as it is and the staging folder
        discarded. Returns ``(location, files)``.
        """
        location = f"{view}/{digest}"
        final = self._join(location)
        tmp = self._inner(staging)
        try:
            existing = self._manifest(final)
            if existing is not None:
                self._discard(tmp)
                return location, existing
            files = [{"path": f.path, "sha256": f.sha256, "rows": f.rows} for f in written.files]
            if not self.is_local:
                self._publish_objects(tmp, final, files)
                return location, files
            self._write_file(f"{tmp}/{MANIFEST}", json.dumps(files).encode())
            self._publish(tmp, final)
        except BaseException as exc:
            self._discard(tmp)  # nothing half-written stays behind
            if isinstance(exc, (*storage_errors(), pa.ArrowException)):
                raise BackendError(f"offline store {self.uri!r}: cannot write a version of {view!r}: {exc}") from exc
            raise
        return location, self._manifest(final) or files

    def discard(self, staging: str) -> None:
        """Remove a staging folder that will not be published (the data was unchanged, or a step failed)."""
        self._discard(self._inner(staging))

    def write_version(
        self, view: str, table: pa.Table, digest: str, timestamp: str
    ) -> tuple[str, list[dict[str, Any]]]:
        """Write ``table`` (already normalised) as the version folder named by ``digest``; returns
        ``(location, files)``. When the folder exists already (identical data written before), it is reused."""
        staging = self.staging(view)
        try:
            written = write_parts(table, staging, timestamp, self.partition_rows)
        except BaseException as exc:
            self.discard(staging)
            if isinstance(exc, (*storage_errors(), pa.ArrowException)):
                raise BackendError(f"offline store {self.uri!r}: cannot write a version of {view!r}: {exc}") from exc
            raise
        return self.publish(view, staging, digest, written)

    def _discard(self, folder: str) -> None:
        with contextlib.suppress(Exception):  # a folder already gone included
            self.fs.rm(folder, recursive=True)

    def _manifest(self, folder: str) -> list[dict[str, Any]] | None:
        try:
            with self.fs.open(f"{folder}/{MANIFEST}", "rb") as f:
                return list(json.loads(f.read()))
        except FileNotFoundError:
            return None

    def _write_file(self, path: str, data: bytes) -> None:
        parent = path.rsplit("/", 1)[0]
        self.fs.makedirs(parent, exist_ok=True)
        if self.is_local:
            with open(path, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        else:
            with self.fs.open(path, "wb") as f:
                f.write(data)

    def _publish(self, tmp: str, final: str) -> None:
        """Rename the finished folder into place on a local disk; a concurrent writer of the same data may have
        won."""
        if self.fs.exists(final) and self._manifest(final) is None:
            self.fs.rm(final, recursive=True)  # an unfinished folder, never read (it has no manifest)
        try:
            os.rename(tmp, final)
        except OSError:
            if self._manifest(final) is None:
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # identical data published by another writer

    def _publish_objects(self, tmp: str, final: str, files: list[dict[str, Any]]) -> None:
        """Publish on an object store, where a folder cannot be renamed (the caller found no manifest there):
        copy each file to its final key (a server-side copy: no bytes through this process), then write the
        manifest, then drop the staging objects. The manifest is one object, stored whole or not at all, so a
        version is visible only once every file it lists is in place; a crash before it leaves files without a
        manifest, which no reader opens and the next write of the same data overwrites with the same bytes."""
        names = [str(f["path"]) for f in files]
        if names:
            self.fs.copy([f"{tmp}/{n}" for n in names], [f"{final}/{n}" for n in names])
        self.fs.pipe_file(f"{final}/{MANIFEST}", json.dumps(files).encode())
        self._discard(tmp)

    def verify(self, version: FeatureVersion) -> list[str]:
        """Re-hash every file of ``version``; returns the files whose content no longer matches."""
        bad = []
        for f in version.files:
            base = self._join(f.get("location", version.location))  # a pushed version lists its parent's files
            try:
                with self.fs.open(f"{base}/{f['path']}", "rb") as fh:
                    ok = hashlib.sha256(fh.read()).hexdigest() == f["sha256"]
            except FileNotFoundError:
                ok = False
            if not ok:
                bad.append(f["path"])
        return bad
