"""Point-in-time retrieval: every entity row kept, in order; bad requests explained."""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import keel
from keel import DataFrameSource, Entity, FeatureView, Field, NotFoundError, ValidationError
from keel.offline import VERSIONS_ATTR, NaiveTimestampWarning

CUSTOMER = Entity("customer", ["customer_id"])
T0 = pd.Timestamp("2024-01-01", tz="UTC")
DAY = timedelta(days=1)


def ts(*days: float) -> pd.Series:
    return pd.Series([T0 + d * DAY for d in days], dtype="datetime64[us, UTC]")


def activity_frame() -> pd.DataFrame:
    """Customer 1 on days 0 and 2, customer 2 on day 1; customer 3 has no rows."""
    return pd.DataFrame(
        {
            "customer_id": [1, 2, 1],
            "event_time": ts(0, 1, 2),
            "spend": [10.0, 20.0, None],
            "orders": pd.array([1, None, 3], dtype="Int64"),
            "active": [True, None, False],
            "plan": ["basic", "pro", None],
            "since": pd.Series([T0 - 30 * DAY, None, T0 - 60 * DAY], dtype="datetime64[us, UTC]"),
        }
    )


ACTIVITY_SCHEMA = [
    Field("spend", "float64"),
    Field("orders", "int64"),
    Field("active", "bool"),
    Field("plan", "string"),
    Field("since", "timestamp"),
]


def activity_view(frame: pd.DataFrame | None = None, ttl: timedelta | None = 5 * DAY) -> FeatureView:
    return FeatureView(
        "activity",
        entities=[CUSTOMER],
        source=DataFrameSource(activity_frame() if frame is None else frame),
        schema=ACTIVITY_SCHEMA,
        ttl=ttl,
    )


def profile_view() -> FeatureView:
    frame = pd.DataFrame({"customer_id": [1, 3], "event_time": ts(0, 0), "spend": [1.0, 3.0], "age": [30, 40]})
    return FeatureView(
        "profile",
        entities=[CUSTOMER],
        source=DataFrameSource(frame),
        schema=[Field("spend", "float64"), Field("age", "int64")],
    )


@pytest.fixture
def project(project_dir: Path) -> Iterator[Any]:
    with keel.Project.open(project_dir) as p:
        activity, profile = activity_view(), profile_view()
        p.apply([CUSTOMER, activity, profile])
        p.ingest(activity)
        p.ingest(profile)
        yield p


def entities(keys: list[Any], days: list[float], **extra: Any) -> pd.DataFrame:
    return pd.DataFrame({"customer_id": keys, "ts": ts(*days), **extra})


def test_every_entity_row_is_kept_in_order_with_null_when_nothing_matches(project: Any) -> None:
    frame = entities([3, 1, 2, 1, 1, 2], [5, 0.5, 1, -1, 2, 9], label=list("abcdef"))

    out = project.historical_features(frame, ["activity:spend", "activity:orders"])

    assert list(out["label"]) == list("abcdef")
    # 3: no rows; 1 @0.5: day 0; 2 @1: day 1 (same instant); 1 @-1: before any row; 1 @2: day 2; 2 @9: too old
    assert out["spend"].tolist()[1:3] == [10.0, 20.0]
    assert out["spend"].isna().tolist() == [True, False, False, True, True, True]
    assert out["orders"].tolist() == [pd.NA, 1, pd.NA, pd.NA, 3, pd.NA]


def test_the_entity_frames_index_and_columns_are_preserved(project: Any) -> None:
    frame = entities([1, 2, 1], [3, 3, 3], label=[0, 1, 0])
    frame.index = pd.Index(["z", "a", "z"], name="row_id")
    before = frame.copy()

    out = project.historical_features(frame, ["activity:orders"])

    assert out.index.equals(before.index)
    pd.testing.assert_frame_equal(out[list(before.columns)], before)
    pd.testing.assert_frame_equal(frame, before)  # the caller's frame is untouched
    assert out["orders"].tolist() == [3, pd.NA, 3]


def test_several_views_are_joined_in_one_call(project: Any) -> None:
    frame = entities([1, 3], [3, 3])

    out = project.historical_features(frame, ["activity:orders", "profile:age"])

    assert out["orders"].tolist() == [3, pd.NA]
    assert out["age"].tolist() == [30, 40]
    assert out.attrs[VERSIONS_ATTR] == {"activity": 1, "profile": 1}


def test_view_star_returns_every_feature_in_schema_order(project: Any) -> None:
    out = project.historical_features(entities([1], [0]), ["activity:*"])

    assert list(out.columns) == ["customer_id", "ts", "spend", "orders", "active", "plan", "since"]


def test_a_pinned_version_serves_its_own_data_while_the_latest_moves_on(project: Any) -> None:
    changed = activity_frame()
    changed["orders"] = pd.array([100, 200, 300], dtype="Int64")
    project.ingest(activity_view(changed))
    frame = entities([1], [3])

    pinned = project.historical_features(frame, ["activity@1:orders"])
    latest = project.historical_features(frame, ["activity:orders"])

    assert pinned["orders"].tolist() == [3]
    assert latest["orders"].tolist() == [300]
    assert pinned.attrs[VERSIONS_ATTR] == {"activity": 1}
    assert latest.attrs[VERSIONS_ATTR] == {"activity": 2}


def test_the_output_dtypes_follow_the_feature_dtypes(project: Any) -> None:
    out = project.historical_features(entities([1, 2, 3], [0, 1, 1]), ["activity:*"])

    assert out["orders"].dtype == pd.Int64Dtype()
    assert out["orders"].tolist() == [1, pd.NA, pd.NA]
    assert out["spend"].dtype == np.float64
    assert out["active"].dtype == pd.BooleanDtype()
    assert out["active"].tolist() == [True, pd.NA, pd.NA]
    assert pd.api.types.is_string_dtype(out["plan"])
    assert out["plan"].iloc[1] == "pro"
    assert str(out["since"].dtype) == "datetime64[us, UTC]"
    assert out["since"].iloc[0] == T0 - 30 * DAY


def test_string_join_keys_are_matched(project_dir: Path) -> None:
    account = Entity("account", ["account_id"])
    frame = pd.DataFrame({"account_id": ["a-1", "b-2"], "event_time": ts(0, 0), "score": [0.5, 0.7]})
    fv = FeatureView("scores", entities=[account], source=DataFrameSource(frame), schema=[Field("score", "float64")])
    with keel.Project.open(project_dir) as project:
        project.apply([fv])
        project.ingest(fv)

        out = project.historical_features(
            pd.DataFrame({"account_id": ["b-2", "zz", "a-1"], "ts": ts(1, 1, 1)}), ["scores:score"]
        )

    assert out["score"].tolist()[::2] == [0.7, 0.5]
    assert pd.isna(out["score"].iloc[1])


def test_integer_keys_given_as_floats_with_nan_match_and_nan_gets_null(project: Any) -> None:
    frame = entities([1.0, np.nan, 2.0], [1, 1, 1])

    out = project.historical_features(frame, ["activity:spend"])

    assert out["spend"].iloc[0] == 10.0
    assert out["spend"].iloc[2] == 20.0
    assert pd.isna(out["spend"].iloc[1])


def test_fractional_float_keys_for_integer_keys_are_refused(project: Any) -> None:
    with pytest.raises(ValidationError, match="customer_id") as info:
        project.historical_features(entities([1.5], [1]), ["activity:spend"])

    assert info.value.field == "customer_id"


def test_string_keys_for_integer_keys_are_refused(project: Any) -> None:
    with pytest.raises(ValidationError, match="integer keys"):
        project.historical_features(entities(["1"], [1]), ["activity:spend"])


def test_an_empty_entity_frame_gives_an_empty_frame_with_the_feature_columns(project: Any) -> None:
    frame = entities([], [])

    out = project.historical_features(frame, ["activity:spend", "activity:orders"])

    assert len(out) == 0
    assert list(out.columns) == ["customer_id", "ts", "spend", "orders"]
    assert out["orders"].dtype == pd.Int64Dtype()
    assert out["spend"].dtype == np.float64


# -- time zones of the entity frame --------------------------------------------------------------------------
def test_entity_timestamps_in_another_zone_are_compared_as_instants(project: Any) -> None:
    # day 1 00:00 UTC is day 1 05:30 in Kolkata and day 0 19:00 in New York
    frame = pd.DataFrame(
        {
            "customer_id": [2, 2],
            "ts": pd.Series([T0 + DAY] * 2).dt.tz_convert("Asia/Kolkata") - pd.Timedelta(microseconds=1),
        }
    )
    frame.loc[1, "ts"] = (T0 + DAY).tz_convert("Asia/Kolkata")

    out = project.historical_features(frame, ["activity:spend"])

    assert pd.isna(out["spend"].iloc[0])  # a microsecond before the value's event time
    assert out["spend"].iloc[1] == 20.0


def test_entity_timestamps_with_mixed_zones_in_one_column_are_compared_as_instants(project: Any) -> None:
    frame = pd.DataFrame(
        {
            "customer_id": [2, 2, 2],
            "ts": pd.Series(
                [
                    pd.Timestamp("2024-01-01 18:59", tz="America/New_York"),  # day 0 23:59 UTC
                    pd.Timestamp("2024-01-02 05:30", tz="Asia/Kolkata"),  # day 1 00:00 UTC
                    "2024-01-02T00:00:00Z",
                ],
                dtype=object,
            ),
        }
    )

    with warnings.catch_warnings():
        warnings.simplefilter("error", NaiveTimestampWarning)
        out = project.historical_features(frame, ["activity:spend"], timestamp="ts")

    assert out["spend"].isna().tolist() == [True, False, False]


def test_naive_entity_timestamps_are_taken_as_utc_with_a_warning(project: Any) -> None:
    frame = pd.DataFrame({"customer_id": [2, 2], "ts": pd.to_datetime(["2024-01-01 23:59", "2024-01-02 00:00"])})

    with pytest.warns(NaiveTimestampWarning, match="ts"):
        out = project.historical_features(frame, ["activity:spend"])

    assert out["spend"].isna().tolist() == [True, False]


def test_naive_entity_timestamp_strings_are_taken_as_utc_with_a_warning(project: Any) -> None:
    frame = pd.DataFrame({"customer_id": [2], "ts": ["2024-01-02 00:00"]})

    with pytest.warns(NaiveTimestampWarning, match="ts"):
        out = project.historical_features(frame, ["activity:spend"], timestamp="ts")

    assert out["spend"].tolist() == [20.0]


def test_a_value_is_never_seen_a_fraction_of_a_microsecond_before_its_event_time(project_dir: Path) -> None:
    event = pd.Timestamp("2024-01-01 12:00:00.000000700", tz="UTC")
    frame = pd.DataFrame(
        {"customer_id": [1], "event_time": pd.Series([event]).astype("datetime64[ns, UTC]"), "spend": [1.0]}
    )
    fv = FeatureView("act", entities=[CUSTOMER], source=DataFrameSource(frame), schema=[Field("spend", "float64")])
    probe = pd.Series([event - pd.Timedelta(nanoseconds=200), event, event + pd.Timedelta(nanoseconds=300)]).astype(
        "datetime64[ns, UTC]"
    )
    with keel.Project.open(project_dir) as project:
        project.apply([fv])
        project.ingest(fv)

        out = project.historical_features(pd.DataFrame({"customer_id": [1, 1, 1], "ts": probe}), ["act:spend"])

    # stored and compared at microsecond precision: the event counts from 12:00:00.000001
    assert out["spend"].isna().tolist() == [True, True, False]


def test_a_ttl_longer_than_any_calendar_acts_as_no_ttl(project_dir: Path) -> None:
    fv = activity_view(ttl=timedelta.max)
    with keel.Project.open(project_dir) as project:
        project.apply([fv])
        project.ingest(fv)

        out = project.historical_features(entities([1], [3650]), ["activity:orders"])

    assert out["orders"].tolist() == [3]


def test_the_ttl_boundary_is_inclusive(project: Any) -> None:
    five_days = (T0 + 2 * DAY) + 5 * DAY  # customer 1's day-2 value, exactly ttl later

    out = project.historical_features(
        pd.DataFrame({"customer_id": [1, 1], "ts": [five_days, five_days + pd.Timedelta(microseconds=1)]}),
        ["activity:orders"],
    )

    assert out["orders"].tolist() == [3, pd.NA]


# -- bad requests --------------------------------------------------------------------------------------------
def test_an_unknown_view_is_not_found_and_named(project: Any) -> None:
    with pytest.raises(NotFoundError, match="nope"):
        project.historical_features(entities([1], [1]), ["nope:spend"])


def test_an_unknown_feature_is_refused_listing_the_known_ones(project: Any) -> None:
    with pytest.raises(ValidationError, match=r"no feature 'nope'.*spend, orders") as info:
        project.historical_features(entities([1], [1]), ["activity:nope"])

    assert info.value.field == "activity:nope"


def test_an_unknown_pinned_version_is_not_found(project: Any) -> None:
    with pytest.raises(NotFoundError, match="no version 7"):
        project.historical_features(entities([1], [1]), ["activity@7:spend"])


@pytest.mark.parametrize("ref", ["activity", "activity:", ":spend", "activity:spend:x", "activity@x:spend"])
def test_a_malformed_reference_is_refused_naming_it(project: Any, ref: str) -> None:
    with pytest.raises(ValidationError, match="malformed feature reference"):
        project.historical_features(entities([1], [1]), [ref])


def test_a_missing_join_key_is_refused_naming_it_and_the_view(project: Any) -> None:
    frame = pd.DataFrame({"cust": [1], "ts": ts(1)})

    with pytest.raises(ValidationError, match=r"customer_id.*activity") as info:
        project.historical_features(frame, ["activity:spend"])

    assert info.value.field == "customer_id"


def test_a_named_timestamp_column_that_does_not_exist_is_refused(project: Any) -> None:
    with pytest.raises(ValidationError, match="no timestamp column 'when'"):
        project.historical_features(entities([1], [1]), ["activity:spend"], timestamp="when")


def test_a_frame_without_a_timestamp_column_is_refused(project: Any) -> None:
    with pytest.raises(ValidationError, match=r"no datetime column.*timestamp="):
        project.historical_features(pd.DataFrame({"customer_id": [1]}), ["activity:spend"])


def test_a_frame_with_two_datetime_columns_is_refused_as_ambiguous(project: Any) -> None:
    frame = entities([1], [1], signup=ts(0))

    with pytest.raises(ValidationError, match="several datetime columns: ts, signup"):
        project.historical_features(frame, ["activity:spend"])


def test_an_unparseable_entity_timestamp_is_refused_with_its_row(project: Any) -> None:
    frame = pd.DataFrame({"customer_id": [1, 1], "ts": ["2024-01-02T00:00:00Z", "soon"]})

    with pytest.raises(ValidationError, match=r"row 1.*'soon'") as info:
        project.historical_features(frame, ["activity:spend"], timestamp="ts")

    assert (info.value.field, info.value.row) == ("ts", 1)


def test_a_missing_entity_timestamp_is_refused_with_its_row(project: Any) -> None:
    frame = entities([1, 1], [1, 1])
    frame.loc[1, "ts"] = pd.NaT

    with pytest.raises(ValidationError, match="row 1") as info:
        project.historical_features(frame, ["activity:spend"])

    assert info.value.row == 1


def test_one_feature_name_from_two_views_is_refused_unless_names_are_qualified(project: Any) -> None:
    frame = entities([1], [3])

    with pytest.raises(ValidationError, match="full_feature_names=True"):
        project.historical_features(frame, ["activity:spend", "profile:spend"])
    out = project.historical_features(frame, ["activity:spend", "profile:spend"], full_feature_names=True)

    assert pd.isna(out["activity__spend"].iloc[0])  # the day-2 row has no spend
    assert out["profile__spend"].iloc[0] == 1.0


def test_a_feature_named_like_an_entity_frame_column_is_refused(project: Any) -> None:
    frame = entities([1], [3], spend=[0.0])

    with pytest.raises(ValidationError, match="already exist in the entity frame"):
        project.historical_features(frame, ["activity:spend"])


def test_a_request_for_no_features_is_refused(project: Any) -> None:
    with pytest.raises(ValidationError, match="no features requested"):
        project.historical_features(entities([1], [1]), [])


def test_a_view_without_ingested_data_asks_to_ingest(project: Any) -> None:
    empty = FeatureView(
        "later",
        entities=[CUSTOMER],
        source=DataFrameSource(activity_frame()),
        schema=[Field("spend", "float64")],
    )
    project.apply([empty])

    with pytest.raises(NotFoundError, match="ingest"):
        project.historical_features(entities([1], [1]), ["later:spend"])


def test_categorical_entity_keys_are_matched_by_their_values(project: Any) -> None:
    frame = entities([1, 2, 1], [3, 3, 3])
    frame["customer_id"] = frame["customer_id"].astype("category")
    frame.loc[2, "customer_id"] = np.nan

    out = project.historical_features(frame, ["activity:orders", "activity:spend"])

    assert out["orders"].tolist() == [3, pd.NA, pd.NA]
    assert out["spend"].iloc[1] == 20.0
    assert pd.isna(out["spend"].iloc[2])


def test_an_offline_store_on_an_fsspec_uri_ingests_and_serves(project_dir: Path) -> None:
    uri = f"memory://keel-test-{uuid.uuid4().hex}"
    fv = activity_view()
    with keel.Project.open(project_dir, offline=uri, partition_rows=2) as project:
        project.apply([fv])
        version = project.ingest(fv).version

        out = project.historical_features(entities([1, 2], [3, 1]), ["activity:orders", "activity:spend"])
        again = project.ingest(fv)

    assert [f["path"] for f in version.files] == ["month=2024-01/part-0.parquet"]  # partitioned
    assert all(p.startswith("memory://") for p in project.offline_store.paths(version))
    assert out["orders"].tolist() == [3, pd.NA]
    assert out["spend"].tolist()[1] == 20.0
    assert not again.created


def test_two_versions_of_one_view_in_one_call_are_refused_naming_them(project: Any) -> None:
    project.ingest(activity_view(activity_frame().iloc[:2]))

    with pytest.raises(ValidationError, match=r"'activity' is requested in several versions \(1, 2\)"):
        project.historical_features(entities([1], [1]), ["activity@1:spend", "activity:orders"])


def test_a_pinned_version_that_is_also_the_latest_can_be_combined_with_latest(project: Any) -> None:
    out = project.historical_features(entities([1], [3]), ["activity@1:spend", "activity:orders", "activity:*"])

    assert list(out.columns) == ["customer_id", "ts", "spend", "orders", "active", "plan", "since"]
    assert out.attrs[VERSIONS_ATTR] == {"activity": 1}
