"""Where ingested versions live: immutable Parquet folders under the offline store's root.

A version is written to ``<root>/<view>/_tmp-<random>/`` and renamed to ``<root>/<view>/<digest>/`` once every
file is complete; only then is its catalog row committed. A crash leaves either nothing visible or an
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
        import fsspec

        self.uri = uri
        self.fs, root = fsspec.core.url_to_fs(uri)
        self.root = root.rstrip("/") or "/"
        self.partition_rows = partition_rows
        protocol = self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        self.is_local = "file" in protocol or "local" in protocol

    def _join(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def paths(self, version: FeatureVersion) -> tuple[str, ...]:
        """The version's files as paths DuckDB can read (local paths, or URIs of a registered filesystem).

        A file entry may name its own ``location``: a version made by a push lists its parent's files, which
        live in the parent's folder, before its own.
        """
        return self.file_uris(version.location, version.files)

    def file_uris(self, location: str, files: list[dict[str, Any]]) -> tuple[str, ...]:
        """The files of a version's manifest (each may name its own ``location``) as URIs an engine reads."""
        return tuple(self.uri_of(f"{self._join(f.get('location', location))}/{f['path']}") for f in files)

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
                modified = self.fs.info(path).get("mtime")
                if modified is None:
                    return None
                times.append(float(modified.timestamp()) if isinstance(modified, datetime) else float(modified))
        except FileNotFoundError:
            return None
        return datetime.fromtimestamp(max(times), UTC) if times else None

    def publish(self, view: str, staging: str, digest: str, written: Written) -> tuple[str, list[dict[str, Any]]]:
        """Make the files an engine wrote under ``staging`` the version folder named by ``digest``.

        The manifest (files, rows, SHA-256) is written last inside the folder, which is then renamed into
        place; when the folder exists already (identical data published before), it is reused as it is and
        the staging folder discarded. Returns ``(location, files)``.
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
            self._write_file(f"{tmp}/{MANIFEST}", json.dumps(files).encode())
            self._publish(tmp, final)
        except BaseException as exc:
            self._discard(tmp)  # nothing half-written stays behind
            if isinstance(exc, OSError | pa.ArrowException):
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
            if isinstance(exc, OSError | pa.ArrowException):
                raise BackendError(f"offline store {self.uri!r}: cannot write a version of {view!r}: {exc}") from exc
            raise
        return self.publish(view, staging, digest, written)

    def _discard(self, folder: str) -> None:
        with contextlib.suppress(Exception):
            if self.fs.exists(folder):
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
        """Rename the finished folder into place; a concurrent writer of the same data may have won."""
        if self.fs.exists(final) and self._manifest(final) is None:
            self.fs.rm(final, recursive=True)  # left by a crash during a non-atomic (remote) move
        if self.is_local:
            try:
                os.rename(tmp, final)
            except OSError:
                if self._manifest(final) is None:
                    raise
                shutil.rmtree(tmp, ignore_errors=True)  # identical data published by another writer
            return
        if self._manifest(final) is not None:
            self.fs.rm(tmp, recursive=True)
            return
        self.fs.mv(tmp, final, recursive=True)

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
