"""Point-in-time retrieval: the entity frame with the requested features as they were at each row's time."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from keel.engines import ROW, TS, EngineFrame, Files, PointInTimeSource, Written
from keel.engines._normalise import NaiveTimestampWarning, parse_timestamps
from keel.errors import BackendError, NotFoundError, ValidationError
from keel.features import FeatureRef, parse_refs
from keel.features._dtypes import pandas_type as _pandas_type
from keel.features._on_demand_plan import HIDDEN_INPUT, OnDemandStep, plan_on_demand

if TYPE_CHECKING:
    from keel.catalog import FeatureVersion
    from keel.engines import Engine
    from keel.features import FeatureView, OnDemandFeatureView
    from keel.offline._store import OfflineStore

log = logging.getLogger(__name__)

#: Attribute of the returned DataFrame (``df.attrs``) holding the versions that served each view.
VERSIONS_ATTR = "keel_feature_versions"


@dataclass(frozen=True)
class ResolvedView:
    """One (view, version) pair of a request, with the features asked of it."""

    view: FeatureView
    version: FeatureVersion
    join_keys: tuple[str, ...]
    features: tuple[tuple[str, str], ...]  # stored name -> output column


@dataclass(frozen=True)
class RetrievalPlan:
    """What one ``historical_features`` call joins and computes.

    Attributes:
        views: the (view, version) groups to join point in time, with the columns each yields.
        on_demand: the on-demand views to compute on the joined rows, in request order.
        columns: with on-demand views, the requested columns in request order (the joined columns that are
            only on-demand inputs are left out); without, empty: every joined column is returned.
    """

    views: tuple[ResolvedView, ...]
    on_demand: tuple[OnDemandStep, ...] = ()
    columns: tuple[str, ...] = ()


def resolve_entity_timestamp(entity_df: pd.DataFrame, timestamp: str | None) -> str:
    """The entity frame's timestamp column, by the one rule of :func:`keel._tables.timestamp_column`."""
    from keel._tables import timestamp_column

    column = timestamp_column(entity_df, timestamp, what="entity frame")
    if column is not None:
        return column
    candidates = [str(c) for c in entity_df.columns if pd.api.types.is_datetime64_any_dtype(entity_df[c])]
    raise ValidationError(
        "cannot tell which column of the entity frame holds the timestamps "
        f"({'several datetime columns: ' + ', '.join(candidates) if candidates else 'no datetime column'}); "
        "pass timestamp='column'",
        field="timestamp",
    )


def to_utc(values: pd.Series, *, name: str, allow_nulls: bool = False) -> pd.Series:
    """Entity timestamps as UTC: aware ones converted, naive ones taken as UTC (with a warning)."""
    naive = False
    if pd.api.types.is_datetime64_any_dtype(values):
        if getattr(values.dt, "tz", None) is None:
            naive = True
            out = values.dt.tz_localize("UTC")
        else:
            out = values.dt.tz_convert("UTC")
    else:
        out, naive = parse_timestamps(values)
        bad = out.isna() & values.notna()
        if bad.any():
            row = int(np.argmax(bad.to_numpy()))
            raise ValidationError(
                f"entity frame, column {name!r}: row {row} has {values.iloc[row]!r}, which is not a timestamp",
                field=name,
                row=row,
            )
    if naive:
        msg = f"entity frame: column {name!r} has timestamps without a time zone; they were taken as UTC"
        warnings.warn(msg, NaiveTimestampWarning, stacklevel=3)
    if not allow_nulls and out.isna().any():
        row = int(np.argmax(out.isna().to_numpy()))
        raise ValidationError(
            f"entity frame, column {name!r}: row {row} has no timestamp; every entity row needs one",
            field=name,
            row=row,
        )
    result: pd.Series = out.astype("datetime64[us, UTC]")
    return result


def _key_array(values: pd.Series, *, name: str, stored: str) -> pa.Array:
    if isinstance(values.dtype, pd.CategoricalDtype):  # judged by its values: ints (NaN: floats) or strings
        values = pd.Series(np.asarray(values))
    if stored == "int64":
        if pd.api.types.is_integer_dtype(values) or pd.api.types.is_bool_dtype(values):
            return pa.array(values, type=pa.int64(), from_pandas=True)
        if pd.api.types.is_float_dtype(values):
            finite = values.dropna()
            if (finite == np.floor(finite)).all():
                return pa.array(values.astype("Int64"), type=pa.int64(), from_pandas=True)
        raise ValidationError(
            f"entity frame, join key {name!r}: the offline store holds integer keys, the frame holds "
            f"{values.dtype}; convert the column to integers",
            field=name,
        )
    if pd.api.types.is_string_dtype(values) or pd.api.types.is_object_dtype(values):
        try:
            return pa.array(values, type=pa.string(), from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise ValidationError(
                f"entity frame, join key {name!r}: the offline store holds string keys and a value is not a string",
                field=name,
            ) from exc
    raise ValidationError(
        f"entity frame, join key {name!r}: the offline store holds string keys, the frame holds "
        f"{values.dtype}; convert the column to strings",
        field=name,
    )


def _stored(version: FeatureVersion) -> dict[str, Any]:
    """The version's self-description of its columns (keys, timestamps, features)."""
    columns: dict[str, Any] = dict(version.columns)
    return columns


def plan_request(
    refs: Sequence[str | FeatureRef],
    *,
    view_lookup: Callable[[str], FeatureView],
    version_lookup: Callable[[str, int | None], FeatureVersion],
    keys_lookup: Callable[[FeatureView], list[str]],
    full_feature_names: bool,
    on_demand_lookup: Callable[[str], OnDemandFeatureView | None] | None = None,
) -> RetrievalPlan:
    """Resolve references into (view, version, features) groups, refusing unknown names and clashes.

    A name that is not a feature view is looked up with ``on_demand_lookup``: an on-demand view's inputs are
    added to the groups of their views (fetched under hidden names when not requested themselves), in the
    version the request uses for that view.
    """
    parsed = [r if isinstance(r, FeatureRef) else FeatureRef.parse(r) for r in refs]
    if not parsed:
        parse_refs([])  # raises the "no features requested" error
    requested: dict[str, dict[int | None, list[str]]] = {}
    for ref in parsed:
        feats = requested.setdefault(ref.view, {}).setdefault(ref.version, [])
        if ref.feature not in feats:
            feats.append(ref.feature)
    views: dict[str, FeatureView] = {}
    on_demand: dict[str, tuple[OnDemandFeatureView, list[str]]] = {}
    for name, by_version in requested.items():
        try:
            views[name] = view_lookup(name)
        except NotFoundError:
            found = on_demand_lookup(name) if on_demand_lookup is not None else None
            if found is None:
                raise
            if any(v is not None for v in by_version):
                raise ValidationError(
                    f"on-demand feature view {name!r} is computed, not ingested: it has no versions to pin; pin "
                    "the views it reads instead (view@3:*)",
                    field=name,
                ) from None
            on_demand[name] = (found, list(dict.fromkeys(f for fs in by_version.values() for f in fs)))
    for found, _ in on_demand.values():
        for name in found.view_names:
            if name not in views:  # read only as an input: its features are fetched under hidden names
                views[name] = view_lookup(name)
                requested[name] = {None: []}
    resolved: list[ResolvedView] = []
    outputs: dict[str, str] = {}
    for view_name, view in views.items():
        by_version = requested[view_name]
        versions = {pinned: version_lookup(view_name, pinned) for pinned in by_version}
        numbers = sorted({v.version for v in versions.values()})
        if len(numbers) > 1:  # one view, one version per call: the lineage records one version per view
            raise ValidationError(
                f"feature view {view_name!r} is requested in several versions "
                f"({', '.join(map(str, numbers))}); one call serves one version of a view: request the "
                "others in another call",
                field=view_name,
            )
        version = next(iter(versions.values()))
        feats = list(dict.fromkeys(f for fs in by_version.values() for f in fs))
        available = list(_stored(version)["features"])
        chosen = available if "*" in feats else feats
        for f in chosen:
            if f not in available:
                raise ValidationError(
                    f"feature view {view_name!r} (version {version.version}) has no feature {f!r}; "
                    f"it has: {', '.join(available)}",
                    field=f"{view_name}:{f}",
                )
        pairs = []
        for f in chosen:
            out = f"{view_name}__{f}" if full_feature_names else f
            _claim(outputs, out, view_name)
            pairs.append((f, out))
        resolved.append(ResolvedView(view, version, tuple(keys_lookup(view)), tuple(pairs)))
    if not on_demand:
        return RetrievalPlan(tuple(resolved))
    return _plan_on_demand(requested, resolved, on_demand, outputs, full_feature_names)


def _claim(outputs: dict[str, str], column: str, source: str) -> None:
    """Record that ``source`` yields ``column``; refuse a column two sources would yield."""
    if column in outputs:
        raise ValidationError(
            f"feature {column!r} is requested from both {outputs[column]} and {source}; "
            "pass full_feature_names=True to name columns view__feature",
            field=column,
        )
    outputs[column] = source


def _plan_on_demand(
    requested: dict[str, dict[int | None, list[str]]],
    resolved: list[ResolvedView],
    on_demand: dict[str, tuple[OnDemandFeatureView, list[str]]],
    outputs: dict[str, str],
    full_feature_names: bool,
) -> RetrievalPlan:
    """Add the on-demand views' inputs to the view groups and their outputs to the requested columns."""
    versions = {rv.view.name: rv.version for rv in resolved}
    reads = {rv.view.name: list(rv.features) for rv in resolved}
    dtypes = {name: dict(_stored(version)["features"]) for name, version in versions.items()}
    steps: dict[str, OnDemandStep] = {}
    for name, (odfv, feats) in on_demand.items():
        steps[name] = plan_on_demand(
            odfv,
            feats,
            full_feature_names=full_feature_names,
            reads=reads,
            dtypes=dtypes,
            label=lambda v: f"feature view {v!r} (version {versions[v].version})",
        )
        for _, column in steps[name].outputs:
            _claim(outputs, column, name)
    columns: list[str] = []
    for name in requested:
        pairs = steps[name].outputs if name in steps else reads[name]
        columns.extend(c for _, c in pairs if not c.startswith(HIDDEN_INPUT))
    views = tuple(replace(rv, features=tuple(reads[rv.view.name])) for rv in resolved)
    return RetrievalPlan(views, tuple(steps.values()), tuple(columns))


def historical_features(
    entity_df: pd.DataFrame,
    plan: RetrievalPlan | Sequence[ResolvedView],
    *,
    store: OfflineStore,
    engine: Engine,
    timestamp: str | None = None,
) -> pd.DataFrame:
    """Join every resolved view point in time onto ``entity_df``; all rows kept, in order, index preserved.

    On-demand views of the plan are then computed once on all rows, from the joined inputs and the entity
    frame's request columns.
    """
    if not isinstance(plan, RetrievalPlan):
        plan = RetrievalPlan(tuple(plan))
    resolved = plan.views
    if not isinstance(entity_df, pd.DataFrame):
        raise ValidationError(f"the entity frame must be a pandas DataFrame, got {type(entity_df).__name__}")
    ts_col = resolve_entity_timestamp(entity_df, timestamp)
    clashes = [out for rv in resolved for _, out in rv.features if out in entity_df.columns]
    clashes += [out for step in plan.on_demand for _, out in step.outputs if out in entity_df.columns]
    if clashes:
        raise ValidationError(
            f"feature column(s) {clashes} already exist in the entity frame; rename them there or pass "
            "full_feature_names=True",
            field=clashes[0],
        )
    for step in plan.on_demand:  # before the join: a missing request column fails fast
        for name in step.view.request_fields:
            if name not in entity_df.columns:
                raise ValidationError(
                    f"entity frame lacks request field {name!r}, needed by on-demand feature view "
                    f"{step.view.name!r}; add it as a column; the frame has: {', '.join(map(str, entity_df.columns))}",
                    field=name,
                )
    columns: dict[str, pa.Array] = {
        ROW: pa.array(np.arange(len(entity_df), dtype=np.int64)),
        TS: pa.array(to_utc(entity_df[ts_col], name=ts_col), type=pa.timestamp("us", tz="UTC")),
    }
    sources: list[PointInTimeSource] = []
    for rv in resolved:
        stored = _stored(rv.version)
        stored_keys: dict[str, str] = stored["join_keys"]
        for key in rv.join_keys:
            if key not in entity_df.columns:
                raise ValidationError(
                    f"entity frame lacks join key {key!r}, needed by feature view {rv.view.name!r}; "
                    f"it has: {', '.join(map(str, entity_df.columns))}",
                    field=key,
                )
            if key not in columns:
                columns[key] = _key_array(entity_df[key], name=key, stored=stored_keys.get(key, "int64"))
        sources.append(_point_in_time_source(rv, store))
    entities = pa.table(columns)
    joined = engine.point_in_time_join(entities, sources)
    if joined.num_rows != len(entity_df):
        raise BackendError(
            f"{engine.name} engine: the point-in-time join returned {joined.num_rows} rows for "
            f"{len(entity_df)} entity rows; an engine must return one row per entity row (an engine bug)"
        )
    if plan.on_demand:
        features = _with_on_demand(joined, entity_df, plan)
    else:
        features = joined.drop_columns([ROW]).to_pandas(types_mapper=_pandas_type)
    features.index = entity_df.index
    out: pd.DataFrame = pd.concat([entity_df, features], axis=1)
    out.attrs[VERSIONS_ATTR] = {rv.view.name: rv.version.version for rv in resolved}
    return out


def join_at_rest(
    entities: Any,
    plan: RetrievalPlan,
    *,
    store: OfflineStore,
    engine: Engine,
    timestamp: str | None,
    into: str | None,
) -> Written | EngineFrame:
    """The point-in-time join of an entity table that stays where it is: a Parquet file or folder (a path or
    URI), or the engine's own frame (a Spark DataFrame); written under ``into`` or, with ``into=None`` on an
    engine that has frames, returned as one. Nothing is collected in this process.
    """
    if not timestamp:
        raise ValidationError(
            "an entity table at rest (a path or an engine frame) needs its timestamp column named: pass "
            "timestamp='column'",
            field="timestamp",
        )
    if plan.on_demand:
        names = ", ".join(repr(step.view.name) for step in plan.on_demand)
        raise ValidationError(
            f"on-demand feature views ({names}) are computed on an in-memory entity frame; request them with a "
            "pandas DataFrame, or leave them out: scoring on an engine computes them from the input's columns",
            field=plan.on_demand[0].view.name,
        )
    data = entities
    if isinstance(entities, str | Path):
        data = Files((str(entities),), describe=f"entity table {str(entities)!r}")
    key_types: dict[str, str] = {}
    sources: list[PointInTimeSource] = []
    for rv in plan.views:
        stored = _stored(rv.version)
        for key in rv.join_keys:
            key_types.setdefault(key, stored["join_keys"].get(key, "int64"))
        sources.append(_point_in_time_source(rv, store))
    return engine.join_to(data, sources, timestamp=timestamp, key_types=key_types, into=into)


def _point_in_time_source(rv: ResolvedView, store: OfflineStore) -> PointInTimeSource:
    stored = _stored(rv.version)
    return PointInTimeSource(
        view=rv.view.name,
        paths=store.paths(rv.version),
        join_keys=rv.join_keys,
        timestamp=stored["timestamp"],
        created_timestamp=stored.get("created_timestamp"),
        features=rv.features,
        ttl=rv.view.ttl,
        deduplicate=rv.version.has_duplicates,
        sequence=stored.get("sequence"),
    )


def _with_on_demand(joined: pa.Table, entity_df: pd.DataFrame, plan: RetrievalPlan) -> pd.DataFrame:
    """The requested columns: joined features, and on-demand outputs computed from joined inputs and requests."""
    computed: dict[str, pa.Array] = {}
    for step in plan.on_demand:
        request = {name: entity_df[name] for name in step.view.request_fields}
        computed.update(step.run(joined, request, rows=len(entity_df), where="entity frame"))
    table = pa.table({c: computed[c] if c in computed else joined.column(c) for c in plan.columns})
    frame: pd.DataFrame = table.to_pandas(types_mapper=_pandas_type)
    return frame


def known_views_error(name: str, known: list[str]) -> NotFoundError:
    """The error for an unknown feature view, listing the known ones."""
    return NotFoundError(
        f"unknown feature view {name!r}; known views: {', '.join(sorted(known)) or 'none (run keel apply)'}"
    )
