"""The local engine (DuckDB): statistics, duplicate counts and the point-in-time join, on small tables."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from keel.engines import ROW, TS, Engine, LocalEngine, PointInTimeSource
from keel.errors import ValidationError

UTC_US = pa.timestamp("us", tz="UTC")
T0 = datetime(2024, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


def at(*hours: float) -> pa.Array:
    return pa.array([T0 + h * HOUR for h in hours], UTC_US)


@pytest.fixture
def engine() -> LocalEngine:
    return LocalEngine(threads=2)


def test_the_local_engine_implements_the_engine_interface(engine: LocalEngine) -> None:
    assert isinstance(engine, Engine)
    assert engine.name == "local"


# -- statistics ----------------------------------------------------------------------------------------------
def test_column_statistics_of_numbers_count_nulls_and_describe_the_rest(engine: LocalEngine) -> None:
    table = pa.table({"n": pa.array([1, 2, None, 4, 2**60], pa.int64()), "x": [0.5, None, 1.5, 2.5, 3.5]})

    stats = engine.column_statistics(table, {"n": "int64", "x": "float64"})

    n, x = stats["n"], stats["x"]
    assert (n["count"], n["nulls"], n["min"], n["max"]) == (4, 1, 1, 2**60)  # exact, not rounded to a float
    assert isinstance(n["max"], int)
    assert (x["count"], x["nulls"], x["min"], x["max"], x["mean"]) == (4, 1, 0.5, 3.5, 2.0)
    assert x["std"] == pytest.approx(1.2909944487358056)
    assert x["quantiles"]["p50"] == 2.0
    assert x["quantiles"]["p25"] == 1.25
    assert list(x["quantiles"]) == ["p01", "p05", "p25", "p50", "p75", "p95", "p99"]
    assert "distinct" not in x  # a float's distinct count tells nothing; its quantiles describe it
    assert n["distinct"] == 4


def test_column_statistics_are_json_safe_with_infinities_and_all_null_columns(engine: LocalEngine) -> None:
    table = pa.table({"x": [1.0, float("inf"), float("-inf")], "empty": pa.array([None, None, None], pa.float64())})

    stats = engine.column_statistics(table, {"x": "float64", "empty": "float64"})

    json.dumps(stats, allow_nan=False)  # raises on NaN or infinity
    assert (stats["x"]["min"], stats["x"]["max"]) == ("-inf", "inf")
    assert stats["x"]["std"] is None  # NaN becomes None
    empty = stats["empty"]
    assert (empty["count"], empty["nulls"], empty["min"], empty["mean"]) == (0, 3, None, None)
    assert set(empty["quantiles"].values()) == {None}


def test_column_statistics_of_strings_give_top_categories_most_frequent_first(engine: LocalEngine) -> None:
    values = ["b", "a", "b", None, "c", "a", "b", *[f"rare{i:02d}" for i in range(30)]]
    table = pa.table({"s": values})

    stats = engine.column_statistics(table, {"s": "string"})["s"]

    assert (stats["count"], stats["nulls"]) == (36, 1)
    assert stats["top"][:3] == [["b", 3], ["a", 2], ["c", 1]]  # ties ordered by value
    assert len(stats["top"]) == 20
    assert stats["distinct"] == pytest.approx(33, abs=2)  # approximate by design


def test_column_statistics_of_bools_timestamps_and_lists(engine: LocalEngine) -> None:
    table = pa.table(
        {
            "b": [True, False, True, None],
            "t": pa.array([T0, None, T0 + HOUR, T0 - HOUR], UTC_US),
            "v": pa.array([[1.0, 2.0], [3.0], None, [4.0, 5.0, 6.0]]),
        }
    )

    stats = engine.column_statistics(table, {"b": "bool", "t": "timestamp", "v": "list[float64]"})

    assert stats["b"]["mean"] == pytest.approx(2 / 3)
    assert stats["b"]["nulls"] == 1
    assert (stats["t"]["min"], stats["t"]["max"]) == (
        "2023-12-31T23:00:00+00:00",
        "2024-01-01T01:00:00+00:00",
    )
    assert stats["v"]["mean_length"] == 2.0
    assert stats["v"]["nulls"] == 1


def test_count_duplicates_counts_rows_sharing_keys_and_time_with_an_earlier_row(engine: LocalEngine) -> None:
    table = pa.table(
        {
            "k1": [1, 1, 1, 1, 2, 2],
            "k2": ["a", "a", "a", "b", "a", "a"],
            "t": at(0, 0, 0, 0, 0, 1),
        }
    )

    assert engine.count_duplicates(table, ["k1", "k2"], "t") == 2
    assert engine.count_duplicates(table, ["k1"], "t") == 3
    assert engine.count_duplicates(table.slice(3), ["k1", "k2"], "t") == 0


# -- point-in-time join --------------------------------------------------------------------------------------
def write(path: Path, table: pa.Table) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return str(path)


def entity_table(keys: list[int], hours: list[float], rows: list[int] | None = None) -> pa.Table:
    return pa.table(
        {
            ROW: pa.array(rows if rows is not None else range(len(keys)), pa.int64()),
            TS: at(*hours),
            "k": pa.array(keys, pa.int64()),
        }
    )


def source(paths: list[str], **overrides: object) -> PointInTimeSource:
    fields: dict[str, object] = {
        "view": "v",
        "paths": tuple(paths),
        "join_keys": ("k",),
        "timestamp": "t",
        "created_timestamp": None,
        "features": (("x", "x"),),
        "ttl": None,
        "deduplicate": False,
    }
    fields.update(overrides)
    return PointInTimeSource(**fields)  # type: ignore[arg-type]


def test_point_in_time_join_takes_the_latest_value_at_or_before_each_row(engine: LocalEngine, tmp_path: Path) -> None:
    path = write(tmp_path / "v.parquet", pa.table({"k": [1, 1, 2], "t": at(0, 2, 1), "x": [10.0, 12.0, 21.0]}))
    entities = entity_table([1, 1, 1, 2, 3], [-1, 0, 1.5, 5, 5])

    out = engine.point_in_time_join(entities, [source([path])])

    assert out.column_names == [ROW, "x"]
    assert out.column(ROW).to_pylist() == [0, 1, 2, 3, 4]
    assert out.column("x").to_pylist() == [None, 10.0, 10.0, 21.0, None]


def test_point_in_time_join_honours_the_ttl_inclusively(engine: LocalEngine, tmp_path: Path) -> None:
    path = write(tmp_path / "v.parquet", pa.table({"k": [1], "t": at(0), "x": [1.0]}))
    entities = entity_table([1, 1], [2, 2.0001])

    out = engine.point_in_time_join(entities, [source([path], ttl=2 * HOUR)])

    assert out.column("x").to_pylist() == [1.0, None]


def test_a_version_written_before_sequence_columns_breaks_ties_by_created_time_then_by_position(
    engine: LocalEngine, tmp_path: Path
) -> None:
    created = pa.array([T0, T0 + HOUR, T0 + HOUR, None, None, None], UTC_US)
    table = pa.table(
        {"k": [1, 1, 1, 1, 2, 2], "t": at(0, 0, 0, 0, 0, 0), "c": created, "x": [1.0, 2.0, 3.0, 4.0, 5, 6]}
    )
    path = write(tmp_path / "v.parquet", table)
    entities = entity_table([1, 2], [1, 1])

    legacy = source([path], created_timestamp="c", deduplicate=True, sequence=None)

    out = engine.point_in_time_join(entities, [legacy])

    # customer 1: latest created wins, the later of two equal ones; a missing created time loses.
    # customer 2: no created time at all: the row later in the source wins.
    assert out.column("x").to_pylist() == [3.0, 6.0]


def test_point_in_time_join_returns_rows_in_entity_row_order(engine: LocalEngine, tmp_path: Path) -> None:
    path = write(tmp_path / "v.parquet", pa.table({"k": [1, 2], "t": at(0, 0), "x": [1.0, 2.0]}))
    entities = entity_table([2, 1, 2], [1, 1, 1], rows=[2, 0, 1])

    out = engine.point_in_time_join(entities, [source([path])])

    assert out.column(ROW).to_pylist() == [0, 1, 2]
    assert out.column("x").to_pylist() == [1.0, 2.0, 2.0]


def test_point_in_time_join_of_two_sources_renames_outputs_and_applies_each_ttl(
    engine: LocalEngine, tmp_path: Path
) -> None:
    a = write(tmp_path / "a.parquet", pa.table({"k": [1], "t": at(0), "x": [1.0]}))
    b = write(tmp_path / "b.parquet", pa.table({"k": [1], "when": at(0), "x": [2.0], "y": ["b"]}))
    entities = entity_table([1], [10])

    out = engine.point_in_time_join(
        entities,
        [
            source([a], features=(("x", "a__x"),), ttl=HOUR),
            source([b], view="b", timestamp="when", features=(("x", "b__x"), ("y", "y"))),
        ],
    )

    assert out.to_pydict() == {ROW: [0], "a__x": [None], "b__x": [2.0], "y": ["b"]}


def test_point_in_time_join_reads_partition_folders_without_taking_their_names_as_columns(
    engine: LocalEngine, tmp_path: Path
) -> None:
    jan = write(tmp_path / "month=2024-01" / "part-0.parquet", pa.table({"k": [1], "t": at(0), "month": [1.5]}))
    feb = write(tmp_path / "month=2024-02" / "part-0.parquet", pa.table({"k": [1], "t": at(800), "month": [2.5]}))
    entities = entity_table([1, 1], [1, 900])

    out = engine.point_in_time_join(entities, [source([jan, feb], features=(("month", "month"),))])

    assert out.column("month").to_pylist() == [1.5, 2.5]


def test_point_in_time_join_of_an_empty_entity_table_is_empty(engine: LocalEngine, tmp_path: Path) -> None:
    path = write(tmp_path / "v.parquet", pa.table({"k": [1], "t": at(0), "x": [1.0]}))

    out = engine.point_in_time_join(entity_table([], []), [source([path])])

    assert out.num_rows == 0
    assert out.column_names == [ROW, "x"]


def test_point_in_time_join_with_multi_column_keys_matches_every_key(engine: LocalEngine, tmp_path: Path) -> None:
    table = pa.table({"k": [1, 1], "s": ["a", "b"], "t": at(0, 0), "x": [1.0, 2.0]})
    path = write(tmp_path / "v.parquet", table)
    entities = entity_table([1, 1, 2], [1, 1, 1]).append_column("s", pa.array(["b", "c", "a"]))

    out = engine.point_in_time_join(entities, [source([path], join_keys=("k", "s"))])

    assert out.column("x").to_pylist() == [2.0, None, None]


def test_point_in_time_join_on_a_column_the_files_lack_is_a_validation_error(
    engine: LocalEngine, tmp_path: Path
) -> None:
    path = write(tmp_path / "v.parquet", pa.table({"k": [1], "t": at(0), "x": [1.0]}))

    with pytest.raises(
        ValidationError, match=r"local engine \(DuckDB\): point-in-time join of feature view 'v' failed: "
    ):
        engine.point_in_time_join(entity_table([1], [1]), [source([path], features=(("nope", "nope"),))])
