"""Materialization: the latest value per entity, within each view's TTL, from the offline store to the online one.

The engine computes the latest row per entity in one query; the online store writes it in bulk. Runs are
incremental: the catalog remembers, per view and online store, which version was written up to which event
time, so the next run of the same version only writes what came after.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from keel.engines import PointInTimeSource
from keel.errors import ValidationError

if TYPE_CHECKING:
    from keel.catalog import Catalog, FeatureVersion
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
    """

    view: str
    version: int
    rows: int
    start: datetime | None
    end: datetime
    seconds: float
    skipped: str = ""

    def __str__(self) -> str:
        if self.skipped:
            return f"{self.view}: {self.skipped}"
        return f"{self.view}: v{self.version}, {self.rows:,} entities in {self.seconds:.2f}s"


def _utc(value: datetime | None, what: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise ValidationError(f"materialize: {what} must be a datetime, got {value!r}", field=what)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


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
) -> MaterializeResult:
    """Write ``view``'s latest values per entity with event time in ``(start, end]`` to the online store.

    Without ``start``, the run continues where the last materialization of the same version into the same
    store stopped, or (a new version, or the first run) starts from the view's TTL before ``end``.
    """
    started = time.perf_counter()
    end_utc = _utc(end, "end") or datetime.now(UTC)
    start_utc = _utc(start, "start")
    if start_utc is not None and start_utc >= end_utc:
        raise ValidationError(f"materialize: start ({start_utc}) must be before end ({end_utc})", field="start")
    if start_utc is None:
        last = catalog.last_materialization(view.name, store_id)
        if last is not None and last.version == version.version:
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
    lower = start_utc
    if view.ttl is not None:
        try:
            floor = end_utc - view.ttl  # values older than this are expired at `end` anyway
        except OverflowError:
            floor = None
        if floor is not None and (lower is None or floor > lower):
            lower = floor
    features = list(version.columns["features"])
    source = PointInTimeSource(
        view=view.name,
        paths=offline_store.paths(version),
        join_keys=tuple(join_keys),
        timestamp=version.columns["timestamp"],
        created_timestamp=version.columns.get("created_timestamp"),
        features=tuple((f, f) for f in features),
        ttl=view.ttl,
        deduplicate=version.has_duplicates,
    )
    latest = engine.latest_per_entity(source, start=lower, end=end_utc)
    written = 0
    if latest.num_rows:
        written = online_store.write_batch(
            view.name, latest, keys=join_keys, features=features, timestamp=source.timestamp, ttl=view.ttl
        )
    seconds = time.perf_counter() - started
    catalog.add_materialization(
        view=view.name,
        store=store_id,
        version=version.version,
        start=start_utc,
        end=end_utc,
        row_count=latest.num_rows,
        seconds=seconds,
    )
    return MaterializeResult(view.name, version.version, written, start_utc, end_utc, seconds)
