"""Offline store benchmark: ingestion throughput and point-in-time retrieval against raw DuckDB.

Data (seeded, generated once into ``bench/.data/``): 100,000 entities x 20 event times spread over 30 days,
8 float features (2,000,000 rows, a few nulls), and 200,000 entity rows at times spread over the same period
(about 1% of them for entities that have no features). The feature view's TTL is 7 days.

Workloads (one JSON line each):

``offline.ingest``
    ``project.ingest`` of the Parquet source into a fresh project (read, validate, digest, statistics, write
    an immutable version, catalog row), against a plain pyarrow read of the same Parquet, a cast to the
    declared types and a write with pyarrow's defaults (plus an fsync). Target: 1.5x. Each run is a fresh child
    process, so its peak RSS is the operation's own; both sides report their CPU seconds too.
``offline.ingest.mixed``
    The same on a wider source generated once: 5,000,000 rows (250,000 with ``--quick``) of a key, the event
    time, 6 floats, 2 integer counts and 2 categorical strings.
``offline.historical_features``
    ``project.historical_features(entity_df, 8 features)`` against one hand-written DuckDB ASOF LEFT JOIN with
    the same TTL filter over the same ingested Parquet files, fetched into a pandas DataFrame in entity order.
    Runs alternate between the two sides; the result must be identical, value for value.
``offline.verified_read``
    That training-set build right after the process's record of verified files is cleared (every file of the
    version is hashed first) against the same build once they are verified (a stat per file): what verified
    reads cost the first read of a version in a process, and later ones.

Run ``python bench/offline.py`` (full size, a few minutes) or ``python bench/offline.py --quick`` (seconds).
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common

SCRIPT = Path(__file__).resolve()

SEED = 20240115
START = np.datetime64("2024-01-15T00:00:00", "us")  # the 30 days cross a month boundary: 2 partition files
DAYS = 30
TTL = timedelta(days=7)
N_FEATURES = 8
NULL_FRACTION = 0.002  # of feature values
UNKNOWN_ENTITY_FRACTION = 0.01  # of entity rows

FULL = {"entities": 100_000, "timestamps_per_entity": 20, "entity_rows": 200_000}
QUICK = {"entities": 5_000, "timestamps_per_entity": 20, "entity_rows": 10_000}

VIEW = "bench_activity"
ENTITY = "bench_item"
KEY = "item_id"
EVENT_TIME = "event_time"
ENTITY_TIME = "event_timestamp"
FEATURES = [f"f{i}" for i in range(N_FEATURES)]

INGEST_TARGET = 1.5  # issue #16: Keel's ingest within 1.5x a plain read -> cast -> write of the same file

#: The wider ingest source: 6 floats, 2 counts and 2 categorical strings besides the key and the event time.
MIXED_SCHEMA = [
    *[(f"x{i}", "float64") for i in range(6)],
    ("orders", "int64"),
    ("visits", "int64"),
    ("plan", "string"),
    ("country", "string"),
]
CATEGORIES = {
    "plan": ["basic", "pro", "team", "enterprise"],
    "country": [f"country-{i:02d}" for i in range(50)],
}
MIXED_ROWS = 5_000_000
MIXED_ROWS_QUICK = 250_000
HISTORICAL_TARGET = 1.25


# -- data ----------------------------------------------------------------------------------------------------
def data_dir(sizes: dict[str, int]) -> Path:
    tag = f"e{sizes['entities']}-t{sizes['timestamps_per_entity']}-r{sizes['entity_rows']}-s{SEED}"
    return common.DATA_DIR / f"offline-{tag}"


def ensure_data(sizes: dict[str, int]) -> Path:
    """Generate the feature and entity Parquet files once per size; later runs reuse them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = data_dir(sizes)
    features_path, entities_path = folder / "features.parquet", folder / "entities.parquet"
    if features_path.exists() and entities_path.exists():
        return folder
    common.log(f"generating data in {folder} ...")
    started = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    n_ent, per, n_rows = sizes["entities"], sizes["timestamps_per_entity"], sizes["entity_rows"]
    span_us = DAYS * 86_400 * 1_000_000

    # Event times: `per` distinct, uniformly random times per entity (sorted, then spread apart by 1 us so
    # that no two rows of an entity share an event time), the table in event-time order like an append-only
    # log.
    offsets = np.sort(rng.integers(0, span_us - per, size=(n_ent, per)), axis=1) + np.arange(per)
    ids = np.repeat(np.arange(n_ent, dtype=np.int64), per)
    offsets = offsets.ravel()
    order = np.argsort(offsets, kind="stable")
    ids, offsets = ids[order], offsets[order]
    event_time = START + offsets.astype("timedelta64[us]")
    utc = pa.timestamp("us", tz="UTC")
    columns: dict[str, pa.Array] = {
        KEY: pa.array(ids),
        EVENT_TIME: pa.array(event_time.astype(np.int64), type=pa.int64()).cast(utc),
    }
    values = rng.standard_normal(size=(N_FEATURES, ids.size))
    nulls = rng.random(size=(N_FEATURES, ids.size)) < NULL_FRACTION
    for i, name in enumerate(FEATURES):
        columns[name] = pa.array(values[i], mask=nulls[i], type=pa.float64())
    _write_atomic(pa.table(columns), features_path, pq)

    # Entity rows: random entities (about 1% unknown ones) at times spread uniformly over the period, in
    # random order; with a label, as a training frame would have.
    ent_ids = rng.integers(0, n_ent, size=n_rows, dtype=np.int64)
    unknown = rng.random(size=n_rows) < UNKNOWN_ENTITY_FRACTION
    ent_ids[unknown] += n_ent
    ent_time = START + rng.integers(0, span_us, size=n_rows).astype("timedelta64[us]")
    entities = pa.table(
        {
            KEY: pa.array(ent_ids),
            ENTITY_TIME: pa.array(ent_time.astype(np.int64), type=pa.int64()).cast(utc),
            "label": pa.array(rng.integers(0, 2, size=n_rows, dtype=np.int64)),
        }
    )
    _write_atomic(entities, entities_path, pq)
    common.log(f"generated {ids.size:,} feature rows, {n_rows:,} entity rows in {time.perf_counter() - started:.1f}s")
    return folder


def _write_atomic(table: Any, path: Path, pq: Any) -> None:
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def ensure_mixed_data(rows: int) -> Path:
    """The wider ingest source, generated once: ``rows`` rows of an integer key, the event time and features of
    every common kind (:data:`MIXED_SCHEMA`), in event-time order over :data:`DAYS` days from :data:`START`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = common.DATA_DIR / f"offline-mixed-{rows}-s{SEED}" / "features.parquet"
    if path.exists():
        return path
    common.log(f"generating {rows:,} mixed rows in {path.parent} ...")
    started = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED + 1)
    span_us = DAYS * 86_400 * 1_000_000
    entities = max(1, rows // 20)
    offsets = np.sort(rng.integers(0, span_us, size=rows))
    utc = pa.timestamp("us", tz="UTC")
    columns: dict[str, pa.Array] = {
        KEY: pa.array(rng.integers(0, entities, size=rows, dtype=np.int64)),
        EVENT_TIME: pa.array((START + offsets.astype("timedelta64[us]")).astype(np.int64), pa.int64()).cast(utc),
    }
    for name, dtype in MIXED_SCHEMA:
        nulls = rng.random(size=rows) < NULL_FRACTION
        if dtype == "float64":
            columns[name] = pa.array(rng.standard_normal(size=rows), mask=nulls, type=pa.float64())
        elif dtype == "int64":
            columns[name] = pa.array(rng.poisson(3.0, size=rows).astype(np.int64), mask=nulls, type=pa.int64())
        else:  # categories of Zipf-like shares, as a plan or a country column has
            categories = CATEGORIES[name]
            shares = 1.0 / np.arange(1, len(categories) + 1)
            codes = rng.choice(len(categories), size=rows, p=shares / shares.sum()).astype(np.int32)
            values = pa.DictionaryArray.from_arrays(pa.array(codes, mask=nulls), pa.array(categories))
            columns[name] = values.cast(pa.string())
    _write_atomic(pa.table(columns), path, pq)
    common.log(f"generated {rows:,} mixed rows in {time.perf_counter() - started:.1f}s")
    return path


def definitions(features_path: Path, schema: list[tuple[str, str]] | None = None) -> tuple[Any, Any]:
    """The bench entity and view over ``features_path``: the float features, or the features of ``schema``."""
    from keel import Entity, FeatureView, Field, ParquetSource

    entity = Entity(ENTITY, join_keys=[KEY])
    declared = schema if schema is not None else [(f, "float64") for f in FEATURES]
    view = FeatureView(
        VIEW,
        entities=[entity],
        source=ParquetSource(str(features_path), timestamp=EVENT_TIME),
        schema=[Field(name, dtype) for name, dtype in declared],
        ttl=TTL,
    )
    return entity, view


def stored_schema(schema: list[tuple[str, str]]) -> Any:
    """The Arrow schema Keel stores the view's declared columns as: what the baseline casts to."""
    import pyarrow as pa

    types = {"float64": pa.float64(), "int64": pa.int64(), "string": pa.string()}
    fields = [pa.field(KEY, pa.int64()), pa.field(EVENT_TIME, pa.timestamp("us", tz="UTC"))]
    return pa.schema(fields + [pa.field(name, types[dtype]) for name, dtype in schema])


# -- child tasks (each in a fresh interpreter: its peak RSS is the operation's) ------------------------------
def child_keel_ingest(payload: dict[str, Any]) -> dict[str, Any]:
    import keel

    project_dir = Path(payload["project"])
    shutil.rmtree(project_dir, ignore_errors=True)
    project_dir.mkdir(parents=True)
    schema = [tuple(f) for f in payload["schema"]] if payload.get("schema") else None
    entity, view = definitions(Path(payload["features"]), schema)  # type: ignore[arg-type]
    with keel.Project.open(project_dir) as project:
        project.apply([entity, view])
        before = common.current_rss_mb()
        cpu = time.process_time()
        started = time.perf_counter()
        res = project.ingest(view)
        seconds = time.perf_counter() - started
        cpu_s = time.process_time() - cpu
        files = len(res.version.files)
    return {
        "seconds": seconds,
        "cpu_s": cpu_s,
        "rows": res.rows,
        "stored_rows": res.version.row_count,
        "created": res.created,
        "files": files,
        "rss_before_mb": before,
        "peak_rss_mb": common.lifetime_peak_rss_mb(),
    }


def child_arrow_copy(payload: dict[str, Any]) -> dict[str, Any]:
    """The baseline, as issue #16 states it: a plain pyarrow read of the source, a cast to the declared types, a
    write with pyarrow's default settings, and a sync."""
    import pyarrow.parquet as pq

    out = Path(payload["output"])
    out.parent.mkdir(parents=True, exist_ok=True)
    target = stored_schema([tuple(f) for f in payload["schema"]])  # type: ignore[misc]
    pq.read_schema(payload["features"])  # as Keel's side reads the source's schema (apply) before its clock starts
    before = common.current_rss_mb()
    cpu = time.process_time()
    started = time.perf_counter()
    table = pq.read_table(payload["features"]).select(target.names).cast(target)
    pq.write_table(table, out)
    with open(out, "rb+") as f:
        os.fsync(f.fileno())
    seconds = time.perf_counter() - started
    cpu_s = time.process_time() - cpu
    rows = table.num_rows
    del table
    out.unlink()
    return {
        "seconds": seconds,
        "cpu_s": cpu_s,
        "rows": rows,
        "rss_before_mb": before,
        "peak_rss_mb": common.lifetime_peak_rss_mb(),
    }


# -- workloads -----------------------------------------------------------------------------------------------
def bench_ingest(
    args: Any,
    workload: str,
    features: Path,
    schema: list[tuple[str, str]] | None,
    params: dict[str, Any],
    work: Path,
) -> Path:
    """Time ``project.ingest`` and the pyarrow copy of ``features`` in alternating child processes.

    Returns the project of the last ingest (the retrieval workload reads the float one's).
    """
    import pyarrow.parquet as pq

    declared = schema if schema is not None else [(f, "float64") for f in FEATURES]
    keel_runs: list[dict[str, Any]] = []
    base_runs: list[dict[str, Any]] = []
    project = work / "project"
    total = args.warmup + args.runs
    for i in range(total):
        timed = i >= args.warmup
        order = ("keel", "baseline") if i % 2 == 0 else ("baseline", "keel")
        for side in order:
            if side == "keel":
                payload = {"features": str(features), "project": str(project), "schema": schema}
                r = common.run_child(SCRIPT, "keel_ingest", payload)
                if not r["created"]:
                    raise RuntimeError("ingest into a fresh project created no version")
                if timed:
                    keel_runs.append(r)
            else:
                payload = {"features": str(features), "output": str(work / "copy.parquet"), "schema": declared}
                r = common.run_child(SCRIPT, "arrow_copy", payload)
                if timed:
                    base_runs.append(r)
            phase = "run" if timed else "warm-up"
            common.log(f"{workload} {phase} {side}: {r['seconds']:.3f}s (cpu {r['cpu_s']:.2f}s)")
    rows = keel_runs[-1]["rows"]
    figures = {}
    for side, runs in (("keel", keel_runs), ("baseline", base_runs)):
        timing = common.Timing([r["seconds"] for r in runs])
        figures[side] = {
            **timing.as_json(),
            "cpu_s": common.round6(statistics.median(r["cpu_s"] for r in runs)),
            "rows_per_s": round(rows / timing.median_s),
            "peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs), 1),
            "peak_rss_increase_mb": round(max(r["peak_rss_mb"] - r["rss_before_mb"] for r in runs), 1),
        }
    # CPU seconds move far less than wall time on a shared machine: context for the ratio.
    figures["keel"]["cpu_ratio"] = round(figures["keel"]["cpu_s"] / figures["baseline"]["cpu_s"], 3)
    meta = pq.read_metadata(features)
    line = common.result(
        workload,
        params={
            **params,
            "source_mb": round(features.stat().st_size / 2**20, 1),
            "source_columns": meta.num_columns,
            "source_dtypes": dict(declared),
            "version_files": keel_runs[-1]["files"],
        },
        keel=figures["keel"],
        baseline_name="pyarrow read_table + cast to the declared types + write_table (+ fsync)",
        baseline=figures["baseline"],
        ratio_max=INGEST_TARGET,
        checks={
            "rows": rows,
            "all_rows_ingested": all(r["stored_rows"] == r["rows"] == params["feature_rows"] for r in keel_runs),
        },
    )
    common.emit(line, args)
    return project


def raw_join_sql(paths: tuple[str, ...]) -> str:
    """The hand-written point-in-time join: latest row at or before each entity time, null beyond the TTL."""
    files = "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "]"
    ttl_us = int(TTL.total_seconds() * 1_000_000)
    fresh = f"f.{EVENT_TIME} >= e.{ENTITY_TIME} - INTERVAL ({ttl_us}) MICROSECONDS"
    values = ", ".join(f"CASE WHEN {fresh} THEN f.{c} END AS {c}" for c in FEATURES)
    return (
        f"SELECT e.* EXCLUDE (__row), {values} "
        f"FROM entities e ASOF LEFT JOIN "
        f"(SELECT {KEY}, {EVENT_TIME}, {', '.join(FEATURES)} FROM read_parquet({files})) f "
        f"ON e.{KEY} = f.{KEY} AND e.{ENTITY_TIME} >= f.{EVENT_TIME} "
        f"ORDER BY e.__row"
    )


def raw_join(entity_df: Any, sql: str) -> Any:
    """The baseline: what a careful user would write with DuckDB alone, from the same pandas frame."""
    import duckdb
    import pyarrow as pa

    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        entities = pa.Table.from_pandas(entity_df, preserve_index=False)
        entities = entities.append_column("__row", pa.array(np.arange(len(entity_df), dtype=np.int64)))
        con.register("entities", entities)
        rel = con.sql(sql)
        # Arrow then pandas: measured a little faster than DuckDB's own .df() here, so the stricter baseline.
        fetch = getattr(rel, "to_arrow_table", None) or rel.fetch_arrow_table
        return fetch().to_pandas()
    finally:
        con.close()


def compare(keel_df: Any, raw_df: Any, entity_df: Any) -> dict[str, Any]:
    """Checks: every entity row back, in order and unchanged; feature values equal to the raw join's."""
    import pandas as pd

    same_entities = len(keel_df) == len(entity_df) and keel_df.index.equals(entity_df.index)
    for c in entity_df.columns:
        same_entities = same_entities and c in keel_df.columns and keel_df[c].equals(entity_df[c])
    mismatched = 0
    columns_ok = list(raw_df.columns) == list(keel_df.columns)
    for c in FEATURES:
        if c not in keel_df.columns or c not in raw_df.columns:
            mismatched += len(entity_df)
            continue
        a = pd.to_numeric(keel_df[c]).to_numpy(dtype=np.float64, na_value=np.nan)
        b = pd.to_numeric(raw_df[c]).to_numpy(dtype=np.float64, na_value=np.nan)
        if len(a) != len(b):
            mismatched += max(len(a), len(b))
            continue
        equal = (a == b) | (np.isnan(a) & np.isnan(b))
        mismatched += int((~equal).sum())
    feature_values = keel_df[FEATURES].to_numpy(dtype=np.float64, na_value=np.nan)
    return {
        "rows": len(keel_df),
        "all_entity_rows": same_entities,
        "values_identical": mismatched == 0 and columns_ok,
        "mismatched_values": mismatched,
        "baseline_rows": len(raw_df),
        "rows_without_features": int(np.isnan(feature_values).all(axis=1).sum()),
    }


def bench_historical(args: Any, folder: Path, params: dict[str, Any], project_dir: Path) -> None:
    import duckdb
    import pandas as pd

    import keel

    entity_df = pd.read_parquet(folder / "entities.parquet")
    refs = [f"{VIEW}:{f}" for f in FEATURES]
    with keel.Project.open(project_dir) as project:
        version = project.feature_versions(VIEW)[-1]
        paths = project.offline_store.paths(version)
        sql = raw_join_sql(paths)
        with duckdb.connect() as con:
            threads = int(con.execute("SELECT current_setting('threads')").fetchone()[0])  # type: ignore[index]
        timings = common.interleaved(
            {
                "keel": lambda: project.historical_features(entity_df, refs),
                "baseline": lambda: raw_join(entity_df, sql),
            },
            runs=args.runs,
            warmup=args.warmup,
        )
    for side, t in timings.items():
        common.log(f"historical_features {side}: median {t.median_s:.3f}s runs {[round(r, 3) for r in t.runs]}")
    checks = compare(timings["keel"].last, timings["baseline"].last, entity_df)
    line = common.result(
        "offline.historical_features",
        params={**params, "threads": threads, "version_files": len(paths), "version_rows": version.row_count},
        keel=timings["keel"],
        baseline_name="raw duckdb asof join",
        baseline=timings["baseline"],
        ratio_max=HISTORICAL_TARGET,
        checks={"rows": checks.pop("rows"), **checks},
    )
    common.emit(line, args)


def bench_verified_read(args: Any, folder: Path, params: dict[str, Any], project_dir: Path) -> None:
    """A training-set build that verifies the version's files first (as the first read in a process does) against
    the same build once they are verified (as every later read: a stat per file)."""
    import pandas as pd

    import keel
    from keel.offline._verify import verified_files, verify_version

    entity_df = pd.read_parquet(folder / "entities.parquet")
    refs = [f"{VIEW}:{f}" for f in FEATURES]
    record = verified_files()
    with keel.Project.open(project_dir) as project:
        store = project.offline_store
        version = project.feature_versions(VIEW)[-1]
        version_mb = sum(store.fs.size(p) for p in store.paths(version)) / 2**20

        def first_read() -> Any:
            record.forget()
            return project.historical_features(entity_df, refs)

        def hash_only() -> None:
            record.forget()
            verify_version(store, version)

        before = record.hashed
        timings = common.interleaved(
            {"first": first_read, "cached": lambda: project.historical_features(entity_df, refs)},
            runs=args.runs,
            warmup=args.warmup,
        )
        first_runs = args.runs + args.warmup
        hashed_per_first = (record.hashed - before) / first_runs
        hashing = common.measure(hash_only, runs=args.runs, warmup=1)
        record.forget()
        verify_version(store, version)
        before = record.hashed
        stat = common.measure(lambda: verify_version(store, version), runs=args.runs, warmup=1)
        hashed_when_cached = record.hashed - before
    for side, t in timings.items():
        common.log(f"verified read {side}: median {t.median_s:.3f}s runs {[round(r, 3) for r in t.runs]}")
    first, cached = timings["first"].last, timings["cached"].last
    line = common.result(
        "offline.verified_read",
        params={**params, "version_files": len(version.files), "version_mb": round(version_mb, 1)},
        keel={
            **timings["first"].as_json(),
            "hash_median_s": common.round6(hashing.median_s),
            "hash_mb_per_s": round(version_mb / hashing.median_s),
        },
        baseline_name="the same build with the files already verified (a stat per file)",
        baseline={**timings["cached"].as_json(), "stat_median_s": common.round6(stat.median_s)},
        ratio_max=None,
        checks={
            "files_hashed_on_first_read": hashed_per_first,
            "every_file_hashed_on_first_read": hashed_per_first == len(version.files),
            "no_file_hashed_when_cached": hashed_when_cached == 0,
            "values_identical": bool(first.equals(cached)),
        },
    )
    common.emit(line, args)


def main(argv: list[str] | None = None) -> int:
    args = common.parse_args(common.parser(__doc__.splitlines()[0]), argv)
    for key in [k for k in os.environ if k.startswith("KEEL_")]:  # the defaults, whatever the shell says
        del os.environ[key]
    sizes = QUICK if args.quick else FULL
    folder = ensure_data(sizes)
    params: dict[str, Any] = {
        "feature_rows": sizes["entities"] * sizes["timestamps_per_entity"],
        "entity_rows": sizes["entity_rows"],
        "entities": sizes["entities"],
        "timestamps_per_entity": sizes["timestamps_per_entity"],
        "days": DAYS,
        "features": N_FEATURES,
        "ttl_days": TTL.days,
        "quick": args.quick,
        "seed": SEED,
    }
    project_dir: Path | None = None
    if common.selected(args, "offline.ingest"):
        project_dir = bench_ingest(args, "offline.ingest", folder / "features.parquet", None, params, folder / "work")
    if common.selected(args, "offline.ingest.mixed"):
        rows = MIXED_ROWS_QUICK if args.quick else MIXED_ROWS
        mixed = ensure_mixed_data(rows)
        mixed_params = {
            "feature_rows": rows,
            "entities": max(1, rows // 20),
            "days": DAYS,
            "features": len(MIXED_SCHEMA),
            "quick": args.quick,
            "seed": SEED + 1,
        }
        bench_ingest(args, "offline.ingest.mixed", mixed, MIXED_SCHEMA, mixed_params, mixed.parent / "work")
    if common.selected(args, "offline.historical_features"):
        if project_dir is None:
            project_dir = folder / "work" / "project"
            common.log("ingesting the features for historical_features ...")
            common.run_child(
                SCRIPT,
                "keel_ingest",
                {"features": str(folder / "features.parquet"), "project": str(project_dir)},
            )
        bench_historical(args, folder, params, project_dir)
    if common.selected(args, "offline.verified_read"):
        if project_dir is None:
            project_dir = folder / "work" / "project"
            common.log("ingesting the features for verified_read ...")
            common.run_child(
                SCRIPT,
                "keel_ingest",
                {"features": str(folder / "features.parquet"), "project": str(project_dir)},
            )
        bench_verified_read(args, folder, params, project_dir)
    return 0


if __name__ == "__main__":
    if not common.child_main({"keel_ingest": child_keel_ingest, "arrow_copy": child_arrow_copy}):
        sys.exit(main())
