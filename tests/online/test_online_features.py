"""Reading features online: request order, nulls, entity-row forms, key coercion, errors, versions, plan cache."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

import keel
from keel import DataFrameSource, Entity, FeatureView, Field, NotFoundError, ValidationError
from keel.online import OnlineFeatures
from keel.online._values import us_from_datetime

CUSTOMER = Entity("customer", ["customer_id"])
SHOP = Entity("shop", ["shop_code"])
NOW = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
NOW_US = us_from_datetime(NOW)
TTL = timedelta(days=1)


def times(*hours_ago: float) -> pd.Series:
    return pd.Series([NOW - timedelta(hours=h) for h in hours_ago], dtype="datetime64[us, UTC]")


def activity(spend: list[float] | None = None) -> FeatureView:
    df = pd.DataFrame(
        {
            "customer_id": [1, 2, 3],
            "event_time": times(1, 2, 30),  # customer 3's value is older than the TTL
            "spend": spend or [10.0, 20.0, 30.0],
            "plan": ["basic", None, "pro"],
        }
    )
    return FeatureView(
        "activity",
        entities=[CUSTOMER],
        source=DataFrameSource(df),
        schema=[Field("spend", "float64"), Field("plan", "string")],
        ttl=TTL,
    )


def profile() -> FeatureView:
    df = pd.DataFrame({"customer_id": [1, 2], "event_time": times(100, 100), "spend": [1.5, 2.5], "age": [30, 40]})
    return FeatureView(
        "profile",
        entities=[CUSTOMER],
        source=DataFrameSource(df),
        schema=[Field("spend", "float64"), Field("age", "int64")],
    )


def shops() -> FeatureView:
    df = pd.DataFrame({"shop_code": ["007", "42"], "event_time": times(1, 1), "rating": [4.5, 3.0]})
    return FeatureView("shops", entities=[SHOP], source=DataFrameSource(df), schema=[Field("rating", "float64")])


def prepare(project: Any) -> Any:
    views = [activity(), profile(), shops()]
    project.apply([CUSTOMER, SHOP, *views])
    for view in views:
        project.ingest(view)
    project.materialize(end=NOW)
    return project


@pytest.fixture
def served(project: Any) -> Any:
    """A project whose three views are ingested and materialized (SQLite online store)."""
    return prepare(project)


def get(project: Any, features: Any, rows: Any, **kwargs: Any) -> OnlineFeatures:
    result: OnlineFeatures = project.online.get(features, rows, now_us=NOW_US, **kwargs)
    return result


# -- values in request order ---------------------------------------------------------------------------------
def test_values_come_in_request_order_with_none_for_unknown_entities_and_expired_values(any_project: Any) -> None:
    project = prepare(any_project)
    rows = [{"customer_id": k} for k in (2, 99, 1, 3, 2, -5)]

    result = get(project, ["activity:spend", "activity:plan", "profile:age"], rows)

    assert result.to_dict() == {
        "spend": [20.0, None, 10.0, None, 20.0, None],  # 3's value is older than the TTL: None, as offline
        "plan": [None, None, "basic", None, None, None],
        "age": [40, None, 30, None, 40, None],
    }
    assert len(result) == 6
    assert result["age"] == [40, None, 30, None, 40, None]
    assert result.versions == {"activity": 1, "profile": 1}


def test_project_online_features_reads_at_the_wall_clock(served: Any) -> None:
    result = served.online_features(["activity:spend"], [{"customer_id": 1}, {"customer_id": 3}])

    assert result.to_dict() == {"spend": [10.0, None]}


def test_no_entities_give_empty_columns(served: Any) -> None:
    assert get(served, ["activity:spend"], []).to_dict() == {"spend": []}
    assert get(served, ["activity:spend"], {"customer_id": []}).to_dict() == {"spend": []}


def test_entity_rows_may_be_a_mapping_of_columns(served: Any) -> None:
    as_rows = get(served, ["activity:spend"], [{"customer_id": 2}, {"customer_id": 1}])
    as_columns = get(served, ["activity:spend"], {"customer_id": [2, 1]})
    as_array = get(served, ["activity:spend"], {"customer_id": np.array([2, 1])})
    as_series = get(served, ["activity:spend"], {"customer_id": pd.Series([2, 1])})

    assert as_rows.to_dict() == as_columns.to_dict() == as_array.to_dict() == as_series.to_dict()
    assert as_columns.to_dict() == {"spend": [20.0, 10.0]}


def test_a_single_feature_may_be_a_string_and_star_means_every_feature(served: Any) -> None:
    assert get(served, "activity:spend", [{"customer_id": 1}]).to_dict() == {"spend": [10.0]}
    assert get(served, ["activity:*"], [{"customer_id": 1}]).to_dict() == {"spend": [10.0], "plan": ["basic"]}


def test_full_feature_names_tell_views_apart(served: Any) -> None:
    result = get(served, ["activity:spend", "profile:spend"], [{"customer_id": 1}], full_feature_names=True)

    assert result.to_dict() == {"activity__spend": [10.0], "profile__spend": [1.5]}


def test_to_frame_has_one_row_per_entity_and_the_versions(served: Any) -> None:
    frame = get(served, ["activity:spend", "profile:age"], {"customer_id": [1, 99]}).to_frame()

    assert list(frame.columns) == ["spend", "age"]
    assert frame["spend"].tolist()[0] == 10.0 and pd.isna(frame["spend"].tolist()[1])
    assert frame["age"].tolist()[0] == 30 and pd.isna(frame["age"].tolist()[1])
    assert frame.attrs["keel_feature_versions"] == {"activity": 1, "profile": 1}


def test_to_frame_has_the_column_dtypes_of_historical_features(served: Any) -> None:
    refs = ["activity:spend", "activity:plan", "profile:age"]
    entities = pd.DataFrame({"customer_id": [1, 99], "ts": pd.Timestamp(NOW)})

    online = get(served, refs, {"customer_id": [1, 99]}).to_frame()
    offline = served.historical_features(entities, refs)

    assert online.dtypes.to_dict() == offline[online.columns].dtypes.to_dict()


def test_a_missing_feature_column_is_a_clear_key_error(served: Any) -> None:
    result = get(served, ["activity:spend"], [{"customer_id": 1}])

    with pytest.raises(KeyError, match="no feature 'plan' in this result; it has: spend"):
        result["plan"]


# -- keys ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["1", np.int64(1), np.int32(1), 1.0, np.float64(1.0)])
def test_integer_keys_given_as_strings_numpy_or_integral_floats_are_coerced(served: Any, key: Any) -> None:
    assert get(served, ["activity:spend"], [{"customer_id": key}]).to_dict() == {"spend": [10.0]}


def test_string_keys_given_as_integers_are_coerced(served: Any) -> None:
    result = get(served, ["shops:rating"], [{"shop_code": 42}, {"shop_code": "007"}, {"shop_code": 7}])

    assert result.to_dict() == {"rating": [3.0, 4.5, None]}  # 7 is "7", not "007"


@pytest.mark.parametrize("key", [True, 1.5, None, "one", [1]])
def test_keys_that_do_not_convert_are_refused_naming_the_row(served: Any, key: Any) -> None:
    rows = [{"customer_id": 1}, {"customer_id": key}]

    with pytest.raises(ValidationError, match="entity row 1: join key 'customer_id' must be an integer") as caught:
        get(served, ["activity:spend"], rows)

    assert (caught.value.field, caught.value.row) == ("customer_id", 1)


def test_a_missing_join_key_is_refused_naming_the_row_and_the_view(served: Any) -> None:
    rows = [{"customer_id": 1}, {"customer_id": 2}, {"cust_id": 3}]

    with pytest.raises(ValidationError, match="entity row 2 lacks join key 'customer_id', needed by feature view"):
        get(served, ["activity:spend"], rows)


def test_extra_columns_in_entity_rows_are_ignored(served: Any) -> None:
    result = get(served, ["activity:spend"], [{"customer_id": 1, "label": 0, "shop_code": "x"}])

    assert result.to_dict() == {"spend": [10.0]}


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ({"customer_id": [1, 2], "other": [1]}, "entity columns have different lengths: customer_id=2, other=1"),
        ("customer_id=1", "entity rows must be a list of mappings"),
        (42, "entity rows must be a list of mappings"),
        ([{"customer_id": 1}, 7], "entity row 1 must be a mapping of join keys, got 7"),
    ],
)
def test_malformed_entity_rows_are_refused(served: Any, rows: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        get(served, ["activity:spend"], rows)


def test_a_mapping_of_scalars_is_one_entity(served: Any) -> None:
    result = get(served, ["activity:spend"], {"customer_id": 1})

    assert result.to_dict() == {"spend": [10.0]}


def test_a_mapping_mixing_lists_and_single_values_is_refused_naming_the_single_ones(served: Any) -> None:
    with pytest.raises(ValidationError, match=r"\['region'\] hold single values"):
        get(served, ["activity:spend"], {"customer_id": [1, 2], "region": "eu"})


# -- bad feature requests ------------------------------------------------------------------------------------
def test_an_unknown_view_is_refused_listing_the_known_ones(served: Any) -> None:
    with pytest.raises(NotFoundError, match=r"unknown feature view 'nope'.*activity"):
        get(served, ["nope:x"], [{"customer_id": 1}])


def test_an_unknown_feature_is_refused_listing_the_views_features(served: Any) -> None:
    with pytest.raises(ValidationError, match="'activity' \\(version 1\\) has no feature 'age'; it has: spend, plan"):
        get(served, ["activity:age"], [{"customer_id": 1}])


@pytest.mark.parametrize(
    ("features", "message"),
    [
        ([], "no features requested"),
        (["activity"], "malformed feature reference 'activity'"),
        (["activity:spend", "profile:spend"], "'spend' is requested from two views; pass full_feature_names=True"),
        (["activity@2:spend"], "version 2 was requested but the online store holds version 1"),
    ],
)
def test_bad_feature_requests_are_refused(served: Any, features: list[str], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        get(served, features, [{"customer_id": 1}])


def test_a_pinned_version_equal_to_the_served_one_is_accepted(served: Any) -> None:
    result = get(served, ["activity@1:spend"], [{"customer_id": 1}])

    assert result.to_dict() == {"spend": [10.0]}
    assert result.versions == {"activity": 1}


# -- views not materialized ------------------------------------------------------------------------------------
def test_a_view_never_ingested_nor_written_reads_as_none_and_reports_no_version(project: Any) -> None:
    project.apply([CUSTOMER, activity()])

    result = get(project, ["activity:spend", "activity:plan"], [{"customer_id": 1}])

    assert result.to_dict() == {"spend": [None], "plan": [None]}
    assert result.versions == {}


def test_a_view_ingested_but_not_materialized_reports_no_served_version(project: Any) -> None:
    """No error: the plan takes the key types of the latest ingested version (so ``"1"`` is the integer key 1)
    and the features of the definition; the store holds nothing yet, so no version is reported as served, and
    rows pushed online are read at once."""
    view = activity()
    project.apply([CUSTOMER, view])
    project.ingest(view)

    before = get(project, ["activity:spend"], [{"customer_id": "1"}])
    with pytest.raises(ValidationError, match="has no feature 'age'"):
        get(project, ["activity:age"], [{"customer_id": 1}])
    pushed = pd.DataFrame({"customer_id": [1], "event_time": times(0.5), "spend": [11.0], "plan": ["team"]})
    project.push("activity", pushed, to="online")
    after = get(project, ["activity:spend"], [{"customer_id": "1"}])

    assert before.to_dict() == {"spend": [None]}
    assert before.versions == {}
    assert after.to_dict() == {"spend": [11.0]}


def test_a_view_only_pushed_online_is_served_from_its_definition(project: Any) -> None:
    view = activity()
    project.apply([CUSTOMER, view])
    pushed = pd.DataFrame({"customer_id": [5], "event_time": times(0.5), "spend": [55.0], "plan": ["pro"]})
    project.push("activity", pushed, to="online")

    result = get(project, ["activity:*"], [{"customer_id": 5}, {"customer_id": 6}])

    assert result.to_dict() == {"spend": [55.0, None], "plan": ["pro", None]}
    assert result.versions == {}


# -- the plan cache ------------------------------------------------------------------------------------------
def test_a_materialization_in_this_project_is_served_at_once(served: Any) -> None:
    assert get(served, ["activity:spend"], [{"customer_id": 1}]).versions["activity"] == 1

    served.ingest(activity(spend=[100.0, 200.0, 300.0]))
    served.materialize(end=NOW)
    result = get(served, ["activity:spend"], [{"customer_id": 1}])

    assert result.to_dict() == {"spend": [100.0]}
    assert result.versions["activity"] == 1 + 1


def test_a_materialization_elsewhere_is_seen_after_the_refresh_interval(
    served: Any, project_dir: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import keel.online._service as service

    features = ["activity:spend", "activity:plan"]
    assert get(served, features, [{"customer_id": 1}]).versions == {"activity": 1}
    with keel.Project.open(project_dir) as other:  # another process, as far as `served` can tell
        other.ingest(activity(spend=[100.0, 200.0, 300.0]))
        other.materialize(end=NOW)

    cached = get(served, features, [{"customer_id": 1}])
    clock = service.time.monotonic() + 60
    monkeypatch.setattr(service.time, "monotonic", lambda: clock)
    refreshed = get(served, features, [{"customer_id": 1}])

    assert cached.versions == {"activity": 1}  # the plan is reused for a few seconds ...
    assert cached.to_dict() == {"spend": [100.0], "plan": ["basic"]}  # ... the values are always the store's
    assert refreshed.versions == {"activity": 2}


def test_refresh_forgets_cached_plans_at_once(served: Any, project_dir: Any) -> None:
    get(served, ["activity:spend"], [{"customer_id": 1}])
    with keel.Project.open(project_dir) as other:
        other.ingest(activity(spend=[100.0, 200.0, 300.0]))
        other.materialize(end=NOW)

    served.online.refresh()

    assert get(served, ["activity:spend"], [{"customer_id": 1}]).versions == {"activity": 2}
