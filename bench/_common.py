"""Helpers shared by every benchmark: command-line flags, timing, peak memory, child processes, JSON lines.

A benchmark is a script ``bench/<name>.py`` that prints one JSON object per line on stdout, one per workload
(see "Benchmark output" in DESIGN.md); progress and explanations go to stderr. Every benchmark accepts the
flags of :func:`parser`:

``--quick``     a small version of every workload, finishing in seconds (sizes about 1/20);
``--runs N``    timed runs per side (after warm-up);
``--warmup N``  untimed runs per side before the timed ones;
``--only W``    run only the workloads whose name contains ``W`` (repeatable);
``--append``    also append the JSON lines to ``bench/results/latest.jsonl``;
``--output F``  also append the JSON lines to file ``F``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
DATA_DIR = BENCH_DIR / ".data"  # generated inputs, cached between runs (gitignored)
RESULTS_DIR = BENCH_DIR / "results"
LATEST = RESULTS_DIR / "latest.jsonl"


# -- command line --------------------------------------------------------------------------------------------
def parser(description: str, *, runs: int = 7, warmup: int = 1) -> argparse.ArgumentParser:
    """The flags every benchmark accepts (add your own to the returned parser)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="small sizes; finishes in seconds")
    p.add_argument("--runs", type=int, default=None, help=f"timed runs per side (default {runs}, quick: 5)")
    p.add_argument("--warmup", type=int, default=warmup, help=f"untimed runs per side first (default {warmup})")
    p.add_argument("--only", action="append", default=[], metavar="W", help="only workloads whose name has W")
    p.add_argument("--append", action="store_true", help=f"also append results to {LATEST.relative_to(REPO_DIR)}")
    p.add_argument("--output", type=Path, default=None, help="also append results to this file")
    p.set_defaults(default_runs=runs)
    return p


def parse_args(p: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse ``argv`` and fill the defaults that depend on ``--quick``."""
    args = p.parse_args(argv)
    if args.runs is None:
        args.runs = 5 if args.quick else args.default_runs
    if args.runs < 1 or args.warmup < 0:
        p.error("--runs must be at least 1 and --warmup at least 0")
    return args


def selected(args: argparse.Namespace, workload: str) -> bool:
    """Whether ``--only`` lets ``workload`` run."""
    return not args.only or any(w in workload for w in args.only)


def log(message: str) -> None:
    """Progress for humans, on stderr (stdout carries only JSON lines)."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# -- timing --------------------------------------------------------------------------------------------------
@dataclass
class Timing:
    """Wall times of the timed runs of one side (seconds), and the value the last run returned."""

    runs: list[float] = field(default_factory=list)
    last: Any = None

    @property
    def median_s(self) -> float:
        return statistics.median(self.runs)

    def as_json(self) -> dict[str, Any]:
        return {"median_s": round6(self.median_s), "runs": [round6(r) for r in self.runs]}


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    gc.collect()
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def measure(fn: Callable[[], Any], *, runs: int, warmup: int = 1) -> Timing:
    """Run ``fn`` ``warmup`` times untimed, then ``runs`` times timed (a full GC before each run)."""
    for _ in range(warmup):
        fn()
    timing = Timing()
    for _ in range(runs):
        seconds, timing.last = _timed(fn)
        timing.runs.append(seconds)
    return timing


def interleaved(sides: Mapping[str, Callable[[], Any]], *, runs: int, warmup: int = 1) -> dict[str, Timing]:
    """Time several sides in alternation, so that a slow phase of the machine hits them alike.

    Each round runs every side once; the order is reversed every other round (A B, B A, A B ...). Warm-up
    rounds come first and are not timed. Returns one :class:`Timing` per side, holding its last run's return
    value.
    """
    names = list(sides)
    for _ in range(warmup):
        for name in names:
            sides[name]()
    timings = {name: Timing() for name in names}
    for i in range(runs):
        for name in names if i % 2 == 0 else reversed(names):
            seconds, value = _timed(sides[name])
            timings[name].runs.append(seconds)
            timings[name].last = value
    return timings


def interleaved_with_setup(
    sides: Mapping[str, tuple[Callable[[], Any], Callable[[Any], Any]]], *, runs: int, warmup: int = 1
) -> dict[str, Timing]:
    """:func:`interleaved` for operations that need a fresh state each run (a new file, a new store ...).

    Each side is ``(setup, fn)``: ``setup()`` runs untimed before every run and its return value is passed to
    ``fn``, which is timed. The order of the sides alternates as in :func:`interleaved`.
    """
    names = list(sides)
    for _ in range(warmup):
        for name in names:
            setup, fn = sides[name]
            fn(setup())
    timings = {name: Timing() for name in names}
    for i in range(runs):
        for name in names if i % 2 == 0 else reversed(names):
            setup, fn = sides[name]
            state = setup()
            seconds, value = _timed(functools.partial(fn, state))
            timings[name].runs.append(seconds)
            timings[name].last = value
    return timings


# -- latency -------------------------------------------------------------------------------------------------
@dataclass
class Latencies:
    """Per-call wall times of one side of a latency workload (nanoseconds), and what the last call returned."""

    ns: list[int] = field(default_factory=list)
    last: Any = None

    def percentile_ms(self, q: float) -> float:
        """The ``q``-th percentile (0-100, nearest rank) in milliseconds."""
        ordered = sorted(self.ns)
        rank = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
        return ordered[rank] / 1e6

    def as_json(self) -> dict[str, Any]:
        """``median_s`` (the p50, so that ratios are p50 ratios), ``p50_ms``, ``p99_ms``, ``mean_ms``, ``per_s``
        (calls per second of one caller) and the number of ``calls``."""
        mean_ns = statistics.fmean(self.ns)
        return {
            "median_s": round6(self.percentile_ms(50) / 1e3),
            "p50_ms": round6(self.percentile_ms(50)),
            "p99_ms": round6(self.percentile_ms(99)),
            "mean_ms": round6(mean_ns / 1e6),
            "per_s": round(1e9 / mean_ns),
            "calls": len(self.ns),
        }


def latency_blocks(
    sides: Mapping[str, Callable[[Any], Any]],
    arguments: Sequence[Any],
    *,
    block: int,
    warmup: int = 1,
) -> dict[str, Latencies]:
    """Call every side once per argument, timing each call, in interleaved blocks of ``block`` calls.

    The sides take turns block by block (A B, B A, ...), each going through the same ``arguments`` in the same
    order, so that both see the same keys and a slow phase of the machine hits them alike. A full garbage
    collection precedes every block; ``warmup`` blocks per side come first and are not timed.
    """
    names = list(sides)
    clock = time.perf_counter_ns
    for _ in range(warmup):
        for name in names:
            for arg in arguments[:block]:
                sides[name](arg)
    out = {name: Latencies() for name in names}
    for b, begin in enumerate(range(0, len(arguments), block)):
        chunk = arguments[begin : begin + block]
        for name in names if b % 2 == 0 else reversed(names):
            fn, record = sides[name], out[name].ns.append
            gc.collect()
            value = None
            for arg in chunk:
                started = clock()
                value = fn(arg)
                record(clock() - started)
            out[name].last = value
    return out


# -- memory --------------------------------------------------------------------------------------------------
def current_rss_mb() -> float:
    """This process's resident set size now, in MiB."""
    try:
        import psutil

        return float(psutil.Process().memory_info().rss) / 2**20
    except ImportError:  # Linux without psutil
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def lifetime_peak_rss_mb() -> float:
    """The highest resident set size this process ever had, in MiB (kernel-kept high-water mark).

    Measured in a child process that does one operation, it is the operation's true peak, short spikes
    included; that is why memory figures come from :func:`run_child`.
    """
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


class PeakRss:
    """Sample this process's RSS on a thread while the block runs (in-process estimate; misses short spikes).

    Example:
        >>> with PeakRss() as peak:  # doctest: +SKIP
        ...     work()
        >>> peak.mb, peak.before_mb
    """

    def __init__(self, interval_s: float = 0.005) -> None:
        self.interval_s = interval_s
        self.before_mb = 0.0
        self.mb = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.mb = max(self.mb, current_rss_mb())
            self._stop.wait(self.interval_s)

    def __enter__(self) -> PeakRss:
        self.before_mb = self.mb = current_rss_mb()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.mb = max(self.mb, current_rss_mb())


# -- child processes -----------------------------------------------------------------------------------------
CHILD_FLAG = "--child"


def run_child(script: Path, task: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """Run ``script --child TASK PAYLOAD_JSON`` in a fresh interpreter and return the JSON it prints last.

    The child does one operation and reports its own figures (time, :func:`lifetime_peak_rss_mb` ...), so
    nothing the parent allocated before inflates them.
    """
    cmd = [sys.executable, str(script), CHILD_FLAG, task, json.dumps(dict(payload))]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise RuntimeError(f"child task {task!r} of {script.name} failed with exit code {proc.returncode}")
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if not lines:
        raise RuntimeError(f"child task {task!r} of {script.name} printed nothing")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def child_main(tasks: Mapping[str, Callable[[dict[str, Any]], dict[str, Any]]]) -> bool:
    """If this process is a child started by :func:`run_child`, run its task, print the result and say so."""
    if len(sys.argv) != 4 or sys.argv[1] != CHILD_FLAG:
        return False
    task, payload = sys.argv[2], json.loads(sys.argv[3])
    result = tasks[task](payload)
    print(json.dumps(result), flush=True)
    return True


# -- results -------------------------------------------------------------------------------------------------
def round6(x: float) -> float:
    return float(f"{x:.6g}")


def environment() -> dict[str, Any]:
    """What the figures depend on besides the code: machine and library versions."""
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
    }
    for module in ("keel", "duckdb", "pyarrow", "pandas", "numpy"):
        with contextlib.suppress(ImportError, AttributeError):
            env[module] = __import__(module).__version__
    try:
        env["git"] = subprocess.run(
            ["git", "-C", str(REPO_DIR), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO_DIR), "status", "--porcelain", "--", "src"], capture_output=True, text=True
        ).stdout.strip()
        if dirty:
            env["git"] += "+dirty"
    except (OSError, subprocess.CalledProcessError):
        pass
    return env


def result(
    bench: str,
    *,
    params: Mapping[str, Any],
    keel: Timing | Mapping[str, Any],
    baseline_name: str,
    baseline: Timing | Mapping[str, Any],
    ratio_max: float | None,
    checks: Mapping[str, Any],
    ratio_is: str = "keel/baseline",
    ratio: float | None = None,
    ratio_min: float | None = None,
) -> dict[str, Any]:
    """One result line in the schema of DESIGN.md ("Benchmark output").

    ``keel`` and ``baseline`` are :class:`Timing` objects or dicts with at least ``median_s`` (extra figures
    such as ``rows_per_s`` or ``peak_rss_mb`` ride along). ``ratio`` defaults to Keel's median over the
    baseline's; pass it (and ``ratio_is``) for throughput figures, where it is the baseline over Keel.
    ``meets_target`` is true when the ratio is within ``ratio_max`` and no boolean check is false; it is null
    for a workload without a target (its checks still speak for themselves). A throughput target is a floor:
    ``ratio_min`` (Keel's rate over the baseline's must reach it), written beside ``ratio_max`` in ``target``.
    """
    k = keel.as_json() if isinstance(keel, Timing) else dict(keel)
    b = baseline.as_json() if isinstance(baseline, Timing) else dict(baseline)
    if ratio is None:
        ratio = k["median_s"] / b["median_s"] if b["median_s"] else math.inf
    checks_ok = all(v for v in checks.values() if isinstance(v, bool))
    if ratio_max is None and ratio_min is None:
        meets = None
    else:
        within = (ratio_max is None or ratio <= ratio_max) and (ratio_min is None or ratio >= ratio_min)
        meets = bool(within and checks_ok)
    target: dict[str, float | None] = {"ratio_max": ratio_max}
    if ratio_min is not None:
        target["ratio_min"] = ratio_min
    return {
        "bench": bench,
        "params": dict(params),
        "keel": k,
        "baseline": {"name": baseline_name, **b},
        "ratio": round(ratio, 3),
        "ratio_is": ratio_is,
        "target": target,
        "meets_target": meets,
        "checks": dict(checks),
        "env": environment(),
    }


def emit(line: Mapping[str, Any], args: argparse.Namespace | None = None) -> None:
    """Print one result as a JSON line on stdout; append it to the files ``--append``/``--output`` name."""
    text = json.dumps(line, default=_json_default)
    print(text, flush=True)
    targets: list[Path] = []
    if args is not None and args.append:
        targets.append(LATEST)
    if args is not None and args.output is not None:
        targets.append(args.output)
    for path in targets:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as f:
            f.write(text + "\n")


def _json_default(value: Any) -> Any:
    try:
        import numpy as np

        if isinstance(value, np.generic):
            return value.item()
    except ImportError:
        pass
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
