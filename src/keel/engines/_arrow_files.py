"""The local engine's writer: an Arrow table as a version's Parquet files, one file or one per month.

Files are encoded straight into their destination (no whole-file buffer in memory) and hashed on the way (the
SHA-256 of the bytes written, so the file is not read back), then synced when local. The caller owns the
folder: it is a staging folder the offline store publishes by a rename once the catalog may point at it.

Encodings: dictionaries for keys, strings, integers and flags (floats and times rarely repeat); the sequence
column, which counts up, as deltas (``DELTA_BINARY_PACKED``: a few bits a row, where a dictionary would be tried
on millions of distinct values and given up).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from keel.engines._base import SEQ, Written, WrittenFile

ROW_GROUP_ROWS = 256 * 1024
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def filesystem(uri: str) -> tuple[Any, str, bool]:
    """``(fsspec filesystem, path inside it, is_local)`` of a folder or file URI (a bare path is local)."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(uri)
    protocol = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return fs, path, "file" in protocol or "local" in protocol


def _dictionary_columns(schema: pa.Schema) -> list[str]:
    """Columns worth dictionary encoding: keys, strings, integers, flags; floats and times rarely repeat, and
    the sequence column never does."""
    return [
        f.name
        for f in schema
        if f.name != SEQ and (pa.types.is_integer(f.type) or pa.types.is_string(f.type) or pa.types.is_boolean(f.type))
    ]


def _encodings(schema: pa.Schema) -> dict[str, str] | None:
    """The sequence column (increasing integers) as deltas."""
    return {SEQ: "DELTA_BINARY_PACKED"} if SEQ in schema.names and pa.types.is_integer(schema.field(SEQ).type) else None


def month_parts(table: pa.Table, timestamp: str, partition_rows: int) -> list[tuple[str, pa.Table]]:
    """One part, or one part per month (UTC) of event time; rows keep their order within a part."""
    if table.num_rows <= partition_rows:
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
    if bool(np.all(micros[1:] >= micros[:-1])):  # in event-time order (a log): each month is a run, sliced
        ends = np.append(np.searchsorted(micros, starts[1:], side="left"), len(micros))
        ordered = table
    else:
        which = np.searchsorted(starts, micros, side="right") - 1
        order = np.argsort(which, kind="stable")  # stable: rows keep their source order within a month
        ends = np.cumsum(np.bincount(which, minlength=len(months)))
        ordered = table.take(pa.array(order))
    out = []
    begin = 0
    for (y, m), end in zip(months, ends.tolist(), strict=True):
        if end > begin:
            out.append((f"month={y:04d}-{m:02d}/part-0.parquet", ordered.slice(begin, end - begin)))
        begin = end
    return out


def write_parquet(table: pa.Table, into: str, rel: str) -> WrittenFile:
    """Write ``table`` as ``<into>/<rel>``, synced when local; its rows and the SHA-256 of its bytes."""
    fs, root, local = filesystem(into)
    path = f"{root.rstrip('/')}/{rel}"
    if local:  # an object store has no folders to make (s3fs would create a missing bucket for one)
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    with open(path, "wb") if local else fs.open(path, "wb") as f:
        sink = _Hashing(f)
        pq.write_table(
            table,
            sink,
            row_group_size=ROW_GROUP_ROWS,
            compression="snappy",
            use_dictionary=_dictionary_columns(table.schema),
            column_encoding=_encodings(table.schema),
        )
        if local:
            f.flush()
            os.fsync(f.fileno())
    return WrittenFile(rel, table.num_rows, sink.hexdigest())


class _Hashing:
    """A binary file that hashes (SHA-256) what is written through it; Parquet's writer writes through it."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self._sha = hashlib.sha256()

    def write(self, data: Any) -> int:
        self._sha.update(data)  # releases the GIL for large writes
        written: int = self._raw.write(data)
        return written

    def flush(self) -> None:
        self._raw.flush()

    @property
    def closed(self) -> bool:
        return bool(self._raw.closed)

    def hexdigest(self) -> str:
        return self._sha.hexdigest()


def remove_written(written: Written) -> None:
    """Remove the files of ``written`` and the month folders they leave empty (the folder itself stays)."""
    fs, root, _ = filesystem(written.folder)
    root = root.rstrip("/")
    for f in written.files:
        with contextlib.suppress(FileNotFoundError):
            fs.rm_file(f"{root}/{f.path}")
    for folder in sorted({f.path.rsplit("/", 1)[0] for f in written.files if "/" in f.path}):
        with contextlib.suppress(OSError):
            if not fs.ls(f"{root}/{folder}"):
                fs.rmdir(f"{root}/{folder}")


def write_parts(table: pa.Table, into: str, timestamp: str, partition_rows: int) -> Written:
    """Write ``table`` under the folder ``into`` as :func:`month_parts` splits it."""
    files = tuple(write_parquet(part, into, rel) for rel, part in month_parts(table, timestamp, partition_rows))
    return Written(into, files)
