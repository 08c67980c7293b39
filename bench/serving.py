"""Prediction service benchmark: ``POST /v1/models/{name}/predict`` against a bare FastAPI endpoint calling
the same estimator's ``predict``.

Model and data: the churn example (``examples/churn``: 1,000 customers, seed 7; ``--quick``: 300) scaffolded
into a fresh project, ingested, trained (``HistGradientBoostingClassifier(max_iter=200)`` behind the automatic
preprocessing: 2 string and 7 numeric features), registered and promoted to ``churn@champion``; every
customer's latest activity pushed to the SQLite online store with today's time and the profiles materialized,
so that every lookup finds its values.

Servers (both real uvicorn processes on 127.0.0.1, 1 worker, uvicorn's defaults: the same event loop and HTTP
implementation, access log off, ``OMP_NUM_THREADS=1`` — a 1-row predict gains nothing from more threads, and on a
busy machine a descheduled OpenMP worker stalls every call):

* Keel: ``keel serve --model churn@champion --workers 1 --cache-size 0`` — the request gives one entity key
  (``{"records": [{"customer_id": 100042}]}``); the service reads the 9 features online, checks them, prepares
  them with the model package, predicts, adds the class probabilities and the per-record warnings. The answer
  cache is off, so every request is scored.
* The ceiling: a FastAPI endpoint given the customer's **already prepared** feature values (the package's
  transformed row, computed before the run): JSON parse, ``estimator.predict`` on a 1-row array, JSON answer.

Workloads (one JSON line each, both sides in the same run):

``serving.http.sequential``
    One client (``httpx.Client``, keep-alive), requests for random customers, the two servers taking turns
    block by block. p50, p99 and requests/s of each side.
``serving.http.concurrent``
    8 client threads at once (one ``httpx.Client`` each), rounds alternating between the servers; latency
    percentiles over all requests and requests/s of all clients together.

**Targets: Keel's p50 <= 1.5x the ceiling's, and Keel's requests/s >= 0.7x the ceiling's.** ``ratio`` is the
p50 ratio; ``throughput_ratio`` is Keel's requests/s over the ceiling's. Checks: every answer 200, and Keel's
predictions over HTTP equal the ceiling's and the in-process ``package.predict`` for the same customers.

Run ``python bench/serving.py`` (about a minute) or ``python bench/serving.py --quick`` (seconds).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common

from online import concurrent_calls, free_port, server

SCRIPT = Path(__file__).resolve()
SEED = 7
MODEL = "churn"
KEY = "customer_id"
FULL = {"customers": 1_000, "calls": 3_000, "block": 300, "concurrent_calls": 4_000, "rounds": 4}
QUICK = {"customers": 300, "calls": 300, "block": 100, "concurrent_calls": 400, "rounds": 2}
CLIENTS = 8
SERVER_THREADS = 1  # OMP_NUM_THREADS of both servers
P50_MAX = 1.5
THROUGHPUT_MIN = 0.7
KEEL_CLI = [sys.executable, "-c", "from keel.cli import main; main()"]
BARE_FLAG = "--bare-server"
PATH = f"/v1/models/{MODEL}/predict"


# -- the project ---------------------------------------------------------------------------------------------
def build_project(root: Path, customers: int) -> list[int]:
    """The churn example trained, registered as ``churn@champion`` and served online; the customer ids."""
    import pandas as pd
    from threadpoolctl import threadpool_limits

    import keel
    from keel._scaffold import scaffold

    shutil.rmtree(root, ignore_errors=True)
    started = time.perf_counter()
    scaffold(root, example="churn", customers=customers, seed=SEED)
    with keel.Project.open(root) as project:
        project.apply()
        for view in ("customer_profile", "customer_activity"):
            project.ingest(view)
        with threadpool_limits(1):
            run = project.train(MODEL)
        version = project.models.register(run.id)
        project.models.promote(version.name, version.version, alias="champion", reason="serving benchmark")
        # every customer's latest activity, as of now: within the view's TTL, so every lookup finds values
        activity = pd.read_parquet(root / "data" / "activity.parquet")
        latest = activity.sort_values("event_time").groupby(KEY).tail(1).copy()
        latest["event_time"] = pd.Timestamp.now(tz="UTC").floor("s")
        latest["event_time"] = latest["event_time"].astype(activity["event_time"].dtype)
        project.push("customer_activity", latest, to="online")
        project.materialize(["customer_profile"])
    common.log(f"built the churn project ({customers:,} customers) in {time.perf_counter() - started:.1f}s")
    return sorted(int(k) for k in latest[KEY])


def prepared_rows(root: Path, keys: list[int]) -> tuple[dict[int, list[float]], dict[int, Any]]:
    """Each customer's prepared feature row (what the estimator takes) and in-process prediction."""
    import keel

    with keel.Project.open(root) as project:
        package = project.models.load(f"{MODEL}@champion")
        refs = [r.split("@")[0] + ":" + r.split(":", 1)[1] for r in package.feature_refs]
        frame = project.online_features(refs, [{KEY: k} for k in keys]).to_frame()
    matrix = np.asarray(package.transform(frame), dtype=np.float64)
    predictions = package.predict(frame).tolist()
    return {k: matrix[i].tolist() for i, k in enumerate(keys)}, dict(zip(keys, predictions, strict=True))


def keel_serve_command(project_dir: Path, port: int) -> list[str]:
    """``keel serve`` of ``churn@champion`` on 127.0.0.1:``port``: one worker, the answer cache off, warnings only."""
    return [
        *KEEL_CLI,
        "serve",
        "--model",
        f"{MODEL}@champion",
        "--project",
        str(project_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--cache-size",
        "0",
        "--log-level",
        "warning",
    ]


# -- the ceiling ---------------------------------------------------------------------------------------------
def bare_server(port: int, project_dir: str) -> None:
    """FastAPI: JSON parse, ``estimator.predict`` on the 1-row array of prepared values, JSON answer."""
    import orjson
    import uvicorn
    from fastapi import FastAPI, Request
    from starlette.responses import Response

    import keel

    with keel.Project.open(project_dir) as project:
        estimator = project.models.load(f"{MODEL}@champion").estimator
    app = FastAPI()

    async def predict(request: Request) -> Response:
        body = orjson.loads(await request.body())
        prediction = estimator.predict(np.asarray([body["values"]], dtype=np.float64))
        return Response(orjson.dumps({"predictions": prediction.tolist()}), media_type="application/json")

    app.router.add_route(PATH, predict, methods=["POST"])  # a plain route: the request object as it comes

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# -- clients -------------------------------------------------------------------------------------------------
HEADERS = {"content-type": "application/json"}


def line_for(
    bench: str,
    args: Any,
    params: dict[str, Any],
    sides: dict[str, dict[str, Any]],
    baseline_name: str,
    checks: dict[str, Any],
) -> dict[str, Any]:
    throughput = sides["keel"]["per_s"] / sides["baseline"]["per_s"]
    checks = {**checks, "throughput_target_met": throughput >= THROUGHPUT_MIN}
    line = common.result(
        bench,
        params=params,
        keel=sides["keel"],
        baseline_name=baseline_name,
        baseline=sides["baseline"],
        ratio_max=P50_MAX,
        checks=checks,
        ratio_is="keel/baseline (p50)",
    )
    line["throughput_ratio"] = round(throughput, 3)
    line["throughput_ratio_is"] = "keel/baseline (requests/s)"
    line["target"]["throughput_ratio_min"] = THROUGHPUT_MIN
    for side, fig in sides.items():
        common.log(f"{bench} {side}: p50 {fig['p50_ms']} ms, p99 {fig['p99_ms']} ms, {fig['per_s']} requests/s")
    common.log(f"{bench}: p50 ratio {line['ratio']}, throughput ratio {line['throughput_ratio']}")
    return line


# -- main ----------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    import httpx
    import orjson

    args = common.parse_args(common.parser(__doc__.splitlines()[0]), argv)
    for key in [k for k in os.environ if k.startswith("KEEL_")]:
        del os.environ[key]
    plan = QUICK if args.quick else FULL
    work = common.DATA_DIR / "serving-work"
    project_dir = work / "project"
    keys = build_project(project_dir, plan["customers"])
    rows, in_process = prepared_rows(project_dir, keys)
    rng = np.random.default_rng(SEED)
    chosen = [keys[i] for i in rng.integers(0, len(keys), size=plan["calls"]).tolist()]
    keel_bodies = {k: orjson.dumps({"records": [{KEY: k}]}) for k in keys}
    bare_bodies = {k: orjson.dumps({"values": rows[k]}) for k in keys}
    params: dict[str, Any] = {
        "model": "churn example: HistGradientBoostingClassifier(max_iter=200), 2 string + 7 numeric features",
        "customers": plan["customers"],
        "records_per_request": 1,
        "lookup": "sqlite online store, by entity key",
        "cache_size": 0,
        "workers": 1,
        "server": "uvicorn defaults (loop auto, http auto), 1 worker, both sides",
        "omp_num_threads": SERVER_THREADS,
        "quick": args.quick,
        "seed": SEED,
    }
    # Both servers get one OpenMP thread: a 1-row predict gains nothing from more, and on a busy machine a
    # descheduled OpenMP worker stalls every predict for a time slice (the same setting on both sides).
    os.environ["OMP_NUM_THREADS"] = str(SERVER_THREADS)
    keel_port, bare_port = free_port(), free_port()
    keel_cmd = keel_serve_command(project_dir, keel_port)
    bare_cmd = [sys.executable, str(SCRIPT), BARE_FLAG, str(bare_port), str(project_dir)]
    try:
        with server(keel_cmd, keel_port, "keel serve") as keel_url, server(bare_cmd, bare_port, "bare") as bare_url:
            urls = {"keel": keel_url, "baseline": bare_url}
            bodies = {"keel": keel_bodies, "baseline": bare_bodies}
            clients = {side: httpx.Client(base_url=url, timeout=30) for side, url in urls.items()}
            try:
                # every customer once on both sides: the answers agree with each other and with in-process
                agree = True
                for k in keys[:: max(1, len(keys) // 100)]:
                    got = {s: clients[s].post(PATH, content=bodies[s][k], headers=HEADERS) for s in urls}
                    for s, r in got.items():
                        if r.status_code != 200:
                            raise RuntimeError(f"{s}: HTTP {r.status_code}: {r.text[:300]}")
                    ours, ceiling = got["keel"].json()["predictions"], got["baseline"].json()["predictions"]
                    agree = agree and ours == ceiling == [in_process[k]]
                common.log(f"keel serve answered: {got['keel'].text[:300]}")

                def caller(side: str) -> Callable[[int], Any]:
                    post, table = clients[side].post, bodies[side]

                    def call(key: int) -> Any:
                        response = post(PATH, content=table[key], headers=HEADERS)
                        if response.status_code != 200:
                            raise RuntimeError(f"{side}: HTTP {response.status_code}: {response.text[:300]}")
                        return response

                    return call

                if common.selected(args, "serving.http.sequential"):
                    measured = common.latency_blocks(
                        {"keel": caller("keel"), "baseline": caller("baseline")},
                        chosen,
                        block=plan["block"],
                        warmup=args.warmup,
                    )
                    last = measured["keel"].last.json()["predictions"]
                    line = line_for(
                        "serving.http.sequential",
                        args,
                        {**params, "clients": 1, "requests_per_side": len(chosen), "block": plan["block"]},
                        {side: lat.as_json() for side, lat in measured.items()},
                        "bare FastAPI + uvicorn: JSON parse, estimator.predict on the prepared 1-row array",
                        {
                            "requests": len(measured["keel"].ns),
                            "status_200": True,
                            "predictions_identical": agree and last == [in_process[chosen[-1]]],
                        },
                    )
                    common.emit(line, args)
                if common.selected(args, "serving.http.concurrent"):
                    order = [keel_bodies[k] for k in chosen], [bare_bodies[k] for k in chosen]
                    figures = {"keel": common.Latencies(), "baseline": common.Latencies()}
                    rates: dict[str, list[float]] = {"keel": [], "baseline": []}
                    for _ in range(args.warmup):
                        for side, side_bodies in zip(("keel", "baseline"), order, strict=True):
                            concurrent_calls(urls[side], side_bodies, CLIENTS * 10, CLIENTS, PATH)
                    for r in range(plan["rounds"]):
                        for side in ("keel", "baseline") if r % 2 == 0 else ("baseline", "keel"):
                            side_bodies = order[0] if side == "keel" else order[1]
                            ns, wall, _ = concurrent_calls(
                                urls[side], side_bodies, plan["concurrent_calls"] // plan["rounds"], CLIENTS, PATH
                            )
                            figures[side].ns += ns
                            rates[side].append(len(ns) / wall)
                    sides = {}
                    for side in ("keel", "baseline"):
                        fig = figures[side].as_json()
                        fig["per_s"] = round(float(np.median(rates[side])))  # all clients together
                        fig["per_s_rounds"] = [round(x) for x in rates[side]]
                        sides[side] = fig
                    line = line_for(
                        "serving.http.concurrent",
                        args,
                        {**params, "clients": CLIENTS, "requests_per_side": len(figures["keel"].ns)},
                        sides,
                        f"bare FastAPI + uvicorn, {CLIENTS} clients: JSON parse, estimator.predict on the 1-row array",
                        {"requests": len(figures["keel"].ns), "status_200": True, "predictions_identical": agree},
                    )
                    common.emit(line, args)
            finally:
                for client in clients.values():
                    client.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == BARE_FLAG:
        bare_server(int(sys.argv[2]), sys.argv[3])
    else:
        sys.exit(main())
