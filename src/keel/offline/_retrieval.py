"""Point-in-time retrieval: the entity frame with the requested features as they were at each row's time."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from keel.engines import ROW, TS, PointInTimeSource
from keel.errors import NotFoundError, ValidationError
from keel.features import FeatureRef, parse_refs
from keel.offline._validate import NaiveTimestampWarning, parse_timestamps

if TYPE_CHECKING:
    from keel.catalog import FeatureVersion
    from keel.engines import Engine
    from keel.features import FeatureView
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


def resolve_entity_timestamp(entity_df: pd.DataFrame, timestamp: str | None) -> str:
    """The entity frame's timestamp column: the one named, or the only datetime-typed one."""
    if timestamp is not None:
        if timestamp not in entity_df.columns:
            raise ValidationError(
                f"entity frame has no timestamp column {timestamp!r}; it has: {', '.join(map(str, entity_df.columns))}",
                field=timestamp,
            )
        return timestamp
    candidates = [str(c) for c in entity_df.columns if pd.api.types.is_datetime64_any_dtype(entity_df[c])]
    if len(candidates) == 1:
        return candidates[0]
    for name in ("event_timestamp", "event_time", "timestamp"):
        if name in entity_df.columns:
            return name
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


def _pandas_type(t: pa.DataType) -> Any:
    if pa.types.is_integer(t):
        return pd.Int64Dtype()
    if pa.types.is_boolean(t):
        return pd.BooleanDtype()
    return None


def plan_request(
    refs: Sequence[str | FeatureRef],
    *,
    view_lookup: Callable[[str], FeatureView],
    version_lookup: Callable[[str, int | None], FeatureVersion],
    keys_lookup: Callable[[FeatureView], list[str]],
    full_feature_names: bool,
) -> list[ResolvedView]:
    """Resolve references into (view, version, features) groups, refusing unknown names and clashes."""
    parsed = [r if isinstance(r, FeatureRef) else FeatureRef.parse(r) for r in refs]
    if not parsed:
        parse_refs([])  # raises the "no features requested" error
    requested: dict[str, dict[int | None, list[str]]] = {}
    for ref in parsed:
        feats = requested.setdefault(ref.view, {}).setdefault(ref.version, [])
        if ref.feature not in feats:
            feats.append(ref.feature)
    resolved: list[ResolvedView] = []
    outputs: dict[str, str] = {}
    for view_name, by_version in requested.items():
        view = view_lookup(view_name)
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
            if out in outputs:
                raise ValidationError(
                    f"feature {out!r} is requested from both {outputs[out]} and {view_name}; "
                    "pass full_feature_names=True to name columns view__feature",
                    field=out,
                )
            outputs[out] = view_name
            pairs.append((f, out))
        resolved.append(ResolvedView(view, version, tuple(keys_lookup(view)), tuple(pairs)))
    return resolved


def historical_features(
    entity_df: pd.DataFrame,
    resolved: list[ResolvedView],
    *,
    store: OfflineStore,
    engine: Engine,
    timestamp: str | None = None,
) -> pd.DataFrame:
    """Join every resolved view point in time onto ``entity_df``; all rows kept, in order, index preserved."""
    if not isinstance(entity_df, pd.DataFrame):
        raise ValidationError(f"the entity frame must be a pandas DataFrame, got {type(entity_df).__name__}")
    ts_col = resolve_entity_timestamp(entity_df, timestamp)
    clashes = [out for rv in resolved for _, out in rv.features if out in entity_df.columns]
    if clashes:
        raise ValidationError(
            f"feature column(s) {clashes} already exist in the entity frame; rename them there or pass "
            "full_feature_names=True",
            field=clashes[0],
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
        ttl: timedelta | None = rv.view.ttl
        sources.append(
            PointInTimeSource(
                view=rv.view.name,
                paths=store.paths(rv.version),
                join_keys=rv.join_keys,
                timestamp=stored["timestamp"],
                created_timestamp=stored.get("created_timestamp"),
                features=rv.features,
                ttl=ttl,
                deduplicate=rv.version.has_duplicates,
            )
        )
    entities = pa.table(columns)
    joined = engine.point_in_time_join(entities, sources)
    if joined.num_rows != len(entity_df):
        raise AssertionError(f"point-in-time join returned {joined.num_rows} rows for {len(entity_df)}")
    features = joined.drop_columns([ROW]).to_pandas(types_mapper=_pandas_type)
    features.index = entity_df.index
    out: pd.DataFrame = pd.concat([entity_df, features], axis=1)
    out.attrs[VERSIONS_ATTR] = {rv.view.name: rv.version.version for rv in resolved}
    return out


def known_views_error(name: str, known: list[str]) -> NotFoundError:
    """The error for an unknown feature view, listing the known ones."""
    return NotFoundError(
        f"unknown feature view {name!r}; known views: {', '.join(sorted(known)) or 'none (run keel apply)'}"
    )
