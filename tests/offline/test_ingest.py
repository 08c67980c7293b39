"""Ingestion: sources -> validated, immutable, described versions in the offline store and the catalog."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import keel
from keel import (
    BackendError,
    CsvSource,
    DataFrameSource,
    Entity,
    FeatureView,
    Field,
    NotFoundError,
    ParquetSource,
    ValidationError,
)
from keel.offline import NaiveTimestampWarning, OfflineStore

CUSTOMER = Entity("customer", ["customer_id"])
T0 = pd.Timestamp("2024-01-01", tz="UTC")
SCHEMA = [Field("spend", "float64"), Field("orders", "int64"), Field("plan", "string")]


def activity(n: int = 6, *, start: pd.Timestamp = T0, step: timedelta = timedelta(days=1)) -> pd.DataFrame:
    """n rows over customers 1..3: spend, orders (with a null), plan (with a null)."""
    return pd.DataFrame(
        {
            "customer_id": [1 + i % 3 for i in range(n)],
            "event_time": pd.Series([start + i * step for i in range(n)], dtype="datetime64[us, UTC]"),
            "spend": [float(i) * 1.5 if i != 1 else None for i in range(n)],
            "orders": pd.array([i if i != 2 else None for i in range(n)], dtype="Int64"),
            "plan": [("pro" if i % 2 else "basic") if i != 3 else None for i in range(n)],
        }
    )


def view(source: Any, name: str = "activity", ttl: timedelta | None = None, schema: Any = None) -> FeatureView:
    return FeatureView(name, entities=[CUSTOMER], source=source, schema=schema or SCHEMA, ttl=ttl)


@pytest.fixture
def project(project_dir: Path) -> Iterator[Any]:
    with keel.Project.open(project_dir) as p:
        yield p


def store_files(project: Any) -> set[str]:
    root = project.root / ".keel" / "offline"
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def ingest_quietly(project: Any, target: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NaiveTimestampWarning)
        return project.ingest(target)


def values_at(project: Any, ref: str, keys: list[int], when: pd.Timestamp) -> list[Any]:
    entities = pd.DataFrame({"customer_id": keys, "ts": [when] * len(keys)})
    return list(project.historical_features(entities, [ref])[ref.split(":")[1]])


# -- sources -------------------------------------------------------------------------------------------------
def test_ingest_from_a_dataframe_creates_version_1_with_its_rows(project: Any) -> None:
    fv = view(DataFrameSource(activity()))
    project.apply([fv])

    result = project.ingest(fv)

    assert result.created
    assert result.version.version == 1
    assert result.rows == 6
    assert result.version.row_count == 6
    assert result.version.event_time_min == datetime(2024, 1, 1, tzinfo=UTC)
    assert result.version.event_time_max == datetime(2024, 1, 6, tzinfo=UTC)
    assert "version 1" in str(result)


def test_ingest_from_a_parquet_file_stores_its_rows(project: Any, project_dir: Path) -> None:
    activity().to_parquet(project_dir / "activity.parquet", index=False)
    project.apply([view(ParquetSource("activity.parquet"))])

    result = project.ingest("activity")

    assert result.version.row_count == 6
    assert values_at(project, "activity:orders", [1, 2, 3], T0 + timedelta(days=10)) == [3, 4, 5]


def test_ingest_from_a_parquet_folder_reads_every_file(project: Any, project_dir: Path) -> None:
    folder = project_dir / "activity"
    folder.mkdir()
    frame = activity(9)
    frame.iloc[:4].to_parquet(folder / "a.parquet", index=False)
    frame.iloc[4:].to_parquet(folder / "b.parquet", index=False)
    project.apply([view(ParquetSource("activity"))])

    result = project.ingest("activity")

    assert result.version.row_count == 9
    assert values_at(project, "activity:orders", [1, 2, 3], T0 + timedelta(days=10)) == [6, 7, 8]


def test_ingest_from_a_csv_file_parses_its_types(project: Any, project_dir: Path) -> None:
    (project_dir / "activity.csv").write_text(
        "customer_id,event_time,spend,orders,plan\n"
        "1,2024-01-01T00:00:00Z,1.5,3,pro\n"
        "2,2024-01-02T00:00:00+01:00,,4,\n"
        "1,2024-01-03T00:00:00Z,2.5,,basic\n"
    )
    project.apply([view(CsvSource("activity.csv"))])

    result = project.ingest("activity")

    assert result.version.row_count == 3
    assert result.version.event_time_min == datetime(2024, 1, 1, tzinfo=UTC)
    assert result.version.statistics["spend"]["nulls"] == 1
    assert result.version.statistics["orders"]["nulls"] == 1
    out = project.historical_features(
        pd.DataFrame({"customer_id": [1, 2], "ts": [T0 + timedelta(days=5)] * 2}), ["activity:*"]
    )
    assert list(out["spend"].isna()) == [False, True]
    assert out["spend"].iloc[0] == 2.5
    assert out["orders"].iloc[1] == 4


# -- versions ------------------------------------------------------------------------------------------------
def test_re_ingesting_identical_data_creates_nothing_and_says_so(project: Any) -> None:
    fv = view(DataFrameSource(activity()))
    project.apply([fv])
    first = project.ingest(fv)
    files = store_files(project)

    again = project.ingest(fv)

    assert not again.created
    assert again.version.version == 1
    assert again.version.data_digest == first.version.data_digest
    assert "unchanged" in str(again)
    assert [v.version for v in project.feature_versions("activity")] == [1]
    assert store_files(project) == files


def test_changed_data_becomes_version_2_and_version_1_stays(project: Any) -> None:
    frame = activity()
    fv = view(DataFrameSource(frame))
    project.apply([fv])
    first = project.ingest(fv)
    frame.loc[0, "spend"] = 100.0

    second = project.ingest(fv)

    assert second.created
    assert second.version.version == 2
    assert second.version.data_digest != first.version.data_digest
    assert [v.version for v in project.feature_versions("activity")] == [1, 2]
    assert not project.offline_store.verify(first.version)
    assert not project.offline_store.verify(second.version)


def test_identical_data_read_from_parquet_or_a_dataframe_has_one_digest(project: Any, project_dir: Path) -> None:
    frame = activity()  # nulls in float, int and string columns: what lies under a null must not matter
    frame.to_parquet(project_dir / "activity.parquet", index=False)
    project.apply([view(DataFrameSource(frame), name="from_frame"), view(ParquetSource("activity.parquet"))])

    from_frame = project.ingest("from_frame")
    from_file = project.ingest("activity")

    assert from_frame.version.data_digest == from_file.version.data_digest


# -- statistics ----------------------------------------------------------------------------------------------
def test_ingest_records_statistics_of_every_column(project: Any) -> None:
    fv = view(DataFrameSource(activity()))
    project.apply([fv])

    stats = project.ingest(fv).version.statistics

    spend = stats["spend"]  # 0, None, 3, 4.5, 6, 7.5
    assert (spend["count"], spend["nulls"]) == (5, 1)
    assert (spend["min"], spend["max"], spend["mean"]) == (0.0, 7.5, 4.2)
    assert spend["std"] == pytest.approx(np.std([0, 3, 4.5, 6, 7.5], ddof=1))
    assert spend["quantiles"]["p50"] == 4.5
    assert set(spend["quantiles"]) == {"p01", "p05", "p25", "p50", "p75", "p95", "p99"}
    orders = stats["orders"]  # 0, 1, None, 3, 4, 5
    assert (orders["count"], orders["nulls"], orders["min"], orders["max"]) == (5, 1, 0, 5)
    plan = stats["plan"]  # basic, pro, basic, None, basic, pro
    assert (plan["count"], plan["nulls"]) == (5, 1)
    assert plan["top"] == [["basic", 3], ["pro", 2]]
    assert stats["event_time"]["min"] == "2024-01-01T00:00:00+00:00"
    assert stats["customer_id"]["nulls"] == 0


# -- time zones ----------------------------------------------------------------------------------------------
def test_naive_event_times_are_taken_as_utc_with_a_warning(project: Any) -> None:
    frame = activity()
    frame["event_time"] = frame["event_time"].dt.tz_localize(None)
    fv = view(DataFrameSource(frame))
    project.apply([fv])

    with pytest.warns(NaiveTimestampWarning, match="event_time"):
        result = project.ingest(fv)

    assert result.version.event_time_min == datetime(2024, 1, 1, tzinfo=UTC)
    assert any("taken as UTC" in w for w in result.warnings)


def test_naive_timestamp_strings_are_taken_as_utc_with_a_warning(project: Any) -> None:
    frame = activity(3)
    frame["event_time"] = ["2024-01-01 00:00:00", "2024-01-02 00:00:00", "2024-01-03 06:00:00"]
    fv = view(DataFrameSource(frame))
    project.apply([fv])

    with pytest.warns(NaiveTimestampWarning, match="event_time"):
        result = project.ingest(fv)

    assert result.version.event_time_max == datetime(2024, 1, 3, 6, tzinfo=UTC)


def test_event_times_in_another_zone_are_stored_as_the_same_instant(project: Any) -> None:
    frame = activity(1)
    frame["event_time"] = pd.Series([pd.Timestamp("2024-01-01 05:30", tz="Asia/Kolkata")])
    fv = view(DataFrameSource(frame))
    project.apply([fv])

    with warnings.catch_warnings():
        warnings.simplefilter("error", NaiveTimestampWarning)
        result = project.ingest(fv)

    assert result.version.event_time_min == datetime(2024, 1, 1, 0, 0, tzinfo=UTC)


# -- bad input -----------------------------------------------------------------------------------------------
def refused(project: Any, frame: pd.DataFrame, schema: Any = None) -> ValidationError:
    fv = view(DataFrameSource(frame), schema=schema)
    project.apply([fv])
    with pytest.raises(ValidationError) as info:
        ingest_quietly(project, fv)
    return info.value


def test_a_column_missing_from_the_source_is_refused_naming_it(project: Any, project_dir: Path) -> None:
    path = project_dir / "activity.parquet"
    activity().to_parquet(path, index=False)
    project.apply([view(ParquetSource("activity.parquet"))])
    activity().drop(columns=["orders"]).to_parquet(path, index=False)

    with pytest.raises(ValidationError, match="orders") as info:
        project.ingest("activity")

    assert info.value.field == "orders"


def test_a_null_join_key_is_refused_with_its_row_number(project: Any) -> None:
    frame = activity()
    frame["customer_id"] = pd.array([1, 2, 3, None, 1, 2], dtype="Int64")

    error = refused(project, frame)

    assert (error.field, error.row) == ("customer_id", 3)
    assert "row 3" in str(error)


def test_a_null_event_time_is_refused_with_its_row_number(project: Any) -> None:
    frame = activity()
    frame.loc[4, "event_time"] = pd.NaT

    error = refused(project, frame)

    assert (error.field, error.row) == ("event_time", 4)
    assert "row 4" in str(error)


def test_a_non_numeric_string_in_a_float_column_is_refused_with_row_and_value(project: Any, project_dir: Path) -> None:
    (project_dir / "activity.csv").write_text(
        "customer_id,event_time,spend,orders,plan\n"
        "1,2024-01-01T00:00:00Z,1.5,3,pro\n"
        "2,2024-01-02T00:00:00Z,2.5,4,pro\n"
        "1,2024-01-03T00:00:00Z,lots,5,basic\n"
    )
    project.apply([view(CsvSource("activity.csv"))])

    with pytest.raises(ValidationError) as info:
        project.ingest("activity")

    assert (info.value.field, info.value.row) == ("spend", 2)
    assert "row 2" in str(info.value)
    assert "'lots'" in str(info.value)


def test_a_fractional_value_in_an_int64_column_is_refused_with_its_row(project: Any) -> None:
    frame = activity()
    frame["orders"] = [1.0, 2.0, 3.0, 4.0, 5.5, 6.0]

    error = refused(project, frame)

    assert (error.field, error.row) == ("orders", 4)
    assert "5.5" in str(error)


def test_float_join_keys_are_refused_naming_the_key(project: Any) -> None:
    frame = activity()
    frame["customer_id"] = frame["customer_id"].astype("float64")

    error = refused(project, frame)

    assert error.field == "customer_id"
    assert "integers or strings" in str(error)


def test_an_unparseable_timestamp_string_is_refused_with_its_row(project: Any) -> None:
    frame = activity(3)
    frame["event_time"] = ["2024-01-01T00:00:00Z", "yesterday", "2024-01-03T00:00:00Z"]

    error = refused(project, frame)

    assert (error.field, error.row) == ("event_time", 1)
    assert "'yesterday'" in str(error)


def test_an_empty_source_is_refused(project: Any) -> None:
    error = refused(project, activity().iloc[:0])

    assert "no rows" in str(error)


def test_a_refused_ingest_leaves_no_version_and_no_file_behind(project: Any) -> None:
    frame = activity()
    fv = view(DataFrameSource(frame))
    project.apply([fv])
    project.ingest(fv)
    before = store_files(project)
    frame.loc[5, "event_time"] = pd.NaT

    with pytest.raises(ValidationError):
        project.ingest(fv)

    assert [v.version for v in project.feature_versions("activity")] == [1]
    assert store_files(project) == before


def test_a_failed_write_leaves_no_temporary_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = OfflineStore(str(tmp_path / "offline"))
    table = pa.table({"k": [1, 2], "t": pa.array([0, 1], pa.timestamp("us", tz="UTC"))})

    def broken(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", broken)
    with pytest.raises(BackendError, match="disk full"):
        store.write_version("v", table, "0" * 64, "t")

    assert [p for p in (tmp_path / "offline").rglob("*") if p.is_file() or p.name.startswith("_tmp")] == []


def test_ingest_of_an_unregistered_view_is_not_found(project: Any) -> None:
    fv = view(DataFrameSource(activity()))

    with pytest.raises(NotFoundError, match="activity"):
        project.ingest(fv)
    with pytest.raises(NotFoundError, match="activity"):
        project.ingest("activity")


def test_ingest_of_a_view_that_differs_from_its_registered_definition_asks_to_apply(project: Any) -> None:
    project.apply([view(DataFrameSource(activity()), ttl=timedelta(days=1))])
    changed = view(DataFrameSource(activity()), ttl=timedelta(days=2))

    with pytest.raises(ValidationError, match="apply"):
        project.ingest(changed)

    assert project.feature_versions("activity") == []


# -- partitions ----------------------------------------------------------------------------------------------
def test_a_large_version_is_partitioned_by_month_and_reads_back_correctly(project_dir: Path) -> None:
    frame = activity(250, start=pd.Timestamp("2024-01-15", tz="UTC"), step=timedelta(hours=12))
    # a feature named like the partition column must still read as the feature, not the folder name
    frame["month"] = np.arange(250, dtype="float64")
    fv = view(DataFrameSource(frame), schema=[*SCHEMA, Field("month", "float64")])
    with keel.Project.open(project_dir, partition_rows=100) as project:
        project.apply([fv])

        version = project.ingest(fv).version
        out = project.historical_features(
            pd.DataFrame(
                {
                    "customer_id": [1, 2, 3, 1],
                    "ts": pd.to_datetime(
                        ["2024-02-01", "2024-03-10 13:00", "2024-06-01", "2024-01-01"],
                        utc=True,
                        format="ISO8601",
                    ),
                }
            ),
            ["activity:month", "activity:orders"],
        )

    assert sorted(f["path"] for f in version.files) == [
        "month=2024-01/part-0.parquet",
        "month=2024-02/part-0.parquet",
        "month=2024-03/part-0.parquet",
        "month=2024-04/part-0.parquet",
        "month=2024-05/part-0.parquet",
    ]
    assert sum(f["rows"] for f in version.files) == 250
    # row i is at Jan 15 + 12h*i for customer 1 + i % 3
    expected_rows = [33, 109, 248, None]
    assert [None if pd.isna(v) else int(v) for v in out["month"]] == expected_rows
    assert [None if pd.isna(v) else int(v) for v in out["orders"]] == expected_rows


def test_ties_in_a_partitioned_version_still_go_to_the_row_later_in_the_source(project_dir: Path) -> None:
    jan, feb = pd.Timestamp("2024-01-20", tz="UTC"), pd.Timestamp("2024-02-20", tz="UTC")
    times = [feb if i % 2 else jan for i in range(120)]  # the months interleave in the source
    frame = pd.DataFrame(
        {
            "customer_id": [1 + (i // 2) % 3 for i in range(120)],
            "event_time": pd.Series(times, dtype="datetime64[us, UTC]"),
            "spend": np.arange(120, dtype="float64"),
        }
    )
    fv = view(DataFrameSource(frame), schema=[Field("spend", "float64")])
    with keel.Project.open(project_dir, partition_rows=100) as project:
        project.apply([fv])
        version = project.ingest(fv).version

        out = project.historical_features(
            pd.DataFrame({"customer_id": [1, 2, 3, 1], "ts": [feb, feb, feb, jan]}), ["activity:spend"]
        )

    assert len(version.files) == 2
    assert version.has_duplicates
    # row i: customer 1 + (i // 2) % 3, Feb when i is odd; the last Feb rows are 115, 117, 119, the last Jan
    # row of customer 1 is 114
    assert out["spend"].tolist() == [115.0, 117.0, 119.0, 114.0]


def test_categorical_integer_keys_are_stored_as_integers(project: Any) -> None:
    frame = activity()
    frame["customer_id"] = frame["customer_id"].astype("category")
    fv = view(DataFrameSource(frame))
    project.apply([fv])

    version = project.ingest(fv).version

    assert version.columns["join_keys"] == {"customer_id": "int64"}
    assert values_at(project, "activity:orders", [1, 2, 3], T0 + timedelta(days=10)) == [3, 4, 5]


def test_identical_data_under_a_changed_definition_is_a_new_version_sharing_the_files(project: Any) -> None:
    frame = activity()
    first = view(DataFrameSource(frame), ttl=timedelta(days=1))
    project.apply([first])
    v1 = project.ingest(first).version
    second = view(DataFrameSource(frame), ttl=timedelta(days=2))
    project.apply([second])

    v2 = project.ingest(second).version

    assert (v1.version, v2.version) == (1, 2)
    assert v2.definition_version == 2
    assert v2.data_digest == v1.data_digest
    assert v2.location == v1.location


def test_a_crashed_writes_staging_folder_is_removed_by_the_next_write_and_a_live_one_kept(tmp_path: Path) -> None:
    import os
    import time

    from keel.offline import OfflineStore

    store = OfflineStore(str(tmp_path / "offline"))
    stale = tmp_path / "offline" / "activity" / "_tmp-crashed"
    live = tmp_path / "offline" / "activity" / "_tmp-running"
    for folder in (stale, live):
        (folder / "month=2024-01").mkdir(parents=True)
        (folder / "month=2024-01" / "part-0.parquet").write_bytes(b"half written")
    long_ago = time.time() - 7 * 3600
    for path in (stale, stale / "month=2024-01", stale / "month=2024-01" / "part-0.parquet"):
        os.utime(path, (long_ago, long_ago))
    os.utime(live, (long_ago, long_ago))  # an old folder still being written: a file inside is recent

    staging = store.staging("activity")

    assert not stale.exists() and live.exists()
    assert "_tmp-" in staging and store.sweep_staging("activity") == []
    assert store.sweep_staging("never-written") == []
