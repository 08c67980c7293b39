"""On-demand features in historical_features: inputs joined point in time, request columns, checked outputs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import keel
from keel import (
    DataFrameSource,
    Entity,
    FeatureView,
    Field,
    NotFoundError,
    RequestSource,
    ValidationError,
    on_demand_feature_view,
)
from keel.offline import VERSIONS_ATTR

CUSTOMER = Entity("customer", ["customer_id"])
T0 = pd.Timestamp("2024-01-01", tz="UTC")
DAY = timedelta(days=1)
#: Each call of ``basket``: the input frame's columns and dtypes, and its row count.
CALLS: list[tuple[dict[str, str], int]] = []


def ts(*days: float) -> pd.Series:
    return pd.Series([T0 + d * DAY for d in days], dtype="datetime64[us, UTC]")


def activity_frame(spend: tuple[float | None, ...] = (10.0, 20.0, 30.0)) -> pd.DataFrame:
    """Customer 1 on days 0 and 2, customer 2 on day 1 (no orders); customer 3 has no rows."""
    return pd.DataFrame(
        {
            "customer_id": [1, 2, 1],
            "event_time": ts(0, 1, 2),
            "spend": list(spend),
            "orders": pd.array([1, None, 3], dtype="Int64"),
            "plan": ["basic", "pro", "pro"],
        }
    )


activity = FeatureView(
    "activity",
    entities=[CUSTOMER],
    source=DataFrameSource(activity_frame()),
    schema=[Field("spend", "float64"), Field("orders", "int64"), Field("plan", "string")],
    ttl=5 * DAY,
)
cart = RequestSource("cart", schema=[Field("cart_value", "float64")])


@on_demand_feature_view(
    sources=[activity, cart],
    inputs=["activity:spend", "activity:orders"],
    schema=[Field("spend_per_order", "float64"), Field("cart_to_spend", "float64")],
)
def basket(df: pd.DataFrame) -> pd.DataFrame:
    CALLS.append(({str(c): str(t) for c, t in df.dtypes.items()}, len(df)))
    return pd.DataFrame(
        {
            "spend_per_order": df["spend"] / df["orders"].clip(lower=1),
            "cart_to_spend": df["cart_value"] / (df["spend"] + 1),
        }
    )


@on_demand_feature_view(
    sources=[activity],
    inputs=["activity:plan", "activity:orders"],
    schema=[Field("is_pro", "bool"), Field("plan_code", "string"), Field("orders_x2", "int64")],
)
def plan_flags(df: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {"is_pro": df["plan"] == "pro", "plan_code": df["plan"].str.upper(), "orders_x2": df["orders"] * 2.0}
    )


@pytest.fixture
def project(project_dir: Path) -> Iterator[Any]:
    CALLS.clear()
    with keel.Project.open(project_dir) as p:
        p.apply([basket, plan_flags])
        p.ingest(activity)
        yield p


def entities(keys: list[Any], days: list[float], **extra: Any) -> pd.DataFrame:
    return pd.DataFrame({"customer_id": keys, "ts": ts(*days), **extra})


def test_outputs_are_computed_from_point_in_time_inputs_and_request_columns(project: Any) -> None:
    # 1 @0.5: day 0 (10, 1); 1 @3: day 2 (30, 3); 2 @1: day 1 (20, null orders); 3: nothing; 1 @-1: before any row
    frame = entities([1, 1, 2, 3, 1], [0.5, 3, 1, 1, -1], cart_value=[11.0, 62.0, 42.0, 5.0, 1.0])

    out = project.historical_features(frame, ["basket:spend_per_order", "basket:cart_to_spend"])

    assert out["spend_per_order"].tolist()[:2] == [10.0, 10.0]
    assert out["cart_to_spend"].tolist()[:3] == [1.0, 2.0, 2.0]
    assert out["spend_per_order"].isna().tolist() == [False, False, True, True, True]  # null orders: null
    assert out["cart_to_spend"].isna().tolist() == [False, False, False, True, True]


def test_inputs_are_fetched_without_being_returned_and_their_version_is_recorded(project: Any) -> None:
    frame = entities([1], [3], cart_value=[62.0], label=[1])

    out = project.historical_features(frame, ["basket:cart_to_spend"])

    assert list(out.columns) == ["customer_id", "ts", "cart_value", "label", "cart_to_spend"]
    assert out.attrs[VERSIONS_ATTR] == {"activity": 1}


def test_requested_features_and_on_demand_outputs_come_back_in_request_order(project: Any) -> None:
    frame = entities([1], [3], cart_value=[62.0])

    out = project.historical_features(frame, ["basket:cart_to_spend", "activity:spend", "plan_flags:*"])

    assert list(out.columns)[3:] == ["cart_to_spend", "spend", "is_pro", "plan_code", "orders_x2"]
    assert out.iloc[0, 3:].tolist() == [2.0, 30.0, True, "PRO", 6]


def test_full_feature_names_prefix_on_demand_outputs_with_their_view(project: Any) -> None:
    out = project.historical_features(
        entities([1], [3], cart_value=[62.0]), ["basket:cart_to_spend", "activity:spend"], full_feature_names=True
    )

    assert list(out.columns)[3:] == ["basket__cart_to_spend", "activity__spend"]


def test_the_function_runs_once_on_the_whole_frame_typed_like_the_result(project: Any) -> None:
    frame = entities([1, 2, 3], [3, 3, 3], cart_value=[1, 2, 3])  # integers, declared float64

    project.historical_features(frame, ["basket:*"])

    assert CALLS == [({"spend": "float64", "orders": "Int64", "cart_value": "float64"}, 3)]


def test_outputs_are_cast_to_their_declared_dtypes(project: Any) -> None:
    out = project.historical_features(entities([1, 2, 3], [3, 3, 3]), ["plan_flags:*"])

    assert {c: str(out[c].dtype) for c in ["is_pro", "orders_x2"]} == {"is_pro": "boolean", "orders_x2": "Int64"}
    assert out["orders_x2"].tolist() == [6, pd.NA, pd.NA]
    assert out["is_pro"].tolist() == [True, True, False]  # pandas compares a missing string as unequal
    assert out["plan_code"].tolist()[:2] == ["PRO", "PRO"] and pd.isna(out["plan_code"][2])


def test_an_on_demand_view_reading_only_request_fields_needs_no_view(project_dir: Path) -> None:
    @on_demand_feature_view(sources=[cart], schema=[Field("cart_cents", "int64")])
    def cents(df: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"cart_cents": (df["cart_value"] * 100).round()})

    with keel.Project.open(project_dir) as p:
        p.apply([cents])
        out = p.historical_features(entities([1, 2], [0, 0], cart_value=[1.5, None]), ["cents:cart_cents"])

    assert out["cart_cents"].tolist() == [150, pd.NA]
    assert out.attrs[VERSIONS_ATTR] == {}


def test_a_pinned_source_view_serves_the_inputs_from_that_version(project: Any) -> None:
    changed = FeatureView(
        "activity",
        entities=[CUSTOMER],
        source=DataFrameSource(activity_frame(spend=(100.0, 200.0, 300.0))),
        schema=activity.schema,
        ttl=5 * DAY,
    )
    project.ingest(changed)
    frame = entities([1], [3], cart_value=[62.0])

    pinned = project.historical_features(frame, ["activity@1:spend", "basket:cart_to_spend"])
    latest = project.historical_features(frame, ["basket:cart_to_spend"])

    assert (pinned["spend"].tolist(), pinned["cart_to_spend"].tolist()) == ([30.0], [2.0])
    assert pinned.attrs[VERSIONS_ATTR] == {"activity": 1}
    assert latest["cart_to_spend"].tolist() == [62.0 / 301]
    assert latest.attrs[VERSIONS_ATTR] == {"activity": 2}


def test_an_empty_entity_frame_returns_typed_empty_columns_without_calling_the_function(project: Any) -> None:
    frame = entities([], [], cart_value=pd.Series([], dtype="float64"))

    out = project.historical_features(frame, ["basket:cart_to_spend", "plan_flags:orders_x2"])

    assert len(out) == 0 and list(out.columns)[3:] == ["cart_to_spend", "orders_x2"]
    assert str(out["orders_x2"].dtype) == "Int64"
    assert CALLS == []


# -- bad requests ----------------------------------------------------------------------------------------------
def test_a_missing_request_column_names_the_field_and_the_view(project: Any) -> None:
    with pytest.raises(
        ValidationError,
        match=r"entity frame lacks request field 'cart_value', needed by on-demand feature view 'basket'",
    ) as info:
        project.historical_features(entities([1], [3]), ["basket:cart_to_spend"])
    assert info.value.field == "cart_value"


def test_a_request_value_of_the_wrong_type_names_its_row_and_field(project: Any) -> None:
    frame = entities([1, 1], [3, 3], cart_value=[1.0, "ten"])

    with pytest.raises(ValidationError, match=r"entity frame, request field 'cart_value' .*row 1 has 'ten'") as info:
        project.historical_features(frame, ["basket:cart_to_spend"])
    assert (info.value.field, info.value.row) == ("cart_value", 1)


def test_an_unknown_output_lists_the_outputs(project: Any) -> None:
    with pytest.raises(ValidationError, match=r"'basket' has no feature 'nope'; it has: spend_per_order, cart_to_sp"):
        project.historical_features(entities([1], [3], cart_value=[1.0]), ["basket:nope"])


def test_an_on_demand_view_cannot_be_pinned(project: Any) -> None:
    with pytest.raises(ValidationError, match=r"'basket' is computed, not ingested: it has no versions to pin"):
        project.historical_features(entities([1], [3], cart_value=[1.0]), ["basket@1:cart_to_spend"])


def test_an_output_already_in_the_entity_frame_is_refused(project: Any) -> None:
    frame = entities([1], [3], cart_value=[1.0], cart_to_spend=[0.0])

    with pytest.raises(ValidationError, match=r"feature column\(s\) \['cart_to_spend'\] already exist"):
        project.historical_features(frame, ["basket:cart_to_spend"])


def test_an_output_clashing_with_a_requested_feature_is_refused(project: Any, project_dir: Path) -> None:
    @on_demand_feature_view(sources=[cart], schema=[Field("spend", "float64")])
    def spend_again(df: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"spend": df["cart_value"]})

    project.apply([spend_again])

    with pytest.raises(ValidationError, match=r"feature 'spend' is requested from both activity and spend_again"):
        project.historical_features(entities([1], [3], cart_value=[1.0]), ["activity:spend", "spend_again:spend"])


def test_an_unknown_name_is_still_an_unknown_feature_view(project: Any) -> None:
    with pytest.raises(NotFoundError, match=r"unknown feature view 'nope'"):
        project.historical_features(entities([1], [3]), ["nope:x"])


def _bad(output: Any, dtype: str = "float64") -> Any:
    @on_demand_feature_view(sources=[cart], schema=[Field("out", dtype)], name="bad")
    def bad(df: pd.DataFrame) -> Any:
        return output(df)

    return bad


@pytest.mark.parametrize(
    ("output", "dtype", "message"),
    [
        (lambda df: pd.DataFrame({"other": df["cart_value"]}), "float64", r"returned no column 'out'"),
        (lambda df: pd.DataFrame({"out": df["cart_value"]}).iloc[:1], "float64", r"returned 1 rows for 2 input rows"),
        (lambda df: pd.DataFrame({"out": ["a", "b"]}), "float64", r"output column 'out' holds string values"),
        (lambda df: pd.DataFrame({"out": df["cart_value"]}), "bool", r"output column 'out' holds float64 values"),
        (lambda df: pd.DataFrame({"out": [0.5, 1.0]}), "int64", r"output column 'out': row 0 has 0.5, which is not"),
    ],
)
def test_an_output_breaking_the_schema_names_the_view_and_column(
    project: Any, output: Any, dtype: str, message: str
) -> None:
    project.apply([_bad(output, dtype)])

    with pytest.raises(ValidationError, match=rf"on-demand feature view 'bad': .*{message}"):
        project.historical_features(entities([1, 2], [3, 3], cart_value=[1.0, 2.0]), ["bad:out"])
