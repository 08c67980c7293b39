"""The engine interface: the heavy data operations, so that a Spark engine can replace the local one.

Data crosses the interface **by reference**: files at rest (:class:`Files`), a small Arrow table held in memory
(``pa.Table``: entity frames of a notebook, a pushed delta), or an engine's own frame (:data:`EngineFrame`, a
Spark ``DataFrame``) that never leaves the engine. What an operation writes comes back as :class:`Written`:
the files under the folder it was given, with their row counts and SHA-256. Nothing large is collected in the
calling process: the Spark engine's driver sees row counts, statistics and digests, never the rows.

:class:`Engine` is the interface the offline store, materialization and batch scoring call.
:class:`EngineBase` is the base class an engine implements it with: its public methods wrap the engine's
``_``-prefixed implementations and translate the engine library's exceptions into the one error tree, so that
every engine reports the same failure with the same Keel error and the same message (only the engine's name
and the library's own text differ).

Three definitions make two engines give identical results:

- **Row order is data.** Ingest writes :data:`SEQ`, each row's position in the source (files in the order
  given, rows in file order), counting from the ``first_sequence`` it is handed; a push continues after its
  parent. Ties on event time (after the created timestamp) go to the larger sequence number, on every engine.
- **The digest does not depend on row order or engine** (:mod:`keel.engines._digest`): a multiset hash of the
  normalised rows (without :data:`SEQ`), combined per partition by addition.
- **One normalisation** (:class:`Normalisation`): the same declared rules, compiled by each engine (Arrow
  compute locally, Spark SQL on Spark), with the same error naming the same column and source row.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from keel.errors import BackendError, KeelError, ValidationError

if TYPE_CHECKING:
    import pyarrow as pa

    from keel.engines._conditions import Condition, Counted
    from keel.engines._profiles import ColumnSummary
    from keel.engines._windows import Window, WindowCounts

#: Names Keel adds to tables it builds; user columns may not start with ``__keel``.
ROW = "__keel_row"
TS = "__keel_ts"
#: The sequence column of ingested versions: the row's position in its source, after its parent's rows.
SEQ = "__keel_seq"

#: Versions with more rows than this are written as one folder per month of event time.
PARTITION_ROWS = 1_000_000

#: An engine's own frame (a Spark ``DataFrame``): passed through, never collected.
EngineFrame = Any


@dataclass(frozen=True)
class Files:
    """Data at rest that an engine reads itself.

    Attributes:
        uris: the files (local paths or URIs, ``s3://…``), read in this order (it defines :data:`SEQ`).
        format: ``parquet`` or ``csv``.
        options: format options as text (CSV: ``delimiter``, ``header``), the same on every engine.
        describe: how messages name the data (``parquet source 'data/activity.parquet'``).
    """

    uris: tuple[str, ...]
    format: Literal["parquet", "csv"] = "parquet"
    options: tuple[tuple[str, str], ...] = ()
    describe: str = ""

    @property
    def label(self) -> str:
        """How messages name the data."""
        if self.describe:
            return self.describe
        first = self.uris[0] if self.uris else "(no files)"
        more = f" and {len(self.uris) - 1} more" if len(self.uris) > 1 else ""
        return f"{self.format} files {first!r}{more}"


#: What an operation reads: files, a small in-memory Arrow table, or an engine's own frame.
Data = Any  # Files | pa.Table | EngineFrame


@dataclass(frozen=True)
class WrittenFile:
    """One file an operation wrote.

    Attributes:
        path: the file's path relative to :attr:`Written.folder` (``month=2024-01/part-0.parquet``).
        rows: the rows it holds.
        sha256: the SHA-256 of its bytes, lowercase hex.
    """

    path: str
    rows: int
    sha256: str


@dataclass(frozen=True)
class Written:
    """The files an operation wrote under ``folder`` (a local path or a URI)."""

    folder: str
    files: tuple[WrittenFile, ...]

    @property
    def rows(self) -> int:
        """The rows of every file."""
        return sum(f.rows for f in self.files)

    def uris(self) -> tuple[str, ...]:
        """Every file's full path or URI, in order."""
        return tuple(f"{self.folder.rstrip('/')}/{f.path}" for f in self.files)


@dataclass(frozen=True)
class Normalisation:
    """The declared rules that turn a source's rows into a version's rows, compiled by each engine.

    Keys become ``int64`` (integer sources) or ``string`` (text sources) — or, when :attr:`key_types` names
    them, exactly those types (a push must store what its parent stores); the event time becomes a UTC
    microsecond timestamp (finer units rounded up, naive values taken as UTC with a warning, never null); the
    created time the same but nullable and truncated; every feature its declared dtype (NaN is null). Only
    the declared columns are kept, in the order keys, event time, created time, features, then :data:`SEQ`.

    The first offending value is reported as a :class:`~keel.errors.ValidationError` naming the view, the
    column and the row (counted from 0 in source order, as :data:`SEQ` counts them less ``first_sequence``).

    Attributes:
        view: the feature view's name (for messages).
        join_keys: the key columns.
        timestamp: the event-time column.
        created_timestamp: the created-time column, if any.
        features: ``(name, dtype)`` of each feature, in schema order.
        key_types: ``(key, "int64" | "string")`` the keys must have; empty: inferred from the source.
        source: how messages name the data (``parquet source 'data/activity.parquet'``).
    """

    view: str
    join_keys: tuple[str, ...]
    timestamp: str
    created_timestamp: str | None
    features: tuple[tuple[str, str], ...]
    key_types: tuple[tuple[str, str], ...] = ()
    source: str = "the source"

    @property
    def columns(self) -> list[str]:
        """The declared columns, in stored order (without :data:`SEQ`)."""
        out = [*self.join_keys, self.timestamp]
        if self.created_timestamp:
            out.append(self.created_timestamp)
        return out + [name for name, _ in self.features]

    def dtypes(self, key_types: dict[str, str]) -> dict[str, str]:
        """Every stored column's dtype (keys as given), in stored order; what statistics are computed of."""
        out = {k: key_types[k] for k in self.join_keys}
        out[self.timestamp] = "timestamp"
        if self.created_timestamp:
            out[self.created_timestamp] = "timestamp"
        out.update(self.features)
        return out


@dataclass(frozen=True)
class Ingested:
    """What :meth:`Engine.ingest` found and wrote, in one pass over the source.

    Attributes:
        written: the version's files under the folder given (``None`` when the digest matched
            ``unless_digest`` and nothing was written).
        rows: rows read from the source (= rows written).
        key_types: each key's stored type, ``int64`` or ``string``.
        event_time_min: the earliest event time.
        event_time_max: the latest event time.
        duplicates: rows sharing (keys, event time) with another row before them.
        statistics: per stored column, as :meth:`Engine.column_statistics` gives them (empty when nothing
            was written).
        digest: the order-independent content digest of the normalised rows (:mod:`keel.engines._digest`).
        warnings: what was noticed and corrected (naive timestamps taken as UTC ...).
    """

    written: Written | None
    rows: int
    key_types: dict[str, str]
    event_time_min: datetime | None
    event_time_max: datetime | None
    duplicates: int
    statistics: dict[str, dict[str, Any]]
    digest: str
    warnings: tuple[str, ...] = field(default=())


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
        sequence: the sequence column breaking the remaining ties (:data:`SEQ`); ``None`` for versions
            written before Keel wrote one, whose ties the local engine breaks by file position.
    """

    view: str
    paths: tuple[str, ...]
    join_keys: tuple[str, ...]
    timestamp: str
    created_timestamp: str | None
    features: tuple[tuple[str, str], ...]
    ttl: timedelta | None
    deduplicate: bool
    sequence: str | None = SEQ


@runtime_checkable
class LatestSink(Protocol):
    """Where materialization writes the latest values: picklable; when :attr:`distributed`, an engine may call
    :meth:`write` in its worker processes (on other machines), each opening the store itself."""

    #: whether worker processes can reach the store (Redis) or only this process can (SQLite, memory)
    distributed: bool

    def write(self, rows: pa.Table) -> int:
        """Write a batch of latest rows; returns how many were applied."""
        ...


@runtime_checkable
class PackageSource(Protocol):
    """A model package by reference (:class:`keel.models.PackageRef`): picklable, loaded and verified by
    whoever scores with it, once per process."""

    # read-only: a PackageRef is frozen (settable protocol members would refuse it)
    @property
    def name(self) -> str:
        """The model's name (for messages)."""
        ...

    @property
    def digest(self) -> str:
        """The package's SHA-256, lowercase hex."""
        ...

    def load(self) -> Any:
        """The verified, deserialized package."""
        ...


@dataclass(frozen=True)
class Scoring:
    """How :meth:`Engine.score` scores.

    Attributes:
        id_column: the input column copied to the output beside each prediction (``None``: none).
        probabilities: add one ``proba_<class>`` column per class (classifiers).
        request: further input columns read and passed on (request fields).
        on_demand: the on-demand feature views that compute some of the model's features from input columns
            (:class:`keel.features._on_demand_plan.OnDemandStep`: inputs and request fields read from the
            input's columns of their names, outputs added under the model's feature names), run on every batch
            before the package scores it, by the same functions as at training and serving.
    """

    id_column: str | None = None
    probabilities: bool = False
    request: tuple[str, ...] = ()
    on_demand: tuple[Any, ...] = ()


@runtime_checkable
class Engine(Protocol):
    """What the offline store, materialization and batch scoring need from a compute engine."""

    name: str

    def ingest(
        self,
        data: Data,
        rules: Normalisation,
        into: str,
        *,
        first_sequence: int = 0,
        unless_digest: str | None = None,
        partition_rows: int = PARTITION_ROWS,
    ) -> Ingested:
        """Normalise ``data`` by ``rules`` and write it as a version's Parquet files under the folder ``into``.

        One pass: normalisation (and its first-error report), :data:`SEQ`, duplicate count, event-time bounds,
        statistics, digest and the write: one file, or with more than ``partition_rows`` rows one folder per
        month of event time (``month=YYYY-MM/``), the engine choosing the files inside. When the digest
        equals ``unless_digest``, nothing is written (:attr:`Ingested.written` is ``None``).
        """
        ...

    def point_in_time_join(self, entities: pa.Table, sources: list[PointInTimeSource]) -> pa.Table:
        """Join each source's latest value at or before each entity row's time, within the TTL (in memory).

        ``entities`` holds ``__keel_row`` (0..n-1), ``__keel_ts`` (UTC timestamp) and the join keys. The
        result has ``__keel_row`` and every output feature column, one row per entity row, ordered by
        ``__keel_row``.
        """
        ...

    def join_to(
        self,
        entities: Data,
        sources: list[PointInTimeSource],
        *,
        timestamp: str,
        key_types: dict[str, str],
        into: str | None,
    ) -> Written | EngineFrame:
        """The point-in-time join of an entity table at rest (files or an engine frame), never collected.

        Every entity row is kept with all its columns, followed by the sources' output columns; ``timestamp``
        is the entity time column (zoned values converted to UTC, naive ones taken as UTC), keys are cast to
        ``key_types``. Written as Parquet under ``into``; with ``into=None`` the engine's frame is returned.
        Row order is not kept.
        """
        ...

    def latest_per_entity(
        self, src: PointInTimeSource, *, start: datetime | None, end: datetime, batch_rows: int = 65_536
    ) -> Iterator[pa.RecordBatch]:
        """Per entity, the latest row with event time in ``(start, end]`` (keys, event time, features), in
        batches of at most ``batch_rows`` rows: memory stays bounded whatever the number of entities."""
        ...

    def write_latest(
        self,
        src: PointInTimeSource,
        *,
        start: datetime | None,
        end: datetime,
        sink: LatestSink,
        batch_rows: int = 65_536,
        on_progress: Callable[[int], None] | None = None,
    ) -> tuple[int, int]:
        """Write :meth:`latest_per_entity` to ``sink`` in batches of at most ``batch_rows``; returns ``(rows,
        applied)``. A distributed engine writes a distributed sink from its workers; otherwise this process
        writes each batch as it arrives (``on_progress`` gets the rows written so far)."""
        ...

    def stale_entities(
        self,
        old: PointInTimeSource,
        new: PointInTimeSource,
        *,
        start: datetime | None,
        end: datetime,
        new_end: datetime | None = None,
    ) -> int:
        """How many entities' latest row in ``(start, end]`` of ``old`` has no row as recent in ``new``'s
        ``(start, new_end]`` (``new_end`` defaults to ``end``): the entities an upsert of ``new``'s latest rows
        would leave holding ``old``'s values."""
        ...

    def column_statistics(self, data: Data, dtypes: dict[str, str]) -> dict[str, dict[str, Any]]:
        """Per-column statistics: count, nulls, min, max, mean, std, quantiles, top categories."""
        ...

    def count_duplicates(self, data: Data, keys: list[str], timestamp: str) -> int:
        """How many rows share their (keys, event time) with an earlier row."""
        ...

    def profile(
        self, data: Data, kinds: dict[str, str], *, grid: Sequence[float], bins: int
    ) -> dict[str, ColumnSummary]:
        """The summary of each column of ``kinds`` (``numeric`` or ``categorical``), computed where the data is
        (see :mod:`keel.engines._profiles`): quantiles at the probabilities ``grid``, ``bins`` histogram bins;
        in the order of ``kinds``."""
        ...

    def count_where(self, data: Data, conditions: Mapping[str, Condition]) -> dict[str, Counted]:
        """For each named row condition (:mod:`keel.engines._conditions`), in one pass over ``data``: the rows,
        the rows where it holds, and the sequence number of the first of them (``None`` without a sequence
        column)."""
        ...

    def window_counts(
        self, data: Data, timestamp: str, window: Window, buckets: Mapping[str, Sequence[Condition]]
    ) -> WindowCounts:
        """In one pass over ``data``: per event-time window (:mod:`keel.engines._windows`) and per column of
        ``buckets``, the rows in each bucket (the first of the column's conditions a row meets; one last bucket for
        the rows that meet none). Only windows with rows are returned."""
        ...

    def score(self, data: Data, package: PackageSource, into: str, *, scoring: Scoring) -> Written:
        """Score every row of ``data`` with ``package`` (loaded and verified once per worker process) and write
        the predictions as Parquet under ``into``: the id column, ``prediction``, and probabilities."""
        ...


class EngineBase(ABC):
    """The base class of engines: error translation around each operation (Kedro's ``load``/``_load``).

    A subclass implements the ``_``-prefixed twin of every operation of :class:`Engine` (same arguments and
    results), and :meth:`_error_type`, which says which Keel error each of its library's exceptions is. A
    public method then raises, for any exception that is not already a Keel error, that Keel error with the
    message ``"<engine>: <operation> failed: <the library's message>"`` and the library's exception as its
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

    def ingest(
        self,
        data: Data,
        rules: Normalisation,
        into: str,
        *,
        first_sequence: int = 0,
        unless_digest: str | None = None,
        partition_rows: int = PARTITION_ROWS,
    ) -> Ingested:
        """See :meth:`Engine.ingest`."""
        try:
            return self._ingest(
                data,
                rules,
                into,
                first_sequence=first_sequence,
                unless_digest=unless_digest,
                partition_rows=partition_rows,
            )
        except KeelError:
            raise
        except Exception as exc:
            raise self._failure(f"ingest of feature view {rules.view!r}", exc) from exc

    def point_in_time_join(self, entities: pa.Table, sources: list[PointInTimeSource]) -> pa.Table:
        """See :meth:`Engine.point_in_time_join`."""
        try:
            return self._point_in_time_join(entities, sources)
        except KeelError:
            raise
        except Exception as exc:
            raise self._failure(f"point-in-time join of {_views(sources)}", exc) from exc

    def join_to(
        self,
        entities: Data,
        sources: list[PointInTimeSource],
        *,
        timestamp: str,
        key_types: dict[str, str],
        into: str | None,
    ) -> Written | EngineFrame:
        """See :meth:`Engine.join_to`."""
        try:
            return self._join_to(entities, sources, timestamp=timestamp, key_types=key_types, into=into)
        except KeelError:
            raise
        except Exception as exc:
            raise self._failure(f"point-in-time join of {_views(sources)}", exc) from exc

    def latest_per_entity(
        self, src: PointInTimeSource, *, start: datetime | None, end: datetime, batch_rows: int = 65_536
    ) -> Iterator[pa.RecordBatch]:
        """See :meth:`Engine.latest_per_entity`."""
        operation = f"latest values of feature view {src.view!r}"
        try:
            batches = self._latest_per_entity(src, start=start, end=end, batch_rows=batch_rows)
            while True:  # a lazy engine fails while the batches are read: translate there too
                try:
                    batch = next(batches)
                except StopIteration:
                    return
                yield batch
        except KeelError:
            raise
        except Exception as exc:
            raise self._failure(operation, exc) from exc

    def write_latest(
        self,
        src: PointInTimeSource,
        *,
        start: datetime | None,
        end: datetime,
        sink: LatestSink,
        batch_rows: int = 65_536,
        on_progress: Callable[[int], None] | None = None,
    ) -> tuple[int, int]:
        """See :meth:`Engine.write_latest`."""
        try:
            return self._write_latest(
                src, start=start, end=end, sink=sink, batch_rows=batch_rows, on_progress=on_progress
            )
        except KeelError:
            raise
        except Exception as exc:
            raise self._failure(f"writing the latest values of feature view {src.view!r}", exc) from exc

    def _write_latest(
        self,
        src: PointInTimeSource,
        *,
        start: datetime | None,
        end: datetime,
        sink: LatestSink,
        batch_rows: int,
        on_progress: Callable[[int], None] | None,
    ) -> tuple[int, int]:
        """Batches from :meth:`latest_per_entity`, written by this process (engines with workers override)."""
        import pyarrow as pa

        rows = applied = 0
        for batch in self.latest_per_entity(src, start=start, end=end, batch_rows=batch_rows):
            rows += batch.num_rows
            applied += sink.write(pa.Table.from_batches([batch]))
            if on_progress is not None:
                on_progress(rows)
        return rows, applied

    def stale_entities(
        self,
        old: PointInTimeSource,
        new: PointInTimeSource,
        *,
        start: datetime | None,
        end: datetime,
        new_end: datetime | None = None,
    ) -> int:
        """See :meth:`Engine.stale_entities`."""
        try:
            return self._stale_entities(old, new, start=start, end=end, new_end=new_end or end)
        except KeelError:
            raise
        except Exception as exc:
            raise self._failure(f"comparing two versions of feature view {new.view!r}", exc) from exc

    def column_statistics(self, data: Data, dtypes: dict[str, str]) -> dict[str, dict[str, Any]]:
        """See :meth:`Engine.column_statistics`."""
        try:
            return self._column_statistics(data, dtypes)
        except KeelError:
            raise
        except Exception as exc:
            raise self._failure(f"statistics of columns {', '.join(map(repr, dtypes))}", exc) from exc

    def count_duplicates(self, data: Data, keys: list[str], timestamp: str) -> int:
        """See :meth:`Engine.count_duplicates`."""
        try:
            return self._count_duplicates(data, keys, timestamp)
        except KeelError:
            raise
        except Exception as exc:
            columns = ", ".join(map(repr, [*keys, timestamp]))
            raise self._failure(f"counting duplicates of ({columns})", exc) from exc

    def profile(
        self, data: Data, kinds: dict[str, str], *, grid: Sequence[float], bins: int
    ) -> dict[str, ColumnSummary]:
        """See :meth:`Engine.profile`."""
        try:
            return self._profile(data, kinds, grid=grid, bins=bins)
        except KeelError:
            raise
        except Exception as exc:
            raise self._failure(f"profile of columns {', '.join(map(repr, kinds))}", exc) from exc

    def count_where(self, data: Data, conditions: Mapping[str, Condition]) -> dict[str, Counted]:
        """See :meth:`Engine.count_where`."""
        try:
            return self._count_where(data, conditions)
        except KeelError:
            raise
        except Exception as exc:
            raise self._failure(f"counting rows where {len(conditions)} condition(s) hold", exc) from exc

    def window_counts(
        self, data: Data, timestamp: str, window: Window, buckets: Mapping[str, Sequence[Condition]]
    ) -> WindowCounts:
        """See :meth:`Engine.window_counts`."""
        if not buckets:
            raise ValidationError("window counts need at least one column of buckets")
        try:
            return self._window_counts(data, timestamp, window, buckets)
        except KeelError:
            raise
        except Exception as exc:
            raise self._failure(f"counting rows per {window.label or 'window'}", exc) from exc

    def score(self, data: Data, package: PackageSource, into: str, *, scoring: Scoring) -> Written:
        """See :meth:`Engine.score`."""
        try:
            return self._score(data, package, into, scoring=scoring)
        except KeelError:
            raise
        except Exception as exc:
            raise self._failure(f"scoring with model {package.name!r}", exc) from exc

    def _failure(self, operation: str, exc: Exception) -> KeelError:
        """The Keel error of a library exception raised by ``operation``."""
        return self._error_type(exc)(f"{self.description}: {operation} failed: {_without_traceback(str(exc))}")

    def _error_type(self, exc: Exception) -> type[KeelError]:
        """Which Keel error a library exception is (see the class docstring); :class:`BackendError` unless
        the engine knows better."""
        return BackendError

    @abstractmethod
    def _ingest(
        self,
        data: Data,
        rules: Normalisation,
        into: str,
        *,
        first_sequence: int,
        unless_digest: str | None,
        partition_rows: int,
    ) -> Ingested: ...

    @abstractmethod
    def _point_in_time_join(self, entities: pa.Table, sources: list[PointInTimeSource]) -> pa.Table: ...

    @abstractmethod
    def _join_to(
        self,
        entities: Data,
        sources: list[PointInTimeSource],
        *,
        timestamp: str,
        key_types: dict[str, str],
        into: str | None,
    ) -> Written | EngineFrame: ...

    @abstractmethod
    def _latest_per_entity(
        self, src: PointInTimeSource, *, start: datetime | None, end: datetime, batch_rows: int
    ) -> Iterator[pa.RecordBatch]: ...

    @abstractmethod
    def _stale_entities(
        self,
        old: PointInTimeSource,
        new: PointInTimeSource,
        *,
        start: datetime | None,
        end: datetime,
        new_end: datetime,
    ) -> int: ...

    @abstractmethod
    def _column_statistics(self, data: Data, dtypes: dict[str, str]) -> dict[str, dict[str, Any]]: ...

    @abstractmethod
    def _count_duplicates(self, data: Data, keys: list[str], timestamp: str) -> int: ...

    @abstractmethod
    def _profile(
        self, data: Data, kinds: dict[str, str], *, grid: Sequence[float], bins: int
    ) -> dict[str, ColumnSummary]: ...

    @abstractmethod
    def _count_where(self, data: Data, conditions: Mapping[str, Condition]) -> dict[str, Counted]: ...

    @abstractmethod
    def _window_counts(
        self, data: Data, timestamp: str, window: Window, buckets: Mapping[str, Sequence[Condition]]
    ) -> WindowCounts: ...

    @abstractmethod
    def _score(self, data: Data, package: PackageSource, into: str, *, scoring: Scoring) -> Written: ...


def _views(sources: list[PointInTimeSource]) -> str:
    views = ", ".join(repr(src.view) for src in sources)
    return f"feature {'view' if len(sources) == 1 else 'views'} {views}"


_TRACEBACK = "Traceback (most recent call last):"
#: The line of a traceback that names the exception: ``EndpointConnectionError: Could not connect ...``.
_EXCEPTION_LINE = re.compile(r"[A-Za-z_][\w.]*: \S")


def _without_traceback(message: str) -> str:
    """``message`` with a Python traceback it embeds (DuckDB quotes the traceback of an exception raised inside
    a filesystem it reads through, such as a refused connection to S3, then the SQL it was running) cut down to
    the exception's own line."""
    head, found, rest = message.partition(_TRACEBACK)
    if not found:
        return message
    named = [line.strip() for line in rest.splitlines() if _EXCEPTION_LINE.match(line)]
    return f"{head.rstrip()} {named[-1]}".strip() if named else head.rstrip()
