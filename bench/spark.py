"""Spark engine benchmark: Keel's Spark engine against hand-written Spark on the same ``local[2]`` session and data.

One SparkSession (``local[2]``, driver memory 6 GiB; ``--quick``: 2 GiB) serves both sides of every workload:
the Spark engine reuses the session the benchmark starts, so both run with the same settings (UTC session time
zone, microsecond Parquet timestamps, Arrow). Sides alternate run by run, each writing into a fresh folder.

Data (seeded, generated once into ``bench/.data/spark-…``):

- features: 1,000,000 entities x 20 event times at random over 30 days (crossing a month boundary), 8 float
  features with 0.2% nulls: 20,000,000 rows in event-time order, as 20 Parquet files of 1,000,000 rows. No
  entity has two rows at one event time, so no tie-breaking is needed and the files serve both as the ingest
  source and as the version the join reads (``PointInTimeSource(deduplicate=False, sequence=None)``);
- entities: 2,000,000 rows (random entities, about 1% unknown, at random times over the period, with a label);
- scoring inputs: 2,000,000 and 10,000,000 rows of ``row_id`` and 20 floats (1% nulls).

``--quick``: 1/20 of every size (50,000 entities, 1,000,000 feature rows, 100,000 entity rows, 100,000 and
500,000 rows to score).

Workloads (one JSON line each):

``spark.point_in_time_join``
    ``SparkEngine.join_to(Files(entities), [source], timestamp=…, key_types=…, into=folder)`` (TTL 7 days)
    against the hand-written ceiling on the same session: the entity rows numbered, a left join on the key with
    ``f.ts <= e.ts AND f.ts >= e.ts - TTL``, ``row_number() OVER (PARTITION BY entity row ORDER BY f.ts DESC) =
    1``, written to Parquet. **Target: Keel <= 1.2x.** Context: ``LocalEngine.join_to`` on the same files
    (``local_engine``). Checks: rows (every entity row, on every side) and an order-independent digest of every
    output row (``sum(xxhash64(to_json(row)))`` over the entity and feature columns) equal on all sides.
``spark.score``
    ``SparkEngine.score(Files(input), package_ref, folder, scoring=Scoring(id_column="row_id"))`` with the batch
    benchmark's ``HistGradientBoostingClassifier(max_iter=100)`` package (predictions only), against
    ``mapInPandas`` calling the fitted preprocessor and the bare estimator's ``predict`` (each Python worker
    limited to one OpenMP thread: Spark runs two tasks on the two cores), written to Parquet, at 10,000,000
    rows. The figure is throughput: ``ratio`` is Keel's rows/s over the baseline's. **Target: >= 0.85.**
    Checks: rows, the digest of (row_id, prediction) equal, and the Python driver's peak RSS at 10M rows within
    1.25x (+64 MiB) of that at 2M (``driver_memory_bounded``): the driver sees counts and digests, never rows.
    The driver JVM's peak RSS is reported beside it (in ``local`` mode it is also the executor, and its heap
    grows as far as the garbage collector lets it, not with what the driver keeps), and the Python workers';
    the baseline's figures at both sizes show what the same session does without Keel.
``spark.ingest``
    ``SparkEngine.ingest(Files(20 files), Normalisation(…), into=folder)`` (normalisation, sequence numbers,
    duplicates, statistics, digest, the month-partitioned write) against a plain Spark read -> cast to the
    declared types -> write of the same files. **Target: Keel <= 1.5x.** Checks: rows, and the digest of the
    declared columns equal.

Run ``python bench/spark.py`` (full size: generates ~3.5 GB of inputs once, then about an hour) or
``python bench/spark.py --quick`` (a few minutes, most of it Spark's fixed costs). ``--baseline-only`` times the
hand-written sides alone (to size the runs) and prints no result lines.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common

SEED = 20240117
START = np.datetime64("2024-01-15T00:00:00", "us")  # the 30 days cross a month boundary
DAYS = 30
TTL = timedelta(days=7)
N_FEATURES = 8
NULL_FRACTION = 0.002
UNKNOWN_ENTITY_FRACTION = 0.01
FEATURE_FILE_ROWS = 1_000_000  # the version's files: 20 at full size
ENTITY_ROW_GROUP = 250_000  # Spark splits a Parquet file by row group: 8 read tasks at full size

SCORE_FEATURES = 20
SCORE_NULL_FRACTION = 0.01
SCORE_ROW_GROUP = 100_000

FULL: dict[str, Any] = {
    "entities": 1_000_000,
    "timestamps_per_entity": 20,
    "entity_rows": 2_000_000,
    "score_rows": {"2m": 2_000_000, "10m": 10_000_000},
    "driver_memory": "6g",
    "shuffle_partitions": 16,
}
QUICK: dict[str, Any] = {
    "entities": 50_000,
    "timestamps_per_entity": 20,
    "entity_rows": 100_000,
    "score_rows": {"2m": 100_000, "10m": 500_000},
    "driver_memory": "2g",
    "shuffle_partitions": 4,
}
MASTER = "local[2]"

VIEW = "bench_activity"
KEY = "item_id"
EVENT_TIME = "event_time"
ENTITY_TIME = "event_timestamp"
FEATURES = [f"f{i}" for i in range(N_FEATURES)]
SCORE_COLUMNS = [f"f{i}" for i in range(SCORE_FEATURES)]
MODEL = "bench@champion"

PIT_TARGET = 1.2
SCORE_TARGET_MIN = 0.85  # Keel's rows/s over the baseline's
INGEST_TARGET = 1.5


# -- data ----------------------------------------------------------------------------------------------------
def data_dir(plan: dict[str, Any]) -> Path:
    tag = f"e{plan['entities']}-t{plan['timestamps_per_entity']}-r{plan['entity_rows']}-s{SEED}"
    return common.DATA_DIR / f"spark-{tag}"


def ensure_join_data(plan: dict[str, Any]) -> Path:
    """Generate the feature files and the entity file once per size; later runs reuse them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = data_dir(plan)
    done = folder / "join.done"
    if done.exists():
        return folder
    common.log(f"generating join data in {folder} ...")
    started = time.perf_counter()
    shutil.rmtree(folder / "features", ignore_errors=True)
    (folder / "features").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    n_ent, per, n_rows = plan["entities"], plan["timestamps_per_entity"], plan["entity_rows"]
    span_us = DAYS * 86_400 * 1_000_000

    # `per` distinct times per entity (sorted, then spread 1 us apart: no entity has two rows at one time), the
    # whole table in event-time order like an append-only log, cut into files of FEATURE_FILE_ROWS rows.
    offsets = np.sort(rng.integers(0, span_us - per, size=(n_ent, per)), axis=1) + np.arange(per)
    ids = np.repeat(np.arange(n_ent, dtype=np.int64), per)
    offsets = offsets.ravel()
    order = np.argsort(offsets, kind="stable")
    ids, offsets = ids[order], offsets[order]
    del order
    utc = pa.timestamp("us", tz="UTC")
    start_us = START.astype(np.int64)
    for part, begin in enumerate(range(0, ids.size, FEATURE_FILE_ROWS)):
        end = min(begin + FEATURE_FILE_ROWS, ids.size)
        n = end - begin
        columns: dict[str, pa.Array] = {
            KEY: pa.array(ids[begin:end]),
            EVENT_TIME: pa.array(offsets[begin:end] + start_us, type=pa.int64()).cast(utc),
        }
        values = rng.standard_normal(size=(N_FEATURES, n))
        nulls = rng.random(size=(N_FEATURES, n)) < NULL_FRACTION
        for i, name in enumerate(FEATURES):
            columns[name] = pa.array(values[i], mask=nulls[i], type=pa.float64())
        pq.write_table(pa.table(columns), folder / "features" / f"part-{part:05d}.parquet")
    del ids, offsets

    ent_ids = rng.integers(0, n_ent, size=n_rows, dtype=np.int64)
    unknown = rng.random(size=n_rows) < UNKNOWN_ENTITY_FRACTION
    ent_ids[unknown] += n_ent
    ent_time = rng.integers(0, span_us, size=n_rows) + start_us
    entities = pa.table(
        {
            KEY: pa.array(ent_ids),
            ENTITY_TIME: pa.array(ent_time, type=pa.int64()).cast(utc),
            "label": pa.array(rng.integers(0, 2, size=n_rows, dtype=np.int64)),
        }
    )
    pq.write_table(entities, folder / "entities.parquet", row_group_size=ENTITY_ROW_GROUP)
    done.write_text("")
    common.log(
        f"generated {n_ent * per:,} feature rows, {n_rows:,} entity rows in {time.perf_counter() - started:.0f}s"
    )
    return folder


def feature_files(folder: Path) -> list[str]:
    return [str(p) for p in sorted((folder / "features").glob("part-*.parquet"))]


def score_input(rows: int) -> Path:
    """A seeded Parquet input of ``rows`` x (``row_id``, 20 floats), generated once by row groups."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = common.DATA_DIR / f"spark-score-{rows}x{SCORE_FEATURES}-{SEED}.parquet"
    if path.exists():
        return path
    common.log(f"generating {path.name} ...")
    common.DATA_DIR.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    schema = pa.schema([("row_id", pa.int64()), *((c, pa.float64()) for c in SCORE_COLUMNS)])
    tmp = path.with_name(path.name + ".tmp")
    with pq.ParquetWriter(tmp, schema) as writer:
        for start in range(0, rows, SCORE_ROW_GROUP):
            n = min(SCORE_ROW_GROUP, rows - start)
            values = rng.standard_normal(size=(n, SCORE_FEATURES))
            values[rng.random(size=values.shape) < SCORE_NULL_FRACTION] = np.nan
            columns = {"row_id": np.arange(start, start + n, dtype=np.int64)}
            columns.update({c: values[:, i] for i, c in enumerate(SCORE_COLUMNS)})
            writer.write_table(pa.table(columns, schema=schema))
    tmp.replace(path)
    return path


# -- the session and the engines -----------------------------------------------------------------------------
def spark_settings(plan: dict[str, Any], work: Path) -> dict[str, str]:
    """The session's settings, shared by both sides (the engine reuses the session and adds what it requires)."""
    return {
        "spark.driver.memory": plan["driver_memory"],
        "spark.sql.shuffle.partitions": str(plan["shuffle_partitions"]),
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.local.dir": str(work / "spark-local"),  # shuffle and spill files, removed with the work folder
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
    }


def start_session(settings: dict[str, str]) -> Any:
    # Before the JVM starts: executors' Python workers run this interpreter, and nothing binds beyond loopback.
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master(MASTER).appName("keel-bench-spark")
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def spark_engine(settings: dict[str, str]) -> Any:
    """Keel's Spark engine on the session already started (Spark allows one per process)."""
    from keel.engines.spark import SparkEngine

    return SparkEngine(master=MASTER, conf=settings, app_name="keel-bench-spark")


class DriverPeak:
    """Sample, every 0.2 s, the resident memory of this process (the Python driver), of the JVM it started (the
    driver JVM; in ``local`` mode also the executors) and of that JVM's Python workers, keeping each peak."""

    def __init__(self, interval_s: float = 0.2) -> None:
        self.interval_s = interval_s
        self.python_mb = 0.0
        self.jvm_mb = 0.0
        self.workers_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                self.python_mb = max(self.python_mb, me.memory_info().rss / 2**20)
                jvm, workers = 0, 0
                for child in me.children():
                    if "java" not in child.name():
                        continue
                    jvm += child.memory_info().rss
                    for worker in child.children(recursive=True):
                        with contextlib.suppress(psutil.Error):
                            workers += worker.memory_info().rss
                self.jvm_mb = max(self.jvm_mb, jvm / 2**20)
                self.workers_mb = max(self.workers_mb, workers / 2**20)
            self._stop.wait(self.interval_s)

    def __enter__(self) -> DriverPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def as_json(self) -> dict[str, float]:
        return {
            "python_driver_mb": round(self.python_mb, 1),
            "jvm_mb": round(self.jvm_mb, 1),
            "python_workers_mb": round(self.workers_mb, 1),
        }


def content_digest(
    spark: Any, paths: list[str], columns: list[str], casts: dict[str, str] | None = None
) -> dict[str, Any]:
    """Rows and an order-independent digest of ``columns`` of the Parquet files or folders ``paths``.

    Each row's columns, in the given order, become one JSON text (a null is an absent field, so it is told
    apart from any value) hashed with xxhash64; the digest is the sum of the hashes, as an exact decimal.
    ``casts`` converts columns first (``{"prediction": "double"}``), so that a type difference alone does not
    count as a different value.
    """
    casts = casts or {}
    fields = ", ".join(f"'{c}', CAST(`{c}` AS {casts[c]})" if c in casts else f"'{c}', `{c}`" for c in columns)
    frame = spark.read.parquet(*paths).selectExpr(f"xxhash64(to_json(named_struct({fields}))) AS h")
    row = frame.selectExpr("count(*) AS n", "CAST(sum(CAST(h AS DECIMAL(38, 0))) AS STRING) AS digest").first()
    return {"rows": int(row["n"]), "digest": row["digest"]}


def safe_digest(
    spark: Any, paths: list[str], columns: list[str], casts: dict[str, str] | None = None
) -> dict[str, Any]:
    """:func:`content_digest`, or the error that prevented it (a missing column is a finding, not a crash)."""
    try:
        return content_digest(spark, paths, columns, casts)
    except Exception as exc:
        return {"rows": -1, "digest": None, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"}


def fresh(folder: Path) -> Callable[[], Path]:
    """A setup for :func:`common.interleaved_with_setup`: the output folder, removed before each run."""

    def setup() -> Path:
        shutil.rmtree(folder, ignore_errors=True)
        folder.parent.mkdir(parents=True, exist_ok=True)
        return folder

    return setup


def written_paths(written: Any, fallback: Path) -> list[str]:
    """The files an engine says it wrote (:class:`keel.engines.Written`), else its output folder."""
    uris = getattr(written, "uris", None)
    return list(uris()) if callable(uris) else [str(fallback)]


def log_timings(name: str, timings: dict[str, common.Timing]) -> None:
    for side, t in timings.items():
        common.log(f"{name} {side}: median {t.median_s:.2f}s runs {[round(r, 2) for r in t.runs]}")


# -- point-in-time join ----------------------------------------------------------------------------------------
def pit_source(files: list[str]) -> Any:
    from keel.engines._base import PointInTimeSource

    return PointInTimeSource(
        view=VIEW,
        paths=tuple(files),
        join_keys=(KEY,),
        timestamp=EVENT_TIME,
        created_timestamp=None,
        features=tuple((f, f) for f in FEATURES),
        ttl=TTL,
        deduplicate=False,  # no (key, event time) repeats: nothing to break ties on
        sequence=None,
    )


def raw_pit_join(spark: Any, entities: str, files: list[str], into: Path) -> Path:
    """The ceiling: what a careful Spark user writes for a point-in-time join with a TTL."""
    spark.read.parquet(*files).createOrReplaceTempView("bench_features")
    spark.read.parquet(entities).createOrReplaceTempView("bench_entities")
    ttl_s = int(TTL.total_seconds())
    features = ", ".join(f"f.`{c}`" for c in FEATURES)
    spark.sql(
        f"""
        SELECT `{KEY}`, `{ENTITY_TIME}`, label, {", ".join(f"`{c}`" for c in FEATURES)}
        FROM (
            SELECT e.*, {features},
                   row_number() OVER (PARTITION BY e.__row ORDER BY f.`{EVENT_TIME}` DESC) AS __rank
            FROM (SELECT *, monotonically_increasing_id() AS __row FROM bench_entities) e
            LEFT JOIN bench_features f
              ON f.`{KEY}` = e.`{KEY}`
             AND f.`{EVENT_TIME}` <= e.`{ENTITY_TIME}`
             AND f.`{EVENT_TIME}` >= e.`{ENTITY_TIME}` - INTERVAL {ttl_s} SECONDS
        ) WHERE __rank = 1
        """
    ).write.mode("overwrite").parquet(str(into))
    return into


def bench_pit(args: Any, spark: Any, engine: Any, folder: Path, work: Path, params: dict[str, Any]) -> None:
    from keel.engines._base import Files

    files = feature_files(folder)
    entities = str(folder / "entities.parquet")
    source = pit_source(files)
    out = work / "pit"
    baseline = (fresh(out / "baseline"), lambda into: raw_pit_join(spark, entities, files, into))
    if engine is None:
        log_timings(
            "point_in_time_join",
            common.interleaved_with_setup({"baseline": baseline}, runs=args.runs, warmup=args.warmup),
        )
        return

    def keel_join(into: Path) -> Any:
        return engine.join_to(
            Files((entities,)), [source], timestamp=ENTITY_TIME, key_types={KEY: "int64"}, into=str(into)
        )

    timings = common.interleaved_with_setup(
        {"keel": (fresh(out / "keel"), keel_join), "baseline": baseline}, runs=args.runs, warmup=args.warmup
    )
    log_timings("point_in_time_join", timings)
    local = local_join_context(args, files, entities, out / "local")
    columns = [KEY, ENTITY_TIME, "label", *FEATURES]
    keel_digest = safe_digest(spark, written_paths(timings["keel"].last, out / "keel"), columns)
    base_digest = content_digest(spark, [str(out / "baseline")], columns)
    checks: dict[str, Any] = {
        "rows": keel_digest["rows"],
        "baseline_rows": base_digest["rows"],
        "all_entity_rows": keel_digest["rows"] == base_digest["rows"] == params["entity_rows"],
        "values_identical": keel_digest["digest"] == base_digest["digest"],
    }
    if "error" in keel_digest:
        checks["keel_output_error"] = keel_digest["error"]
    if local.get("paths"):
        local_digest = safe_digest(spark, local.pop("paths"), columns)
        checks["local_engine_values_identical"] = local_digest["digest"] == base_digest["digest"]
    keel_fig = {**timings["keel"].as_json(), "local_engine": local}
    common.emit(
        common.result(
            "spark.point_in_time_join",
            params={**params, "feature_files": len(files)},
            keel=keel_fig,
            baseline_name="hand-written spark sql: left join on key and ttl window, row_number() = 1",
            baseline=timings["baseline"],
            ratio_max=PIT_TARGET,
            checks=checks,
        ),
        args,
    )


def local_join_context(args: Any, files: list[str], entities: str, into: Path) -> dict[str, Any]:
    """``LocalEngine.join_to`` on the same files, for context: its median time, or why it could not run."""
    try:
        from keel.engines._base import Files
        from keel.engines.local import LocalEngine

        local = LocalEngine()
        timing = common.interleaved_with_setup(
            {
                "local": (
                    fresh(into),
                    lambda out: local.join_to(
                        Files((entities,)),
                        [pit_source(files)],
                        timestamp=ENTITY_TIME,
                        key_types={KEY: "int64"},
                        into=str(out),
                    ),
                )
            },
            runs=args.runs,
            warmup=0,
        )["local"]
    except Exception as exc:
        common.log(f"local engine join_to could not run: {exc}")
        return {"error": f"{type(exc).__name__}: {exc}"[:300]}
    common.log(f"point_in_time_join local engine: median {timing.median_s:.2f}s")
    return {**timing.as_json(), "paths": written_paths(timing.last, into)}


# -- batch scoring -------------------------------------------------------------------------------------------
def raw_score(spark: Any, source: Path, package: Any, into: Path) -> Path:
    """The ceiling: ``mapInPandas`` calling the fitted preprocessor and the bare estimator's ``predict``."""
    estimator, preprocessor = package.estimator, package.preprocessor

    def predict(batches: Any) -> Any:
        import pandas as pd
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):  # Spark already runs one task per core
            for batch in batches:
                matrix = preprocessor.transform(batch[SCORE_COLUMNS])
                yield pd.DataFrame({"row_id": batch["row_id"].to_numpy(), "prediction": estimator.predict(matrix)})

    frame = spark.read.parquet(str(source)).mapInPandas(predict, "row_id long, prediction long")
    frame.write.mode("overwrite").parquet(str(into))
    return into


def score_project(work: Path) -> Path:
    """A project holding the batch benchmark's ``bench@champion`` (the same model, the same fit)."""
    import batch

    root = work / "project"
    root.mkdir(parents=True, exist_ok=True)
    batch.setup_project(root)
    return root


class Peaks:
    """The highest memory figures seen per (side, size) over the runs :meth:`sampled` wraps."""

    def __init__(self) -> None:
        self.figures: dict[tuple[str, str], dict[str, float]] = {}

    def sampled(self, side: str, size: str, fn: Callable[[Path], Any]) -> Callable[[Path], Any]:
        """``fn`` run under a :class:`DriverPeak`, its figures kept."""

        def run(into: Path) -> Any:
            with DriverPeak() as peak:
                value = fn(into)
            seen = self.figures.setdefault((side, size), {})
            for key, mb in peak.as_json().items():
                seen[key] = max(seen.get(key, 0.0), mb)
            return value

        return run

    def __getitem__(self, key: tuple[str, str]) -> dict[str, float]:
        return self.figures[key]


def bench_score(args: Any, spark: Any, engine: Any, plan: dict[str, Any], work: Path, params: dict[str, Any]) -> None:
    import keel

    project_root = score_project(work)
    with keel.Project.open(project_root) as project:
        ref = project.models.ref(MODEL)
        package = project.models.load(MODEL)
    small_rows, big_rows = plan["score_rows"]["2m"], plan["score_rows"]["10m"]
    sources = {"2m": score_input(small_rows), "10m": score_input(big_rows)}
    out = work / "score"
    peaks = Peaks()
    sides: dict[str, Callable[[Path, Path], Any]] = {
        "baseline": lambda source, into: raw_score(spark, source, package, into)
    }
    if engine is not None:
        from keel.engines._base import Files, Scoring

        scoring = Scoring(id_column="row_id", probabilities=False)  # the baseline predicts only
        sides["keel"] = lambda source, into: engine.score(Files((str(source),)), ref, str(into), scoring=scoring)

    def run(side: str, size: str) -> tuple[Callable[[], Path], Callable[[Path], Any]]:
        return fresh(out / f"{side}-{size}"), peaks.sampled(side, size, lambda into: sides[side](sources[size], into))

    # Memory at the small size first (one warm-up, one sampled run per side), so that the large size cannot look
    # better by going second, on a JVM whose heap has already grown.
    small = common.interleaved_with_setup({side: run(side, "2m") for side in sides}, runs=1, warmup=1)
    timings = common.interleaved_with_setup(
        {side: run(side, "10m") for side in sides}, runs=args.runs, warmup=args.warmup
    )
    log_timings("score", timings)
    for side in sides:
        common.log(f"score {side} peak memory at 2m: {peaks[side, '2m']}, at 10m: {peaks[side, '10m']}")
    if engine is None:
        return

    columns, casts = ["row_id", "prediction"], {"prediction": "double"}
    keel_digest = safe_digest(spark, written_paths(timings["keel"].last, out / "keel-10m"), columns, casts)
    base_digest = content_digest(spark, [str(out / "baseline-10m")], columns, casts)
    keel_rate = big_rows / timings["keel"].median_s
    base_rate = big_rows / timings["baseline"].median_s
    keel_small, keel_big = peaks["keel", "2m"], peaks["keel", "10m"]
    checks: dict[str, Any] = {
        "rows": keel_digest["rows"],
        "all_rows": keel_digest["rows"] == base_digest["rows"] == big_rows,
        "predictions_identical": keel_digest["digest"] == base_digest["digest"],
        "python_driver_peak_rss_mb_at_2m": keel_small["python_driver_mb"],
        "python_driver_peak_rss_mb_at_10m": keel_big["python_driver_mb"],
        "driver_memory_bounded": keel_big["python_driver_mb"] <= 1.25 * keel_small["python_driver_mb"] + 64,
        "jvm_peak_rss_mb_at_2m": keel_small["jvm_mb"],
        "jvm_peak_rss_mb_at_10m": keel_big["jvm_mb"],
    }
    if "error" in keel_digest:
        checks["keel_output_error"] = keel_digest["error"]
    common.emit(
        common.result(
            "spark.score",
            params={
                **params,
                "rows": big_rows,
                "small_rows": small_rows,
                "features": SCORE_FEATURES,
                "estimator": "HistGradientBoostingClassifier(max_iter=100)",
                "probabilities": False,
            },
            keel={
                **timings["keel"].as_json(),
                "rows_per_s": round(keel_rate),
                "rows_per_s_at_2m": round(small_rows / small["keel"].median_s),
                "peak_rss_mb_at_2m": keel_small,
                "peak_rss_mb_at_10m": keel_big,
            },
            baseline_name="mapInPandas: fitted preprocessor + bare estimator.predict, written to parquet",
            baseline={
                **timings["baseline"].as_json(),
                "rows_per_s": round(base_rate),
                "rows_per_s_at_2m": round(small_rows / small["baseline"].median_s),
                "peak_rss_mb_at_2m": peaks["baseline", "2m"],
                "peak_rss_mb_at_10m": peaks["baseline", "10m"],
            },
            ratio_max=None,
            ratio_min=SCORE_TARGET_MIN,
            ratio=keel_rate / base_rate,
            ratio_is="keel rows/s / baseline rows/s (throughput: higher is better)",
            checks=checks,
        ),
        args,
    )


# -- ingest --------------------------------------------------------------------------------------------------
def normalisation() -> Any:
    from keel.engines._base import Normalisation

    return Normalisation(
        view=VIEW,
        join_keys=(KEY,),
        timestamp=EVENT_TIME,
        created_timestamp=None,
        features=tuple((f, "float64") for f in FEATURES),
    )


def raw_ingest(spark: Any, files: list[str], into: Path) -> Path:
    """The least a copy into the declared types does: read, cast, write."""
    from pyspark.sql import functions as F

    columns = [F.col(KEY).cast("bigint"), F.col(EVENT_TIME).cast("timestamp")]
    columns += [F.col(f).cast("double") for f in FEATURES]
    spark.read.parquet(*files).select(*columns).write.mode("overwrite").parquet(str(into))
    return into


def bench_ingest(args: Any, spark: Any, engine: Any, folder: Path, work: Path, params: dict[str, Any]) -> None:
    files = feature_files(folder)
    out = work / "ingest"
    baseline = (fresh(out / "baseline"), lambda into: raw_ingest(spark, files, into))
    if engine is None:
        log_timings("ingest", common.interleaved_with_setup({"baseline": baseline}, runs=args.runs, warmup=args.warmup))
        return
    from keel.engines._base import Files

    rules = normalisation()
    timings = common.interleaved_with_setup(
        {
            "keel": (fresh(out / "keel"), lambda into: engine.ingest(Files(tuple(files)), rules, str(into))),
            "baseline": baseline,
        },
        runs=args.runs,
        warmup=args.warmup,
    )
    log_timings("ingest", timings)
    ingested = timings["keel"].last
    columns = [KEY, EVENT_TIME, *FEATURES]
    written = getattr(ingested, "written", None)
    keel_digest = safe_digest(spark, written_paths(written, out / "keel"), columns)
    base_digest = content_digest(spark, [str(out / "baseline")], columns)
    rows = params["feature_rows"]
    checks: dict[str, Any] = {
        "rows": int(getattr(ingested, "rows", -1)),
        "all_rows_ingested": getattr(ingested, "rows", -1) == keel_digest["rows"] == base_digest["rows"] == rows,
        "values_identical": keel_digest["digest"] == base_digest["digest"],
        "version_files": len(written.files) if written is not None else 0,
    }
    if "error" in keel_digest:
        checks["keel_output_error"] = keel_digest["error"]
    common.emit(
        common.result(
            "spark.ingest",
            params={**params, "source_files": len(files)},
            keel={**timings["keel"].as_json(), "rows_per_s": round(rows / timings["keel"].median_s)},
            baseline_name="spark read -> cast to the declared types -> write parquet",
            baseline={**timings["baseline"].as_json(), "rows_per_s": round(rows / timings["baseline"].median_s)},
            ratio_max=INGEST_TARGET,
            checks=checks,
        ),
        args,
    )


# -- main ----------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = common.parser(__doc__.splitlines()[0], runs=3, warmup=1)
    p.add_argument(
        "--baseline-only", action="store_true", help="time only the hand-written sides (stderr); no result lines"
    )
    args = common.parse_args(p, argv)
    for key in [k for k in os.environ if k.startswith("KEEL_")]:  # the defaults, whatever the shell says
        del os.environ[key]
    plan = QUICK if args.quick else FULL
    common.DATA_DIR.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="spark-", dir=common.DATA_DIR))
    params: dict[str, Any] = {
        "master": MASTER,
        "driver_memory": plan["driver_memory"],
        "shuffle_partitions": plan["shuffle_partitions"],
        "feature_rows": plan["entities"] * plan["timestamps_per_entity"],
        "entity_rows": plan["entity_rows"],
        "entities": plan["entities"],
        "features": N_FEATURES,
        "ttl_days": TTL.days,
        "runs": args.runs,
        "warmup": args.warmup,
        "quick": args.quick,
        "seed": SEED,
    }
    try:
        settings = spark_settings(plan, work)
        wanted = [w for w in ("spark.point_in_time_join", "spark.score", "spark.ingest") if common.selected(args, w)]
        folder = ensure_join_data(plan) if {"spark.point_in_time_join", "spark.ingest"} & set(wanted) else None
        spark = start_session(settings)
        params["spark"] = spark.version
        engine = None
        if not args.baseline_only:
            try:
                engine = spark_engine(settings)
            except ImportError as exc:
                common.log(f"the Spark engine is not available ({exc}); --baseline-only times the baselines alone")
                return 1
        if "spark.point_in_time_join" in wanted:
            assert folder is not None
            bench_pit(args, spark, engine, folder, work, params)
        if "spark.score" in wanted:
            bench_score(args, spark, engine, plan, work, params)
        if "spark.ingest" in wanted:
            assert folder is not None
            bench_ingest(args, spark, engine, folder, work, params)
        spark.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
