"""The engine operations that read data by reference and write files: ingest, the point-in-time join of an entity
table at rest, and the comparison of two versions — one specification, run on every engine.

What one engine writes, every engine writes: the same rows (values and nulls, row for row once sorted by the
sequence column), the same sequence numbers, the same digest, the same errors with the same messages.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import _engine_oracle as oracle
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
from _engines import ENGINES, HOUR, T0, UTC_US, at, write

from keel.engines import ROW, SEQ, TS, Engine, Files, Normalisation, PointInTimeSource
from keel.engines._digest import table_digest
from keel.errors import ValidationError


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Engine:
    built: Engine = request.getfixturevalue(f"{request.param}_engine")
    return built


RULES = Normalisation(
    view="activity",
    join_keys=("k",),
    timestamp="t",
    created_timestamp=None,
    features=(("x", "float64"), ("n", "int64"), ("plan", "string")),
    source="parquet source 'activity'",
)
DTYPES = {"k": "int64", "t": "timestamp", "x": "float64", "n": "int64", "plan": "string"}


def read_back(folder: Path) -> pa.Table:
    """Every Parquet file under ``folder`` (not its partition names), rows in sequence order."""
    files = sorted(p for p in folder.rglob("*.parquet"))
    tables = [pq.read_table(p, partitioning=None) for p in files]
    return pa.concat_tables(tables).sort_by(SEQ)


def expected_rows() -> list[dict[str, Any]]:
    return [
        {"k": 1, "t": T0, "x": 1.5, "n": 10, "plan": "basic", SEQ: 100},
        {"k": 2, "t": T0 + HOUR, "x": None, "n": None, "plan": None, SEQ: 101},
        {"k": 1, "t": T0 + 2 * HOUR, "x": -0.5, "n": 12, "plan": "pro", SEQ: 102},
        {"k": 3, "t": T0 + 2 * HOUR, "x": 4.0, "n": 13, "plan": "basic", SEQ: 103},
        {"k": 1, "t": T0 + 2 * HOUR, "x": 5.0, "n": 14, "plan": "pro", SEQ: 104},
    ]


def source_files(tmp_path: Path) -> Files:
    """The rows of :func:`expected_rows` as they arrive: two files, int32 keys, a zone other than UTC, NaN."""
    plus2 = timezone(timedelta(hours=2))
    first = pa.table(
        {
            "plan": ["basic", None],
            "k": pa.array([1, 2], pa.int32()),
            "t": pa.array([T0.astimezone(plus2), (T0 + HOUR).astimezone(plus2)], pa.timestamp("ms", tz="+02:00")),
            "x": [1.5, float("nan")],
            "n": pa.array([10, None], pa.int32()),
            "ignored": ["a", "b"],
        }
    )
    second = pa.table(
        {
            "plan": ["pro", "basic", "pro"],
            "k": pa.array([1, 3, 1], pa.int32()),
            "t": pa.array([T0 + 2 * HOUR] * 3, pa.timestamp("ms", tz="+02:00")),
            "x": [-0.5, 4.0, 5.0],
            "n": pa.array([12, 13, 14], pa.int32()),
            "ignored": ["c", "d", "e"],
        }
    )
    paths = []
    for name, table in (("b-first.parquet", first), ("a-second.parquet", second)):
        pq.write_table(table, tmp_path / name)
        paths.append(str(tmp_path / name))
    # listed out of name order: the order given is the source's order
    return Files(tuple(paths), describe="parquet source 'activity'")


def test_ingest_normalises_numbers_rows_in_source_order_and_describes_the_version(
    engine: Engine, tmp_path: Path
) -> None:
    into = tmp_path / "version"

    got = engine.ingest(source_files(tmp_path), RULES, str(into), first_sequence=100)

    table = read_back(into)
    assert table.column_names == ["k", "t", "x", "n", "plan", SEQ]
    assert table.schema.field("t").type == UTC_US and table.schema.field("k").type == pa.int64()
    assert table.to_pylist() == expected_rows()
    assert got.rows == 5 and got.written is not None and got.written.rows == 5
    assert got.key_types == {"k": "int64"}
    assert (got.event_time_min, got.event_time_max) == (T0, T0 + 2 * HOUR)
    assert got.duplicates == 1  # (1, T0+2h) twice
    assert got.digest == table_digest(table, DTYPES)
    assert got.statistics["x"]["count"] == 4 and got.statistics["x"]["nulls"] == 1
    assert got.statistics["plan"]["top"] == [["basic", 2], ["pro", 2]]
    assert got.statistics["t"]["min"] == T0.isoformat()
    assert sorted(f.path for f in got.written.files) == sorted(
        str(p.relative_to(into)) for p in into.rglob("*.parquet")
    )
    assert got.warnings == ()


def test_the_written_files_are_listed_with_their_rows_and_hashes(engine: Engine, tmp_path: Path) -> None:
    import hashlib

    into = tmp_path / "version"

    got = engine.ingest(source_files(tmp_path), RULES, str(into))

    assert got.written is not None
    for f in got.written.files:
        data = (into / f.path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == f.sha256
        assert pq.ParquetFile(into / f.path).metadata.num_rows == f.rows


def test_a_csv_an_arrow_table_and_parquet_of_the_same_rows_are_the_same_version(engine: Engine, tmp_path: Path) -> None:
    rows = [r.copy() for r in expected_rows()]
    for r in rows:
        del r[SEQ]
    table = pa.Table.from_pylist(rows)
    csv = tmp_path / "activity.csv"
    pcsv.write_csv(
        table.set_column(1, "t", pa.array([r["t"].isoformat() for r in rows])),
        csv,
        write_options=pcsv.WriteOptions(delimiter=";"),
    )

    from_parquet = engine.ingest(source_files(tmp_path), RULES, str(tmp_path / "a"))
    from_csv = engine.ingest(
        Files((str(csv),), format="csv", options=(("delimiter", ";"),)), RULES, str(tmp_path / "b")
    )
    from_arrow = engine.ingest(table, RULES, str(tmp_path / "c"))

    assert from_parquet.digest == from_csv.digest == from_arrow.digest
    assert read_back(tmp_path / "a").equals(read_back(tmp_path / "b"))
    assert read_back(tmp_path / "a").equals(read_back(tmp_path / "c"))


def test_the_digest_does_not_depend_on_row_order_but_the_sequence_does(engine: Engine, tmp_path: Path) -> None:
    rows = [{k: v for k, v in r.items() if k != SEQ} for r in expected_rows()]
    shuffled = rows[:]
    random.Random(3).shuffle(shuffled)

    a = engine.ingest(pa.Table.from_pylist(rows), RULES, str(tmp_path / "a"))
    b = engine.ingest(pa.Table.from_pylist(shuffled), RULES, str(tmp_path / "b"))

    assert a.digest == b.digest
    assert read_back(tmp_path / "b").drop_columns([SEQ]).to_pylist() == shuffled


def test_ingest_of_data_with_the_digest_it_is_told_writes_nothing(engine: Engine, tmp_path: Path) -> None:
    first = engine.ingest(source_files(tmp_path), RULES, str(tmp_path / "a"))

    again = engine.ingest(source_files(tmp_path), RULES, str(tmp_path / "b"), unless_digest=first.digest)

    assert again.written is None and again.digest == first.digest and again.rows == 5
    assert not list((tmp_path / "b").rglob("*.parquet")) if (tmp_path / "b").exists() else True


def test_a_large_version_is_written_one_folder_per_month_of_event_time(engine: Engine, tmp_path: Path) -> None:
    times = [T0 - timedelta(days=40), T0, T0 + timedelta(days=3), T0 + timedelta(days=35), T0 - timedelta(days=39)]
    table = pa.table({"k": [1, 2, 3, 4, 5], "t": pa.array(times, UTC_US), "x": [1.0, 2, 3, 4, 5]})
    rules = Normalisation("v", ("k",), "t", None, (("x", "float64"),))

    got = engine.ingest(table, rules, str(tmp_path / "v"), partition_rows=2)

    assert got.written is not None
    months = {f.path.split("/")[0] for f in got.written.files}
    assert months == {"month=2023-11", "month=2024-01", "month=2024-02"}
    for f in got.written.files:
        part = pq.read_table(tmp_path / "v" / f.path, partitioning=None)
        assert {f"month={t:%Y-%m}" for t in part.column("t").to_pylist()} == {f.path.split("/")[0]}
    assert read_back(tmp_path / "v").column("x").to_pylist() == [1.0, 2, 3, 4, 5]


def test_naive_timestamps_are_taken_as_utc_with_a_warning(engine: Engine, tmp_path: Path) -> None:
    table = pa.table({"k": [1], "t": pa.array([T0.replace(tzinfo=None)], pa.timestamp("us")), "x": [1.0]})
    rules = Normalisation("v", ("k",), "t", None, (("x", "float64"),))

    with pytest.warns(UserWarning, match="without a time zone"):
        got = engine.ingest(table, rules, str(tmp_path / "v"))

    assert read_back(tmp_path / "v").column("t").to_pylist() == [T0]
    assert any("column 't' has timestamps without a time zone" in w for w in got.warnings)


def _bad(engine: Engine, tmp_path: Path, columns: dict[str, Any], rules: Normalisation) -> ValidationError:
    first = write(tmp_path / "1.parquet", {name: values[:2] for name, values in columns.items()})
    second = write(tmp_path / "2.parquet", {name: values[2:] for name, values in columns.items()})
    with pytest.raises(ValidationError) as err:
        engine.ingest(Files((first, second), describe="parquet source 'v'"), rules, str(tmp_path / "v"))
    assert not list((tmp_path / "v").rglob("*.parquet")) if (tmp_path / "v").exists() else True
    return err.value


RULES_V = Normalisation("v", ("k",), "t", None, (("x", "float64"),), source="parquet source 'v'")


def test_a_missing_column_is_named_with_the_columns_present(engine: Engine, tmp_path: Path) -> None:
    err = _bad(engine, tmp_path, {"k": [1, 2, 3], "t": at(0, 1, 2)}, RULES_V)

    assert str(err) == "feature view 'v': column(s) ['x'] missing from parquet source 'v'; it has: k, t"
    assert err.field == "x"


def test_a_value_that_does_not_convert_is_named_by_its_row_in_source_order(engine: Engine, tmp_path: Path) -> None:
    err = _bad(engine, tmp_path, {"k": [1, 2, 3, 4], "t": at(0, 1, 2, 3), "x": ["1.5", "2", "3", "oops"]}, RULES_V)

    assert str(err).startswith("feature view 'v', column 'x': row 3 has value 'oops', which is not a valid float64")
    assert (err.field, err.row) == ("x", 3)


def test_a_null_key_and_a_missing_event_time_are_named_by_their_row(engine: Engine, tmp_path: Path) -> None:
    key = _bad(engine, tmp_path / "a", {"k": [1, 2, None], "t": at(0, 1, 2), "x": [1.0, 2.0, 3.0]}, RULES_V)
    time = _bad(engine, tmp_path / "b", {"k": [1, 2, 3], "t": at(0, 1, None), "x": [1.0, 2.0, 3.0]}, RULES_V)

    assert str(key) == "feature view 'v', join key 'k': row 2 is null; every row needs its entity key"
    assert str(time) == "feature view 'v', column 't': row 2 has no timestamp; every row needs one"


def test_a_text_timestamp_that_does_not_parse_is_named_by_its_row(engine: Engine, tmp_path: Path) -> None:
    err = _bad(
        engine,
        tmp_path,
        {"k": [1, 2, 3], "t": ["2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z", "yesterday"], "x": [1.0, 2.0, 3.0]},
        RULES_V,
    )

    assert str(err) == "feature view 'v', column 't': row 2 has 'yesterday', which is not an ISO 8601 timestamp"


@pytest.mark.parametrize("text", ["now", "today", "-0001-01-01", "20240101"])
def test_text_pandas_alone_reads_as_a_timestamp_is_refused_like_any_non_iso_text(
    engine: Engine, tmp_path: Path, text: str
) -> None:
    err = _bad(
        engine,
        tmp_path,
        {"k": [1, 2, 3], "t": ["2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z", text], "x": [1.0, 2.0, 3.0]},
        RULES_V,
    )

    assert str(err) == f"feature view 'v', column 't': row 2 has {text!r}, which is not an ISO 8601 timestamp"
    assert (err.field, err.row) == ("t", 2)


@pytest.mark.parametrize("stored", ["text", "typed"])
def test_a_timestamp_past_the_year_9999_in_utc_is_refused_with_its_row(
    engine: Engine, tmp_path: Path, stored: str
) -> None:
    late = "9999-12-31T23:00:00-05:00"  # 10000-01-01T04:00:00Z
    column = ["2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z", late]
    if stored == "typed":  # the same instants, stored as timestamps (Python cannot hold the last one)
        seconds = [int(T0.timestamp()), int((T0 + HOUR).timestamp()), int(datetime.fromisoformat(late).timestamp())]
        column = pa.array([s * 10**6 for s in seconds], pa.int64()).cast(UTC_US)
    err = _bad(engine, tmp_path, {"k": [1, 2, 3], "t": column, "x": [1.0, 2.0, 3.0]}, RULES_V)

    shown = repr(late) if stored == "text" else "a timestamp"
    assert str(err) == (
        f"feature view 'v', column 't': row 2 has {shown}, outside the years 1 to 9999 (UTC) that a timestamp can hold"
    )
    assert (err.field, err.row) == ("t", 2)


def test_keys_of_the_wrong_kind_are_refused(engine: Engine, tmp_path: Path) -> None:
    floats = _bad(engine, tmp_path / "a", {"k": [1.0, 2.0, 3.0], "t": at(0, 1, 2), "x": [1.0, 2.0, 3.0]}, RULES_V)
    stored = Normalisation(
        "v", ("k",), "t", None, (("x", "float64"),), key_types=(("k", "string"),), source="parquet source 'v'"
    )
    other = _bad(engine, tmp_path / "b", {"k": [1, 2, 3], "t": at(0, 1, 2), "x": [1.0, 2.0, 3.0]}, stored)

    assert str(floats) == ("feature view 'v', join key 'k': keys must be integers or strings, the source holds double")
    assert str(other) == (
        "feature view 'v', join key 'k': parquet source 'v' holds integers but the version it extends stores "
        "strings; convert the column"
    )


def test_a_float_declared_as_string_is_refused(engine: Engine, tmp_path: Path) -> None:
    rules = Normalisation("v", ("k",), "t", None, (("x", "string"),), source="parquet source 'v'")

    err = _bad(engine, tmp_path, {"k": [1, 2, 3], "t": at(0, 1, 2), "x": [1.0, 2.0, 3.0]}, rules)

    assert str(err).startswith("feature view 'v', column 'x': declared string but the source holds double")


def test_an_empty_source_is_refused(engine: Engine, tmp_path: Path) -> None:
    table = pa.table({"k": pa.array([], pa.int64()), "t": pa.array([], UTC_US), "x": pa.array([], pa.float64())})

    with pytest.raises(ValidationError, match="has no rows; nothing ingested"):
        engine.ingest(table, RULES_V, str(tmp_path / "v"))


# -- the point-in-time join of an entity table at rest ---------------------------------------------------------
def test_an_entity_table_at_rest_is_joined_with_every_row_and_column_kept(engine: Engine, tmp_path: Path) -> None:
    feature = write(tmp_path / "f.parquet", {"k": [1, 1, 2], "t": at(0, 2, 1), "x": [10.0, 12.0, 21.0]}, first=0)
    hours = [-1, 0, 1.5, 2, 5, 5]
    entity_path = tmp_path / "entities.parquet"
    pq.write_table(
        pa.table(
            {
                "id": ["a", "b", "c", "d", "e", "f"],
                "k": pa.array([1, 1, 1, 1, 2, 3], pa.int32()),
                "when": pa.array([(T0 + h * HOUR).replace(tzinfo=None) for h in hours], pa.timestamp("us")),
                "label": [0, 1, 0, 1, 1, 0],
            }
        ),
        entity_path,
    )
    src = PointInTimeSource("v", (feature,), ("k",), "t", None, (("x", "x"),), None, False)

    written = engine.join_to(
        Files((str(entity_path),)), [src], timestamp="when", key_types={"k": "int64"}, into=str(tmp_path / "out")
    )

    assert written.rows == 6
    out = pa.concat_tables([pq.read_table(u) for u in written.uris()]).sort_by("id")
    assert out.column_names == ["id", "k", "when", "label", "x"]
    assert out.column("x").to_pylist() == [None, 10.0, 10.0, 12.0, 21.0, None]
    assert out.column("label").to_pylist() == [0, 1, 0, 1, 1, 0]
    expected = oracle.point_in_time_join(
        pa.table({ROW: list(range(6)), TS: at(*hours), "k": [1, 1, 1, 1, 2, 3]}), [src]
    )
    assert out.column("x").to_pylist() == [r["x"] for r in expected]


def test_an_entity_table_without_a_key_column_is_refused_by_name(engine: Engine, tmp_path: Path) -> None:
    feature = write(tmp_path / "f.parquet", {"k": [1], "t": at(0), "x": [1.0]}, first=0)
    entity_path = tmp_path / "entities.parquet"
    pq.write_table(pa.table({"when": at(1)}), entity_path)
    src = PointInTimeSource("v", (feature,), ("k",), "t", None, (("x", "x"),), None, False)

    with pytest.raises(ValidationError) as err:
        engine.join_to(
            Files((str(entity_path),)), [src], timestamp="when", key_types={"k": "int64"}, into=str(tmp_path / "o")
        )

    assert "'k'" in str(err.value)


# -- comparing two versions (materialization's rebuild check) ----------------------------------------------------
def test_stale_entities_are_those_whose_latest_old_row_the_new_version_does_not_match(
    engine: Engine, tmp_path: Path
) -> None:
    old = write(tmp_path / "old.parquet", {"k": [1, 2, 3, 4], "t": at(1, 2, 3, 9)}, first=0)
    new = write(tmp_path / "new.parquet", {"k": [1, 2, 4, 5], "t": at(1, 1, 12, 5)}, first=0)

    def src(path: str) -> PointInTimeSource:
        return PointInTimeSource("v", (path,), ("k",), "t", None, (), None, False)

    # 1: as recent; 2: older in the new version; 3: absent; 4: newer, but only after new_end / within it
    assert engine.stale_entities(src(old), src(new), start=None, end=T0 + 10 * HOUR) == 3
    assert engine.stale_entities(src(old), src(new), start=None, end=T0 + 10 * HOUR, new_end=T0 + 12 * HOUR) == 2
    assert engine.stale_entities(src(old), src(new), start=T0 + 2 * HOUR, end=T0 + 10 * HOUR) == 2


def test_an_empty_window_has_no_stale_entities(engine: Engine, tmp_path: Path) -> None:
    old = write(tmp_path / "old.parquet", {"k": [1], "t": at(1)}, first=0)
    src = PointInTimeSource("v", (old,), ("k",), "t", None, (), None, False)

    assert engine.stale_entities(src, src, start=T0 + 5 * HOUR, end=datetime(2030, 1, 1, tzinfo=T0.tzinfo)) == 0


# -- materialization's write: the latest values, to a sink, in bounded batches ---------------------------------
class FolderSink:
    """A picklable sink writing each batch as a Parquet file (from whichever process the engine writes)."""

    def __init__(self, folder: Path, *, distributed: bool) -> None:
        self.folder = str(folder)
        self.distributed = distributed

    def write(self, rows: pa.Table) -> int:
        import uuid

        Path(self.folder).mkdir(parents=True, exist_ok=True)
        pq.write_table(rows, f"{self.folder}/{uuid.uuid4().hex}.parquet")
        return rows.num_rows


@pytest.mark.parametrize("distributed", [False, True])
def test_the_latest_values_are_written_to_the_sink_in_bounded_batches(
    engine: Engine, tmp_path: Path, distributed: bool
) -> None:
    rng = random.Random(5)
    n = 200
    path = write(
        tmp_path / "v.parquet",
        {
            "k": [rng.randrange(40) for _ in range(n)],
            "t": at(*(rng.randrange(30) for _ in range(n))),
            "x": [rng.random() for _ in range(n)],
        },
        first=0,
    )
    src = PointInTimeSource("v", (path,), ("k",), "t", None, (("x", "x"),), None, True)
    sink = FolderSink(tmp_path / "sink", distributed=distributed)
    seen: list[int] = []

    rows, applied = engine.write_latest(
        src, start=T0 + 3 * HOUR, end=T0 + 25 * HOUR, sink=sink, batch_rows=7, on_progress=seen.append
    )

    parts = [pq.read_table(p) for p in sorted((tmp_path / "sink").glob("*.parquet"))]
    assert all(p.num_rows <= 7 for p in parts)
    got = sorted(pa.concat_tables(parts).to_pylist(), key=lambda r: r["k"])
    assert got == oracle.latest_per_entity(src, start=T0 + 3 * HOUR, end=T0 + 25 * HOUR)
    assert rows == applied == len(got)
    if seen:  # progress is reported by the process that writes
        assert seen[-1] == rows
