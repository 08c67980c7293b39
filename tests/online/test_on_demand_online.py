"""On-demand features online, and the proof that offline and online compute identical values for the same rows."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from keel import (
    DataFrameSource,
    Entity,
    FeatureView,
    Field,
    RequestSource,
    ValidationError,
    on_demand_feature_view,
)

CUSTOMER = Entity("customer", ["customer_id"])
NOW = datetime.now(UTC).replace(microsecond=0)
TTL = timedelta(days=1)
#: The frame each call of ``scores`` received (offline and online calls must receive identical frames).
FRAMES: list[pd.DataFrame] = []

ACTIVITY_SCHEMA = [
    Field("spend", "float64"),
    Field("orders", "int64"),
    Field("plan", "string"),
    Field("active", "bool"),
    Field("since", "timestamp"),
    Field("embedding", "list[float64]"),
]


def activity_rows() -> pd.DataFrame:
    """Customer 1 has every value, customer 2 only nulls but its spend, customer 4 a zero spend; 3 is unknown."""
    return pd.DataFrame(
        {
            "customer_id": [1, 2, 4],
            "event_time": pd.Series([NOW - timedelta(minutes=1)] * 3, dtype="datetime64[us, UTC]"),
            "spend": [120.5, 7.25, 0.0],
            "orders": pd.array([4, None, 0], dtype="Int64"),
            "plan": ["pro", None, "basic"],
            "active": pd.array([True, None, False], dtype="boolean"),
            "since": pd.Series(
                [NOW - timedelta(days=400, microseconds=7), None, NOW - timedelta(days=3)], dtype="datetime64[us, UTC]"
            ),
            "embedding": [[0.1, 0.2], None, [1.0, -2.5]],
        }
    )


def activity_view(frame: pd.DataFrame | None = None) -> FeatureView:
    return FeatureView(
        "activity",
        entities=[CUSTOMER],
        source=DataFrameSource(activity_rows() if frame is None else frame),
        schema=ACTIVITY_SCHEMA,
        ttl=TTL,
    )


activity = activity_view()
cart = RequestSource(
    "cart", schema=[Field("cart_value", "float64"), Field("coupon", "string"), Field("items", "int64")]
)


@on_demand_feature_view(
    sources=[activity, cart],
    schema=[
        Field("spend_per_order", "float64"),
        Field("cart_to_spend", "float64"),
        Field("items_plus_orders", "int64"),
        Field("big_basket", "bool"),
        Field("offer", "string"),
        Field("renewal", "timestamp"),
        Field("scaled", "list[float64]"),
    ],
)
def scores(df: pd.DataFrame) -> pd.DataFrame:
    """Every output dtype, nulls propagated, a division by zero, a vectorised string and timestamp operation."""
    FRAMES.append(df.copy())
    return pd.DataFrame(
        {
            "spend_per_order": df["spend"] / df["orders"],  # 0 orders: inf or NaN; null orders: null
            "cart_to_spend": df["cart_value"] / df["spend"],
            "items_plus_orders": df["items"] + df["orders"],
            "big_basket": (df["cart_value"] > 50) & df["active"],
            "offer": df["plan"].str.upper() + "-" + df["coupon"],
            "renewal": df["since"] + pd.Timedelta(days=365),
            "scaled": [None if e is None else [x * 2 for x in e] for e in df["embedding"]],
        }
    )


REFS = [
    "scores:spend_per_order",
    "scores:cart_to_spend",
    "scores:items_plus_orders",
    "scores:big_basket",
    "scores:offer",
    "scores:renewal",
    "scores:scaled",
    "activity:spend",
]

#: Known, unknown, all-null and zero-spend customers; present, null and odd request values.
ENTITY_ROWS: list[dict[str, Any]] = [
    {"customer_id": 1, "cart_value": 80.0, "coupon": "X1", "items": 3},
    {"customer_id": 2, "cart_value": None, "coupon": None, "items": None},
    {"customer_id": 3, "cart_value": 12.5, "coupon": "Y", "items": 1},
    {"customer_id": 4, "cart_value": 5.0, "coupon": "Z", "items": 0},  # a zero spend: an infinite ratio
    {"customer_id": 1, "cart_value": 10, "coupon": "", "items": 2},  # an integer cart value
]


def _plain(value: Any) -> Any:
    """One value as online reads return it: None for every kind of null, Python scalars, lists."""
    if isinstance(value, list | np.ndarray):
        return [float(v) for v in value]
    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _offline(project: Any) -> dict[str, list[Any]]:
    frame = pd.DataFrame(ENTITY_ROWS)
    frame["cart_value"] = frame["cart_value"].astype("float64")
    frame["ts"] = pd.Series([NOW] * len(frame), dtype="datetime64[us, UTC]")
    out = project.historical_features(frame, REFS)
    return {c: [_plain(v) for v in out[c].tolist()] for c in out.columns[len(frame.columns) :]}


def _load_by_push(project: Any) -> None:
    project.push("activity", activity_rows(), to="both")


def _load_by_materialize(project: Any) -> None:
    project.ingest(activity)
    project.materialize()


@pytest.mark.parametrize("load", [_load_by_push, _load_by_materialize], ids=["push", "materialize"])
def test_offline_and_online_compute_identical_values_for_the_same_rows(
    open_project: Callable[[], Any], load: Callable[[Any], None]
) -> None:
    project = open_project()
    project.apply([scores])
    load(project)
    FRAMES.clear()

    offline = _offline(project)
    online = project.online_features(REFS, ENTITY_ROWS).to_dict()

    assert list(online) == list(offline)
    assert online == offline  # exactly, nulls included
    offline_frame, online_frame = FRAMES
    pd.testing.assert_frame_equal(offline_frame, online_frame)  # the function saw the same frame
    assert online["items_plus_orders"] == [7, None, None, 0, 6]
    assert online["spend_per_order"][:3] == [120.5 / 4, None, None]
    assert online["offer"][:2] == ["PRO-X1", None]
    assert online["big_basket"][:4] == [True, False, False, False]  # Kleene logic: False & NA is False
    assert online["scaled"][0] == [0.2, 0.4]


# -- online reads --------------------------------------------------------------------------------------------
@pytest.fixture
def pushed(project: Any) -> Any:
    project.apply([scores])
    project.push("activity", activity_rows(), to="online")
    return project


def test_outputs_come_in_request_order_without_the_inputs_read_for_them(pushed: Any) -> None:
    rows = [{"customer_id": 3, "cart_value": 1.0, "coupon": "a", "items": 1}, ENTITY_ROWS[0]]

    result = pushed.online_features(["scores:offer", "scores:items_plus_orders"], rows)

    assert result.to_dict() == {"offer": [None, "PRO-X1"], "items_plus_orders": [None, 7]}
    assert result.versions == {}  # pushed online only: no ingested version served it


def test_entity_rows_as_a_mapping_of_lists_and_full_feature_names(pushed: Any) -> None:
    columns = {"customer_id": [1], "cart_value": [80.0], "coupon": ["X1"], "items": [3]}

    result = pushed.online_features(["scores:offer", "activity:plan"], columns, full_feature_names=True)

    assert result.to_dict() == {"scores__offer": ["PRO-X1"], "activity__plan": ["pro"]}


def test_star_returns_every_output(pushed: Any) -> None:
    result = pushed.online_features(["scores:*"], ENTITY_ROWS[:1])

    assert list(result.to_dict()) == [f.name for f in scores.schema]


def test_a_row_lacking_a_request_field_names_the_field_and_the_row(pushed: Any) -> None:
    rows = [ENTITY_ROWS[0], {"customer_id": 1, "cart_value": 1.0, "items": 1}]

    with pytest.raises(
        ValidationError, match=r"entity row 1 lacks request field 'coupon', needed by on-demand"
    ) as info:
        pushed.online_features(["scores:offer"], rows)
    assert (info.value.field, info.value.row) == ("coupon", 1)


def test_a_request_value_of_the_wrong_type_names_its_row_and_field(pushed: Any) -> None:
    rows = [ENTITY_ROWS[0], {"customer_id": 1, "cart_value": "ten", "coupon": "a", "items": 1}]

    with pytest.raises(ValidationError, match=r"entity rows, request field 'cart_value' .*: row 1 has 'ten'") as info:
        pushed.online_features(["scores:offer"], rows)
    assert (info.value.field, info.value.row) == ("cart_value", 1)


def test_a_fractional_value_for_an_integer_request_field_is_refused(pushed: Any) -> None:
    rows = [{"customer_id": 1, "cart_value": 1.0, "coupon": "a", "items": 1.5}]

    with pytest.raises(ValidationError, match=r"request field 'items' .*: row 0 has 1.5, which is not an integer"):
        pushed.online_features(["scores:offer"], rows)


def test_an_on_demand_view_cannot_be_pinned_online(pushed: Any) -> None:
    with pytest.raises(ValidationError, match=r"'scores' is computed, not stored: it has no versions to pin"):
        pushed.online_features(["scores@1:offer"], ENTITY_ROWS[:1])


def test_a_function_failing_online_names_the_view(project: Any) -> None:
    @on_demand_feature_view(sources=[activity], inputs=["activity:spend"], schema=[Field("x", "float64")])
    def broken(df: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"x": df["nope"]})

    project.apply([broken])
    project.push("activity", activity_rows(), to="online")

    with pytest.raises(ValidationError, match=r"on-demand feature view 'broken': its function raised KeyError"):
        project.online_features(["broken:x"], [{"customer_id": 1}])
