"""Online store benchmark: materialization and online reads (SQLite, Redis) against raw SQLite and redis-py.

Data (seeded, generated once a day into ``bench/.data/``): the offline benchmark's entities and features —
100,000 entities, 8 float features (0.2% nulls) — with 4 event times per entity spread over the 3 days before
midnight (UTC) of the day the data is generated, so that every entity's latest value is within the view's
7-day TTL when materialized now (Redis expires each entity at its event time plus the TTL: the data must be
recent). The feature view is ingested into a fresh project at the start of every run.

Workloads (one JSON line each; each side measured in the same run, alternately):

``online.materialize``
    ``project.materialize([view], end=now)`` into a fresh SQLite online store (a new file per run), against
    DuckDB's latest row per entity (the same window) over the same ingested Parquet files, fetched and bulk
    written with ``executemany`` into a new wide SQLite table in WAL mode (a new file per run). Both stores
    must end up holding the same rows.
``online.read.sqlite.1`` / ``online.read.sqlite.100``
    ``project.online_features(8 features, entity rows)`` for 1 and 100 random entities, against a raw
    primary-key ``SELECT`` of the same 8 columns (an ``IN (...)`` query for 100 keys) on the same SQLite table
    through ``sqlite3``. Thousands of calls per side, interleaved in blocks; p50 and p99 per call.
``online.read.redis.1`` / ``online.read.redis.100``
    The same reads from a Redis online store (database 15, a prefix of the run's own, removed afterwards),
    against redis-py ``GET`` / ``MGET`` of the same keys decoded with ``struct`` the way the store packs them.
``online.http.sequential`` / ``online.http.concurrent``
    ``POST /features`` for 1 entity on ``keel serve-features`` (uvicorn, 1 worker), next to a bare FastAPI
    endpoint returning a constant (uvicorn, same settings): p50, p99 and requests per second, from one
    client in sequence and from 8 concurrent clients (threads, one ``httpx.Client`` each). No target.

Run ``python bench/online.py`` (full size, a few minutes) or ``python bench/online.py --quick`` (seconds).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common

SCRIPT = Path(__file__).resolve()

SEED = 20240115
SPAN = timedelta(days=3)
TTL = timedelta(days=7)
N_FEATURES = 8
NULL_FRACTION = 0.002  # of feature values

FULL = {"entities": 100_000, "timestamps_per_entity": 4}
QUICK = {"entities": 5_000, "timestamps_per_entity": 4}
#: calls per side and calls per block of the latency workloads
READS_FULL = {"1": (6_000, 300), "100": (2_000, 100), "http": (3_000, 300)}
READS_QUICK = {"1": (600, 100), "100": (200, 50), "http": (300, 100)}

VIEW = "bench_activity"
ENTITY = "bench_item"
KEY = "item_id"
EVENT_TIME = "event_time"
FEATURES = [f"f{i}" for i in range(N_FEATURES)]
REFS = [f"{VIEW}:{f}" for f in FEATURES]

MATERIALIZE_TARGET = 1.5
SQLITE_TARGETS = {"1": 4.0, "100": 2.0}
REDIS_TARGET = 1.5
REDIS_URL = os.environ.get("KEEL_BENCH_REDIS", "redis://127.0.0.1:6379/15")
HTTP_CLIENTS = 8
KEEL_CLI = [sys.executable, "-c", "from keel.cli import main; main()"]


# -- data ----------------------------------------------------------------------------------------------------
def data_dir(sizes: dict[str, int], day: str) -> Path:
    return common.DATA_DIR / f"online-e{sizes['entities']}-t{sizes['timestamps_per_entity']}-s{SEED}-d{day}"


def ensure_data(sizes: dict[str, int]) -> Path:
    """Generate the feature Parquet file once a day (event times end at that day's midnight, UTC)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    folder = data_dir(sizes, midnight.strftime("%Y%m%d"))
    path = folder / "features.parquet"
    if path.exists():
        return folder
    for old in folder.parent.glob(f"online-e{sizes['entities']}-t{sizes['timestamps_per_entity']}-s{SEED}-d*"):
        shutil.rmtree(old, ignore_errors=True)  # older days' data (and work folders)
    common.log(f"generating data in {folder} ...")
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    n_ent, per = sizes["entities"], sizes["timestamps_per_entity"]
    span_us = SPAN // timedelta(microseconds=1)
    # `per` distinct times per entity in the SPAN before midnight; the table in event-time order, like a log.
    offsets = np.sort(rng.integers(0, span_us - per, size=(n_ent, per)), axis=1) + np.arange(per)
    ids = np.repeat(np.arange(n_ent, dtype=np.int64), per)
    offsets = offsets.ravel()
    order = np.argsort(offsets, kind="stable")
    ids, offsets = ids[order], offsets[order]
    start_us = (midnight - SPAN - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    utc = pa.timestamp("us", tz="UTC")
    columns: dict[str, pa.Array] = {
        KEY: pa.array(ids),
        EVENT_TIME: pa.array(start_us + offsets, type=pa.int64()).cast(utc),
    }
    values = rng.standard_normal(size=(N_FEATURES, ids.size))
    nulls = rng.random(size=(N_FEATURES, ids.size)) < NULL_FRACTION
    for i, name in enumerate(FEATURES):
        columns[name] = pa.array(values[i], mask=nulls[i], type=pa.float64())
    tmp = path.with_suffix(".tmp")
    pq.write_table(pa.table(columns), tmp)
    os.replace(tmp, path)
    return folder


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


def fresh_project(folder: Path) -> Path:
    """A new project with the view ingested (the same version all workloads read)."""
    import keel

    project_dir = folder / "work" / "project"
    shutil.rmtree(folder / "work", ignore_errors=True)
    project_dir.mkdir(parents=True)
    entity, view = definitions(folder / "features.parquet")
    with keel.Project.open(project_dir) as project:
        project.apply([entity, view])
        result = project.ingest(view)
        common.log(f"ingested {result.rows:,} rows in {result.seconds:.1f}s")
    return project_dir


# -- materialize ---------------------------------------------------------------------------------------------
def raw_latest_sql(paths: tuple[str, ...], end: datetime) -> str:
    """DuckDB: each entity's latest row in the TTL window ending at ``end``, event time as epoch µs."""
    files = "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "]"
    ttl_us = TTL // timedelta(microseconds=1)
    end_sql = f"TIMESTAMPTZ '{end.isoformat()}'"
    return (
        f"SELECT {KEY}, epoch_us({EVENT_TIME}) AS event_us, {', '.join(FEATURES)} "
        f"FROM read_parquet({files}) "
        f"WHERE {EVENT_TIME} <= {end_sql} AND {EVENT_TIME} >= {end_sql} - INTERVAL ({ttl_us}) MICROSECONDS "
        f"QUALIFY row_number() OVER (PARTITION BY {KEY} ORDER BY {EVENT_TIME} DESC) = 1"
    )


def raw_materialize(sql: str, path: Path) -> int:
    """The baseline: DuckDB's latest rows, written with one executemany into a new wide table (WAL)."""
    import duckdb

    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        rows = con.execute(sql).fetchall()
    finally:
        con.close()
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        columns = "".join(f", {f} REAL" for f in FEATURES)
        db.execute(f"CREATE TABLE latest ({KEY} INTEGER PRIMARY KEY, event_us INTEGER NOT NULL{columns})")
        db.execute("BEGIN")
        db.executemany(f"INSERT INTO latest VALUES ({', '.join('?' * (N_FEATURES + 2))})", rows)
        db.execute("COMMIT")
    finally:
        db.close()
    return len(rows)


def stored_rows(path: Path, table: str, key: str, event: str) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(path)
    try:
        columns = ", ".join(f'"{c}"' for c in (key, event, *FEATURES))
        return db.execute(f'SELECT {columns} FROM "{table}" ORDER BY 1').fetchall()
    finally:
        db.close()


def bench_materialize(args: Any, project_dir: Path, params: dict[str, Any], end: datetime) -> None:
    import keel
    from keel.online import SqliteOnlineStore

    stores = project_dir.parent / "stores"
    stores.mkdir(exist_ok=True)
    numbers = itertools.count()
    last: dict[str, Path] = {}

    def new_file(side: str) -> Path:
        if side in last:
            for leftover in stores.glob(f"{last[side].name}*"):  # the database and its -wal/-shm files
                leftover.unlink()
        last[side] = stores / f"{side}-{next(numbers)}.db"
        return last[side]

    def keel_setup() -> Any:
        project = keel.Project.open(project_dir, online=f"sqlite:///{new_file('keel')}")
        project.feature_views()  # the catalog is open: opening it is not what is measured
        return project

    def keel_run(project: Any) -> int:
        try:
            [result] = project.materialize([VIEW], end=end)
        finally:
            project.close()
        rows: int = result.rows
        return rows

    with keel.Project.open(project_dir) as project:
        version = project.catalog.feature_version(VIEW)
        sql = raw_latest_sql(project.offline_store.paths(version), end)
        prefix = project.online_prefix
    timings = common.interleaved_with_setup(
        {
            "keel": (keel_setup, keel_run),
            "baseline": (lambda: new_file("raw"), lambda path: raw_materialize(sql, path)),
        },
        runs=args.runs,
        warmup=args.warmup,
    )
    for side, t in timings.items():
        common.log(f"materialize {side}: median {t.median_s:.3f}s runs {[round(r, 3) for r in t.runs]}")
    with SqliteOnlineStore(f"sqlite:///{last['keel']}", prefix=prefix) as store:
        table = store.table_of(VIEW)
    assert table is not None
    keel_rows = stored_rows(last["keel"], table, "__keel_key", "__keel_event_us")
    raw_rows = stored_rows(last["raw"], "latest", KEY, "event_us")
    n = timings["keel"].last
    line = common.result(
        "online.materialize",
        params={**params, "version_rows": version.row_count, "store": "sqlite (a new file per run)"},
        keel={**timings["keel"].as_json(), "rows_per_s": round(n / timings["keel"].median_s)},
        baseline_name="raw duckdb latest-per-entity + sqlite executemany into a wide WAL table",
        baseline={**timings["baseline"].as_json(), "rows_per_s": round(n / timings["baseline"].median_s)},
        ratio_max=MATERIALIZE_TARGET,
        checks={
            "rows": n,
            "every_entity": n == params["entities"],
            "baseline_rows": timings["baseline"].last,
            "values_identical": keel_rows == raw_rows,
        },
    )
    common.emit(line, args)


# -- reads ---------------------------------------------------------------------------------------------------
def read_arguments(n_entities: int, calls: int, size: int, seed: int) -> list[tuple[list[dict[str, int]], list[int]]]:
    """``calls`` requests of ``size`` random entities: (entity rows for Keel, keys for the raw side)."""
    rng = np.random.default_rng(seed)
    keys = rng.integers(0, n_entities, size=(calls, size)).tolist()
    return [([{KEY: k} for k in ks], ks) for ks in keys]


def keel_reader(project: Any) -> Callable[[tuple[list[dict[str, int]], list[int]]], Any]:
    online_features = project.online_features

    def read(arg: tuple[list[dict[str, int]], list[int]]) -> Any:
        return online_features(REFS, arg[0])

    return read


def keel_values(result: Any) -> list[tuple[Any, ...]]:
    """Keel's answer as one tuple of the 8 values per requested entity."""
    return list(zip(*(result[f] for f in FEATURES), strict=True))


def latency_line(
    bench: str,
    args: Any,
    params: dict[str, Any],
    measured: dict[str, common.Latencies],
    baseline_name: str,
    target: float | None,
    checks: dict[str, Any],
) -> dict[str, Any]:
    for side, lat in measured.items():
        common.log(f"{bench} {side}: p50 {lat.percentile_ms(50):.4f} ms, p99 {lat.percentile_ms(99):.4f} ms")
    return common.result(
        bench,
        params=params,
        keel=measured["keel"].as_json(),
        baseline_name=baseline_name,
        baseline=measured["baseline"].as_json(),
        ratio_max=target,
        checks=checks,
        ratio_is="keel/baseline (p50)",
    )


def bench_sqlite_reads(args: Any, project_dir: Path, params: dict[str, Any], end: datetime, n: int) -> None:
    import keel

    reads = READS_QUICK if args.quick else READS_FULL
    with keel.Project.open(project_dir) as project:
        [result] = project.materialize([VIEW], end=end)
        common.log(f"materialized {result.rows:,} entities for the sqlite reads")
        table = project.online_store.table_of(VIEW)
        path = project.online_store.path
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, cached_statements=512)
        try:
            for size in ("1", "100"):
                bench = f"online.read.sqlite.{size}"
                if not common.selected(args, bench):
                    continue
                calls, block = reads[size]
                arguments = read_arguments(n, calls, int(size), seed=int(size))
                raw, name = sqlite_raw(db, table, int(size))
                measured = common.latency_blocks(
                    {"keel": keel_reader(project), "baseline": raw}, arguments, block=block, warmup=1
                )
                checks = compare_reads(project, arguments, raw, size)
                line = latency_line(
                    bench,
                    args,
                    {**params, "entities_per_read": int(size), "calls_per_side": calls, "block": block},
                    measured,
                    name,
                    SQLITE_TARGETS[size],
                    checks,
                )
                common.emit(line, args)
        finally:
            db.close()


def sqlite_raw(db: sqlite3.Connection, table: str, size: int) -> tuple[Callable[[Any], Any], str]:
    """The raw SQLite read of ``size`` keys on Keel's own table, and how the results call it."""
    columns = ", ".join(f'"{f}"' for f in FEATURES)
    if size == 1:
        one_sql = f'SELECT {columns} FROM "{table}" WHERE __keel_key = ?'

        def one(arg: tuple[Any, list[int]]) -> Any:
            return db.execute(one_sql, arg[1]).fetchone()

        return one, "raw sqlite3 primary-key SELECT of the 8 columns (fetchone)"
    many_sql = f'SELECT __keel_key, {columns} FROM "{table}" WHERE __keel_key IN ({",".join("?" * size)})'

    def many(arg: tuple[Any, list[int]]) -> Any:
        return db.execute(many_sql, arg[1]).fetchall()

    return many, f"raw sqlite3 SELECT ... WHERE key IN ({size} keys) (fetchall)"


def compare_reads(project: Any, arguments: list[Any], raw: Callable[[Any], Any], size: str) -> dict[str, Any]:
    """Keel's values against the raw side's, for a sample of the requests (outside the timings)."""
    mismatched = 0
    found = 0
    sample = arguments[:: max(1, len(arguments) // 200)]
    for arg in sample:
        mine = keel_values(project.online_features(REFS, arg[0]))
        got = raw(arg)
        if size == "1":
            theirs = [tuple(got) if got is not None else (None,) * N_FEATURES]
        else:
            by_key = {row[0]: tuple(row[1:]) for row in got}
            theirs = [by_key.get(k, (None,) * N_FEATURES) for k in arg[1]]
        mismatched += sum(a != b for a, b in zip(mine, theirs, strict=True))
        found += sum(any(v is not None for v in row) for row in mine)
    return {
        "requests_compared": len(sample),
        "values_identical": mismatched == 0,
        "mismatched_entities": mismatched,
        "entities_with_values": found,
    }


def redis_available(url: str) -> str:
    """``""`` when the Redis server answers, else why not."""
    try:
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=3)
        client.ping()
        client.close()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return ""


def bench_redis_reads(args: Any, project_dir: Path, params: dict[str, Any], end: datetime, n: int) -> None:
    import redis

    import keel

    problem = redis_available(REDIS_URL)
    if problem:
        common.log(f"skipping the Redis reads: {REDIS_URL} is unavailable ({problem})")
        return
    reads = READS_QUICK if args.quick else READS_FULL
    name = f"bench{uuid.uuid4().hex[:10]}"  # the project's name is its key prefix in Redis
    with keel.Project.open(project_dir, online=REDIS_URL, name=name) as project:
        client = redis.Redis.from_url(REDIS_URL)
        try:
            [result] = project.materialize([VIEW], end=end)
            common.log(f"materialized {result.rows:,} entities into Redis (prefix {project.online_prefix!r})")
            base = f"{project.online_prefix}:{VIEW}:"
            for size in ("1", "100"):
                bench = f"online.read.redis.{size}"
                if not common.selected(args, bench):
                    continue
                calls, block = reads[size]
                arguments = read_arguments(n, calls, int(size), seed=int(size))
                raw, what = redis_raw(client, base, int(size))
                measured = common.latency_blocks(
                    {"keel": keel_reader(project), "baseline": raw}, arguments, block=block, warmup=1
                )
                checks = compare_redis_reads(project, arguments, raw, size)
                line = latency_line(
                    bench,
                    args,
                    {**params, "entities_per_read": int(size), "calls_per_side": calls, "block": block},
                    measured,
                    what,
                    REDIS_TARGET,
                    checks,
                )
                common.emit(line, args)
        finally:
            project.online_store.drop_view(VIEW)
            client.close()


def redis_raw(client: Any, base: str, size: int) -> tuple[Callable[[Any], Any], str]:
    """The raw redis-py read of ``size`` keys, decoded the way the store packs 8 float64 features: event time
    (int64), layout id (uint64), a one-byte null bitmap, the 8 values (little-endian)."""
    row = struct.Struct(f"<qQ1s{N_FEATURES}d")
    nothing = b"\x00"

    def decode(buf: bytes | None) -> tuple[Any, ...] | None:
        if buf is None:
            return None
        values = row.unpack_from(buf)
        if values[2] == nothing:
            return values[3:]
        bits = values[2][0]
        return tuple(None if bits >> i & 1 else v for i, v in enumerate(values[3:]))

    if size == 1:

        def one(arg: tuple[Any, list[int]]) -> Any:
            return decode(client.get(f"{base}{arg[1][0]}"))

        return one, "raw redis-py GET + struct decoding of the packed row"

    def many(arg: tuple[Any, list[int]]) -> Any:
        return [decode(buf) for buf in client.mget([f"{base}{k}" for k in arg[1]])]

    return many, f"raw redis-py MGET ({size} keys) + struct decoding of the packed rows"


def compare_redis_reads(project: Any, arguments: list[Any], raw: Callable[[Any], Any], size: str) -> dict[str, Any]:
    mismatched = 0
    sample = arguments[:: max(1, len(arguments) // 200)]
    for arg in sample:
        mine = keel_values(project.online_features(REFS, arg[0]))
        got = raw(arg)
        rows = [got] if size == "1" else got
        theirs = [tuple(r) if r is not None else (None,) * N_FEATURES for r in rows]
        mismatched += sum(a != b for a, b in zip(mine, theirs, strict=True))
    return {"requests_compared": len(sample), "values_identical": mismatched == 0, "mismatched_entities": mismatched}


# -- HTTP ----------------------------------------------------------------------------------------------------
BARE_FLAG = "--bare-server"


def bare_server(port: int) -> None:
    """A FastAPI app whose ``POST /features`` returns a constant, on uvicorn (the HTTP baseline)."""
    import uvicorn
    from fastapi import FastAPI

    app = FastAPI()
    constant = {"features": {f: [0.5] for f in FEATURES}, "versions": {VIEW: 1}}

    @app.post("/features")
    async def features() -> dict[str, Any]:
        return constant

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def server(cmd: list[str], port: int, what: str) -> Iterator[str]:
    """Start a server process, wait until ``GET /health`` answers, yield its URL, stop it."""
    import httpx

    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{what} exited with code {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}"
                )
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not answer GET /health within 60 s")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def serve_features_available() -> str:
    """``""`` when ``keel serve-features`` exists, else why not."""
    proc = subprocess.run([*KEEL_CLI, "serve-features", "--help"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return (proc.stderr or proc.stdout).strip().splitlines()[-1] if (proc.stderr or proc.stdout) else "no output"
    return ""


def concurrent_calls(
    url: str, bodies: list[bytes], calls: int, clients: int, path: str = "/features"
) -> tuple[list[int], float, Any]:
    """``calls`` POSTs of JSON ``bodies`` (in turn) to ``url + path`` from ``clients`` threads, one
    ``httpx.Client`` each, released together: per-request ns, wall time, and one answer (any non-200 fails)."""
    import httpx

    per_client = calls // clients
    latencies: list[list[int]] = [[] for _ in range(clients)]
    barrier = threading.Barrier(clients + 1)
    headers = {"content-type": "application/json"}
    errors: list[BaseException] = []
    last: list[Any] = []

    def work(i: int) -> None:
        try:
            with httpx.Client(base_url=url, timeout=30) as client:
                client.post(path, content=bodies[i % len(bodies)], headers=headers).raise_for_status()  # connect
                barrier.wait()
                clock, record = time.perf_counter_ns, latencies[i].append
                response = None
                for j in range(per_client):
                    started = clock()
                    response = client.post(path, content=bodies[(i * per_client + j) % len(bodies)], headers=headers)
                    record(clock() - started)
                    if response.status_code != 200:
                        raise RuntimeError(f"HTTP {response.status_code}: {response.text[:300]}")
                last.append(response)
        except BaseException as exc:
            errors.append(exc)
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.abort()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"a client failed: {errors[0]!r}") from errors[0]
    return [ns for lat in latencies for ns in lat], wall, last[0] if last else None


def bench_http(args: Any, project_dir: Path, params: dict[str, Any], end: datetime, n: int) -> None:
    import json

    import httpx

    import keel

    missing = serve_features_available()
    if missing:
        common.log(f"skipping the HTTP workloads: `keel serve-features` is not available ({missing})")
        return
    with keel.Project.open(project_dir) as project:
        project.materialize([VIEW], end=end)
    calls, block = (READS_QUICK if args.quick else READS_FULL)["http"]
    keys = np.random.default_rng(7).integers(0, n, size=calls).tolist()
    bodies = [json.dumps({"features": REFS, "entities": [{KEY: k}]}).encode() for k in keys]
    keel_port, bare_port = free_port(), free_port()
    keel_cmd = [
        *KEEL_CLI,
        "serve-features",
        "--project",
        str(project_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(keel_port),
        "--workers",
        "1",
        "--log-level",
        "warning",
    ]
    bare_cmd = [sys.executable, str(SCRIPT), BARE_FLAG, str(bare_port)]
    with (
        server(keel_cmd, keel_port, "keel serve-features") as keel_url,
        server(bare_cmd, bare_port, "bare") as bare_url,
    ):
        clients = {
            side: httpx.Client(base_url=url, timeout=30) for side, url in (("keel", keel_url), ("baseline", bare_url))
        }
        try:
            headers = {"content-type": "application/json"}
            answer = clients["keel"].post("/features", content=bodies[0], headers=headers)
            answer.raise_for_status()
            common.log(f"keel serve-features answered: {answer.text[:200]}")

            def caller(side: str) -> Callable[[bytes], Any]:
                post = clients[side].post

                def call(body: bytes) -> Any:
                    response = post("/features", content=body, headers=headers)
                    if response.status_code != 200:
                        raise RuntimeError(f"{side}: HTTP {response.status_code}: {response.text[:300]}")
                    return response

                return call

            if common.selected(args, "online.http.sequential"):
                measured = common.latency_blocks(
                    {"keel": caller("keel"), "baseline": caller("baseline")}, bodies, block=block, warmup=1
                )
                expected = keel_values(project_values(project_dir, keys[-1]))
                got = measured["keel"].last.json()
                line = latency_line(
                    "online.http.sequential",
                    args,
                    {**params, "entities_per_request": 1, "requests_per_side": calls, "block": block, "workers": 1},
                    measured,
                    "bare FastAPI POST /features returning a constant (uvicorn, same settings)",
                    None,
                    {"requests": calls, "values_identical": http_values(got) == expected, "status_200": True},
                )
                line["ratio_per_s"] = round(line["baseline"]["per_s"] / line["keel"]["per_s"], 3)
                common.emit(line, args)
            if common.selected(args, "online.http.concurrent"):
                figures: dict[str, common.Latencies] = {}
                walls: dict[str, list[float]] = {"keel": [], "baseline": []}
                for side in ("keel", "baseline"):
                    figures[side] = common.Latencies()
                rounds = 2 if args.quick else 4
                for r in range(rounds):
                    for side in ("keel", "baseline") if r % 2 == 0 else ("baseline", "keel"):
                        url = keel_url if side == "keel" else bare_url
                        ns, wall, _ = concurrent_calls(url, bodies[:1], calls // rounds, HTTP_CLIENTS)
                        figures[side].ns += ns
                        walls[side].append(len(ns) / wall)
                sides = {}
                for side in ("keel", "baseline"):
                    fig = figures[side].as_json()
                    fig["per_s"] = round(sum(walls[side]) / len(walls[side]))  # all clients together
                    sides[side] = fig
                    common.log(f"online.http.concurrent {side}: p50 {fig['p50_ms']} ms, {fig['per_s']} requests/s")
                line = common.result(
                    "online.http.concurrent",
                    params={
                        **params,
                        "entities_per_request": 1,
                        "clients": HTTP_CLIENTS,
                        "workers": 1,
                        "requests_per_side": len(figures["keel"].ns),
                    },
                    keel=sides["keel"],
                    baseline_name=f"bare FastAPI POST /features returning a constant, {HTTP_CLIENTS} clients",
                    baseline=sides["baseline"],
                    ratio_max=None,
                    checks={"requests": len(figures["keel"].ns), "status_200": True},
                    ratio_is="keel/baseline (p50)",
                )
                line["ratio_per_s"] = round(sides["baseline"]["per_s"] / sides["keel"]["per_s"], 3)
                common.emit(line, args)
        finally:
            for client in clients.values():
                client.close()


def project_values(project_dir: Path, key: int) -> Any:
    import keel

    with keel.Project.open(project_dir) as project:
        return project.online_features(REFS, [{KEY: key}])


def http_values(body: dict[str, Any]) -> list[tuple[Any, ...]]:
    features = body.get("features", body)
    if isinstance(features, dict):
        return list(zip(*(features[f] for f in FEATURES), strict=True))
    return [tuple(row.get(f) for f in FEATURES) for row in features]


# -- main ----------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    args = common.parse_args(common.parser(__doc__.splitlines()[0]), argv)
    for key in [k for k in os.environ if k.startswith("KEEL_") and k != "KEEL_BENCH_REDIS"]:
        del os.environ[key]
    sizes = QUICK if args.quick else FULL
    folder = ensure_data(sizes)
    project_dir = fresh_project(folder)
    end = datetime.now(UTC).replace(microsecond=0)
    n = sizes["entities"]
    params: dict[str, Any] = {
        "entities": n,
        "timestamps_per_entity": sizes["timestamps_per_entity"],
        "feature_rows": n * sizes["timestamps_per_entity"],
        "features": N_FEATURES,
        "ttl_days": TTL.days,
        "span_days": SPAN.days,
        "quick": args.quick,
        "seed": SEED,
    }
    if common.selected(args, "online.materialize"):
        bench_materialize(args, project_dir, params, end)
    if any(common.selected(args, f"online.read.sqlite.{s}") for s in ("1", "100")):
        bench_sqlite_reads(args, project_dir, params, end, n)
    if any(common.selected(args, f"online.read.redis.{s}") for s in ("1", "100")):
        bench_redis_reads(args, project_dir, params, end, n)
    if any(common.selected(args, f"online.http.{s}") for s in ("sequential", "concurrent")):
        bench_http(args, project_dir, params, end, n)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == BARE_FLAG:
        bare_server(int(sys.argv[2]))
    else:
        sys.exit(main())
