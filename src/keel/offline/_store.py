"""Where ingested versions live: immutable Parquet folders under the offline store's root.

A version is written to ``<root>/<view>/_tmp-<random>/`` and renamed to ``<root>/<view>/<digest>/`` once every
file is complete; only then is its catalog row committed. A crash leaves either nothing visible or an
unreferenced folder that the next ingest of the same data reuses.
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

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from keel.errors import BackendError

if TYPE_CHECKING:
    from keel.catalog import FeatureVersion

ROW_GROUP_ROWS = 256 * 1024
MANIFEST = "_manifest.json"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _dictionary_columns(schema: pa.Schema) -> list[str]:
    """Columns worth dictionary encoding: keys, strings, integers, flags; floats and times rarely repeat."""
    return [
        f.name
        for f in schema
        if pa.types.is_integer(f.type) or pa.types.is_string(f.type) or pa.types.is_boolean(f.type)
    ]


class OfflineStore:
    """Immutable Parquet versions of feature views on a local directory or an fsspec URI.

    Args:
        uri: the store's root.
        partition_rows: versions with more rows are split into one file per month of event time.
    """

    def __init__(self, uri: str, *, partition_rows: int = 1_000_000) -> None:
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
        paths = [f"{self._join(f.get('location', version.location))}/{f['path']}" for f in version.files]
        if not self.is_local:
            protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
            paths = [f"{protocol}://{p.lstrip('/')}" if "://" not in p else p for p in paths]
        return tuple(paths)

    def write_version(
        self, view: str, table: pa.Table, digest: str, timestamp: str
    ) -> tuple[str, list[dict[str, Any]]]:
        """Write ``table`` as the version folder named by ``digest``; returns ``(location, files)``.

        When the folder exists already (identical data written before), it is reused as it is.
        """
        location = f"{view}/{digest}"
        final = self._join(location)
        try:
            existing = self._manifest(final)
            if existing is not None:
                return location, existing
            tmp = self._join(view, f"_tmp-{uuid.uuid4().hex}")
            try:
                files = self._write_folder(tmp, table, timestamp)
                self._publish(tmp, final)
            except BaseException:
                self._discard(tmp)  # nothing half-written stays behind
                raise
        except (OSError, pa.ArrowException) as exc:
            raise BackendError(f"offline store {self.uri!r}: cannot write a version of {view!r}: {exc}") from exc
        return location, self._manifest(final) or files

    def _write_folder(self, tmp: str, table: pa.Table, timestamp: str) -> list[dict[str, Any]]:
        self.fs.makedirs(tmp, exist_ok=True)
        files: list[dict[str, Any]] = []
        for rel, part in self._partitions(table, timestamp):
            path = f"{tmp}/{rel}"
            self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            # Encode straight into the file (no whole-file buffer in memory), then hash what landed on disk.
            with self.fs.open(path, "wb") as f:
                pq.write_table(
                    part,
                    f,
                    row_group_size=ROW_GROUP_ROWS,
                    compression="snappy",
                    use_dictionary=_dictionary_columns(part.schema),
                )
                if self.is_local:
                    f.flush()
                    os.fsync(f.fileno())
            with self.fs.open(path, "rb") as f:
                digest = hashlib.file_digest(f, "sha256").hexdigest()
            files.append({"path": rel, "sha256": digest, "rows": part.num_rows})
        self._write_file(f"{tmp}/{MANIFEST}", json.dumps(files).encode())
        return files

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

    def _partitions(self, table: pa.Table, timestamp: str) -> list[tuple[str, pa.Table]]:
        """One part, or one part per month (UTC) of event time; rows keep their order within a part."""
        if table.num_rows <= self.partition_rows:
            return [("part-0.parquet", table)]
        micros = pc.cast(table.column(timestamp), pa.int64()).to_numpy()
        bounds = pc.min_max(table.column(timestamp)).as_py()
        first, last = bounds["min"], bounds["max"]
        months: list[tuple[int, int]] = []
        year, month = first.year, first.month
        while (year, month) <= (last.year, last.month):
            months.append((year, month))
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        starts = np.array(
            [(datetime(y, m, 1, tzinfo=UTC) - _EPOCH) // timedelta(microseconds=1) for y, m in months],
            dtype=np.int64,
        )
        which = np.searchsorted(starts, micros, side="right") - 1
        order = np.argsort(which, kind="stable")  # stable: the source order breaks ties on event time
        ends = np.cumsum(np.bincount(which, minlength=len(months)))
        ordered = table.take(pa.array(order))
        out = []
        begin = 0
        for (y, m), end in zip(months, ends.tolist(), strict=True):
            if end > begin:
                out.append((f"month={y:04d}-{m:02d}/part-0.parquet", ordered.slice(begin, end - begin)))
            begin = end
        return out

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
