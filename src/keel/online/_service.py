"""Reading features online: entity rows + feature references -> values, in request order, TTL honoured.

This is a hot path. Everything that does not depend on the request (parsing references, resolving views,
key types, TTLs and which version the online store holds) is planned once per feature list and cached for a
few seconds, so a read costs one store round trip plus a few list operations.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

from keel._numbers import INT64_MAX, INT64_MIN, fits_int64, int64_range
from keel.errors import BackendError, NotFoundError, ValidationError
from keel.features import FeatureRef
from keel.features._on_demand_plan import HIDDEN_INPUT, OnDemandStep, plan_on_demand

if TYPE_CHECKING:
    import pandas as pd

    from keel.catalog import Catalog, FeatureVersion
    from keel.definitions import Definitions
    from keel.features import FeatureView, OnDemandFeatureView
    from keel.online._store import OnlineStore

_MICROSECOND = timedelta(microseconds=1)
#: Cached read plans (one per distinct feature list); the oldest is dropped beyond this.
MAX_PLANS = 256

EntityRows = Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]]


class OnlineFeatures:
    """Feature values for a list of entities, in request order.

    Attributes:
        values: ``{feature column: [value per entity]}``; ``None`` for unknown entities, nulls and values
            older than the view's TTL.
        versions: ``{view: ingested version the online store holds}`` for each view that served a feature.
    """

    __slots__ = ("dtypes", "values", "versions")

    def __init__(
        self, values: dict[str, list[Any]], versions: dict[str, int], dtypes: dict[str, str] | None = None
    ) -> None:
        self.values = values
        self.versions = versions
        self.dtypes = dtypes or {}

    def __len__(self) -> int:
        return len(next(iter(self.values.values()))) if self.values else 0

    def __getitem__(self, feature: str) -> list[Any]:
        try:
            return self.values[feature]
        except KeyError:
            raise KeyError(f"no feature {feature!r} in this result; it has: {', '.join(self.values)}") from None

    def to_dict(self) -> dict[str, list[Any]]:
        """``{feature column: [value per entity]}``."""
        return self.values

    def to_frame(self) -> pd.DataFrame:
        """The values as a DataFrame, one row per entity, with the column dtypes ``historical_features`` gives
        (``Int64``, ``boolean``, float64, str, UTC timestamps); ``df.attrs["keel_feature_versions"]`` as offline.
        """
        import pandas as pd
        import pyarrow as pa

        from keel.features._dtypes import arrow_type, pandas_type

        columns: dict[str, Any] = {}
        for name, values in self.values.items():
            dtype = self.dtypes.get(name)
            if dtype is None:
                columns[name] = values
                continue
            array = pa.array(values, type=arrow_type(dtype), from_pandas=True)
            columns[name] = array.to_pandas(types_mapper=pandas_type)
        frame = pd.DataFrame(columns)
        frame.attrs["keel_feature_versions"] = dict(self.versions)
        return frame

    def __repr__(self) -> str:
        return f"OnlineFeatures({len(self)} entities, features={list(self.values)}, versions={self.versions})"


@dataclass(frozen=True)
class _ViewRead:
    view: str
    version: int | None
    join_keys: tuple[str, ...]
    key_types: tuple[type, ...]
    features: tuple[str, ...]
    outputs: tuple[str, ...]
    ttl_us: int | None


@dataclass(frozen=True)
class _Plan:
    reads: tuple[_ViewRead, ...]
    outputs: tuple[str, ...]
    versions: dict[str, int]
    built: float = field(compare=False)
    on_demand: tuple[OnDemandStep, ...] = ()
    dtypes: dict[str, str] = field(default_factory=dict)


_KEY_TYPES: dict[str, type] = {"int64": int, "string": str}


def _check_int_keys(values: list[Any], key: str, expected: type) -> None:
    """Refuse an integer key outside 64 bits, naming it and its row (no store holds one). The serving hot path: for
    an integer key the values are all integers already, checked by two C-level passes and no list."""
    if expected is str or not values:
        return
    ints = values if expected is int else [v for v in values if type(v) is int]
    if ints and (max(ints) > INT64_MAX or min(ints) < INT64_MIN):
        row = next(i for i, v in enumerate(values) if type(v) is int and not fits_int64(v))
        raise ValidationError(
            f"entity row {row}: join key {key!r} is {values[row]}, outside {int64_range()}", field=key, row=row
        )


def _coerce_key(value: Any, expected: type, key: str, row: int) -> Any:
    kind = type(value)
    if kind is expected or expected is object:
        return value
    if expected is int:
        if kind is not bool:
            try:
                if isinstance(value, str):
                    return int(value)
                as_int = int(value)  # numpy integers, integral floats
                if as_int == value:
                    return as_int
            except (TypeError, ValueError):
                pass
    elif expected is str and isinstance(value, str | int) and kind is not bool:
        return str(value)
    raise ValidationError(
        f"entity row {row}: join key {key!r} must be {'an integer' if expected is int else 'a string'}, got {value!r}",
        field=key,
        row=row,
    )


def entity_row_list(entity_rows: EntityRows) -> list[Mapping[str, Any]]:
    """Entity rows as a list of mappings (a mapping of equal-length lists is turned into rows)."""
    if isinstance(entity_rows, Mapping):
        listlike = {
            k: (isinstance(v, Sequence | np.ndarray) and not isinstance(v, str | bytes)) or hasattr(v, "tolist")
            for k, v in entity_rows.items()
        }
        if not any(listlike.values()):  # one entity given as {"customer_id": 42}
            return [entity_rows]
        if not all(listlike.values()):
            scalars = [k for k, is_list in listlike.items() if not is_list]
            raise ValidationError(
                f"entity columns must all be lists of values (one per entity); {scalars} hold single values",
                field=scalars[0],
            )
        columns = {k: list(v) for k, v in entity_rows.items()}
        lengths = {len(v) for v in columns.values()}
        if len(lengths) > 1:
            raise ValidationError(
                "entity columns have different lengths: " + ", ".join(f"{k}={len(v)}" for k, v in columns.items())
            )
        names = list(columns)
        return [dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)]
    rows: object = entity_rows  # callers outside the type system may pass anything
    if isinstance(rows, str | bytes) or not isinstance(rows, Sequence):
        raise ValidationError("entity rows must be a list of mappings ([{'customer_id': 42}]) or a mapping of lists")
    for i, row in enumerate(entity_rows):
        if not isinstance(row, Mapping):
            raise ValidationError(f"entity row {i} must be a mapping of join keys, got {row!r}", row=i)
    return list(entity_rows)


class OnlineFeatureService:
    """Serves :meth:`get` from an online store, with request-independent work planned once and cached.

    Args:
        definitions: the project's registered definitions.
        catalog: the catalog (which version each view has materialized into the store).
        store: the online store.
        store_id: the store's identity in the catalog's materialization records.
        refresh_seconds: how long a plan (views, TTLs, materialized versions) is reused before being re-read;
            while the catalog is unavailable, the last plan is reused until it answers again.
    """

    def __init__(
        self,
        *,
        definitions: Definitions,
        catalog: Catalog,
        store: OnlineStore,
        store_id: str,
        refresh_seconds: float = 5.0,
    ) -> None:
        self._definitions = definitions
        self._catalog = catalog
        self._store = store
        self._store_id = store_id
        self._refresh = refresh_seconds
        self._plans: dict[tuple[tuple[str, ...], bool], _Plan] = {}

    @property
    def in_process(self) -> bool:
        """Whether a read touches only this process and local files (a memory or SQLite store and a SQLite
        catalog): it never waits on a server, so a service may read on its event loop."""
        return self._store.kind in ("memory", "sqlite") and getattr(self._catalog, "dialect", "sqlite") == "sqlite"

    def refresh(self) -> None:
        """Forget every cached plan (the next read re-reads definitions and materializations)."""
        self._plans.clear()

    def _build(self, refs: tuple[str, ...], full_names: bool) -> _Plan:
        parsed = [FeatureRef.parse(r) for r in refs]
        if not parsed:
            raise ValidationError("no features requested; pass at least one 'view:feature' reference")
        groups: dict[str, list[str]] = {}
        pinned: dict[str, int | None] = {}
        for ref in parsed:
            feats = groups.setdefault(ref.view, [])
            if ref.feature not in feats:
                feats.append(ref.feature)
            if ref.version is not None:
                pinned[ref.view] = ref.version
        views, on_demand = self._definitions_of(groups, pinned)
        served: dict[str, int | None] = {}
        dtypes: dict[str, dict[str, str]] = {}
        key_dtypes: dict[str, dict[str, str]] = {}
        for name, view in views.items():
            served[name] = self._served_version(name)
            if name in pinned and pinned[name] != served[name]:
                raise ValidationError(
                    f"feature view {name!r}: version {pinned[name]} was requested but the online store "
                    f"holds version {served[name]}; online reads serve the materialized version",
                    field=name,
                )
            number = served[name]
            # Never materialized (only pushed online): the latest ingested version, if any, still says which
            # type the keys have; the definition says which features there are.
            version = self._catalog.feature_version(name, number) if number is not None else self._latest_version(name)
            if version is not None and number is not None:
                dtypes[name] = dict(version.columns["features"])
            else:
                dtypes[name] = {f.name: f.dtype for f in view.schema}
            key_dtypes[name] = dict(version.columns["join_keys"]) if version is not None else {}
        read_features: dict[str, list[tuple[str, str]]] = {}
        for name in views:
            available = list(dtypes[name])
            chosen = available if "*" in groups[name] else groups[name]
            for f in chosen:
                if f not in available:
                    raise ValidationError(
                        f"feature view {name!r} (version {served[name]}) has no feature {f!r}; "
                        f"it has: {', '.join(available)}",
                        field=f"{name}:{f}",
                    )
            read_features[name] = [(f, f"{name}__{f}" if full_names else f) for f in chosen]
        steps = {
            name: plan_on_demand(
                odfv,
                groups[name],
                full_feature_names=full_names,
                reads=read_features,
                dtypes=dtypes,
                label=lambda v: f"feature view {v!r} (version {served[v]} online)",
            )
            for name, odfv in on_demand.items()
        }
        outputs: list[str] = []
        out_dtypes: dict[str, str] = {}
        for name in groups:
            pairs = steps[name].outputs if name in steps else read_features[name]
            for feature, out in pairs:
                if out.startswith(HIDDEN_INPUT):
                    continue
                if name in steps:
                    out_dtypes[out] = steps[name].view.field(feature).dtype
                else:
                    out_dtypes[out] = dtypes[name][feature]
                if out in outputs:
                    raise ValidationError(
                        f"feature {out!r} is requested from two views; pass full_feature_names=True", field=out
                    )
                outputs.append(out)
        entities = self._definitions.entities()
        reads: list[_ViewRead] = []
        for name, view in views.items():
            keys = view.join_keys(entities)
            ttl_us = None if view.ttl is None else view.ttl // _MICROSECOND
            reads.append(
                _ViewRead(
                    view=name,
                    version=served[name],
                    join_keys=tuple(keys),
                    key_types=tuple(_KEY_TYPES.get(key_dtypes[name].get(k, ""), object) for k in keys),
                    features=tuple(f for f, _ in read_features[name]),
                    outputs=tuple(out for _, out in read_features[name]),
                    ttl_us=ttl_us,
                )
            )
        versions = {name: number for name, number in served.items() if number is not None}
        return _Plan(tuple(reads), tuple(outputs), versions, time.monotonic(), tuple(steps.values()), out_dtypes)

    def _definitions_of(
        self, groups: dict[str, list[str]], pinned: dict[str, int | None]
    ) -> tuple[dict[str, FeatureView], dict[str, OnDemandFeatureView]]:
        """The feature views and on-demand views the requested names are, plus the views those read only as
        inputs (added to ``groups`` with no feature requested)."""
        views: dict[str, FeatureView] = {}
        on_demand: dict[str, OnDemandFeatureView] = {}
        for name in groups:
            try:
                views[name], _ = self._definitions.feature_view(name)
            except NotFoundError:
                found = self._definitions.find_on_demand(name)
                if found is None:
                    raise
                if name in pinned:
                    raise ValidationError(
                        f"on-demand feature view {name!r} is computed, not stored: it has no versions to pin",
                        field=name,
                    ) from None
                on_demand[name] = found
        for odfv in on_demand.values():
            for name in odfv.view_names:
                if name not in views:  # read only as an input: its features are read under hidden names
                    views[name], _ = self._definitions.feature_view(name)
                    groups[name] = []
        return views, on_demand

    def _served_version(self, view: str) -> int | None:
        """The version the online store holds: the last one materialized into it (``None``: never, e.g. a view
        only pushed online)."""
        last = self._catalog.last_materialization(view, self._store_id)
        return last.version if last is not None else None

    def _latest_version(self, view: str) -> FeatureVersion | None:
        try:
            return self._catalog.feature_version(view)
        except NotFoundError:
            return None

    def _plan(self, features: Sequence[str], full_names: bool) -> _Plan:
        key = (tuple(features), full_names)
        plan = self._plans.get(key)
        if plan is None or time.monotonic() - plan.built > self._refresh:
            try:
                fresh = self._build(key[0], full_names)
            except BackendError:
                if plan is None:
                    raise
                # The catalog is unavailable (its outage is logged once): the last plan still says which views,
                # keys and TTLs to read, and no materialization can be recorded meanwhile. It is tried again at
                # the next read.
                return plan
            plan = fresh
            if len(self._plans) >= MAX_PLANS:  # clients sending ever-new feature lists must not grow memory
                self._plans.pop(next(iter(self._plans)))
            self._plans[key] = plan
        return plan

    def get(
        self,
        features: Sequence[str] | str,
        entity_rows: EntityRows,
        *,
        full_feature_names: bool = False,
        now_us: int | None = None,
    ) -> OnlineFeatures:
        """Values of ``features`` for each entity row, in order; see :meth:`keel.Project.online_features`."""
        plan = self._plan((features,) if isinstance(features, str) else features, full_feature_names)
        rows = entity_row_list(entity_rows)
        now = time.time_ns() // 1000 if now_us is None else now_us
        values: dict[str, list[Any]] = {}
        for vr in plan.reads:
            keys = self._keys(rows, vr)
            read = self._store.read(vr.view, keys, vr.features)
            columns = [list(c) for c in read.values]
            if vr.ttl_us is not None:
                cutoff = now - vr.ttl_us
                for i, ev in enumerate(read.event_us):
                    if ev is not None and ev < cutoff:  # expired: read as missing, exactly as offline
                        for col in columns:
                            col[i] = None
            for name, col in zip(vr.outputs, columns, strict=True):
                values[name] = col
        for step in plan.on_demand:
            self._compute(step, rows, values)
        return OnlineFeatures({name: values[name] for name in plan.outputs}, plan.versions, plan.dtypes)

    @staticmethod
    def _compute(step: OnDemandStep, rows: list[Mapping[str, Any]], values: dict[str, list[Any]]) -> None:
        """Run an on-demand view on the values read and the request fields of the entity rows."""
        request: dict[str, list[Any]] = {}
        for name in step.view.request_fields:
            for i, row in enumerate(rows):
                if name not in row:
                    raise ValidationError(
                        f"entity row {i} lacks request field {name!r}, needed by on-demand feature view "
                        f"{step.view.name!r}",
                        field=name,
                        row=i,
                    )
            request[name] = [row[name] for row in rows]
        for column, array in step.run(values, request, rows=len(rows), where="entity rows").items():
            values[column] = array.to_pylist()

    @classmethod
    def _keys(cls, rows: list[Mapping[str, Any]], vr: _ViewRead) -> list[tuple[Any, ...]]:
        """Each row's key tuple for ``vr``, in the key columns' types (one list pass for single-key views)."""
        if len(vr.join_keys) != 1:
            return [cls._key(row, i, vr) for i, row in enumerate(rows)]
        key, expected = vr.join_keys[0], vr.key_types[0]
        try:
            values = [row[key] for row in rows]
        except KeyError:
            i = next(i for i, row in enumerate(rows) if key not in row)
            raise ValidationError(
                f"entity row {i} lacks join key {key!r}, needed by feature view {vr.view!r}", field=key, row=i
            ) from None
        if expected is not object:
            values = [v if type(v) is expected else _coerce_key(v, expected, key, i) for i, v in enumerate(values)]
        _check_int_keys(values, key, expected)
        return [(v,) for v in values]

    @staticmethod
    def _key(row: Mapping[str, Any], i: int, vr: _ViewRead) -> tuple[Any, ...]:
        try:
            key = tuple(
                v if type(v) is t else _coerce_key(v, t, k, i)
                for k, t in zip(vr.join_keys, vr.key_types, strict=True)
                for v in (row[k],)
            )
        except KeyError as exc:
            raise ValidationError(
                f"entity row {i} lacks join key {exc.args[0]!r}, needed by feature view {vr.view!r}",
                field=str(exc.args[0]),
                row=i,
            ) from None
        for k, v in zip(vr.join_keys, key, strict=True):
            if type(v) is int and not fits_int64(v):
                raise ValidationError(f"entity row {i}: join key {k!r} is {v}, outside {int64_range()}", field=k, row=i)
        return key
