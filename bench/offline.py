"""Offline store benchmark: ingestion throughput and point-in-time retrieval against raw DuckDB.

Data (seeded, generated once into ``bench/.data/``): 100,000 entities x 20 event times spread over 30 days,
8 float features (2,000,000 rows, a few nulls), and 200,000 entity rows at times spread over the same period
(about 1% of them for entities that have no features). The feature view's TTL is 7 days.

Workloads (one JSON line each):

``offline.ingest``
    ``project.ingest`` of the Parquet source into a fresh project (read, validate, digest, statistics, write
    an immutable version, catalog row), against reading and writing the same Parquet with pyarrow (plus an
    fsync). Each run is a fresh child process, so its peak RSS is the operation's own.
``offline.historical_features``
    ``project.historical_features(entity_df, 8 features)`` against one hand-written DuckDB ASOF LEFT JOIN with
    the same TTL filter over the same ingested Parquet files, fetched into a pandas DataFrame in entity order.
    Runs alternate between the two sides; the result must be identical, value for value.

Run ``python bench/offline.py`` (full size, a few minutes) or ``python bench/offline.py --quick`` (seconds).
"""

from __future__ import annotations

import os
import shutil
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

INGEST_TARGET = None  # reported, no target yet
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


def definitions(features_path: Path) -> tuple[Any, Any]:
    from keel import Entity, FeatureView, Field, ParquetSource

    entity = Entity(ENTITY, join_keys=[KEY])
    view = FeatureView(
        VIEW,
        entities=[entity],
        source=ParquetSource(str(features_path), timestamp=EVENT_TIME),
        schema=[Field(f, "float64") for f in FEATURES],
        ttl=TTL,
    )
    return entity, view


# -- child tasks (each in a fresh interpreter: its peak RSS is the operation's) ------------------------------
def child_keel_ingest(payload: dict[str, Any]) -> dict[str, Any]:
    import keel

    project_dir = Path(payload["project"])
    shutil.rmtree(project_dir, ignore_errors=True)
    project_dir.mkdir(parents=True)
    entity, view = definitions(Path(payload["features"]))
    with keel.Project.open(project_dir) as project:
        project.apply([entity, view])
        before = common.current_rss_mb()
        started = time.perf_counter()
        res = project.ingest(view)
        seconds = time.perf_counter() - started
        files = len(res.version.files)
    return {
        "seconds": seconds,
        "rows": res.rows,
        "stored_rows": res.version.row_count,
        "created": res.created,
        "files": files,
        "rss_before_mb": before,
        "peak_rss_mb": common.lifetime_peak_rss_mb(),
    }


def child_arrow_copy(payload: dict[str, Any]) -> dict[str, Any]:
    import pyarrow.parquet as pq

    out = Path(payload["output"])
    out.parent.mkdir(parents=True, exist_ok=True)
    before = common.current_rss_mb()
    started = time.perf_counter()
    table = pq.read_table(payload["features"])
    pq.write_table(table, out)
    with open(out, "rb+") as f:
        os.fsync(f.fileno())
    seconds = time.perf_counter() - started
    rows = table.num_rows
    del table
    out.unlink()
    return {
        "seconds": seconds,
        "rows": rows,
        "rss_before_mb": before,
        "peak_rss_mb": common.lifetime_peak_rss_mb(),
    }


# -- workloads -----------------------------------------------------------------------------------------------
def bench_ingest(args: Any, folder: Path, params: dict[str, Any]) -> Path:
    """Time ``project.ingest`` and the pyarrow copy in alternating child processes.

    Returns the project of the last ingest, which the retrieval workload reads.
    """
    import pyarrow.parquet as pq

    features = folder / "features.parquet"
    work = folder / "work"
    keel_runs: list[dict[str, Any]] = []
    base_runs: list[dict[str, Any]] = []
    project = work / "project"
    total = args.warmup + args.runs
    for i in range(total):
        timed = i >= args.warmup
        order = ("keel", "baseline") if i % 2 == 0 else ("baseline", "keel")
        for side in order:
            if side == "keel":
                r = common.run_child(SCRIPT, "keel_ingest", {"features": str(features), "project": str(project)})
                if not r["created"]:
                    raise RuntimeError("ingest into a fresh project created no version")
                if timed:
                    keel_runs.append(r)
            else:
                r = common.run_child(
                    SCRIPT, "arrow_copy", {"features": str(features), "output": str(work / "copy.parquet")}
                )
                if timed:
                    base_runs.append(r)
            common.log(f"ingest {'run' if timed else 'warm-up'} {side}: {r['seconds']:.3f}s")
    rows = keel_runs[-1]["rows"]
    keel_t = common.Timing([r["seconds"] for r in keel_runs])
    base_t = common.Timing([r["seconds"] for r in base_runs])
    keel_fig = {
        **keel_t.as_json(),
        "rows_per_s": round(rows / keel_t.median_s),
        "peak_rss_mb": round(max(r["peak_rss_mb"] for r in keel_runs), 1),
        "peak_rss_increase_mb": round(max(r["peak_rss_mb"] - r["rss_before_mb"] for r in keel_runs), 1),
    }
    base_fig = {
        **base_t.as_json(),
        "rows_per_s": round(rows / base_t.median_s),
        "peak_rss_mb": round(max(r["peak_rss_mb"] for r in base_runs), 1),
        "peak_rss_increase_mb": round(max(r["peak_rss_mb"] - r["rss_before_mb"] for r in base_runs), 1),
    }
    meta = pq.read_metadata(features)
    line = common.result(
        "offline.ingest",
        params={
            **params,
            "source_mb": round(features.stat().st_size / 2**20, 1),
            "source_columns": meta.num_columns,
            "version_files": keel_runs[-1]["files"],
        },
        keel=keel_fig,
        baseline_name="pyarrow read_table + write_table (+ fsync)",
        baseline=base_fig,
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
        project_dir = bench_ingest(args, folder, params)
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
    return 0


if __name__ == "__main__":
    if not common.child_main({"keel_ingest": child_keel_ingest, "arrow_copy": child_arrow_copy}):
        sys.exit(main())
