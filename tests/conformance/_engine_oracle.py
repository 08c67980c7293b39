"""Slow, obviously correct references of the engine operations, in plain Python over the same Parquet files.

Each function reads the files a :class:`PointInTimeSource` lists, in their order, and applies the contract
written on :class:`~keel.engines.Engine` row by row: no SQL, no window functions, nothing clever.
"""

from __future__ import annotations

import math
import statistics
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from keel.engines import ROW, TS, PointInTimeSource


def source_rows(src: PointInTimeSource) -> list[dict[str, Any]]:
    """Every row of the source's files, files in list order, rows in file order (the order they were written)."""
    return [row for path in src.paths for row in pq.ParquetFile(path).read().to_pylist()]


def _rank(src: PointInTimeSource, row: dict[str, Any], position: int) -> tuple[Any, ...]:
    """Larger wins: the latest event time, then the latest created time (a missing one loses), then the row
    written last (the larger sequence number; for files without one, the later position)."""
    created = row[src.created_timestamp] if src.created_timestamp else None
    written = row[src.sequence] if src.sequence and src.sequence in row else position
    return (row[src.timestamp], created is not None, created or datetime.min, written)


def _oldest_fresh(at: datetime, ttl: timedelta | None) -> datetime | None:
    if ttl is None:
        return None
    try:
        return at - ttl
    except OverflowError:  # a TTL longer than the calendar: nothing is too old
        return None


def point_in_time_join(entities: pa.Table, sources: list[PointInTimeSource]) -> list[dict[str, Any]]:
    """Per entity row (by ``__keel_row``): each source's latest row at or before its time, within the TTL."""
    out = []
    per_source = [(src, list(enumerate(source_rows(src)))) for src in sources]
    for entity in sorted(entities.to_pylist(), key=lambda e: e[ROW]):
        result: dict[str, Any] = {ROW: entity[ROW]}
        for src, rows in per_source:
            keys = tuple(entity[k] for k in src.join_keys)
            seen = [
                (i, r) for i, r in rows if tuple(r[k] for k in src.join_keys) == keys and r[src.timestamp] <= entity[TS]
            ]
            best = max(seen, key=lambda ir: _rank(src, ir[1], ir[0]), default=None)
            oldest = _oldest_fresh(entity[TS], src.ttl)
            fresh = best is not None and (oldest is None or best[1][src.timestamp] >= oldest)
            for stored, name in src.features:
                result[name] = best[1][stored] if fresh and best is not None else None
        out.append(result)
    return out


def _utc(value: datetime) -> datetime:
    """Naive bounds are taken as UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def latest_per_entity(src: PointInTimeSource, *, start: datetime | None, end: datetime) -> list[dict[str, Any]]:
    """Per entity, its latest row with event time in ``(start, end]``: keys, event time, stored features;
    sorted by key."""
    end = _utc(end)
    start = None if start is None else _utc(start)
    best: dict[tuple[Any, ...], tuple[int, dict[str, Any]]] = {}
    for i, row in enumerate(source_rows(src)):
        at = row[src.timestamp]
        if at > end or (start is not None and at <= start):
            continue
        key = tuple(row[k] for k in src.join_keys)
        if key not in best or _rank(src, row, i) > _rank(src, best[key][1], best[key][0]):
            best[key] = (i, row)
    columns = list(dict.fromkeys([*src.join_keys, src.timestamp, *(stored for stored, _ in src.features)]))
    return [{c: best[key][1][c] for c in columns} for key in sorted(best)]


QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


def _quantile(values: list[float], p: float) -> float:
    """Linear interpolation between the closest ranks (DuckDB's ``quantile_cont``, NumPy's default)."""
    ordered = sorted(values)
    position = p * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def numeric_statistics(values: list[float | int | None]) -> dict[str, Any]:
    """count, nulls, min, max, mean, sample std and the quantiles of a numeric column without NaN or infinity."""
    present = [v for v in values if v is not None]
    floats = [float(v) for v in present]
    return {
        "count": len(present),
        "nulls": len(values) - len(present),
        "min": min(present),
        "max": max(present),
        "mean": statistics.fmean(floats),
        "std": statistics.stdev(floats),
        "quantiles": {
            f"p{round(p * 100):02d}": _quantile(floats, p) for p in (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
        },
    }


def top_categories(values: list[str | None], limit: int = 20) -> list[list[Any]]:
    """The most frequent values, most frequent first, ties by value."""
    counts: dict[str, int] = {}
    for v in values:
        if v is not None:
            counts[v] = counts.get(v, 0) + 1
    return [[v, k] for v, k in sorted(counts.items(), key=lambda vk: (-vk[1], vk[0]))[:limit]]


def count_duplicates(table: pa.Table, keys: list[str], timestamp: str) -> int:
    """Rows whose (keys, event time) an earlier row already had."""
    rows = table.select([*keys, timestamp]).to_pylist()
    return len(rows) - len({tuple(r.values()) for r in rows})
