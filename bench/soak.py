"""Soak benchmark: 8 clients held against ``keel serve`` for minutes; latency per minute, errors, memory, and the
prediction log against the requests answered.

Model and data: the churn example (``examples/churn``: 1,000 customers, seed 7; ``--quick``: 300), scaffolded into
a fresh project, ingested, trained (``HistGradientBoostingClassifier(max_iter=200)`` behind the automatic
preprocessing), registered as ``churn@champion``; every customer's latest activity pushed online with today's
time and the profiles materialized, as ``bench/serving.py`` builds it.

Server: ``keel serve --model churn@champion --workers 1 --cache-size 0`` on 127.0.0.1 (loopback only), the
project's defaults otherwise: the SQLite online store and the prediction log on (a file closed every minute). The
cache is off so that every request is looked up, scored and logged.

Clients: 8 threads of this one process, each with its own keep-alive ``httpx.Client``, each sending its next
request as soon as its previous one is answered (a closed loop: 8 requests in flight, never more), one record by
entity key per request, customers drawn at random (seeded). They are threads of one process on purpose: the GIL
holds the clients to at most one core, so on a 2-core machine the server keeps the other; 8 client processes
would compete with it for both. The CPU time each side used is reported, so the split can be checked.

The run: ``--warmup-seconds`` (default 10) of load that is not timed, then ``--minutes`` (default 10; ``--quick``:
1) of timed load, bounded: the clients stop at the deadline. Then the server is stopped with SIGTERM; it writes
out its prediction log as it shuts down, and the log is read back.

One JSON line (``soak.serving``):

* ``keel.minutes``: per minute of the timed load, requests answered, p50 and p99 (ms), requests/s, errors and
  the server's RSS (MiB) at the minute's end; ``keel`` also holds the p50/p99 and rate over the whole load.
* ``baseline``: ``estimator.predict`` on one prepared row (the customer's transformed features, computed before
  the run) called in this process, one call at a time, before the load: the raw model's latency, for scale.
  ``ratio`` is Keel's p50 under load over it (context, no target: Keel's answer includes HTTP, the online lookup,
  the checks, the warnings and the log).
* ``checks``: ``errors`` (any non-200 answer or failed request) and ``no_errors``; ``rss_*_mb`` of the server
  process at ready, after the warm-up and at the end, ``rss_drift_mb`` (end minus after warm-up),
  ``rss_slope_mb_per_min`` (least squares over the samples of the timed load, one every 2 s) and ``rss_trend_mb``
  (the slope times the minutes), ``rss_flat`` (the trend within max(32 MiB, 5% of the RSS after warm-up): the
  trend rather than the end points, because the prediction log holds an open file's rows in memory until it
  writes them as a row group, up to 65,536 rows or a minute's, so the RSS saws by that much);
  ``requests_answered`` (warm-up included), ``log_rows`` and
  ``log_rows_equal_requests``; ``server_stopped_cleanly`` (it exits on the SIGTERM it shut down on: code -15);
  ``p50_last_over_first_minute`` (latency drift); CPU seconds of server and clients.

Run ``python bench/soak.py`` (10 minutes of load plus about two of setup) or ``python bench/soak.py --quick``
(one minute). ``bench/run.py`` runs it only when named: ``python bench/run.py --bench soak``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common

from online import free_port
from serving import KEY, MODEL, PATH, SERVER_THREADS, build_project, keel_serve_command, prepared_rows

SEED = 7
CLIENTS = 8
FULL = {"customers": 1_000, "minutes": 10.0, "warmup_seconds": 10.0}
QUICK = {"customers": 300, "minutes": 1.0, "warmup_seconds": 5.0}
RSS_EVERY_S = 2.0
BASELINE_CALLS = 2_000
STOP_TIMEOUT_S = 120


# -- the server ------------------------------------------------------------------------------------------------
@dataclass
class Server:
    """A ``keel serve`` process: its URL and process; stderr goes to a file (a pipe left unread would fill)."""

    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path

    @classmethod
    def start(cls, project_dir: Path, work: Path) -> Server:
        import httpx

        port = free_port()
        cmd = keel_serve_command(project_dir, port)
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
        env["OMP_NUM_THREADS"] = str(SERVER_THREADS)
        log_path = work / "server.log"
        with log_path.open("wb") as stderr:
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr, env=env)
        server = cls(proc, f"http://127.0.0.1:{port}", log_path)
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"keel serve exited with code {proc.returncode}: {server.stderr_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{server.url}/ready", timeout=2).status_code == 200:
                    return server
            if time.monotonic() > deadline:
                server.kill()
                raise RuntimeError(f"keel serve was not ready within 120 s: {server.stderr_tail()}")
            time.sleep(0.2)

    def stderr_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""

    def stop(self) -> int:
        """SIGTERM (the server finishes, writes out its prediction log and exits), then wait; its exit code."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(f"keel serve did not stop within {STOP_TIMEOUT_S} s of SIGTERM") from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class RssSampler:
    """The server's RSS (MiB, with any child processes), sampled every ``RSS_EVERY_S`` on a thread."""

    def __init__(self, pid: int) -> None:
        import psutil

        self.process = psutil.Process(pid)
        self.samples: list[tuple[float, float]] = []  # (seconds since the clock's start, MiB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.started = time.monotonic()

    def now_mb(self) -> float:
        import psutil

        total = self.process.memory_info().rss
        for child in self.process.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += child.memory_info().rss
        return total / 2**20

    def _run(self) -> None:
        import psutil

        while not self._stop.wait(RSS_EVERY_S):
            with contextlib.suppress(psutil.Error):
                self.samples.append((time.monotonic() - self.started, self.now_mb()))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# -- the clients -----------------------------------------------------------------------------------------------
@dataclass
class Client:
    """What one client thread saw: (seconds since the timed load began, latency ns) of every answer in the timed
    load, how many requests were answered 200 (warm-up included), and its errors."""

    done: list[tuple[float, int]] = field(default_factory=list)
    answered: int = 0
    errors: list[tuple[float, str]] = field(default_factory=list)


def hold_load(url: str, bodies: list[bytes], *, warmup_s: float, seconds: float) -> tuple[list[Client], float]:
    """``CLIENTS`` threads, each in a closed loop over ``bodies`` (from its own offset) until the deadline; the
    clients and the monotonic time the timed load began."""
    import httpx

    clients = [Client() for _ in range(CLIENTS)]
    barrier = threading.Barrier(CLIENTS + 1)
    clock = {"begin": 0.0, "end": 0.0}
    headers = {"content-type": "application/json"}

    def work(i: int) -> None:
        seen = clients[i]
        with httpx.Client(base_url=url, timeout=30) as http:
            barrier.wait()
            j = i * (len(bodies) // CLIENTS)
            now = time.monotonic
            while True:
                started_ns = time.perf_counter_ns()
                started = now()
                if started >= clock["end"]:
                    return
                body = bodies[j % len(bodies)]
                j += 1
                try:
                    response = http.post(PATH, content=body, headers=headers)
                    status = response.status_code
                    error = None if status == 200 else f"HTTP {status}: {response.text[:200]}"
                except httpx.HTTPError as exc:
                    error = f"{type(exc).__name__}: {exc}"
                elapsed = time.perf_counter_ns() - started_ns
                timed = started >= clock["begin"]
                if error is not None:
                    seen.errors.append((started - clock["begin"], error))
                    continue
                seen.answered += 1
                if timed:
                    seen.done.append((started - clock["begin"], elapsed))

    threads = [threading.Thread(target=work, args=(i,), name=f"client-{i}") for i in range(CLIENTS)]
    for t in threads:
        t.start()
    clock["begin"] = time.monotonic() + warmup_s
    clock["end"] = clock["begin"] + seconds
    barrier.wait()
    for t in threads:
        t.join()
    return clients, clock["begin"]


# -- figures ---------------------------------------------------------------------------------------------------
def percentiles_ms(ns: np.ndarray) -> dict[str, float]:
    if ns.size == 0:
        return {"p50_ms": float("nan"), "p99_ms": float("nan")}
    p50, p99 = np.percentile(ns, [50, 99]) / 1e6
    return {"p50_ms": common.round6(float(p50)), "p99_ms": common.round6(float(p99))}


def per_minute(
    clients: list[Client], rss: list[tuple[float, float]], begin_offset: float, minutes: float
) -> list[dict[str, Any]]:
    """Each minute of the timed load (the last one may be partial): answers, latency, rate, errors, RSS."""
    done = np.array([d for c in clients for d in c.done], dtype=np.float64).reshape(-1, 2)
    errors = np.array([t for c in clients for t, _ in c.errors], dtype=np.float64)
    out = []
    for m in range(max(1, int(np.ceil(minutes - 1e-9)))):
        lo, hi = 60.0 * m, min(60.0 * (m + 1), 60.0 * minutes)
        rows = done[(done[:, 0] >= lo) & (done[:, 0] < hi)]
        in_minute = [mb for t, mb in rss if lo <= t - begin_offset < hi]
        out.append(
            {
                "minute": m + 1,
                "seconds": round(hi - lo, 1),
                "requests": int(rows.shape[0]),
                **percentiles_ms(rows[:, 1]),
                "per_s": round(rows.shape[0] / (hi - lo), 1),
                "errors": int(((errors >= lo) & (errors < hi)).sum()),
                "rss_mb": round(in_minute[-1], 1) if in_minute else None,
            }
        )
    return out


def baseline_latency(project_dir: Path, keys: list[int]) -> tuple[dict[str, Any], Any]:
    """``estimator.predict`` on one prepared row per call, in this process; and the in-process predictions."""
    import keel

    rows, in_process = prepared_rows(project_dir, keys)
    with keel.Project.open(project_dir) as project:
        estimator = project.models.load(f"{MODEL}@champion").estimator
    rng = np.random.default_rng(SEED + 1)
    order = [keys[i] for i in rng.integers(0, len(keys), size=BASELINE_CALLS).tolist()]
    arrays = {k: np.asarray([rows[k]], dtype=np.float64) for k in keys}
    for k in order[:100]:
        estimator.predict(arrays[k])
    latencies = common.Latencies()
    for k in order:
        started = time.perf_counter_ns()
        estimator.predict(arrays[k])
        latencies.ns.append(time.perf_counter_ns() - started)
    return latencies.as_json(), in_process


def slope_mb_per_min(samples: list[tuple[float, float]]) -> float | None:
    if len(samples) < 3:
        return None
    t = np.array([s[0] for s in samples]) / 60.0
    mb = np.array([s[1] for s in samples])
    return round(float(np.polyfit(t, mb, 1)[0]), 3)


def cpu_seconds(process: Any) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


# -- main ------------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    import orjson
    import psutil
    from threadpoolctl import threadpool_limits

    import keel

    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=None, help="minutes of timed load (default 10; quick: 1)")
    p.add_argument("--warmup-seconds", type=float, default=None, help="untimed load first (default 10; quick: 5)")
    args = common.parse_args(p, argv)
    for key in [k for k in os.environ if k.startswith("KEEL_")]:
        del os.environ[key]
    plan = dict(QUICK if args.quick else FULL)
    minutes = args.minutes if args.minutes is not None else plan["minutes"]
    warmup_s = args.warmup_seconds if args.warmup_seconds is not None else plan["warmup_seconds"]
    if minutes <= 0 or warmup_s < 0:
        p.error("--minutes must be positive and --warmup-seconds at least 0")
    work = common.DATA_DIR / "soak-work"
    project_dir = work / "project"
    server: Server | None = None
    try:
        keys = build_project(project_dir, plan["customers"])
        with threadpool_limits(SERVER_THREADS):
            baseline, in_process = baseline_latency(project_dir, keys)
        rng = np.random.default_rng(SEED)
        chosen = [keys[i] for i in rng.integers(0, len(keys), size=20_000).tolist()]
        bodies = [orjson.dumps({"records": [{KEY: k}]}) for k in chosen]

        server = Server.start(project_dir, work)
        import httpx

        probe = httpx.post(f"{server.url}{PATH}", content=bodies[0], headers={"content-type": "application/json"})
        agree = probe.status_code == 200 and probe.json()["predictions"] == [in_process[chosen[0]]]
        served = psutil.Process(server.proc.pid)
        me = psutil.Process()
        common.log(f"keel serve ready at {server.url}; {CLIENTS} clients for {warmup_s:g} s + {minutes:g} min")
        with RssSampler(server.proc.pid) as rss:
            rss_ready = rss.now_mb()
            cpu_server_0, cpu_clients_0 = cpu_seconds(served), cpu_seconds(me)
            wall_0 = time.monotonic()
            clients, begin = hold_load(server.url, bodies, warmup_s=warmup_s, seconds=minutes * 60)
            wall = time.monotonic() - wall_0
            cpu_server, cpu_clients = cpu_seconds(served) - cpu_server_0, cpu_seconds(me) - cpu_clients_0
            rss_end = rss.now_mb()
        begin_offset = begin - rss.started
        timed_samples = [(t - begin_offset, mb) for t, mb in rss.samples if t >= begin_offset]
        rss_after_warmup = timed_samples[0][1] if timed_samples else rss_end

        code = server.stop()
        server = None
        with keel.Project.open(project_dir) as project:
            log_rows = len(project.predictions(MODEL))

        answered = sum(c.answered for c in clients) + 1  # the probe
        errors = [e for c in clients for e in c.errors]
        minutes_out = per_minute(clients, rss.samples, begin_offset, minutes)
        all_ns = np.array([ns for c in clients for _, ns in c.done], dtype=np.float64)
        timed = int(all_ns.size)
        drift = rss_end - rss_after_warmup
        slope = slope_mb_per_min(timed_samples)
        # The trend, not the end points: the prediction log holds each open file's rows in memory until it writes
        # them as a row group (up to 65,536 rows, or the file's minute), so the RSS saws up and down by that much
        # and two samples can fall anywhere on the teeth.
        trend = slope * minutes if slope is not None else drift
        first, last = minutes_out[0]["p50_ms"], minutes_out[-1]["p50_ms"]
        keel_side = {
            "median_s": common.round6(float(np.percentile(all_ns, 50)) / 1e9) if timed else float("nan"),
            **percentiles_ms(all_ns),
            "per_s": round(timed / (minutes * 60), 1),
            "requests": timed,
            "minutes": minutes_out,
        }
        checks: dict[str, Any] = {
            "errors": len(errors),
            "no_errors": not errors,
            "first_errors": [text for _, text in errors[:3]],
            "predictions_identical": bool(agree),
            "rss_ready_mb": round(rss_ready, 1),
            "rss_after_warmup_mb": round(rss_after_warmup, 1),
            "rss_end_mb": round(rss_end, 1),
            "rss_drift_mb": round(drift, 1),
            "rss_slope_mb_per_min": slope,
            "rss_trend_mb": round(trend, 1),
            "rss_flat": trend <= max(32.0, 0.05 * rss_after_warmup),
            "requests_answered": answered,
            "log_rows": log_rows,
            "log_rows_equal_requests": log_rows == answered,
            "server_exit_code": code,  # uvicorn re-raises the SIGTERM it shut down on: -15 is a clean stop
            "server_stopped_cleanly": code in (0, -signal.SIGTERM),
            "p50_last_over_first_minute": round(last / first, 3) if first and last else None,
            "cpu_s_server": round(cpu_server, 1),
            "cpu_s_clients": round(cpu_clients, 1),
            "wall_s": round(wall, 1),
        }
        params = {
            "model": "churn example: HistGradientBoostingClassifier(max_iter=200), 2 string + 7 numeric features",
            "customers": plan["customers"],
            "clients": CLIENTS,
            "clients_are": "threads of one process, closed loop, keep-alive httpx.Client each",
            "records_per_request": 1,
            "minutes": minutes,
            "warmup_seconds": warmup_s,
            "server": "keel serve, 1 worker, cache off, prediction log on, sqlite online store, 127.0.0.1",
            "omp_num_threads": SERVER_THREADS,
            "cpus": os.cpu_count(),
            "quick": args.quick,
            "seed": SEED,
        }
        line = common.result(
            "soak.serving",
            params=params,
            keel=keel_side,
            baseline_name="estimator.predict on the prepared 1-row array, in process, one call at a time",
            baseline=baseline,
            ratio_max=None,
            checks=checks,
            ratio_is="keel/baseline (p50; Keel under 8 clients over HTTP, the baseline alone in process)",
        )
        for m in minutes_out:
            common.log(
                f"minute {m['minute']}: {m['requests']} requests, p50 {m['p50_ms']} ms, p99 {m['p99_ms']} ms, "
                f"{m['errors']} errors, RSS {m['rss_mb']} MiB"
            )
        common.log(
            f"errors {len(errors)}, RSS {rss_after_warmup:.1f} -> {rss_end:.1f} MiB, log rows {log_rows} "
            f"for {answered} requests answered"
        )
        common.emit(line, args)
    finally:
        if server is not None:
            server.kill()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
