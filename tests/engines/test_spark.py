"""The Spark engine: what only Spark has to get right (its session, sequence numbers read back from files and
splits, partitioned writes, errors naming rows) and the same answers as the plain-Python oracle of the engine
conformance suite.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import random
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from keel._backends import open_engine
from keel.config import KeelConfig, load_config
from keel.engines import ROW, TS, Engine, EngineBase, PointInTimeSource
from keel.engines._base import SEQ, Files, Normalisation, Written
from keel.engines._digest import table_digest
from keel.errors import BackendError, ConfigError, MissingExtraError, ValidationError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from keel.engines.spark import SparkEngine

pytestmark = pytest.mark.spark

UTC_US = pa.timestamp("us", tz="UTC")
T0 = datetime(2024, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


def _load_oracle() -> ModuleType:
    """The conformance suite's oracle (a module of that folder, not a package)."""
    if "_engine_oracle" in sys.modules:
        return sys.modules["_engine_oracle"]
    path = Path(__file__).resolve().parents[1] / "conformance" / "_engine_oracle.py"
    spec = importlib.util.spec_from_file_location("_engine_oracle", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["_engine_oracle"] = module
    spec.loader.exec_module(module)
    return module


oracle = _load_oracle()


@pytest.fixture
def engine(spark: SparkSession) -> SparkEngine:
    """The engine the configuration ``engine: spark`` builds (it shares the test run's session)."""
    from keel.engines.spark import SparkEngine

    built = open_engine(KeelConfig(engine="spark", spark={"master": "local[2]"}))
    assert isinstance(built, SparkEngine)
    return built


def at(*hours: float | None) -> pa.Array:
    return pa.array([None if h is None else T0 + h * HOUR for h in hours], UTC_US)


def write(path: Path, columns: dict[str, Any], **options: Any) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path, **options)
    return str(path)


def rules(**overrides: Any) -> Normalisation:
    fields: dict[str, Any] = {
        "view": "v",
        "join_keys": ("k",),
        "timestamp": "t",
        "created_timestamp": None,
        "features": (("x", "float64"),),
    }
    fields.update(overrides)
    return Normalisation(**fields)


def source(paths: list[str] | tuple[str, ...], **overrides: Any) -> PointInTimeSource:
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


def read_version(written: Written) -> pa.Table:
    """Every file of a version, in the order listed, as one table."""
    return pa.concat_tables([pq.read_table(uri) for uri in written.uris()])


# -- session and configuration ---------------------------------------------------------------------------------
def test_the_engine_implements_the_interface_and_shares_the_one_session(
    engine: SparkEngine, spark: SparkSession
) -> None:
    assert isinstance(engine, Engine)
    assert isinstance(engine, EngineBase)
    assert engine.name == "spark"
    assert engine.spark is spark


def test_the_session_computes_in_utc_writes_microseconds_and_moves_arrow(engine: SparkEngine) -> None:
    conf = engine.spark.conf

    assert conf.get("spark.sql.session.timeZone") == "UTC"
    assert conf.get("spark.sql.parquet.outputTimestampType") == "TIMESTAMP_MICROS"
    assert conf.get("spark.sql.execution.arrow.pyspark.enabled") == "true"


def test_the_configuration_names_the_master_the_settings_and_the_application(spark: SparkSession) -> None:
    from keel.engines.spark import SparkEngine

    config = KeelConfig(
        engine="spark",
        spark={"master": "spark://head:7077", "conf": {"spark.executor.memory": "2g"}, "app_name": "churn"},
    )

    built = open_engine(config)  # no session is started by building the engine

    assert isinstance(built, SparkEngine)
    assert (built.master, built.conf, built.app_name) == ("spark://head:7077", {"spark.executor.memory": "2g"}, "churn")


@pytest.mark.parametrize(
    "master", ["local", "local[*]", "local[4]", "spark://a.example:7077,b:7077", "sc://host:15002"]
)
def test_known_masters_are_accepted(master: str) -> None:
    assert KeelConfig(spark={"master": master}).spark.master == master


def test_an_unknown_master_is_a_config_error_naming_the_valid_ones(tmp_path: Path) -> None:
    (tmp_path / "keel.yaml").write_text("engine: spark\nspark: {master: 'locl[2]'}\n")

    with pytest.raises(ConfigError, match=r"spark\.master: .*'locl\[2\]' is not a Spark master.*sc://host:port"):
        load_config(tmp_path)


def test_without_pyspark_the_engine_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from keel.engines import _spark_session

    monkeypatch.setitem(sys.modules, "pyspark", None)
    monkeypatch.setitem(sys.modules, "pyspark.sql", None)

    with pytest.raises(MissingExtraError, match=r"pip install 'keel\[spark\]'"):
        _spark_session.import_pyspark()


def test_without_java_the_engine_says_java_17_is_needed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from keel.engines import _spark_session

    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))

    with pytest.raises(BackendError, match=r"needs a Java runtime \(Java 17 or later\)"):
        _spark_session._check_java()


# -- ingest: what is written -----------------------------------------------------------------------------------
def test_ingest_writes_the_normalised_rows_numbered_from_the_first_sequence(
    engine: SparkEngine, tmp_path: Path
) -> None:
    table = pa.table(
        {
            "x": [1.5, float("nan"), None, 4.0],
            "k": pa.array([3, 1, 2, 1], pa.int32()),
            "t": at(2, 0, 1, 0),
            "ignored": ["a", "b", "c", "d"],
        }
    )
    into = tmp_path / "v1"

    ingested = engine.ingest(table, rules(), str(into), first_sequence=100)

    assert ingested.written is not None and ingested.written.folder == str(into)
    stored = read_version(ingested.written)
    assert stored.schema.names == ["k", "t", "x", SEQ]
    assert [stored.schema.field(c).type for c in ("k", "t", "x", SEQ)] == [pa.int64(), UTC_US, pa.float64(), pa.int64()]
    rows = sorted(stored.to_pylist(), key=lambda r: r[SEQ])
    assert rows == [
        {"k": 3, "t": T0 + 2 * HOUR, "x": 1.5, SEQ: 100},
        {"k": 1, "t": T0, "x": None, SEQ: 101},  # NaN is null
        {"k": 2, "t": T0 + HOUR, "x": None, SEQ: 102},
        {"k": 1, "t": T0, "x": 4.0, SEQ: 103},
    ]
    assert (ingested.rows, ingested.key_types, ingested.duplicates) == (4, {"k": "int64"}, 1)
    assert (ingested.event_time_min, ingested.event_time_max) == (T0, T0 + 2 * HOUR)
    assert ingested.warnings == ()


def test_ingest_lists_every_file_with_its_rows_and_sha256_and_nothing_else(engine: SparkEngine, tmp_path: Path) -> None:
    table = pa.table({"k": [1, 2, 3], "t": at(0, 1, 2), "x": [1.0, 2.0, 3.0]})

    ingested = engine.ingest(table, rules(), str(tmp_path / "v1"))

    assert ingested.written is not None
    on_disk = sorted(str(p.relative_to(tmp_path / "v1")) for p in (tmp_path / "v1").rglob("*") if p.is_file())
    assert [f.path for f in ingested.written.files] == on_disk  # no _SUCCESS, no .crc
    for f, uri in zip(ingested.written.files, ingested.written.uris(), strict=True):
        assert f.rows == pq.ParquetFile(uri).metadata.num_rows
        assert f.sha256 == hashlib.sha256(Path(uri).read_bytes()).hexdigest()
    assert ingested.written.rows == 3


def test_the_digest_is_the_digest_of_the_rows_whatever_engine_computes_it(engine: SparkEngine, tmp_path: Path) -> None:
    table = pa.table(
        {
            "k": ["b", "a", "c"],
            "t": at(0, 1, 2),
            "x": [0.5, None, -0.0],
            "l": pa.array([[1.0], None, []], pa.list_(pa.float64())),
            "on": [True, None, False],
        }
    )
    declared = rules(features=(("x", "float64"), ("l", "list[float64]"), ("on", "bool")))

    ingested = engine.ingest(table, declared, str(tmp_path / "v1"))

    assert ingested.written is not None
    stored = read_version(ingested.written).drop_columns([SEQ])
    assert ingested.digest == table_digest(stored, declared.dtypes(ingested.key_types))
    assert ingested.digest == table_digest(stored.take([2, 0, 1]), declared.dtypes(ingested.key_types))


def test_sparks_own_sql_computes_the_local_digest_of_every_dtype_and_edge_value(spark: SparkSession) -> None:
    # The digest of a version is summed by Spark's generated code, never by Python: the same definition must
    # come out of xxhash64 in the JVM and out of NumPy, value for value.
    from keel.engines._spark_statistics import count_rows, digest_aggregates, hexdigest

    nan, inf = float("nan"), float("inf")
    table = pa.table(
        {
            "k": pa.array([1, None, -(2**63), 2**63 - 1, 0, 7], pa.int64()),
            "t": pa.array([T0, None, T0 - 400 * HOUR, T0 + HOUR / 3600, T0, T0], UTC_US),
            "x": [0.5, None, nan, -0.0, inf, -inf],
            "s": ["fr", None, "", "ßü ✓", "x" * 40, "fr"],
            "b": [True, None, False, True, False, None],
            "l": pa.array([[1.0, None], None, [], [nan, -0.0], [2.5] * 9, [0.0]], pa.list_(pa.float64())),
        }
    )
    dtypes = {"k": "int64", "t": "timestamp", "x": "float64", "s": "string", "b": "bool", "l": "list[float64]"}
    frame = spark.createDataFrame(table)

    found = frame.agg(count_rows(), *digest_aggregates(dtypes)).collect()[0].asDict()

    assert hexdigest(found, found["__keel_rows"], dtypes) == table_digest(table, dtypes)
    assert hexdigest(found, 6, dict(reversed(dtypes.items()))) != table_digest(table, dtypes)


def test_the_same_digest_again_writes_nothing(engine: SparkEngine, tmp_path: Path) -> None:
    table = pa.table({"k": [1, 2], "t": at(0, 1), "x": [1.0, 2.0]})
    first = engine.ingest(table, rules(), str(tmp_path / "v1"))

    again = engine.ingest(table.take([1, 0]), rules(), str(tmp_path / "v2"), unless_digest=first.digest)

    assert again.written is None
    assert again.digest == first.digest
    assert not (tmp_path / "v2").exists()


def test_a_large_version_is_written_one_folder_per_month_of_event_time(engine: SparkEngine, tmp_path: Path) -> None:
    jan, feb = T0, T0 + timedelta(days=40)
    table = pa.table(
        {
            "k": [1, 2, 3, 4, 5],
            "t": pa.array([jan, feb, jan, feb, feb - timedelta(microseconds=1)], UTC_US),
            "month": [1.0, 2.0, 3.0, 4.0, 5.0],  # a feature may be called month: the folders still are
        }
    )

    ingested = engine.ingest(table, rules(features=(("month", "float64"),)), str(tmp_path / "v1"), partition_rows=3)

    assert ingested.written is not None
    folders = {f.path.split("/")[0] for f in ingested.written.files}
    assert folders == {"month=2024-01", "month=2024-02"}
    for f, uri in zip(ingested.written.files, ingested.written.uris(), strict=True):
        part = pq.read_table(uri)
        assert part.column_names == ["k", "t", "month", SEQ]
        months = {t.strftime("month=%Y-%m") for t in part.column("t").to_pylist()}
        assert months == {f.path.split("/")[0]}
    stored = read_version(ingested.written)
    assert sorted(stored.column("month").to_pylist()) == [1.0, 2.0, 3.0, 4.0, 5.0]


@pytest.mark.parametrize("partition_rows", [3, 1_000], ids=["by month", "one folder"])
def test_duplicates_of_a_version_are_counted_month_by_month_as_across_the_cluster(
    engine: SparkEngine, tmp_path: Path, partition_rows: int
) -> None:
    rng = random.Random(11)
    jan, feb = T0, T0 + timedelta(days=40)
    keys = [rng.randrange(4) for _ in range(60)]
    times = [rng.choice([jan, feb]) + rng.randrange(3) * HOUR for _ in range(60)]
    table = pa.table({"k": keys, "t": pa.array(times, UTC_US), "x": [float(i) for i in range(60)]})
    expected = 60 - len(set(zip(keys, times, strict=True)))

    ingested = engine.ingest(table, rules(), str(tmp_path / "v1"), partition_rows=partition_rows)

    assert ingested.duplicates == expected > 0
    assert engine.count_duplicates(table, ["k"], "t") == expected  # the other way: grouped across the cluster


def test_ingest_statistics_match_the_oracle(engine: SparkEngine, tmp_path: Path) -> None:
    rng = random.Random(3)
    values = [rng.choice([None, rng.gauss(5, 2)]) for _ in range(300)]
    words = [rng.choice([None, "a", "b", "c", "d"]) for _ in range(300)]
    table = pa.table({"k": [i % 7 for i in range(300)], "t": at(*range(300)), "x": values, "s": words})

    ingested = engine.ingest(table, rules(features=(("x", "float64"), ("s", "string"))), str(tmp_path / "v1"))

    x, s, t = ingested.statistics["x"], ingested.statistics["s"], ingested.statistics["t"]
    expected = oracle.numeric_statistics(values)
    assert (x["count"], x["nulls"], x["min"], x["max"]) == tuple(expected[n] for n in ("count", "nulls", "min", "max"))
    assert x["mean"] == pytest.approx(expected["mean"], rel=1e-12)
    assert x["std"] == pytest.approx(expected["std"], rel=1e-12)
    assert_quantiles_are_exact(x["quantiles"], [v for v in values if v is not None])
    assert (s["count"], s["nulls"], s["distinct"], s["top"]) == (
        sum(w is not None for w in words),
        sum(w is None for w in words),
        4,
        oracle.top_categories(words),
    )
    assert (t["min"], t["max"]) == (T0.isoformat(), (T0 + 299 * HOUR).isoformat())
    assert list(ingested.statistics) == ["k", "t", "x", "s"]


def assert_quantiles_are_exact(quantiles: dict[str, Any], values: list[float]) -> None:
    """Spark's quantiles of small data are exact, interpolated between ranks as the local engine's are."""
    import numpy as np

    for name, got in quantiles.items():
        assert got == pytest.approx(float(np.quantile(values, int(name[1:]) / 100)), rel=1e-12), name


# -- ingest: sequence numbers in source order --------------------------------------------------------------------
def _csv(path: Path, first: int, n: int) -> str:
    lines = ["k,t,x"] + [f"{i % 5},2024-01-01T{(i % 24):02d}:00:00Z,{i}.5" for i in range(first, first + n)]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_csv_rows_are_numbered_in_file_order_across_files_and_splits(
    engine: SparkEngine, spark: SparkSession, tmp_path: Path
) -> None:
    # the second file is listed first: order is the order given, not the names'
    second = _csv(tmp_path / "a.csv", 400, 300)
    first = _csv(tmp_path / "b.csv", 0, 400)
    spark.conf.set("spark.sql.files.maxPartitionBytes", "2048")  # several splits per file, read in parallel
    try:
        ingested = engine.ingest(Files((first, second), format="csv"), rules(), str(tmp_path / "v1"), first_sequence=7)
    finally:
        spark.conf.unset("spark.sql.files.maxPartitionBytes")

    assert ingested.written is not None
    stored = read_version(ingested.written).sort_by(SEQ)
    assert stored.column(SEQ).to_pylist() == list(range(7, 707))
    assert stored.column("x").to_pylist() == [i + 0.5 for i in range(700)]  # row i of the source is number 7 + i
    assert ingested.key_types == {"k": "int64"}


def test_csv_dates_are_midnight_utc_and_naive_timestamps_are_taken_as_utc_with_a_warning(
    engine: SparkEngine, tmp_path: Path
) -> None:
    dated = tmp_path / "dated.csv"
    dated.write_text("k,t,x\n1,2024-01-01,1.0\n2,2024-01-02,2.0\n")
    naive = tmp_path / "naive.csv"
    naive.write_text("k,t,x\n1,2024-01-01 05:00:00,1.0\n")

    by_date = engine.ingest(Files((str(dated),), format="csv"), rules(), str(tmp_path / "v1"))
    with pytest.warns(UserWarning, match="column 't' has timestamps without a time zone"):
        by_time = engine.ingest(Files((str(naive),), format="csv"), rules(), str(tmp_path / "v2"))

    assert by_date.warnings == ()
    assert (by_date.event_time_min, by_date.event_time_max) == (T0, T0 + 24 * HOUR)
    assert by_time.event_time_min == T0 + 5 * HOUR


def test_parquet_rows_are_numbered_in_the_order_of_the_uris_and_a_folders_files_by_path(
    engine: SparkEngine, spark: SparkSession, tmp_path: Path
) -> None:
    def part(path: Path, first: int, n: int) -> str:
        columns = {
            "k": [i % 3 for i in range(first, first + n)],
            "t": at(*range(n)),
            "x": [float(i) for i in range(first, first + n)],
        }
        return write(path, columns, row_group_size=50)

    lone = part(tmp_path / "z.parquet", 0, 120)
    part(tmp_path / "folder" / "b.parquet", 320, 150)
    part(tmp_path / "folder" / "a.parquet", 120, 200)
    spark.conf.set("spark.sql.files.maxPartitionBytes", "4096")
    try:
        ingested = engine.ingest(Files((lone, str(tmp_path / "folder"))), rules(), str(tmp_path / "v1"))
    finally:
        spark.conf.unset("spark.sql.files.maxPartitionBytes")

    assert ingested.written is not None
    stored = read_version(ingested.written).sort_by(SEQ)
    assert stored.column(SEQ).to_pylist() == list(range(470))
    assert stored.column("x").to_pylist() == [float(i) for i in range(470)]


def test_a_spark_frame_is_numbered_in_its_partition_order(
    engine: SparkEngine, spark: SparkSession, tmp_path: Path
) -> None:
    table = pa.table({"k": [i % 4 for i in range(50)], "t": at(*range(50)), "x": [float(i) for i in range(50)]})
    frame = spark.createDataFrame(table).repartitionByRange(3, "x")  # three partitions, in order of x

    ingested = engine.ingest(frame, rules(), str(tmp_path / "v1"))

    assert ingested.written is not None
    stored = read_version(ingested.written).sort_by(SEQ)
    assert stored.column("x").to_pylist() == [r["x"] for r in frame.collect()]


def test_event_times_finer_than_microseconds_are_rounded_up(engine: SparkEngine, tmp_path: Path) -> None:
    nanos = pa.array([1_000, 1_001, 999], pa.timestamp("ns", tz="UTC"))
    table = pa.table({"k": [1, 2, 3], "t": nanos, "x": [1.0, 2.0, 3.0]})

    ingested = engine.ingest(table, rules(), str(tmp_path / "v1"))

    assert ingested.written is not None
    stored = read_version(ingested.written).sort_by(SEQ)
    micros = pc.cast(stored.column("t"), pa.int64()).to_pylist()
    assert micros == [1, 2, 1]


def test_parquet_nanosecond_timestamps_as_pandas_writes_them_are_read(engine: SparkEngine, tmp_path: Path) -> None:
    # Spark cannot read them itself; event times are rounded up, other timestamps truncated, as pyarrow does
    nanos = pa.array([1_001, 2_000], pa.timestamp("ns", tz="UTC"))
    naive = pa.array([1_999, None], pa.timestamp("ns"))
    path = write(tmp_path / "ns.parquet", {"k": [1, 2], "t": nanos, "c": naive, "x": [1.0, 2.0]})

    with pytest.warns(UserWarning, match="column 'c' has timestamps without a time zone"):
        ingested = engine.ingest(Files((path,)), rules(created_timestamp="c"), str(tmp_path / "v1"))

    assert ingested.written is not None
    stored = read_version(ingested.written).sort_by(SEQ)
    assert pc.cast(stored.column("t"), pa.int64()).to_pylist() == [2, 2]
    assert pc.cast(stored.column("c"), pa.int64()).to_pylist() == [1, None]
    assert ingested.warnings == (
        "feature view 'v': column 'c' has timestamps without a time zone; they were taken as UTC",
    )
    stats = engine.column_statistics(Files((path,)), {"t": "timestamp"})
    assert (stats["t"]["min"], stats["t"]["max"]) == (
        "1970-01-01T00:00:00.000001+00:00",
        "1970-01-01T00:00:00.000002+00:00",
    )


def test_an_empty_source_is_refused_whatever_its_form(engine: SparkEngine, spark: SparkSession, tmp_path: Path) -> None:
    table = pa.table({"k": pa.array([], pa.int64()), "t": at(), "x": pa.array([], pa.float64())})
    path = write(tmp_path / "empty.parquet", {c: table.column(c) for c in table.column_names})

    for data in (table, Files((path,)), spark.createDataFrame(table)):
        with pytest.raises(ValidationError, match=r"^feature view 'v': the source has no rows; nothing ingested$"):
            engine.ingest(data, rules(), str(tmp_path / "v1"))
        assert not (tmp_path / "v1").exists()


def test_every_written_column_is_optional_as_other_engines_write_them(engine: SparkEngine, tmp_path: Path) -> None:
    path = write(tmp_path / "s.parquet", {"k": [1, 2], "t": at(0, 1), "x": [1.0, 2.0]})

    ingested = engine.ingest(Files((path,)), rules(), str(tmp_path / "v1"))

    assert ingested.written is not None
    schema = pq.read_schema(ingested.written.uris()[0])
    assert all(field.nullable for field in schema)


def test_naive_and_text_timestamps_are_taken_as_utc_with_a_warning(engine: SparkEngine, tmp_path: Path) -> None:
    table = pa.table(
        {
            "k": [1, 2, 3],
            "t": ["2024-01-01T01:00:00+01:00", "2024-01-01 05:30:00", "2024-01-02"],
            "c": pa.array([datetime(2024, 1, 1, 3), None, datetime(2024, 1, 1, 4)], pa.timestamp("us")),
            "x": [1.0, 2.0, 3.0],
        }
    )

    with pytest.warns(UserWarning, match="without a time zone"):
        ingested = engine.ingest(table, rules(created_timestamp="c"), str(tmp_path / "v1"))

    assert ingested.written is not None
    stored = read_version(ingested.written).sort_by(SEQ)
    assert stored.column("t").to_pylist() == [T0, T0 + 5.5 * HOUR, T0 + 24 * HOUR]
    assert stored.column("c").to_pylist() == [T0 + 3 * HOUR, None, T0 + 4 * HOUR]
    assert ingested.warnings == (
        "feature view 'v': column 't' has timestamps without a time zone; they were taken as UTC",
        "feature view 'v': column 'c' has timestamps without a time zone; they were taken as UTC",
    )


def test_zoned_text_timestamps_give_no_warning(engine: SparkEngine, tmp_path: Path) -> None:
    table = pa.table({"k": [1], "t": ["2024-01-01T00:00:00Z"], "x": [1.0]})

    assert engine.ingest(table, rules(), str(tmp_path / "v1")).warnings == ()


def test_declared_dtypes_are_cast_the_way_the_local_engine_casts_them(engine: SparkEngine, tmp_path: Path) -> None:
    table = pa.table(
        {
            "k": ["a", "b"],
            "t": at(0, 1),
            "i": [1.0, -2.0],
            "f": ["1e3", "nan"],
            "b": ["True", "0"],
            "s": pa.array([7, None], pa.int64()),
            "l": pa.array([[1, 2], None], pa.list_(pa.int32())),
        }
    )
    features = (("i", "int64"), ("f", "float64"), ("b", "bool"), ("s", "string"), ("l", "list[float64]"))

    ingested = engine.ingest(table, rules(features=features), str(tmp_path / "v1"))

    assert ingested.written is not None
    stored = read_version(ingested.written).sort_by(SEQ)
    assert stored.drop_columns([SEQ]).to_pylist() == [
        {"k": "a", "t": T0, "i": 1, "f": 1000.0, "b": True, "s": "7", "l": [1.0, 2.0]},
        {"k": "b", "t": T0 + HOUR, "i": -2, "f": None, "b": False, "s": None, "l": None},
    ]
    assert ingested.key_types == {"k": "string"}


# -- ingest: errors name the column and the row ------------------------------------------------------------------
def _fails(engine: SparkEngine, tmp_path: Path, table: pa.Table, declared: Normalisation) -> ValidationError:
    into = tmp_path / "v1"
    with pytest.raises(ValidationError) as caught:
        engine.ingest(table, declared, str(into))
    assert not into.exists()  # nothing is left behind
    return caught.value


def test_missing_columns_are_listed_with_the_columns_present(engine: SparkEngine, tmp_path: Path) -> None:
    error = _fails(
        engine, tmp_path, pa.table({"k": [1], "x": [1.0]}), rules(features=(("x", "float64"), ("y", "int64")))
    )

    assert str(error) == "feature view 'v': column(s) ['t', 'y'] missing from the source; it has: k, x"
    assert error.field == "t"


def test_a_null_key_names_its_first_row(engine: SparkEngine, tmp_path: Path) -> None:
    table = pa.table({"k": [1, 2, None, None], "t": at(0, 1, 2, 3), "x": [1.0, 2.0, 3.0, 4.0]})

    error = _fails(engine, tmp_path, table, rules())

    assert str(error) == "feature view 'v', join key 'k': row 2 is null; every row needs its entity key"
    assert (error.field, error.row) == ("k", 2)


def test_a_key_of_floats_is_refused_after_its_nulls_are_checked(engine: SparkEngine, tmp_path: Path) -> None:
    error = _fails(engine, tmp_path, pa.table({"k": [1.5], "t": at(0), "x": [1.0]}), rules())

    assert str(error) == "feature view 'v', join key 'k': keys must be integers or strings, the source holds double"


def test_keys_must_have_the_types_the_extended_version_stores_once_every_value_passed(
    engine: SparkEngine, tmp_path: Path
) -> None:
    declared = rules(key_types=(("k", "string"),), source="the pushed rows")

    kind = _fails(engine, tmp_path, pa.table({"k": [1], "t": at(0), "x": [1.0]}), declared)
    value = _fails(engine, tmp_path, pa.table({"k": [1], "t": at(0), "x": ["one"]}), declared)

    assert str(kind) == (
        "feature view 'v', join key 'k': the pushed rows holds integers but the version it extends stores "
        "strings; convert the column"
    )
    assert kind.field == "k"
    assert value.field == "x"  # a bad value comes first: the keys' kind is judged last, as the local engine does


def test_a_text_event_time_that_does_not_parse_names_its_row_and_value(engine: SparkEngine, tmp_path: Path) -> None:
    table = pa.table({"k": [1, 2, 3], "t": ["2024-01-01", "yesterday", "2024-02-30"], "x": [1.0, 2.0, 3.0]})

    error = _fails(engine, tmp_path, table, rules())

    assert str(error) == ("feature view 'v', column 't': row 1 has 'yesterday', which is not an ISO 8601 timestamp")
    assert (error.field, error.row) == ("t", 1)


def test_a_missing_event_time_names_its_row(engine: SparkEngine, tmp_path: Path) -> None:
    table = pa.table({"k": [1, 2], "t": at(0, None), "x": [1.0, 2.0]})

    error = _fails(engine, tmp_path, table, rules())

    assert str(error) == "feature view 'v', column 't': row 1 has no timestamp; every row needs one"


def test_a_value_that_does_not_cast_names_its_row_and_pyarrows_reason(engine: SparkEngine, tmp_path: Path) -> None:
    table = pa.table({"k": [1, 2, 3], "t": at(0, 1, 2), "x": ["1", " 2", "x"]})

    error = _fails(engine, tmp_path, table, rules(features=(("x", "int64"),)))

    assert str(error) == (
        "feature view 'v', column 'x': row 1 has value ' 2', which is not a valid int64 "
        "(ArrowInvalid: Failed to parse string: ' 2' as a scalar of type int64)"
    )
    assert (error.field, error.row) == ("x", 1)


def test_a_bad_value_in_a_later_file_names_its_row_in_the_whole_source_and_writes_nothing(
    engine: SparkEngine, tmp_path: Path
) -> None:
    first = write(tmp_path / "src" / "a.parquet", {"k": [1, 2, 3], "t": at(0, 1, 2), "x": ["1", "2", "3"]})
    second = write(tmp_path / "src" / "b.parquet", {"k": [4, 5, 6], "t": at(3, 4, 5), "x": ["4", "five", "6"]})

    with pytest.raises(ValidationError, match="row 4") as failure:
        engine.ingest(Files((first, second)), rules(), str(tmp_path / "v1"))

    assert "five" in str(failure.value)
    assert not (tmp_path / "v1").exists()


def test_a_float_declared_string_is_refused(engine: SparkEngine, tmp_path: Path) -> None:
    error = _fails(engine, tmp_path, pa.table({"k": [1], "t": at(0), "x": [1.5]}), rules(features=(("x", "string"),)))

    assert str(error) == (
        "feature view 'v', column 'x': declared string but the source holds double; "
        "declare the matching dtype or convert the column in the source"
    )


def test_the_first_failing_column_in_stored_order_is_reported(engine: SparkEngine, tmp_path: Path) -> None:
    # the feature fails on row 0, the event time on row 2: the event time comes first in stored order
    table = pa.table({"k": [1, 2, 3], "t": at(0, 1, None), "x": ["bad", "1.0", "2.0"]})

    error = _fails(engine, tmp_path, table, rules())

    assert (error.field, error.row) == ("t", 2)


def test_csv_errors_count_rows_across_files(engine: SparkEngine, tmp_path: Path) -> None:
    first = _csv(tmp_path / "a.csv", 0, 10)
    (tmp_path / "b.csv").write_text("k,t,x\n1,2024-01-01T00:00:00Z,1.0\n,2024-01-01T00:00:00Z,2.0\n")

    with pytest.raises(ValidationError) as caught:
        engine.ingest(Files((first, str(tmp_path / "b.csv")), format="csv"), rules(), str(tmp_path / "v1"))

    assert caught.value.row == 11


# -- point-in-time join --------------------------------------------------------------------------------------
def joined(engine: SparkEngine, table: pa.Table, sources: list[PointInTimeSource]) -> list[dict[str, Any]]:
    out = engine.point_in_time_join(table, sources)
    assert out.column_names == [ROW, *(name for src in sources for _, name in src.features)]
    rows: list[dict[str, Any]] = out.to_pylist()
    assert rows == oracle.point_in_time_join(table, sources)
    return rows


def _random_source(tmp_path: Path, seed: int, *, sequence: str | None) -> PointInTimeSource:
    rng = random.Random(seed)
    n = 80
    keys = {"k": [rng.randrange(4) for _ in range(n)], "s": [rng.choice("ab") for _ in range(n)]}
    hours = [rng.randrange(12) for _ in range(n)]
    created = [rng.choice([None, 0, 1, 2]) for _ in range(n)]
    features = {
        "x": [rng.choice([None, rng.random()]) for _ in range(n)],
        "label": [rng.choice([None, "p", "q"]) for _ in range(n)],
    }
    cuts = sorted(rng.sample(range(1, n), 2))
    paths = []
    for i, (lo, hi) in enumerate(zip([0, *cuts], [*cuts, n], strict=True)):
        columns = {**{c: v[lo:hi] for c, v in keys.items()}, "t": at(*hours[lo:hi]), "c": at(*created[lo:hi])}
        columns.update({c: v[lo:hi] for c, v in features.items()})
        if sequence is not None:  # the rows' positions in the version, as ingest numbers them
            columns[sequence] = pa.array(range(lo, hi), pa.int64())
        paths.append(write(tmp_path / f"part-{i}.parquet", columns))
    return source(
        paths,
        join_keys=("k", "s"),
        created_timestamp="c",
        features=(("x", "x"), ("label", "label")),
        ttl=rng.choice([None, 3 * HOUR]),
        deduplicate=True,
        sequence=sequence,
    )


def _random_entities(seed: int) -> pa.Table:
    rng = random.Random(seed)
    m = 60
    return entities(
        {"k": [rng.randrange(5) for _ in range(m)], "s": [rng.choice("ab") for _ in range(m)]},
        [rng.choice([rng.randrange(-2, 15), rng.uniform(-2, 15)]) for _ in range(m)],
        rows=rng.sample(range(m), m),
    )


@pytest.mark.parametrize(("seed", "sequence"), [(0, SEQ), (1, SEQ), (2, None), (3, None)])
def test_random_data_joins_exactly_as_the_oracle_does(
    engine: SparkEngine, tmp_path: Path, seed: int, sequence: str | None
) -> None:
    joined(engine, _random_entities(seed), [_random_source(tmp_path, seed, sequence=sequence)])


def test_ties_go_to_the_latest_created_time_then_to_the_row_written_last(engine: SparkEngine, tmp_path: Path) -> None:
    created = pa.array([T0, T0 + HOUR, T0 + HOUR, None, None, None], UTC_US)
    first = write(
        tmp_path / "a.parquet",
        {"k": [1, 1, 1, 1, 2, 2], "t": at(0, 0, 0, 0, 0, 0), "c": created, "x": [1.0, 2, 3, 4, 5, 6]},
    )
    delta = write(tmp_path / "b.parquet", {"k": [3], "t": at(0), "c": at(None), "x": [7.0]})
    earlier = write(tmp_path / "0.parquet", {"k": [3], "t": at(0), "c": at(None), "x": [8.0]})

    rows = joined(
        engine,
        entities({"k": [1, 2, 3]}, [1, 1, 1]),
        [source([earlier, first, delta], created_timestamp="c", deduplicate=True, sequence=None)],
    )

    assert [r["x"] for r in rows] == [3.0, 6.0, 7.0]


def test_the_ttl_and_a_null_latest_value_are_kept(engine: SparkEngine, tmp_path: Path) -> None:
    path = write(
        tmp_path / "v.parquet", {"k": [1, 1, 2, 2], "t": at(0, 10, 0, 1), "x": pa.array([1.0, 2.0, 5.0, None])}
    )

    rows = joined(engine, entities({"k": [1, 1, 1, 2]}, [2, 2.0001, 12, 1.5]), [source([path], ttl=2 * HOUR)])

    assert [r["x"] for r in rows] == [1.0, None, 2.0, None]


def test_an_empty_entity_table_gives_an_empty_result_with_every_column(engine: SparkEngine, tmp_path: Path) -> None:
    path = write(tmp_path / "v.parquet", {"k": [1], "t": at(0), "x": [1.0]})

    assert joined(engine, entities({"k": pa.array([], pa.int64())}, []), [source([path])]) == []


@pytest.mark.parametrize("ttl", [None, 3 * HOUR], ids=["as-of-window", "join-within-the-ttl"])
def test_join_to_keeps_every_entity_column_and_gives_the_oracles_values(
    engine: SparkEngine, tmp_path: Path, ttl: timedelta | None
) -> None:
    src = dataclasses.replace(_random_source(tmp_path / "features", 5, sequence=SEQ), ttl=ttl)
    table = _random_entities(5)
    expected = {r[ROW]: r for r in oracle.point_in_time_join(table, [src])}
    at_rest = write(
        tmp_path / "entities" / "e.parquet",
        {"id": table.column(ROW), "when": table.column(TS), "k": table.column("k"), "s": table.column("s")},
    )

    written = engine.join_to(
        Files((at_rest,)), [src], timestamp="when", key_types={"k": "int64", "s": "string"}, into=str(tmp_path / "out")
    )

    assert isinstance(written, Written) and written.rows == table.num_rows
    out = read_version(written)
    assert out.column_names == ["id", "when", "k", "s", "x", "label"]
    for row in out.to_pylist():
        assert (row["x"], row["label"]) == (expected[row["id"]]["x"], expected[row["id"]]["label"])


def test_join_to_of_a_table_in_memory_equals_join_to_of_files(engine: SparkEngine, tmp_path: Path) -> None:
    src = _random_source(tmp_path / "features", 6, sequence=SEQ)
    table = _random_entities(6).rename_columns(["id", "when", "k", "s"])
    at_rest = write(tmp_path / "entities" / "e.parquet", {c: table.column(c) for c in table.column_names})
    key_types = {"k": "int64", "s": "string"}

    from_memory = engine.join_to(table, [src], timestamp="when", key_types=key_types, into=None)
    from_files = engine.join_to(Files((at_rest,)), [src], timestamp="when", key_types=key_types, into=None)

    assert sorted(from_memory.collect(), key=lambda r: r["id"]) == sorted(from_files.collect(), key=lambda r: r["id"])


def test_join_to_joins_on_naive_entity_times_taken_as_utc_and_keys_cast_but_keeps_the_columns(
    engine: SparkEngine, tmp_path: Path
) -> None:
    path = write(tmp_path / "v.parquet", {"k": [1, 2], "t": at(0, 0), "x": [1.0, 2.0]})
    table = pa.table(
        {"k": ["1", "2"], "when": pa.array([datetime(2024, 1, 1, 0, 30), datetime(2023, 12, 31)], pa.timestamp("us"))}
    )

    frame = engine.join_to(table, [source([path])], timestamp="when", key_types={"k": "int64"}, into=None)

    rows = sorted(frame.toArrow().to_pylist(), key=lambda r: r["k"])
    naive = [datetime(2024, 1, 1, 0, 30), datetime(2023, 12, 31)]  # the entity columns are kept as they are
    assert rows == [{"k": "1", "when": naive[0], "x": 1.0}, {"k": "2", "when": naive[1], "x": None}]


def test_join_to_of_entities_without_a_key_column_names_it(engine: SparkEngine, tmp_path: Path) -> None:
    path = write(tmp_path / "v.parquet", {"k": [1], "t": at(0), "x": [1.0]})

    with pytest.raises(ValidationError, match=r"^entity table lacks column 'k'; it has: when, id$"):
        engine.join_to(
            pa.table({"when": at(1), "id": [1]}),
            [source([path])],
            timestamp="when",
            key_types={"k": "int64"},
            into=None,
        )


def test_join_to_with_a_key_that_does_not_convert_is_a_validation_error_naming_it(
    engine: SparkEngine, tmp_path: Path
) -> None:
    path = write(tmp_path / "v.parquet", {"k": [1], "t": at(0), "x": [1.0]})
    table = pa.table({"k": ["1", "one"], "when": at(1, 1)})

    with pytest.raises(
        ValidationError, match=r"join key 'k': the entity value 'one' cannot be compared with int64 keys"
    ):
        engine.join_to(table, [source([path])], timestamp="when", key_types={"k": "int64"}, into=str(tmp_path / "out"))


# -- latest value per entity ---------------------------------------------------------------------------------
@pytest.fixture
def history(tmp_path: Path) -> PointInTimeSource:
    path = write(
        tmp_path / "v.parquet",
        {
            "k": [1, 1, 1, 2, 2, 3, 3],
            "t": at(0, 5, 10, 5, 5, 1, 2),
            "c": at(0, 0, 0, 1, 2, None, None),
            "x": [1.0, 5.0, 10.0, 25.0, 26.0, None, 32.0],
            SEQ: pa.array(range(7), pa.int64()),
        },
    )
    return source([path], created_timestamp="c", deduplicate=True)


def test_latest_per_entity_matches_the_oracle(engine: SparkEngine, history: PointInTimeSource) -> None:
    for start, end in [(None, T0 + 5 * HOUR), (T0 + 2 * HOUR, T0 + 10 * HOUR), (T0 + 10 * HOUR, T0 + 20 * HOUR)]:
        batches = list(engine.latest_per_entity(history, start=start, end=end))
        rows = sorted((r for b in batches for r in b.to_pylist()), key=lambda r: r["k"])
        assert rows == oracle.latest_per_entity(history, start=start, end=end)


def test_latest_per_entity_comes_in_batches_of_at_most_batch_rows(engine: SparkEngine, tmp_path: Path) -> None:
    path = write(
        tmp_path / "v.parquet", {"k": list(range(25)), "t": at(*range(25)), "x": [float(i) for i in range(25)]}
    )
    src = source([path])

    batches = list(engine.latest_per_entity(src, start=None, end=T0 + 100 * HOUR, batch_rows=4))

    assert all(0 < b.num_rows <= 4 for b in batches)
    assert sorted(r["k"] for b in batches for r in b.to_pylist()) == list(range(25))
    assert batches[0].schema.names == ["k", "t", "x"]


def test_stale_entities_counts_old_latest_rows_without_a_row_as_recent_in_the_new_version(
    engine: SparkEngine, tmp_path: Path
) -> None:
    old = write(tmp_path / "old.parquet", {"k": [1, 2, 3, 4], "t": at(5, 5, 5, 1), "x": [1.0, 2.0, 3.0, 4.0]})
    new = write(tmp_path / "new.parquet", {"k": [1, 2, 4], "t": at(6, 4, 1), "x": [1.0, 2.0, 4.0]})

    # 1 has a later row, 2 an older one, 3 none, 4 an equal one; outside the window nothing counts
    assert engine.stale_entities(source([old]), source([new]), start=None, end=T0 + 10 * HOUR) == 2
    assert engine.stale_entities(source([old]), source([new]), start=T0 + 5 * HOUR, end=T0 + 10 * HOUR) == 0


# -- statistics and duplicates of any data -----------------------------------------------------------------
def test_statistics_of_other_dtypes_match_the_local_engines(engine: SparkEngine) -> None:
    other = pa.table(
        {
            "b": [True, False, True, None] * 3,
            "t": pa.concat_arrays([at(3, None, -1, 7)] * 3),
            "l": pa.array([[1.0, 2.0], [3.0], None, [4.0, 5.0, 6.0]] * 3),
            "i": pa.array([2**60, None, -3, 1] * 3, pa.int64()),
        }
    )

    stats = engine.column_statistics(other, {"b": "bool", "t": "timestamp", "l": "list[float64]", "i": "int64"})

    assert stats["b"] == {"dtype": "bool", "count": 9, "nulls": 3, "mean": pytest.approx(2 / 3)}
    assert stats["t"] == {
        "dtype": "timestamp",
        "count": 9,
        "nulls": 3,
        "min": (T0 - HOUR).isoformat(),
        "max": (T0 + 7 * HOUR).isoformat(),
    }
    assert stats["l"] == {"dtype": "list[float64]", "count": 9, "nulls": 3, "mean_length": 2.0}
    assert (stats["i"]["min"], stats["i"]["max"], stats["i"]["distinct"]) == (-3, 2**60, 3)
    assert isinstance(stats["i"]["max"], int)


def test_quantiles_of_many_rows_come_from_a_sample_the_same_whatever_the_partitioning(
    engine: SparkEngine, spark: SparkSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    from keel.engines import _spark_statistics

    monkeypatch.setattr(_spark_statistics, "QUANTILE_SAMPLE_ROWS", 2_000)
    rng = random.Random(5)
    values = [rng.lognormvariate(0, 1) for _ in range(40_000)]
    table = pa.table({SEQ: pa.array(range(40_000), pa.int64()), "x": values})
    frame = spark.createDataFrame(table)

    quantiles = engine.column_statistics(frame.repartition(3), {"x": "float64"})["x"]["quantiles"]
    again = engine.column_statistics(frame.repartition(7), {"x": "float64"})["x"]["quantiles"]

    assert quantiles == again
    ordered = sorted(values)
    for name, got in quantiles.items():  # a 2,000-row sample: within 0.05 of rank (DKW: 1 - 1e-4)
        rank = sum(v <= got for v in ordered) / len(ordered)
        assert abs(rank - int(name[1:]) / 100) < 0.05, (name, rank)
    assert quantiles != engine.column_statistics(table.drop_columns([SEQ]), {"x": "float64"})["x"]["quantiles"]


def test_statistics_of_an_empty_table_count_nothing(engine: SparkEngine) -> None:
    stats = engine.column_statistics(pa.table({"x": pa.array([], pa.float64())}), {"x": "float64"})

    assert (stats["x"]["count"], stats["x"]["nulls"], stats["x"]["min"], stats["x"]["mean"]) == (0, 0, None, None)


@pytest.mark.parametrize("form", ["table", "files", "frame"])
def test_count_duplicates_matches_the_oracle_on_every_form_of_data(
    engine: SparkEngine, spark: SparkSession, tmp_path: Path, form: str
) -> None:
    rng = random.Random(1)
    n = 300
    table = pa.table(
        {
            "k": [rng.randrange(10) for _ in range(n)],
            "s": [rng.choice(["a", "b", None]) for _ in range(n)],
            "t": at(*(rng.randrange(20) for _ in range(n))),
        }
    )
    data: Any = {
        "table": table,
        "files": Files((write(tmp_path / "d.parquet", {c: table.column(c) for c in table.column_names}),)),
        "frame": spark.createDataFrame(table),
    }[form]

    assert engine.count_duplicates(data, ["k", "s"], "t") == oracle.count_duplicates(table, ["k", "s"], "t")


# -- failures: the same Keel error, with the same message, as every engine ------------------------------------------
def test_a_missing_file_is_a_backend_error_naming_the_operation_and_the_file(
    engine: SparkEngine, tmp_path: Path
) -> None:
    missing = source([str(tmp_path / "gone.parquet")])

    with pytest.raises(BackendError) as join:
        engine.point_in_time_join(entities({"k": [1]}, [1]), [missing])
    with pytest.raises(BackendError) as last:
        list(engine.latest_per_entity(missing, start=None, end=T0))

    assert str(join.value).startswith("spark engine: point-in-time join of feature view 'v' failed: ")
    assert str(last.value).startswith("spark engine: latest values of feature view 'v' failed: ")
    assert "gone.parquet" in str(join.value)
    assert join.value.__cause__ is not None


def test_a_file_that_is_not_parquet_is_a_backend_error(engine: SparkEngine, tmp_path: Path) -> None:
    path = tmp_path / "v.parquet"
    path.write_bytes(b"not parquet" * 100)

    with pytest.raises(BackendError, match=r"^spark engine: point-in-time join of feature view 'v' failed: "):
        engine.point_in_time_join(entities({"k": [1]}, [1]), [source([str(path)])])


def test_a_column_the_data_lacks_is_a_validation_error_on_every_operation(engine: SparkEngine, tmp_path: Path) -> None:
    path = write(tmp_path / "v.parquet", {"k": [1], "t": at(0), "x": [1.0]})
    absent = source([path], features=(("nope", "nope"),))
    table = pa.table({"k": [1], "t": at(0)})

    with pytest.raises(ValidationError, match=r"^spark engine: point-in-time join of feature view 'v' failed: "):
        engine.point_in_time_join(entities({"k": [1]}, [1]), [absent])
    with pytest.raises(ValidationError, match=r"^spark engine: latest values of feature view 'v' failed: "):
        list(engine.latest_per_entity(absent, start=None, end=T0))
    with pytest.raises(ValidationError, match=r"^spark engine: statistics of columns 'nope' failed: "):
        engine.column_statistics(table, {"nope": "float64"})
    with pytest.raises(ValidationError, match=r"^spark engine: counting duplicates of \('nope', 't'\) failed: "):
        engine.count_duplicates(table, ["nope"], "t")
