"""The engine interface: the heavy data operations, so that a Spark engine can replace the local one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import pyarrow as pa

#: Names Keel adds to tables it builds; user columns may not start with ``__keel``.
ROW = "__keel_row"
TS = "__keel_ts"


@dataclass(frozen=True)
class PointInTimeSource:
    """One ingested version of a feature view, as the point-in-time join reads it.

    Attributes:
        view: the view's name (for messages).
        paths: the version's Parquet files (local paths or URIs the engine can read).
        join_keys: key columns, present with the same names in the entity table.
        timestamp: the event-time column in the files.
        created_timestamp: the created-time column breaking ties, if any.
        features: stored column -> output column name, in output order.
        ttl: how long a value stays valid; ``None`` for ever.
        deduplicate: whether some (keys, event time) appear twice, so ties must be broken.
    """

    view: str
    paths: tuple[str, ...]
    join_keys: tuple[str, ...]
    timestamp: str
    created_timestamp: str | None
    features: tuple[tuple[str, str], ...]
    ttl: timedelta | None
    deduplicate: bool


@runtime_checkable
class Engine(Protocol):
    """What the offline store needs from a compute engine."""

    name: str

    def point_in_time_join(self, entities: pa.Table, sources: list[PointInTimeSource]) -> pa.Table:
        """Join each source's latest value at or before each entity row's time, within the TTL.

        ``entities`` holds ``__keel_row`` (0..n-1), ``__keel_ts`` (UTC timestamp) and the join keys. The
        result has ``__keel_row`` and every output feature column, one row per entity row, ordered by
        ``__keel_row``.
        """
        ...

    def latest_per_entity(self, src: PointInTimeSource, *, start: datetime | None, end: datetime) -> pa.Table:
        """Per entity, the latest row with event time in ``(start, end]`` (keys, event time, features)."""
        ...

    def column_statistics(self, table: pa.Table, dtypes: dict[str, str]) -> dict[str, dict[str, Any]]:
        """Per-column statistics: count, nulls, min, max, mean, std, quantiles, top categories."""
        ...

    def count_duplicates(self, table: pa.Table, keys: list[str], timestamp: str) -> int:
        """How many rows share their (keys, event time) with an earlier row."""
        ...
