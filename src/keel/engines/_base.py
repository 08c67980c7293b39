"""The engine interface: the heavy data operations, so that a Spark engine can replace the local one.

:class:`Engine` is the interface the offline and online stores call. :class:`EngineBase` is the base class an
engine implements it with: its public methods wrap the engine's ``_``-prefixed implementations and translate
the engine library's exceptions into the one error tree, so that every engine reports the same failure with
the same Keel error and the same message (only the engine's name and the library's own text differ).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from keel.errors import BackendError, KeelError

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


class EngineBase(ABC):
    """The base class of engines: error translation around each operation (Kedro's ``load``/``_load``).

    A subclass implements :meth:`_point_in_time_join`, :meth:`_latest_per_entity`, :meth:`_column_statistics`
    and :meth:`_count_duplicates` (same arguments and results as the public methods, documented on
    :class:`Engine`), and :meth:`_error_type`, which says which Keel error each of its library's exceptions
    is. A public method then raises, for any exception that is not already a Keel error, that Keel error with
    the message ``"<engine>: <operation> failed: <the library's message>"`` and the library's exception as its
    ``__cause__``; Keel errors raised inside pass through unchanged.

    Which Keel error a failure is (every engine keeps this, the conformance suite checks it):

    - :class:`~keel.errors.ValidationError`: the data does not fit the query — a column the operation names
      is absent, or values cannot be converted to the type they are compared with (an entity key column of
      strings against integer keys);
    - :class:`~keel.errors.BackendError`: anything else — files that cannot be read or are not Parquet, the
      engine running out of memory, a bug.
    """

    #: the engine's name in configuration (``engine: local``)
    name: str = "engine"

    @property
    def description(self) -> str:
        """How messages name this engine."""
        return f"{self.name} engine"

    def point_in_time_join(self, entities: pa.Table, sources: list[PointInTimeSource]) -> pa.Table:
        """See :meth:`Engine.point_in_time_join`."""
        try:
            return self._point_in_time_join(entities, sources)
        except KeelError:
            raise
        except Exception as exc:
            views = ", ".join(repr(src.view) for src in sources)
            noun = "view" if len(sources) == 1 else "views"
            raise self._failure(f"point-in-time join of feature {noun} {views}", exc) from exc

    def latest_per_entity(self, src: PointInTimeSource, *, start: datetime | None, end: datetime) -> pa.Table:
        """See :meth:`Engine.latest_per_entity`."""
        try:
            return self._latest_per_entity(src, start=start, end=end)
        except KeelError:
            raise
        except Exception as exc:
            raise self._failure(f"latest values of feature view {src.view!r}", exc) from exc

    def column_statistics(self, table: pa.Table, dtypes: dict[str, str]) -> dict[str, dict[str, Any]]:
        """See :meth:`Engine.column_statistics`."""
        try:
            return self._column_statistics(table, dtypes)
        except KeelError:
            raise
        except Exception as exc:
            raise self._failure(f"statistics of columns {', '.join(map(repr, dtypes))}", exc) from exc

    def count_duplicates(self, table: pa.Table, keys: list[str], timestamp: str) -> int:
        """See :meth:`Engine.count_duplicates`."""
        try:
            return self._count_duplicates(table, keys, timestamp)
        except KeelError:
            raise
        except Exception as exc:
            columns = ", ".join(map(repr, [*keys, timestamp]))
            raise self._failure(f"counting duplicates of ({columns})", exc) from exc

    def _failure(self, operation: str, exc: Exception) -> KeelError:
        """The Keel error of a library exception raised by ``operation``."""
        return self._error_type(exc)(f"{self.description}: {operation} failed: {exc}")

    def _error_type(self, exc: Exception) -> type[KeelError]:
        """Which Keel error a library exception is (see the class docstring); :class:`BackendError` unless
        the engine knows better."""
        return BackendError

    @abstractmethod
    def _point_in_time_join(self, entities: pa.Table, sources: list[PointInTimeSource]) -> pa.Table: ...

    @abstractmethod
    def _latest_per_entity(self, src: PointInTimeSource, *, start: datetime | None, end: datetime) -> pa.Table: ...

    @abstractmethod
    def _column_statistics(self, table: pa.Table, dtypes: dict[str, str]) -> dict[str, dict[str, Any]]: ...

    @abstractmethod
    def _count_duplicates(self, table: pa.Table, keys: list[str], timestamp: str) -> int: ...
