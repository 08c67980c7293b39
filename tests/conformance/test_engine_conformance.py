"""One specification of the compute engine, run on every engine against a plain-Python oracle.

Every engine built by :func:`keel._backends.open_engine` joins :data:`ENGINES` with one line and must give,
operation by operation, exactly what :mod:`_engine_oracle` gives on the same Parquet files — hence exactly what
every other engine gives. The operations that write (ingest, the join of an entity table at rest) are specified
in ``test_engine_writes_conformance.py`` the same way.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import _engine_oracle as oracle
import pyarrow as pa
import pytest
from _engines import ENGINES, HOUR, T0, UTC_US, at, quantiles_match, write

from keel.engines import ROW, TS, Engine, EngineBase, PointInTimeSource
from keel.errors import BackendError, ValidationError


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Engine:
    """The engine the project configuration ``engine: <name>`` builds."""
    built: Engine = request.getfixturevalue(f"{request.param}_engine")
    return built


def source(paths: list[str], **overrides: Any) -> PointInTimeSource:
    fields: dict[str, Any] = {
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
    return PointInTimeSource(**fields)


def entities(keys: dict[str, list[Any]], hours: list[float], rows: list[int] | None = None) -> pa.Table:
    n = len(hours)
    return pa.table({ROW: pa.array(rows if rows is not None else range(n), pa.int64()), TS: at(*hours), **keys})


def joined(engine: Engine, table: pa.Table, sources: list[PointInTimeSource]) -> list[dict[str, Any]]:
    """The engine's join, checked against the oracle's, as rows."""
    out = engine.point_in_time_join(table, sources)
    assert out.column_names == [ROW, *(name for src in sources for _, name in src.features)]
    rows: list[dict[str, Any]] = out.to_pylist()
    assert rows == oracle.point_in_time_join(table, sources)
    return rows


def test_the_engine_implements_the_interface_and_translates_errors_in_its_base(engine: Engine) -> None:
    assert isinstance(engine, Engine)
    assert isinstance(engine, EngineBase)


# -- point-in-time join ----------------------------------------------------------------------------------------
def test_each_row_gets_the_latest_value_at_or_before_its_time(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path / "v.parquet", {"k": [1, 1, 2], "t": at(0, 2, 1), "x": [10.0, 12.0, 21.0]})
    table = entities({"k": [1, 1, 1, 1, 2, 3]}, [-1, 0, 1.5, 2, 5, 5])

    rows = joined(engine, table, [source([path])])

    # before any feature row, exactly at one, between two, exactly at the later one; an unseen entity
    assert [r["x"] for r in rows] == [None, 10.0, 10.0, 12.0, 21.0, None]


def test_the_ttl_keeps_a_value_exactly_ttl_old_and_drops_an_older_one(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path / "v.parquet", {"k": [1, 1], "t": at(0, 10), "x": [1.0, 2.0]})
    table = entities({"k": [1, 1, 1, 1]}, [2, 2.0001, 12, 13])

    rows = joined(engine, table, [source([path], ttl=2 * HOUR)])

    assert [r["x"] for r in rows] == [1.0, None, 2.0, None]


def test_a_ttl_longer_than_the_calendar_is_no_ttl(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path / "v.parquet", {"k": [1], "t": at(0), "x": [1.0]})

    rows = joined(engine, entities({"k": [1]}, [24 * 365 * 50]), [source([path], ttl=timedelta(days=3_650_000))])

    assert rows == [{ROW: 0, "x": 1.0}]


def test_a_null_feature_is_the_latest_value_and_hides_older_ones(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path / "v.parquet", {"k": [1, 1], "t": at(0, 1), "x": pa.array([5.0, None])})

    rows = joined(engine, entities({"k": [1, 1]}, [0.5, 1.5]), [source([path])])

    assert [r["x"] for r in rows] == [5.0, None]


def test_ties_on_event_time_go_to_the_latest_created_time_then_to_the_row_written_last(
    engine: Engine, tmp_path: Path
) -> None:
    created = pa.array([T0, T0 + HOUR, T0 + HOUR, None, None, None], UTC_US)
    first = write(
        tmp_path / "a.parquet",
        {"k": [1, 1, 1, 1, 2, 2], "t": at(0, 0, 0, 0, 0, 0), "c": created, "x": [1.0, 2, 3, 4, 5, 6]},
        first=1,
    )
    delta = write(tmp_path / "b.parquet", {"k": [3], "t": at(0), "c": at(None), "x": [7.0]}, first=7)
    earlier = write(tmp_path / "0.parquet", {"k": [3], "t": at(0), "c": at(None), "x": [8.0]}, first=0)

    rows = joined(
        engine,
        entities({"k": [1, 2, 3]}, [1, 1, 1]),
        # the delta is listed after its parent: it was written later, whatever its file name
        [source([earlier, first, delta], created_timestamp="c", deduplicate=True)],
    )

    # 1: the latest created time, the later of two equal ones, a missing one loses; 2: no created time, the
    # row written last (the larger sequence number); 3: the delta's row, written after its parent
    assert [r["x"] for r in rows] == [3.0, 6.0, 7.0]


def test_composite_keys_match_on_every_key(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path / "v.parquet", {"k": [1, 1, 2], "s": ["a", "b", "a"], "t": at(0, 0, 0), "x": [1.0, 2.0, 3.0]})
    table = entities({"k": [1, 1, 2, 2], "s": ["b", "c", "a", "b"]}, [1, 1, 1, 1])

    rows = joined(engine, table, [source([path], join_keys=("k", "s"))])

    assert [r["x"] for r in rows] == [2.0, None, 3.0, None]


def test_rows_come_back_in_entity_row_order_whatever_the_input_order(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path / "v.parquet", {"k": [1, 2], "t": at(0, 0), "x": [1.0, 2.0]})

    rows = joined(engine, entities({"k": [2, 1, 2]}, [1, 1, 1], rows=[2, 0, 1]), [source([path])])

    assert rows == [{ROW: 0, "x": 1.0}, {ROW: 1, "x": 2.0}, {ROW: 2, "x": 2.0}]


def test_several_sources_each_apply_their_own_keys_ttl_and_output_names(engine: Engine, tmp_path: Path) -> None:
    a = write(tmp_path / "a.parquet", {"k": [1], "t": at(0), "x": [1.0]})
    b = write(tmp_path / "b.parquet", {"s": ["p"], "when": at(0), "x": [2.0], "y": ["b"]})

    rows = joined(
        engine,
        entities({"k": [1, 1], "s": ["p", "q"]}, [0.5, 10]),
        [
            source([a], features=(("x", "a__x"),), ttl=HOUR),
            source([b], view="b", join_keys=("s",), timestamp="when", features=(("x", "b__x"), ("y", "y"))),
        ],
    )

    assert rows == [{ROW: 0, "a__x": 1.0, "b__x": 2.0, "y": "b"}, {ROW: 1, "a__x": None, "b__x": None, "y": None}]


def test_every_dtype_comes_back_as_stored(engine: Engine, tmp_path: Path) -> None:
    columns = {
        "k": ["a", "b"],
        "t": at(0, 0),
        "f": [1.5, None],
        "i": pa.array([2**62, None], pa.int64()),
        "b": [True, None],
        "s": ["ü", None],
        "ts": at(-5, None),
        "l": pa.array([[1.0, 2.0], None], pa.list_(pa.float64())),
    }
    path = write(tmp_path / "v.parquet", columns)
    features = tuple((c, c) for c in ("f", "i", "b", "s", "ts", "l"))

    rows = joined(engine, entities({"k": ["a", "b"]}, [1, 1]), [source([path], features=features)])

    assert rows[0] == {ROW: 0, "f": 1.5, "i": 2**62, "b": True, "s": "ü", "ts": T0 - 5 * HOUR, "l": [1.0, 2.0]}


def test_partition_folders_are_not_read_as_columns(engine: Engine, tmp_path: Path) -> None:
    jan = write(tmp_path / "month=2024-01" / "part-0.parquet", {"k": [1], "t": at(0), "month": [1.5]})
    feb = write(tmp_path / "month=2024-02" / "part-0.parquet", {"k": [1], "t": at(800), "month": [2.5]})

    rows = joined(engine, entities({"k": [1, 1]}, [1, 900]), [source([jan, feb], features=(("month", "month"),))])

    assert [r["month"] for r in rows] == [1.5, 2.5]


def test_an_empty_entity_table_gives_an_empty_result_with_every_column(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path / "v.parquet", {"k": [1], "t": at(0), "x": [1.0]})

    assert joined(engine, entities({"k": pa.array([], pa.int64())}, []), [source([path])]) == []


@pytest.mark.parametrize("seed", range(8))
def test_random_data_joins_exactly_as_the_oracle_does(engine: Engine, tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    n = 80
    keys = {"k": [rng.randrange(4) for _ in range(n)], "s": [rng.choice("ab") for _ in range(n)]}
    hours = [rng.randrange(12) for _ in range(n)]  # few distinct times: ties on (keys, time) happen
    created = [rng.choice([None, 0, 1, 2]) for _ in range(n)]
    features = {
        "x": [rng.choice([None, rng.random()]) for _ in range(n)],
        "label": [rng.choice([None, "p", "q"]) for _ in range(n)],
    }
    cuts = sorted(rng.sample(range(1, n), 2))
    paths = [
        write(
            tmp_path / f"part-{i}.parquet",
            {
                **{c: v[lo:hi] for c, v in keys.items()},
                "t": at(*hours[lo:hi]),
                "c": at(*created[lo:hi]),
                **{c: v[lo:hi] for c, v in features.items()},
            },
            first=lo,
        )
        for i, (lo, hi) in enumerate(zip([0, *cuts], [*cuts, n], strict=True))
    ]
    src = source(
        paths,
        join_keys=("k", "s"),
        created_timestamp="c",
        features=(("x", "x"), ("label", "label")),
        ttl=rng.choice([None, 3 * HOUR]),
        deduplicate=True,
    )
    m = 60
    table = entities(
        {"k": [rng.randrange(5) for _ in range(m)], "s": [rng.choice("ab") for _ in range(m)]},
        [rng.choice([rng.randrange(-2, 15), rng.uniform(-2, 15)]) for _ in range(m)],
        rows=rng.sample(range(m), m),
    )

    joined(engine, table, [src])


# -- latest value per entity -----------------------------------------------------------------------------------
def latest(engine: Engine, src: PointInTimeSource, *, start: datetime | None, end: datetime) -> list[dict[str, Any]]:
    """The engine's latest rows, sorted by key, checked against the oracle's."""
    batches = list(engine.latest_per_entity(src, start=start, end=end, batch_rows=2))
    assert all(0 < b.num_rows <= 2 for b in batches)  # bounded batches, none empty
    got = [row for batch in batches for row in batch.to_pylist()]
    rows = sorted(got, key=lambda r: tuple(r[k] for k in src.join_keys))
    assert rows == oracle.latest_per_entity(src, start=start, end=end)
    return rows


@pytest.fixture
def history(tmp_path: Path) -> PointInTimeSource:
    path = write(
        tmp_path / "v.parquet",
        {
            "k": [1, 1, 1, 2, 2, 3, 3],
            "t": at(0, 5, 10, 5, 5, 1, 2),
            "c": at(0, 0, 0, 1, 2, None, None),
            "x": [1.0, 5.0, 10.0, 25.0, 26.0, None, 32.0],
        },
        first=0,
    )
    return source([path], created_timestamp="c", deduplicate=True)


def test_latest_per_entity_takes_each_entitys_last_row_up_to_the_end_inclusive(
    engine: Engine, history: PointInTimeSource
) -> None:
    rows = latest(engine, history, start=None, end=T0 + 5 * HOUR)

    assert rows == [
        {"k": 1, "t": T0 + 5 * HOUR, "x": 5.0},
        {"k": 2, "t": T0 + 5 * HOUR, "x": 26.0},  # the later created time wins the tie
        {"k": 3, "t": T0 + 2 * HOUR, "x": 32.0},
    ]


def test_latest_per_entity_excludes_the_window_start_and_entities_without_rows_in_it(
    engine: Engine, history: PointInTimeSource
) -> None:
    rows = latest(engine, history, start=T0 + 2 * HOUR, end=T0 + 10 * HOUR)

    assert rows == [{"k": 1, "t": T0 + 10 * HOUR, "x": 10.0}, {"k": 2, "t": T0 + 5 * HOUR, "x": 26.0}]


def test_latest_per_entity_of_an_empty_window_is_empty(engine: Engine, history: PointInTimeSource) -> None:
    assert latest(engine, history, start=T0 + 10 * HOUR, end=T0 + 20 * HOUR) == []
    assert latest(engine, history, start=None, end=T0 - HOUR) == []


def test_latest_per_entity_takes_naive_bounds_as_utc(engine: Engine, history: PointInTimeSource) -> None:
    naive = latest(engine, history, start=None, end=(T0 + 5 * HOUR).replace(tzinfo=None))

    assert naive == latest(engine, history, start=None, end=T0 + 5 * HOUR)


# -- statistics and duplicates ---------------------------------------------------------------------------------
def test_numeric_statistics_match_the_oracle(engine: Engine) -> None:
    rng = random.Random(7)
    ints = [rng.choice([None, rng.randrange(-1000, 1000)]) for _ in range(200)]
    floats = [rng.choice([None, rng.gauss(0, 10)]) for _ in range(200)]

    stats = engine.column_statistics(
        pa.table({"i": pa.array(ints, pa.int64()), "f": floats}), {"i": "int64", "f": "float64"}
    )

    for name, values in (("i", ints), ("f", floats)):
        expected = oracle.numeric_statistics(values)
        got = stats[name]
        assert got["dtype"] == {"i": "int64", "f": "float64"}[name]
        assert (got["count"], got["nulls"], got["min"], got["max"]) == (
            expected["count"],
            expected["nulls"],
            expected["min"],
            expected["max"],
        )
        assert got["mean"] == pytest.approx(expected["mean"], rel=1e-12)
        assert got["std"] == pytest.approx(expected["std"], rel=1e-12)
        assert quantiles_match(engine, got["quantiles"], [v for v in values if v is not None])
    assert abs(stats["i"]["distinct"] - len({v for v in ints if v is not None})) <= 3  # approximate by design
    assert "distinct" not in stats["f"]
    assert isinstance(stats["i"]["min"], int)


def test_statistics_of_other_dtypes_match_the_oracle(engine: Engine) -> None:
    words = [f"w{i % 7}" if i % 5 else None for i in range(60)] + [f"rare{i:02d}" for i in range(30)]
    strings = pa.table({"s": words})
    other = pa.table(
        {
            "b": [True, False, True, None] * 3,
            "t": pa.concat_arrays([at(3, None, -1, 7)] * 3),
            "l": pa.array([[1.0, 2.0], [3.0], None, [4.0, 5.0, 6.0]] * 3),
        }
    )

    s = engine.column_statistics(strings, {"s": "string"})["s"]
    rest = engine.column_statistics(other, {"b": "bool", "t": "timestamp", "l": "list[float64]"})

    assert (s["count"], s["nulls"], s["top"]) == (78, 12, oracle.top_categories(words))
    assert rest["b"] == {"dtype": "bool", "count": 9, "nulls": 3, "mean": pytest.approx(2 / 3)}
    assert rest["t"] == {
        "dtype": "timestamp",
        "count": 9,
        "nulls": 3,
        "min": (T0 - HOUR).isoformat(),
        "max": (T0 + 7 * HOUR).isoformat(),
    }
    assert rest["l"] == {"dtype": "list[float64]", "count": 9, "nulls": 3, "mean_length": 2.0}


def test_statistics_of_an_empty_table_count_nothing(engine: Engine) -> None:
    stats = engine.column_statistics(pa.table({"x": pa.array([], pa.float64())}), {"x": "float64"})

    assert (stats["x"]["count"], stats["x"]["nulls"], stats["x"]["min"], stats["x"]["mean"]) == (0, 0, None, None)


@pytest.mark.parametrize("seed", range(4))
def test_count_duplicates_matches_the_oracle(engine: Engine, seed: int) -> None:
    rng = random.Random(seed)
    n = 300
    table = pa.table(
        {
            "k": [rng.randrange(10) for _ in range(n)],
            "s": [rng.choice(["a", "b", None]) for _ in range(n)],
            "t": at(*(rng.randrange(20) for _ in range(n))),
        }
    )

    assert engine.count_duplicates(table, ["k", "s"], "t") == oracle.count_duplicates(table, ["k", "s"], "t")
    assert engine.count_duplicates(table, ["k"], "t") == oracle.count_duplicates(table, ["k"], "t")


# -- failures: the same Keel error, with the same message, on every engine --------------------------------------
def _prefix(engine: Engine, operation: str) -> str:
    description = engine.description if isinstance(engine, EngineBase) else engine.name
    return f"{description}: {operation} failed: "


def test_a_missing_file_is_a_backend_error_naming_the_engine_the_operation_and_the_view(
    engine: Engine, tmp_path: Path
) -> None:
    missing = source([str(tmp_path / "gone.parquet")])

    with pytest.raises(BackendError) as join:
        engine.point_in_time_join(entities({"k": [1]}, [1]), [missing])
    with pytest.raises(BackendError) as last:
        list(engine.latest_per_entity(missing, start=None, end=T0))

    assert str(join.value).startswith(_prefix(engine, "point-in-time join of feature view 'v'"))
    assert str(last.value).startswith(_prefix(engine, "latest values of feature view 'v'"))
    assert "gone.parquet" in str(join.value)
    assert join.value.__cause__ is not None and last.value.__cause__ is not None


def test_a_file_that_is_not_parquet_is_a_backend_error(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "v.parquet"
    path.write_bytes(b"not parquet" * 100)
    good = write(tmp_path / "w.parquet", {"k": [1], "t": at(0), "x": [1.0]})

    with pytest.raises(BackendError) as err:
        engine.point_in_time_join(entities({"k": [1]}, [1]), [source([good], view="w"), source([str(path)])])

    assert str(err.value).startswith(_prefix(engine, "point-in-time join of feature views 'w', 'v'"))


def test_a_column_the_data_lacks_is_a_validation_error_on_every_operation(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path / "v.parquet", {"k": [1], "t": at(0), "x": [1.0]})
    absent = source([path], features=(("nope", "nope"),))
    table = pa.table({"k": [1], "t": at(0)})

    with pytest.raises(ValidationError) as join:
        engine.point_in_time_join(entities({"k": [1]}, [1]), [absent])
    with pytest.raises(ValidationError) as last:
        list(engine.latest_per_entity(absent, start=None, end=T0))
    with pytest.raises(ValidationError) as stats:
        engine.column_statistics(table, {"nope": "float64"})
    with pytest.raises(ValidationError) as duplicates:
        engine.count_duplicates(table, ["nope"], "t")

    assert str(join.value).startswith(_prefix(engine, "point-in-time join of feature view 'v'"))
    assert str(last.value).startswith(_prefix(engine, "latest values of feature view 'v'"))
    assert str(stats.value).startswith(_prefix(engine, "statistics of columns 'nope'"))
    assert str(duplicates.value).startswith(_prefix(engine, "counting duplicates of ('nope', 't')"))
