"""Online/offline skew: does the online store hold, for each entity, the value offline retrieval would give now?

Training reads the offline store point in time; serving reads the online store. They agree only if
materialization wrote exactly the offline store's latest values. This check takes a sample of the entities the
offline store holds a value for now (the latest row per entity within the view's TTL, drawn uniformly and
reproducibly by ``seed``), reads the same entities from the online store, and sorts each into one case:

===========================  =======  ===============================================================================
case                         level    meaning
===========================  =======  ===============================================================================
``same``                     ok       same event time, same values
``value differs``            error    same event time, some feature's value differs (a float within 1e-9 relative)
``missing online``           error    offline has a value materialization should have written; online has none
``behind offline``           error    online holds an older value although the newer one was there to materialize
``online newer``             error    online holds a value offline retrieval cannot see (e.g. pushed online only)
``not yet materialized``     warning  offline has a newer value from after the last materialization's end
===========================  =======  ===============================================================================

The offline side is the version the store was last materialized from (what it claims to hold); a newer version
that was not materialized yet is reported as a warning.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from keel._time import checked_utc
from keel.online._materialize import _source, _ttl_bound
from keel.validation._skew import CASES, EXAMPLES, OnlineSkew, SkewExample

if TYPE_CHECKING:
    from keel.catalog import Catalog
    from keel.engines import Engine
    from keel.features import FeatureView
    from keel.offline import OfflineStore
    from keel.online._store import OnlineStore

__all__ = ["online_skew"]

REL_TOL = 1e-9
"""Floats are the same within this relative difference (a round trip through a store's encoding)."""


def _sample(batches: Sequence[pa.RecordBatch] | Any, size: int, seed: int) -> tuple[pa.Table | None, int]:
    """A uniform sample of ``size`` rows of the batches (the rows with the smallest seeded random priorities),
    holding at most ``size`` rows besides the batch at hand; and how many rows there were."""
    rng = np.random.default_rng(seed)
    kept: pa.Table | None = None
    priorities = np.empty(0)
    total = 0
    for batch in batches:
        total += batch.num_rows
        drawn = rng.random(batch.num_rows)
        table = pa.Table.from_batches([batch])
        kept = table if kept is None else pa.concat_tables([kept, table.cast(kept.schema)])
        priorities = np.concatenate([priorities, drawn])
        if kept.num_rows > size:
            order = np.argsort(priorities, kind="stable")[:size]
            order.sort()
            kept, priorities = kept.take(pa.array(order)), priorities[order]
    return kept, total


def _same(a: Any, b: Any) -> bool:
    if _missing(a) or _missing(b):
        return _missing(a) and _missing(b)
    if isinstance(a, float) or isinstance(b, float):
        if isinstance(a, bool) or isinstance(b, bool):
            return bool(a == b)
        return math.isclose(float(a), float(b), rel_tol=REL_TOL, abs_tol=0.0)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, datetime) and isinstance(b, datetime):
        return _utc(a) == _utc(b)
    return bool(a == b)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def online_skew(
    view: FeatureView,
    join_keys: list[str],
    *,
    catalog: Catalog,
    engine: Engine,
    offline_store: OfflineStore,
    online_store: OnlineStore,
    store_id: str,
    sample: int = 1000,
    seed: int = 0,
    now: datetime | None = None,
) -> OnlineSkew:
    """Compare the online store with the offline store for ``sample`` of ``view``'s entities (see the module).

    Raises:
        NotFoundError: the view has no ingested version.
        ValidationError: ``sample`` is not positive, or ``now`` is not a time.
    """
    from keel.errors import ValidationError

    if isinstance(sample, bool) or not isinstance(sample, int) or sample < 1:
        raise ValidationError(f"the sample must be a positive number of entities, got {sample!r}", field="sample")
    at = checked_utc(now, "now") or datetime.now(UTC)
    latest = catalog.feature_version(view.name)
    last = catalog.last_materialization(view.name, store_id)
    version = catalog.feature_version(view.name, last.version) if last is not None else latest
    until = last.end if last is not None else None
    src = _source(view, version, join_keys, offline_store, features=True)
    features = list(version.columns["features"])
    rows, entities = _sample(engine.latest_per_entity(src, start=_ttl_bound(view.ttl, at), end=at), sample, seed)
    cases = dict.fromkeys(CASES, 0)
    per_feature = dict.fromkeys(features, 0)
    examples: list[SkewExample] = []
    shown: dict[str, int] = {}

    def note(example: SkewExample) -> None:
        cases[example.case] += 1
        if shown.get(example.case, 0) < EXAMPLES:
            shown[example.case] = shown.get(example.case, 0) + 1
            examples.append(example)

    if rows is not None and rows.num_rows:
        keys = list(zip(*(rows.column(k).to_pylist() for k in join_keys), strict=True))
        offline_times = [_utc(t) for t in rows.column(src.timestamp).to_pylist()]
        offline_values = [rows.column(f).to_pylist() for f in features]
        read = online_store.read(view.name, keys, features)
        online_times = read.event_times
        for i, key in enumerate(keys):
            off_t, on_t = offline_times[i], online_times[i]
            if on_t is None:
                late = until is None or off_t > until
                note(
                    SkewExample(
                        "not yet materialized" if late else "missing online", key, None, None, None, None, off_t
                    )
                )
            elif on_t < off_t:
                late = until is None or off_t > until
                case = "not yet materialized" if late else "behind offline"
                note(SkewExample(case, key, None, None, None, on_t, off_t))
            elif on_t > off_t:
                note(SkewExample("online newer", key, None, None, None, on_t, off_t))
            else:
                differs = [j for j in range(len(features)) if not _same(read.values[j][i], offline_values[j][i])]
                for j in differs:
                    per_feature[features[j]] += 1
                if differs:
                    j = differs[0]
                    note(
                        SkewExample(
                            "value differs", key, features[j], read.values[j][i], offline_values[j][i], on_t, off_t
                        )
                    )
                else:
                    cases["same"] += 1
    return OnlineSkew(
        view=view.name,
        version=version.version,
        latest_version=latest.version,
        materialized_until=until,
        checked_at=at,
        entities=entities,
        sampled=0 if rows is None else rows.num_rows,
        cases=cases,
        features={f: n for f, n in per_feature.items() if n},
        examples=examples,
    )
