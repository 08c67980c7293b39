"""Materialization: the latest value per entity, within each view's TTL, from the offline store to the online one.

The engine computes the latest row per entity in one query; the online store writes it in bulk. Runs are
incremental: the catalog remembers, per view and online store, which version was written up to which event
time, so the next run of the same version only writes what came after.

The TTL bound is inclusive, as in offline retrieval: a value whose event time is exactly ``end - ttl`` is
still valid at ``end`` and is written. When a new version replaces the one in the store, rows only the old
version had (an entity removed, or its latest value moved back in time) would survive an upsert, since a
store never lets an older event time overwrite a newer one; the view is then rebuilt: written whole into a
new generation of the view that replaces the old data in one atomic step once complete
(:meth:`~keel.online.OnlineStore.begin_generation`), so that the store holds exactly the new version's latest
values and readers meanwhile keep reading the old ones. A run killed midway leaves the old data serving; the
next run removes what it had written.

Crash safety, run by run: a rebuild shows readers the old values or the new, never a mix nor nothing; an
upsert run (incremental, or a new version that only adds and updates entities) replaces each entity's row
atomically, so a run killed midway leaves each entity with its old row or its new one. Either way the
catalog records the run only once the store holds it all, so the next run writes the same window again.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pyarrow as pa

from keel._time import checked_utc
from keel.engines import PointInTimeSource
from keel.errors import NotFoundError, ValidationError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from keel.catalog import Catalog, FeatureVersion, Materialization
    from keel.definitions import Definitions
    from keel.engines import Engine
    from keel.features import FeatureView
    from keel.offline import OfflineStore
    from keel.online._store import OnlineStore


@dataclass(frozen=True)
class MaterializeResult:
    """What one view's materialization did.

    Attributes:
        view: the feature view's name.
        version: the ingested version written (or already in place).
        rows: entities written.
        start: event times after this were considered (``None``: all within the TTL).
        end: event times up to this were considered.
        seconds: wall time.
        skipped: why nothing was written (``""`` when something was).
        rebuilt: why the view was dropped and written whole (``""`` when it was not).
    """

    view: str
    version: int
    rows: int
    start: datetime | None
    end: datetime
    seconds: float
    skipped: str = ""
    rebuilt: str = ""

    def __str__(self) -> str:
        if self.skipped:
            return f"{self.view}: {self.skipped}"
        rebuilt = f" (rebuilt: {self.rebuilt})" if self.rebuilt else ""
        return f"{self.view}: v{self.version}, {self.rows:,} entities in {self.seconds:.2f}s{rebuilt}"


_MICROSECOND = timedelta(microseconds=1)

#: Entities per batch from the engine to the online store: bounded memory, few round trips.
BATCH_ROWS = 65_536


def _source(
    view: FeatureView, version: FeatureVersion, join_keys: list[str], offline_store: OfflineStore, *, features: bool
) -> PointInTimeSource:
    return PointInTimeSource(
        view=view.name,
        paths=offline_store.paths(version),
        join_keys=tuple(join_keys),
        timestamp=version.columns["timestamp"],
        created_timestamp=version.columns.get("created_timestamp"),
        features=tuple((f, f) for f in version.columns["features"]) if features else (),
        ttl=view.ttl,
        deduplicate=version.has_duplicates,
        sequence=version.columns.get("sequence"),
    )


def materialize_view(
    view: FeatureView,
    version: FeatureVersion,
    join_keys: list[str],
    *,
    catalog: Catalog,
    engine: Engine,
    offline_store: OfflineStore,
    online_store: OnlineStore,
    store_id: str,
    start: datetime | None = None,
    end: datetime | None = None,
    batch_rows: int = BATCH_ROWS,
    on_progress: Callable[[int], None] | None = None,
) -> MaterializeResult:
    """Write ``view``'s latest values per entity with event time in ``(start, end]`` to the online store.

    Without ``start``, the run continues where the last materialization of the same version into the same
    store stopped, or (a new version, the first run, or a last run that wrote an explicit window only) starts
    from the view's TTL before ``end``: values with event time at or after ``end - ttl``, the ones offline
    retrieval at ``end`` can still see. A new version that lacks rows the store holds from the previous one
    rebuilds the view (see the module's docstring). An explicit ``start`` writes exactly that window (bounded
    by the TTL), whatever was written before.

    The engine hands the latest rows over in batches of at most ``batch_rows``; ``on_progress`` is called with
    the entities written so far after each batch.

    The catalog records ``start=None`` for a run after which the store holds every latest value up to ``end``
    (a run from the TTL, or one continuing such a run); only those runs are continued incrementally. A run of
    an explicit window later than the TTL floor records its ``start``: the next run without ``start`` writes
    the whole TTL window again, so values older than that window are not missed.
    """
    started = time.perf_counter()
    end_utc = checked_utc(end, "end") or datetime.now(UTC)
    start_utc = checked_utc(start, "start")
    if start_utc is not None and start_utc >= end_utc:
        raise ValidationError(f"materialize: start ({start_utc}) must be before end ({end_utc})", field="start")
    floor = _ttl_bound(view.ttl, end_utc)
    last = catalog.last_materialization(view.name, store_id)
    # The last run left the store holding every latest value of this version up to its end.
    continuing = last is not None and last.version == version.version and last.start is None
    if start_utc is None:
        complete = True
        if last is not None and continuing:
            if last.end >= end_utc:
                return MaterializeResult(
                    view.name,
                    version.version,
                    0,
                    last.end,
                    end_utc,
                    time.perf_counter() - started,
                    skipped=f"up to date (v{version.version} written up to {last.end:%Y-%m-%d %H:%M:%S})",
                )
            start_utc = last.end
    else:  # an explicit window is complete when it reaches back to the TTL floor
        complete = floor is not None and start_utc <= floor
    replaced: tuple[int, datetime] | None = None  # (version, end) of another version the store may hold
    if complete and last is not None and not continuing:
        replaced = _replaced_version(catalog, view.name, store_id, version.version, last)
    lower = start_utc
    if floor is not None and (lower is None or floor > lower):
        lower = floor
    features = list(version.columns["features"])
    source = _source(view, version, join_keys, offline_store, features=True)
    rebuilt = ""
    if replaced is not None:
        previous = catalog.feature_version(view.name, replaced[0])
        rebuilt = _rebuild_reason(
            view,
            previous,
            version,
            join_keys,
            engine=engine,
            offline_store=offline_store,
            lower=lower,
            end=min(replaced[1], end_utc),
            new_end=end_utc,
        )
    # A rebuild writes a new generation, invisible until published whole; an upsert writes the live data. Either
    # way, what a killed run left in the store is removed first.
    if rebuilt:
        generation: str | None = online_store.begin_generation(view.name)
    else:
        generation = None
        online_store.sweep_generations(view.name)
    sink = StoreSink.of(online_store, view=view.name, keys=join_keys, features=features, timestamp=source.timestamp)
    sink.ttl = view.ttl  # Redis expires each entity at its event time plus the TTL
    sink.generation = generation
    try:
        # Bounded batches: the latest values of millions of entities never sit in memory at once (and on a
        # distributed engine, never reach this process: its workers write a shared store themselves).
        rows, written = engine.write_latest(
            source, start=lower, end=end_utc, sink=sink, batch_rows=batch_rows, on_progress=on_progress
        )
        if generation is not None:
            online_store.publish_generation(view.name, generation)
    except BaseException:
        if generation is not None:
            with contextlib.suppress(Exception):  # the error being raised is what is reported
                online_store.discard_generation(view.name, generation)
        raise
    seconds = time.perf_counter() - started
    catalog.add_materialization(
        view=view.name,
        store=store_id,
        version=version.version,
        start=None if complete else start_utc,
        end=end_utc,
        row_count=rows,
        seconds=seconds,
    )
    return MaterializeResult(view.name, version.version, written, start_utc, end_utc, seconds, rebuilt=rebuilt)


#: Online store schemes that worker processes on other machines can reach.
SHARED_SCHEMES = ("redis", "rediss")

# (uri, prefix) -> the store a worker process opened for a sink: one connection per process, not per batch.
_OPENED: dict[tuple[str, str], OnlineStore] = {}


@dataclass
class StoreSink:
    """The online store materialization writes to, as an engine's worker process can rebuild it.

    Pickled for a worker, it carries the store's URI and prefix (never the open store); the worker opens the
    store once and keeps it for its later batches.
    """

    uri: str
    prefix: str
    view: str
    keys: list[str]
    features: list[str]
    timestamp: str
    ttl: timedelta | None = None
    distributed: bool = False
    store: OnlineStore | None = field(default=None, repr=False, compare=False)
    #: the unpublished generation written to (a rebuild), ``None`` for the live data
    generation: str | None = None

    @classmethod
    def of(cls, store: OnlineStore, *, view: str, keys: list[str], features: list[str], timestamp: str) -> StoreSink:
        """A sink writing to ``store`` in this process, and to the same store from workers that can reach it."""
        from keel._backends import scheme_of

        distributed = scheme_of(store.uri) in SHARED_SCHEMES
        return cls(store.uri, store.prefix, view, keys, features, timestamp, None, distributed, store)

    def __getstate__(self) -> dict[str, object]:
        return {**self.__dict__, "store": None}  # a worker opens its own connection

    def write(self, rows: pa.Table) -> int:
        """Write a batch of latest rows; returns how many were applied."""
        store = self.store or self._opened()
        return store.write_batch(
            self.view,
            rows,
            keys=self.keys,
            features=self.features,
            timestamp=self.timestamp,
            ttl=self.ttl,
            generation=self.generation,
        )

    def _opened(self) -> OnlineStore:
        from keel._backends import backend_class

        key = (self.uri, self.prefix)
        if key not in _OPENED:
            _OPENED[key] = backend_class("online", self.uri)(self.uri, prefix=self.prefix)
        return _OPENED[key]


def _replaced_version(
    catalog: Catalog, view: str, store_id: str, version: int, last: Materialization
) -> tuple[int, datetime] | None:
    """The other version whose rows the store may still hold, with the end of its last run, if any.

    Walks back from the last run: a complete run of ``version`` means the store was already reconciled with
    it (that run checked, or continued a run that did); runs of explicit windows of ``version`` are skipped.
    """
    if last.version != version:
        return last.version, last.end
    for record in catalog.materializations(view, store_id):  # newest first; only after an explicit window
        if record.version != version:
            return record.version, record.end
        if record.start is None:
            return None
    return None


def _ttl_bound(ttl: timedelta | None, end: datetime) -> datetime | None:
    """The exclusive lower bound of the event times still valid at ``end``: ``end - ttl - 1µs``.

    The TTL is inclusive, as in retrieval (a value exactly ``ttl`` old is still valid); the engine's window is
    ``(start, end]`` and event times are whole microseconds, so ``> end - ttl - 1µs`` is ``>= end - ttl``.
    ``None``: no TTL, or one reaching before year 1.
    """
    if ttl is None:
        return None
    try:
        return end - ttl - _MICROSECOND
    except OverflowError:
        return None


def _rebuild_reason(
    view: FeatureView,
    previous: FeatureVersion,
    version: FeatureVersion,
    join_keys: list[str],
    *,
    engine: Engine,
    offline_store: OfflineStore,
    lower: datetime | None,
    end: datetime,
    new_end: datetime,
) -> str:
    """Why the store cannot go from ``previous`` to ``version`` by upserting ``version``'s latest rows (``""``:
    it can).

    The store holds, per entity, ``previous``'s latest row up to ``end`` (older ones than ``lower`` are expired
    and read as null anyway). An upsert replaces each of them unless ``version`` has no row for the entity
    in the window, or an older one; and it is refused when keys or feature types differ.
    """
    old_cols, new_cols = previous.columns, version.columns
    if list(old_cols["join_keys"].items()) != list(new_cols["join_keys"].items()):
        return f"the join keys of v{previous.version} and v{version.version} differ"
    old_features: dict[str, str] = old_cols["features"]
    changed = [f for f, dtype in new_cols["features"].items() if old_features.get(f, dtype) != dtype]
    if changed:
        return f"the type of {', '.join(map(repr, changed))} changed between v{previous.version} and v{version.version}"
    if lower is not None and end <= lower:
        return ""
    count = engine.stale_entities(
        _source(view, previous, join_keys, offline_store, features=False),
        _source(view, version, join_keys, offline_store, features=False),
        start=lower,
        end=end,
        new_end=new_end,
    )
    if not count:
        return ""
    return (
        f"{count:,} entit{'y' if count == 1 else 'ies'} of v{previous.version} "
        f"{'has' if count == 1 else 'have'} no row as recent in v{version.version}"
    )


def materialize_views(
    views: Iterable[FeatureView | str] | None,
    *,
    definitions: Definitions,
    catalog: Catalog,
    engine: Engine,
    offline_store: OfflineStore,
    online_store: OnlineStore,
    store_id: str,
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[MaterializeResult]:
    """:func:`materialize_view` of each view (default: every registered view with ``online=True`` and data).

    A view named explicitly must have ingested data (``NotFoundError`` otherwise); among the default views,
    those with nothing ingested yet are skipped.
    """
    if views is None:
        chosen = [v for v in definitions.feature_views() if v.online]
        explicit = False
    else:
        chosen = [definitions.registered(v)[0] for v in views]
        explicit = True
    results = []
    for view in chosen:
        try:
            version = catalog.feature_version(view.name)
        except NotFoundError:
            if explicit:
                raise
            continue  # nothing ingested yet: nothing to materialize
        results.append(
            materialize_view(
                view,
                version,
                definitions.join_keys(view),
                catalog=catalog,
                engine=engine,
                offline_store=offline_store,
                online_store=online_store,
                store_id=store_id,
                start=start,
                end=end,
            )
        )
    return results
