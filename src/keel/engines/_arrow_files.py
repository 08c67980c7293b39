"""The local engine's writer: an Arrow table as a version's Parquet files, one file or one per month.

Files are encoded straight into their destination (no whole-file buffer in memory), synced when local, then
hashed as they landed. The caller owns the folder: it is a staging folder the offline store publishes by a
rename once the catalog may point at it.
"""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from keel.engines._base import Written, WrittenFile

ROW_GROUP_ROWS = 256 * 1024
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def filesystem(uri: str) -> tuple[Any, str, bool]:
    """``(fsspec filesystem, path inside it, is_local)`` of a folder or file URI (a bare path is local)."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(uri)
    protocol = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return fs, path, "file" in protocol or "local" in protocol


def _dictionary_columns(schema: pa.Schema) -> list[str]:
    """Columns worth dictionary encoding: keys, strings, integers, flags; floats and times rarely repeat."""
    return [
        f.name
        for f in schema
        if pa.types.is_integer(f.type) or pa.types.is_string(f.type) or pa.types.is_boolean(f.type)
    ]


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
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    with fs.open(path, "wb") as f:
        pq.write_table(
            table,
            f,
            row_group_size=ROW_GROUP_ROWS,
            compression="snappy",
            use_dictionary=_dictionary_columns(table.schema),
        )
        if local:
            f.flush()
            os.fsync(f.fileno())
    with fs.open(path, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    return WrittenFile(rel, table.num_rows, digest)


def write_parts(table: pa.Table, into: str, timestamp: str, partition_rows: int) -> Written:
    """Write ``table`` under the folder ``into`` as :func:`month_parts` splits it."""
    files = tuple(write_parquet(part, into, rel) for rel, part in month_parts(table, timestamp, partition_rows))
    return Written(into, files)
