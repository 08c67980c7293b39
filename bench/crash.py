"""Crash injection: ``kill -9`` Keel's writing operations at random points, then check that nothing is half done.

Each operation runs in a child process on a scratch project, forked from a server that has imported Keel and
its libraries (a child starts in milliseconds): the child opens the project, says ``ready``, does the operation
once, as the command line would, and says ``done``. The parent first times a few uninterrupted runs, then, many
times over, starts the operation, sends ``SIGKILL`` after a random delay (seeded, uniform over the measured
duration, so kills land all along the work), and checks the invariants:

* **ingest**: every listed feature version verifies (its files' SHA-256 against the catalog), none is half
  written; the re-run ingests the source whole.
* **train** (train, register, promote as ``keel train --register --promote champion`` does), **register**,
  **alias**: no run stays ``running`` once listed (the killed process is dead), every registered version's
  package verifies, every alias names an existing version and agrees with its history; the re-run succeeds.
* **materialize** (SQLite and Redis online stores), over a live previous generation: a reader thread reads a
  sample of keys all along, before and after the kill; every read gives, for each entity, the old value or
  the new one, never nothing for an entity both have, and, when the run rebuilds the view, never a mix of old
  and new; the re-run writes exactly the new values and leaves no hidden generation behind.
* **batch** scoring: no partial output is visible; the re-run resumes and its output equals an uninterrupted
  run's.
* **log** (the prediction log while it rotates files every fraction of a second): every published file reads,
  no row twice, and every prediction made earlier than the log's promise (``max_seconds`` plus the writer's
  linger, plus a second's slack for a loaded machine) before the kill is in the log.

One JSON line per operation: kills, corrupt states found, re-runs that succeeded; ``keel`` is the median
re-run after a kill and ``baseline`` the median uninterrupted run (``ratio``: what recovering costs). A last
line sums them up. ``--quick`` runs about a third of the kills on smaller data.

Usage: ``python bench/crash.py [--quick] [--seed N] [--only materialize] [--redis URL | --no-redis]``.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import random
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common

OPERATIONS = ("ingest", "train", "register", "alias", "materialize.sqlite", "materialize.redis", "batch", "log")
#: Kills per operation: 118 in all, 50 of them during a materialization over a live generation.
FULL_KILLS = {
    "ingest": 12,
    "train": 12,
    "register": 10,
    "alias": 10,
    "materialize.sqlite": 25,
    "materialize.redis": 25,
    "batch": 12,
    "log": 12,
}
QUICK_KILLS = {op: max(3, n // 3) for op, n in FULL_KILLS.items()}
#: Seconds a child may take to say it is ready, or to finish an uninterrupted run.
CHILD_TIMEOUT = 300.0
#: The prediction log's settings in the log workload: files rotate several times a second.
LOG_MAX_SECONDS = 0.25
LOG_LINGER_SECONDS = 0.05
#: Slack on top of the log's promise (max_seconds + linger) for a machine busy with other work.
LOG_SLACK_SECONDS = 1.0


@dataclass(frozen=True)
class Sizes:
    """How much data each operation moves (enough that the work, not the start-up, fills the time)."""

    ingest_rows: int
    entities: int
    labels: int
    batch_rows: int
    chunk_rows: int
    log_seconds: float

    @classmethod
    def full(cls) -> Sizes:
        return cls(
            ingest_rows=400_000, entities=200_000, labels=20_000, batch_rows=200_000, chunk_rows=10_000, log_seconds=3.0
        )

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            ingest_rows=100_000, entities=100_000, labels=6_000, batch_rows=60_000, chunk_rows=5_000, log_seconds=2.0
        )

    @classmethod
    def tiny(cls) -> Sizes:
        """For the test suite: seconds per operation."""
        return cls(
            ingest_rows=20_000, entities=4_000, labels=2_000, batch_rows=12_000, chunk_rows=1_000, log_seconds=1.2
        )


# -- the scratch project ----------------------------------------------------------------------------------------
FEATURES_PY = """
from datetime import timedelta

from keel import Entity, FeatureView, Field, ParquetSource

customer = Entity("customer", join_keys=["customer_id"])
activity = FeatureView(
    "activity", entities=[customer], ttl=None, online=False,
    source=ParquetSource("data/activity.parquet", timestamp="event_time"),
    schema=[Field("spend", "float64"), Field("orders", "int64"), Field("plan", "string")],
)
profile = FeatureView(
    "profile", entities=[customer], ttl=timedelta(days=30),
    source=ParquetSource("data/profile.parquet", timestamp="event_time"),
    schema=[Field("score", "float64"), Field("tier", "string")],
)
"""

TRAINING_PY = """
from sklearn.ensemble import HistGradientBoostingClassifier

from keel.training import RandomSplit, TrainingSpec

churn = TrainingSpec(
    "churn", labels="data/labels.parquet", label="churned",
    features=["activity:spend", "activity:orders", "activity:plan"],
    model=HistGradientBoostingClassifier(max_iter=20, early_stopping=False),
    split=RandomSplit(validation_fraction=0.25), seed=7,
)
"""


def redis_on_db15(url: str) -> str:
    """The server's URL on database 15, away from anything kept in database 0 (as the tests do)."""
    return urlunsplit(urlsplit(url)._replace(path="/15"))


def activity_frame(rows: int, entities: int, seed: int) -> Any:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    t0 = pd.Timestamp("2024-01-01", tz="UTC")
    return pd.DataFrame(
        {
            "customer_id": rng.integers(0, entities, rows, dtype=np.int64),
            "event_time": pd.Series(t0 + pd.to_timedelta(rng.integers(0, 90 * 24, rows), unit="h")).astype(
                "datetime64[us, UTC]"
            ),
            "spend": rng.gamma(2.0, 30.0, rows).round(2),
            "orders": rng.integers(0, 12, rows, dtype=np.int64),
            "plan": rng.choice(["basic", "pro", "team"], rows),
        }
    )


def profile_frame(ids: Any, version: int, event_time: Any) -> Any:
    """One profile row per entity of ``ids``: its score says which version wrote it (``version * 1e6 + id``)."""
    import numpy as np
    import pandas as pd

    ids = np.asarray(ids, dtype=np.int64)
    return pd.DataFrame(
        {
            "customer_id": ids,
            "event_time": pd.Series([event_time] * len(ids), dtype="datetime64[us, UTC]"),
            "score": version * 1_000_000.0 + ids,
            "tier": [f"v{version}"] * len(ids),
        }
    )


@dataclass
class Site:
    """A scratch Keel project and what the checks compare against."""

    root: Path
    sizes: Sizes
    online: str
    name: str
    seed: int
    #: entity -> score of the version the online store holds (materialize workloads)
    live: dict[int, float] = field(default_factory=dict)
    profile_version: int = 0
    profile_time: Any = None

    @classmethod
    def create(cls, root: Path, sizes: Sizes, *, online: str = "sqlite:///.keel/online.db", seed: int = 0) -> Site:
        import numpy as np
        import pandas as pd

        name = f"crash-{uuid.uuid4().hex[:10]}"
        root.mkdir(parents=True, exist_ok=True)
        (root / "data").mkdir(exist_ok=True)
        (root / "keel.yaml").write_text(f"name: {name}\nonline: {online}\n")
        (root / "features.py").write_text(FEATURES_PY)
        (root / "training.py").write_text(TRAINING_PY)
        entities = max(sizes.labels, 1_000)
        activity_frame(sizes.ingest_rows, entities, seed).to_parquet(root / "data" / "activity.parquet", index=False)
        rng = np.random.default_rng(seed + 1)
        labels = pd.DataFrame(
            {
                "customer_id": rng.integers(0, entities, sizes.labels),
                "ts": pd.Series(pd.Timestamp("2024-04-01", tz="UTC"), index=range(sizes.labels)).astype(
                    "datetime64[us, UTC]"
                ),
                "churned": rng.integers(0, 2, sizes.labels),
            }
        )
        labels.to_parquet(root / "data" / "labels.parquet", index=False)
        site = cls(root, sizes, online, name, seed)
        site.profile_time = pd.Timestamp.now(tz="UTC").floor("s") - pd.Timedelta(hours=1)
        site.write_profile(range(sizes.entities))
        import keel

        with keel.Project.open(root) as project:
            project.apply()
            project.ingest("activity")
            project.ingest("profile")
        return site

    def open(self) -> Any:
        import keel

        return keel.Project.open(self.root)

    def write_profile(self, ids: Any) -> dict[int, float]:
        """A new version of the profile source (ids, scores of the next version); returns its scores."""
        self.profile_version += 1
        self.profile_time = self.profile_time + timedelta(seconds=1)
        frame = profile_frame(list(ids), self.profile_version, self.profile_time)
        frame.to_parquet(self.root / "data" / "profile.parquet", index=False)
        return dict(zip(frame["customer_id"].tolist(), frame["score"].tolist(), strict=True))

    def cleanup(self) -> None:
        """Remove the online store's keys (Redis) and the folder."""
        if self.online.startswith("redis"):
            import redis

            client = redis.Redis.from_url(self.online)
            try:
                doomed = list(client.scan_iter(match=f"{self.name}:*", count=1_000))
                for start in range(0, len(doomed), 1_000):
                    client.unlink(*doomed[start : start + 1_000])
            finally:
                client.close()
        shutil.rmtree(self.root, ignore_errors=True)


# -- children ---------------------------------------------------------------------------------------------------
#: What the fork server imports once, so that a child starts in milliseconds rather than seconds.
PRELOAD = ["keel", "keel.project", "keel.online", "keel.prediction_log", "duckdb", "pandas", "pyarrow.parquet"]
_CONTEXT: Any = None
#: In a child: where it says what it does.
_CONNECTION: Any = None


def _fork_server() -> Any:
    """A multiprocessing context whose children fork from a server that has imported Keel and its libraries."""
    global _CONTEXT
    if _CONTEXT is None:
        import multiprocessing

        context = multiprocessing.get_context("forkserver")
        here = _child_entry.__module__
        context.set_forkserver_preload([*PRELOAD, "sklearn.ensemble", *([here] if here != "__main__" else [])])
        _CONTEXT = context
    return _CONTEXT


def _child_entry(op: str, payload: dict[str, Any], connection: Any, output: str) -> None:
    """A child's life: its output to a file, its words to the parent through ``connection``, one operation."""
    global _CONNECTION
    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    _CONNECTION = connection
    CHILD_OPS[op.split(".")[0]](payload)
    connection.close()


class Child:
    """A child process doing one operation (forked from the fork server); what it says is collected with the
    time it arrives. Each message is one write of a few bytes to a pipe, so a kill never leaves half of one."""

    def __init__(self, op: str, payload: dict[str, Any]) -> None:
        context = _fork_server()
        self.lines: queue.Queue[tuple[float, str]] = queue.Queue()
        self.seen: list[tuple[float, str]] = []
        handle, self.output = tempfile.mkstemp(prefix="keel-crash-child-", suffix=".log")
        os.close(handle)
        receiver, sender = context.Pipe(duplex=False)
        self.proc = context.Process(target=_child_entry, args=(op, payload, sender, self.output))
        self.proc.start()
        sender.close()  # the child's end: the reader sees EOF once the child is gone
        self._receiver = receiver
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                text = self._receiver.recv()
            except (EOFError, OSError):
                return
            self.lines.put((time.monotonic(), text))

    def wait_for(self, word: str, timeout: float = CHILD_TIMEOUT) -> float | None:
        """Wait for a line starting with ``word``; its arrival time, or ``None`` when the child ended first."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                at, line = self.lines.get(timeout=max(0.0, min(0.2, deadline - time.monotonic())))
            except queue.Empty:
                if not self._reader.is_alive() and self.lines.empty():
                    return None
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no {word!r} from the child in {timeout:.0f}s: {self.error()}") from None
                continue
            self.seen.append((at, line))
            if line.startswith(word):
                return at

    def drain(self) -> list[tuple[float, str]]:
        self._reader.join(5.0)
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return self.seen

    def done(self) -> bool:
        return any(line.startswith("done") for _, line in [*self.seen, *list(self.lines.queue)])

    def kill(self) -> bool:
        """SIGKILL the child; whether it was still at work (not done, not exited)."""
        running = self.proc.is_alive() and not self.done()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.join()
        return running and self.proc.exitcode == -signal.SIGKILL

    def finish(self, timeout: float = CHILD_TIMEOUT) -> int:
        self.proc.join(timeout)
        if self.proc.exitcode is None:
            self.kill()
            return -1
        return int(self.proc.exitcode)

    def error(self) -> str:
        with contextlib.suppress(OSError):
            return Path(self.output).read_text(errors="replace")[-2000:]
        return ""

    def result(self) -> dict[str, Any]:
        """The JSON the child said with ``done``, if any."""
        for _, line in reversed(self.drain()):
            if line.startswith("done "):
                parsed: dict[str, Any] = json.loads(line[5:])
                return parsed
        return {}

    def close(self) -> None:
        self._receiver.close()
        with contextlib.suppress(OSError):
            os.unlink(self.output)


def run_uninterrupted(op: str, payload: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """Run ``op`` to its end in a child; (seconds from ready to done, its result). Raises RuntimeError when it
    fails."""
    child = Child(op, payload)
    try:
        ready = child.wait_for("ready")
        finished = child.wait_for("done") if ready is not None else None
        code = child.finish()
        if ready is None or finished is None or code != 0:
            raise RuntimeError(f"{op} failed (exit code {code}): {child.error()}")
        return finished - ready, child.result()
    finally:
        child.close()


def _say(word: str, result: dict[str, Any] | None = None) -> None:
    text = word if result is None else f"{word} {json.dumps(result)}"
    if _CONNECTION is not None:
        _CONNECTION.send(text)
    else:
        print(text, flush=True)


def _child_project(payload: dict[str, Any]) -> Any:
    import keel

    return keel.Project.open(payload["root"])


def child_ingest(payload: dict[str, Any]) -> None:
    import duckdb  # noqa: F401  (imported before "ready": the kill lands in the work)
    import pyarrow.parquet  # noqa: F401

    with _child_project(payload) as project:
        project.definitions  # noqa: B018
        _say("ready")
        result = project.ingest(payload["view"])
        _say("done", {"version": result.version.version})


def child_train(payload: dict[str, Any]) -> None:
    import sklearn.ensemble  # noqa: F401

    with _child_project(payload) as project:
        spec = project.training_spec("churn")
        _say("ready")
        run = project.train(spec)
        version = project.models.register(run)
        project.models.set_alias("churn", "champion", version.version, reason="crash bench")
        _say("done", {"version": version.version})


def child_register(payload: dict[str, Any]) -> None:
    with _child_project(payload) as project:
        record = project.runs.get(payload["run"])
        _say("ready")
        version = project.models.register(record)
        _say("done", {"version": version.version})


def child_alias(payload: dict[str, Any]) -> None:
    with _child_project(payload) as project:
        project.catalog.aliases("churn")
        _say("ready")
        project.models.set_alias("churn", "champion", payload["version"], reason="crash bench")
        _say("done", {"version": payload["version"]})


def child_materialize(payload: dict[str, Any]) -> None:
    from datetime import datetime

    with _child_project(payload) as project:
        project.engine  # noqa: B018
        project.online_store  # noqa: B018
        _say("ready")
        [result] = project.materialize(["profile"], end=datetime.fromisoformat(payload["end"]))
        _say("done", {"rows": result.rows, "rebuilt": result.rebuilt})


def child_batch(payload: dict[str, Any]) -> None:
    with _child_project(payload) as project:
        project.models.load("churn@champion")  # its imports (scikit-learn) before "ready": the kill lands in the work
        _say("ready")
        result = project.predict_batch(
            "churn@champion", payload["input"], payload["output"], chunk_rows=payload["chunk_rows"], resume=True
        )
        done = {"rows": result.rows, "chunks": result.chunks, "resumed": result.chunks_resumed, "ok": result.ok}
        _say("done", done)


def child_log(payload: dict[str, Any]) -> None:
    """Append requests to the prediction log for ``seconds`` (or until killed), saying every few which were
    appended when; then close the log (which publishes everything)."""
    from datetime import UTC, datetime

    from keel.prediction_log import PredictionLog, build_layout, log_root

    with _child_project(payload) as project:
        package = project.models.load("churn@champion")
        layout = build_layout("churn", payload["version"], package, (("customer_id", "int64"),))
        log = PredictionLog(
            log_root(str(project.config.offline)),
            max_seconds=LOG_MAX_SECONDS,
            linger_seconds=LOG_LINGER_SECONDS,
            row_group_rows=2_000,
        )
    records = [{"customer_id": i} for i in range(20)]
    columns = {f.name: [1.0] * 20 for f in package.schema.features}
    answer = {"predictions": [1] * 20}
    prefix = payload["prefix"]
    _say("ready")
    stop = time.monotonic() + payload["seconds"]
    n = 0
    while time.monotonic() < stop:
        log.append(layout, f"{prefix}-{n}", datetime.now(UTC), records, columns, answer)
        n += 1
        if n % 5 == 0:
            _say(f"appended {n} {time.time():.6f}")
        time.sleep(0.002)
    log.close()
    _say("done", {"requests": n, "dropped": log.rows_dropped})


CHILD_OPS: dict[str, Callable[[dict[str, Any]], None]] = {
    "ingest": child_ingest,
    "train": child_train,
    "register": child_register,
    "alias": child_alias,
    "materialize": child_materialize,
    "batch": child_batch,
    "log": child_log,
}


# -- checks -----------------------------------------------------------------------------------------------------
#: Runs already reported as left running (each is reported once, by the kill that left it).
_LEFT_RUNNING: set[str] = set()


def check_catalog(project: Any) -> list[str]:
    """The invariants every workload keeps: runs settled once listed, versions and aliases whole."""
    found: list[str] = []
    runs = project.runs.list()  # listing settles the runs of dead processes (when Keel does)
    left = [r.id for r in runs if r.status == "running" and r.id not in _LEFT_RUNNING]
    if left:  # every child is dead by now: nothing can still be running
        _LEFT_RUNNING.update(left)
        found.append("a run still says running after its process was killed")
    for run in runs:
        if run.status == "finished" and run.package_digest and not project.artifacts.exists(run.package_digest):
            found.append(f"run {run.id[:8]} finished without its package")
    versions = project.models.versions("churn") if _has_model(project) else []
    numbers = sorted(v.version for v in versions)
    if numbers != list(range(1, len(numbers) + 1)):
        found.append(f"model versions are not 1..n: {numbers}")
    for v in versions:
        verified = project.models.verify(f"churn:{v.version}")
        if not verified.hash_matches:
            found.append(f"churn v{v.version}: its package does not verify")
    if versions:
        aliases = project.catalog.aliases("churn")
        champion = aliases.get("champion")
        if champion is not None and champion not in numbers:
            found.append(f"champion names v{champion}, which does not exist")
        history = project.catalog.alias_history("churn", "champion")  # oldest first
        last = history[-1].to_version if history else None
        if history and last != champion:
            found.append(f"champion is v{champion} but its history ends at v{last}")
    damaged = project.verify()
    if damaged:
        found.append(f"feature versions fail verification: {sorted(damaged)}")
    return found


def _has_model(project: Any) -> bool:
    try:
        return bool(project.models.versions("churn"))
    except Exception:
        return False


@dataclass
class Outcome:
    """One attempt: was the child killed at work, what the checks found, whether the re-run succeeded."""

    delay: float
    killed: bool
    corrupt: list[str] = field(default_factory=list)
    rerun_ok: bool = False
    rerun_seconds: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Workload:
    """One operation's kills and what they found."""

    op: str
    kills: int
    seconds: list[float] = field(default_factory=list)  # uninterrupted runs
    outcomes: list[Outcome] = field(default_factory=list)
    #: what the uninterrupted runs showed (added to the line's checks)
    notes: dict[str, Any] = field(default_factory=dict)

    def line(self, params: dict[str, Any]) -> dict[str, Any]:
        killed = [o for o in self.outcomes if o.killed]
        corrupt = [o for o in killed if o.corrupt]
        reruns = [o.rerun_seconds for o in killed if o.rerun_seconds is not None]
        baseline = statistics.median(self.seconds) if self.seconds else 0.0
        recovery = statistics.median(reruns) if reruns else 0.0
        examples = sorted({c for o in corrupt for c in o.corrupt})[:8]
        extras: dict[str, Any] = {}
        for o in killed:
            for key, value in o.extra.items():
                if isinstance(value, bool):
                    extras[key] = extras.get(key, True) and value
                elif isinstance(value, int | float):
                    extras[key] = extras.get(key, 0) + value
        checks = {
            "kills": len(killed),
            "corrupt_states": len(corrupt),
            "reruns_succeeded": sum(o.rerun_ok for o in killed),
            "no_corrupt_state": not corrupt,
            "every_rerun_succeeded": all(o.rerun_ok for o in killed),
            "enough_kills": len(killed) >= self.kills,
            **extras,
            **self.notes,
        }
        return {
            "bench": f"crash.{self.op}",
            "params": {**params, "kills_wanted": self.kills, "attempts": len(self.outcomes)},
            "kills": len(killed),
            "corrupt_states": len(corrupt),
            "reruns_succeeded": checks["reruns_succeeded"],
            "corrupt_examples": examples,
            "delays_s": {
                "min": round(min((o.delay for o in killed), default=0.0), 3),
                "max": round(max((o.delay for o in killed), default=0.0), 3),
            },
            "keel": {
                "name": "re-run after a kill",
                "median_s": round(recovery, 3),
                "runs": [round(r, 3) for r in reruns],
            },
            "baseline": {
                "name": "uninterrupted run",
                "median_s": round(baseline, 3),
                "runs": [round(s, 3) for s in self.seconds],
            },
            "ratio": round(recovery / baseline, 3) if baseline else None,
            "ratio_is": "keel/baseline",
            "target": {"ratio_max": None, "corrupt_states": 0},
            "meets_target": all(value for value in checks.values() if isinstance(value, bool)),
            "checks": checks,
            "env": common.environment(),
        }


def kill_at_random(
    workload: Workload,
    rng: random.Random,
    *,
    start: Callable[[], Child],
    check: Callable[[Child, float], list[str]],
    rerun: Callable[[], tuple[bool, float, dict[str, Any]]],
    during: Callable[[], Any] | None = None,
) -> None:
    """Kill ``start()``'s child at random delays until ``workload.kills`` kills landed (a child may finish before
    its delay: at most ten attempts more than three per kill); check and re-run after each attempt.

    ``during`` is entered (a context manager) around the child's life: a concurrent reader, for instance.
    """
    span = statistics.median(workload.seconds)
    attempts = 0
    while sum(o.killed for o in workload.outcomes) < workload.kills and attempts < 3 * workload.kills + 10:
        attempts += 1
        delay = rng.uniform(0.0, span)
        context = during() if during is not None else contextlib.nullcontext()
        with context as watch:
            child = start()
            try:
                ready = child.wait_for("ready")
                if ready is None:
                    raise RuntimeError(f"{workload.op}: the child died before it was ready: {child.error()}")
                time.sleep(max(0.0, ready + delay - time.monotonic()))
                killed_at = time.time()
                killed = child.kill()
                child.drain()
            finally:
                child.close()
        outcome = Outcome(delay, killed)
        if watch is not None and hasattr(watch, "violations"):
            outcome.corrupt += watch.violations
            outcome.extra["concurrent_reads"] = watch.reads
        outcome.corrupt += check(child, killed_at)
        ok, seconds, extra = rerun()
        outcome.rerun_ok, outcome.rerun_seconds = ok, seconds
        outcome.extra.update(extra)
        if not ok:
            outcome.corrupt.append("the re-run failed")
        outcome.corrupt = list(dict.fromkeys(outcome.corrupt))  # the reader and the check may see the same
        workload.outcomes.append(outcome)
        state = "killed" if killed else "had finished"
        common.log(
            f"{workload.op}: attempt {attempts}, {state} after {delay:.2f}s; "
            f"{'CORRUPT: ' + '; '.join(outcome.corrupt) if outcome.corrupt else 'consistent'}; "
            f"re-run {'ok' if ok else 'FAILED'}"
        )


def _rerun(op: str, payload: dict[str, Any]) -> tuple[bool, float, dict[str, Any]]:
    try:
        seconds, result = run_uninterrupted(op, payload)
    except (RuntimeError, TimeoutError) as exc:
        common.log(f"{op}: re-run failed: {exc}")
        return False, 0.0, {}
    return True, seconds, result


# -- workloads ----------------------------------------------------------------------------------------------------
#: Uninterrupted runs timed per operation before its kills.
MEASURE_RUNS = 2


def measure(op: str, payload: dict[str, Any] | Callable[[], dict[str, Any]]) -> list[float]:
    seconds = []
    for _ in range(MEASURE_RUNS):
        given = payload() if callable(payload) else payload
        seconds.append(run_uninterrupted(op, given)[0])
    return seconds


def workload_ingest(site: Site, kills: int, rng: random.Random) -> Workload:
    w = Workload("ingest", kills)
    payload = {"root": str(site.root), "view": "activity"}
    counter = iter(range(10_000))

    def new_source() -> dict[str, Any]:
        frame = activity_frame(site.sizes.ingest_rows, max(site.sizes.labels, 1_000), site.seed + 100 + next(counter))
        frame.to_parquet(site.root / "data" / "activity.parquet", index=False)
        return payload

    w.seconds = measure("ingest", new_source)

    def check(child: Child, _: float) -> list[str]:
        with site.open() as project:
            found = check_catalog(project)
            latest = project.catalog.feature_version("activity")
            if latest.row_count not in (site.sizes.ingest_rows,):
                found.append(f"activity v{latest.version} lists {latest.row_count} rows of {site.sizes.ingest_rows}")
        return found

    def rerun() -> tuple[bool, float, dict[str, Any]]:
        ok, seconds, _ = _rerun("ingest", payload)
        with site.open() as project:
            if ok and project.catalog.feature_version("activity").row_count != site.sizes.ingest_rows:
                ok = False
        return ok, seconds, {}

    def start() -> Child:
        return Child("ingest", new_source())

    kill_at_random(w, rng, start=start, check=check, rerun=rerun)
    return w


def workload_train(site: Site, kills: int, rng: random.Random) -> Workload:
    w = Workload("train", kills)
    payload = {"root": str(site.root)}
    w.seconds = measure("train", payload)

    def check(child: Child, _: float) -> list[str]:
        with site.open() as project:
            return check_catalog(project)

    def rerun() -> tuple[bool, float, dict[str, Any]]:
        ok, seconds, result = _rerun("train", payload)
        if ok:
            with site.open() as project:
                ok = project.catalog.aliases("churn").get("champion") == result.get("version")
        return ok, seconds, {}

    kill_at_random(w, rng, start=lambda: Child("train", payload), check=check, rerun=rerun)
    return w


def workload_register(site: Site, kills: int, rng: random.Random) -> Workload:
    w = Workload("register", kills)
    with site.open() as project:
        finished = [r.id for r in project.runs.list("churn") if r.status == "finished"]
    payload = {"root": str(site.root), "run": finished[0]}
    w.seconds = measure("register", payload)

    def check(child: Child, _: float) -> list[str]:
        with site.open() as project:
            return check_catalog(project)

    def rerun() -> tuple[bool, float, dict[str, Any]]:
        ok, seconds, _ = _rerun("register", payload)
        return ok, seconds, {}

    kill_at_random(w, rng, start=lambda: Child("register", payload), check=check, rerun=rerun)
    return w


def workload_alias(site: Site, kills: int, rng: random.Random) -> Workload:
    w = Workload("alias", kills)
    with site.open() as project:
        numbers = [v.version for v in project.models.versions("churn")]
    target = {"version": numbers[0]}

    def payload() -> dict[str, Any]:
        with site.open() as project:
            current = project.catalog.aliases("churn").get("champion")
        target["version"] = next(n for n in rng.sample(numbers, len(numbers)) if n != current)
        target["before"] = current
        return {"root": str(site.root), "version": target["version"]}

    w.seconds = measure("alias", payload)

    def check(child: Child, _: float) -> list[str]:
        with site.open() as project:
            found = check_catalog(project)
            now = project.catalog.aliases("churn").get("champion")
            if now not in (target["before"], target["version"]):
                found.append(f"champion is v{now}, neither v{target['before']} nor v{target['version']}")
        return found

    def rerun() -> tuple[bool, float, dict[str, Any]]:
        ok, seconds, _ = _rerun("alias", {"root": str(site.root), "version": target["version"]})
        with site.open() as project:
            ok = ok and project.catalog.aliases("churn").get("champion") == target["version"]
        return ok, seconds, {}

    kill_at_random(w, rng, start=lambda: Child("alias", payload()), check=check, rerun=rerun)
    return w


class Reader:
    """Reads a sample of entities from the online store in a thread while a materialization runs (and is
    killed), checking every read against the values before and after it."""

    def __init__(
        self, site: Site, old: dict[int, float], new: dict[int, float], sample: list[int], *, whole: bool
    ) -> None:
        self.site, self.old, self.new, self.sample, self.whole = site, old, new, sample, whole
        self.violations: list[str] = []
        self.reads = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Reader:
        import keel

        self.project = keel.Project.open(self.site.root)
        self.store = self.project.online_store
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.check(self.sample)  # once more, after the kill
        self.project.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.check(self.sample)
            time.sleep(0.002)

    def check(self, keys: list[int]) -> None:
        """One read of ``keys``: each value old or new, none missing that both have, no mix in a rebuild."""
        got = self.store.read("profile", [(k,) for k in keys], ["score"]).column("score")
        self.reads += 1
        kinds: set[str] = set()
        for key, value in zip(keys, got, strict=True):
            old, new = self.old.get(key), self.new.get(key)
            if value is None and old is not None and new is not None:
                self._violate("an entity both versions have read as missing")
            elif value != old and value != new:
                self._violate("an entity read a value of neither version")
            elif old != new:
                kinds.add("old" if value == old else "new")
        if self.whole and len(kinds) > 1:
            self._violate("a read mixed old and new values during a rebuild")

    def _violate(self, what: str) -> None:
        if what not in self.violations and len(self.violations) < 5:
            self.violations.append(what)


def workload_materialize(site: Site, kills: int, rng: random.Random, *, backend: str) -> Workload:
    """Kill materializations that replace a live generation: 2 in 3 rebuild the view (the new version drops
    entities), 1 in 3 upsert it (newer values for every entity)."""
    w = Workload(f"materialize.{backend}", kills)
    entities = site.sizes.entities
    end = (site.profile_time + timedelta(hours=2)).to_pydatetime()
    payload = {"root": str(site.root), "end": end.isoformat()}
    # The first version, live in the store.
    _rerun("materialize", payload)
    site.live = {i: site.profile_version * 1_000_000.0 + i for i in range(entities)}
    scenario: dict[str, Any] = {}
    attempt = iter(range(1_000_000))

    def next_version() -> None:
        n = next(attempt)
        rebuild = n % 3 != 2
        if rebuild:  # drop a different tenth of the entities: the store holds rows the new version lacks
            dropped = set(rng.sample(range(entities), entities // 10))
            ids = [i for i in range(entities) if i not in dropped]
        else:
            ids = list(range(entities))
        new = site.write_profile(ids)
        with site.open() as project:
            project.ingest("profile")
        sample = rng.sample(range(entities), min(300, entities))
        scenario.update(new=new, rebuild=rebuild, sample=sample)

    def during() -> Reader:
        next_version()
        return Reader(site, site.live, scenario["new"], scenario["sample"], whole=scenario["rebuild"])

    # Timed with the reader at work too: the killed runs share the machine with it.
    seen: list[str] = []
    for _ in range(MEASURE_RUNS):
        with during() as reader:
            w.seconds.append(run_uninterrupted("materialize", payload)[0])
        seen += reader.violations
        site.live = dict(scenario["new"])
    w.notes["uninterrupted_reads_ok"] = not seen
    if seen:
        common.log(f"materialize.{backend}: readers of uninterrupted runs saw: {'; '.join(sorted(set(seen)))}")

    def start() -> Child:
        return Child("materialize", payload)

    def check(child: Child, _: float) -> list[str]:
        reader = Reader(site, site.live, scenario["new"], list(range(entities)), whole=scenario["rebuild"])
        import keel

        with keel.Project.open(site.root) as project:
            reader.store = project.online_store
            reader.check(reader.sample)
        return reader.violations

    def rerun() -> tuple[bool, float, dict[str, Any]]:
        ok, seconds, _ = _rerun("materialize", payload)
        extra: dict[str, Any] = {"rebuilds": int(scenario["rebuild"])}
        import keel

        with keel.Project.open(site.root) as project:
            store = project.online_store
            got = store.read("profile", [(i,) for i in range(entities)], ["score"]).column("score")
            expected = [scenario["new"].get(i) for i in range(entities)]
            if list(got) != expected:
                ok = False
                common.log(f"materialize.{backend}: after the re-run the store does not hold the new version")
            if hasattr(store, "hidden_generations"):
                left = store.hidden_generations("profile")
                extra["no_hidden_generation_left"] = not left
                ok = ok and not left
        site.live = dict(scenario["new"])
        return ok, seconds, extra

    kill_at_random(w, rng, start=start, check=check, rerun=rerun, during=during)
    return w


def workload_batch(site: Site, kills: int, rng: random.Random) -> Workload:
    import pyarrow.parquet as pq

    w = Workload("batch", kills)
    folder = site.root / "batch"
    folder.mkdir(exist_ok=True)
    source = folder / "input.parquet"
    with site.open() as project:
        names = project.models.load("churn@champion").feature_names
    frame = activity_frame(site.sizes.batch_rows, 1_000, site.seed + 7)
    frame[[n for n in names if n in frame.columns]].to_parquet(source, index=False)
    reference = folder / "reference.parquet"
    output = folder / "output.parquet"
    chunk_rows = site.sizes.chunk_rows
    run_uninterrupted(
        "batch", {"root": str(site.root), "input": str(source), "output": str(reference), "chunk_rows": chunk_rows}
    )
    expected = pq.read_table(reference)
    payload = {"root": str(site.root), "input": str(source), "output": str(output), "chunk_rows": chunk_rows}

    def fresh() -> dict[str, Any]:
        for leftover in folder.glob("output.parquet*"):
            shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
        for leftover in folder.glob(".output.parquet*"):
            leftover.unlink()
        return payload

    w.seconds = measure("batch", fresh)

    def check(child: Child, _: float) -> list[str]:
        if output.exists() and not pq.read_table(output).equals(expected):
            return ["a partial output is visible under the output's name"]
        return []

    def rerun() -> tuple[bool, float, dict[str, Any]]:
        ok, seconds, result = _rerun("batch", payload)
        same = ok and output.exists() and pq.read_table(output).equals(expected)
        return (
            bool(same and result.get("ok")),
            seconds,
            {"chunks_resumed": int(result.get("resumed", 0)), "resumed_output_equal": bool(same)},
        )

    kill_at_random(w, rng, start=lambda: Child("batch", fresh()), check=check, rerun=rerun)
    return w


def workload_log(site: Site, kills: int, rng: random.Random) -> Workload:
    from keel.prediction_log import log_root, read_prediction_log

    w = Workload("log", kills)
    with site.open() as project:
        root = log_root(str(project.config.offline))
        version = project.catalog.aliases("churn").get("champion") or 1
    counter = iter(range(1_000_000))

    def payload(seconds: float) -> dict[str, Any]:
        return {"root": str(site.root), "version": version, "prefix": f"p{next(counter)}", "seconds": seconds}

    w.seconds = [site.sizes.log_seconds]  # it appends for this long: the kills land all along
    current: dict[str, Any] = {}

    def start() -> Child:
        current.update(payload(site.sizes.log_seconds * 3))
        return Child("log", dict(current))

    def check(child: Child, killed_at: float) -> list[str]:
        found: list[str] = []
        appended: list[tuple[int, float]] = []
        for _, line in child.seen:
            if line.startswith("appended "):
                _, n, at = line.split()
                appended.append((int(n), float(at)))
        try:
            logged = read_prediction_log(root, "churn")
        except Exception as exc:  # a published file that does not read
            return [f"the log does not read: {type(exc).__name__}: {exc}"]
        ours = logged[logged["request_id"].str.startswith(current["prefix"] + "-")]
        if ours.duplicated(["request_id", "record"]).any():
            found.append("rows logged twice")
        have = {int(r.rsplit("-", 1)[1]) for r in ours["request_id"].unique()}
        promise = LOG_MAX_SECONDS + LOG_LINGER_SECONDS + LOG_SLACK_SECONDS
        owed = max((n for n, at in appended if at < killed_at - promise), default=0)
        missing = [n for n in range(owed) if n not in have]
        if missing:
            found.append(f"{len(missing)} request(s) appended over {promise:.2f}s before the kill are not in the log")
        total = max((n for n, _ in appended), default=0)
        current["lost"] = max(0, total - len(have))
        return found

    def rerun() -> tuple[bool, float, dict[str, Any]]:
        given = payload(0.5)
        ok, seconds, result = _rerun("log", given)
        extra: dict[str, Any] = {"requests_lost_to_kills": current.get("lost", 0)}
        if ok:
            logged = read_prediction_log(root, "churn")
            ours = logged[logged["request_id"].str.startswith(given["prefix"] + "-")]
            ok = ours["request_id"].nunique() == result.get("requests")
        return ok, seconds, extra

    kill_at_random(w, rng, start=start, check=check, rerun=rerun)
    # Hidden from readers; a writer that starts removes those untouched for an hour (STALE_TEMPORARY).
    w.notes["temporary_files_left"] = len(list(Path(root).rglob(".*.tmp")))
    return w


# -- main -------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def scratch(base: Path | None) -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="keel-crash-", dir=base))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run(
    ops: list[str],
    *,
    kills: dict[str, int],
    sizes: Sizes,
    seed: int,
    redis_url: str | None,
    folder: Path,
    emit: Callable[[dict[str, Any]], None],
    measure_runs: int = 2,
) -> list[dict[str, Any]]:
    """Run the workloads of ``ops`` on scratch projects under ``folder``; emit and return their lines.

    ``measure_runs`` is how many uninterrupted runs are timed before each operation's kills.
    """
    global MEASURE_RUNS
    MEASURE_RUNS = measure_runs
    rng = random.Random(seed)
    params = {"seed": seed, "sizes": sizes.__dict__}
    lines: list[dict[str, Any]] = []
    base_ops = [op for op in ops if not op.startswith("materialize")]
    if base_ops:
        site = Site.create(folder / "project", sizes, seed=seed)
        try:
            with site.open() as project:  # two versions of a model to register, move and score with
                run = project.train("churn")
                project.models.register(run)
                project.models.register(run)
                project.models.set_alias("churn", "champion", 1)
            for op in base_ops:
                common.log(f"{op}: {kills[op]} kills")
                workload = WORKLOADS[op](site, kills[op], rng)
                lines.append(workload.line(params))
                emit(lines[-1])
        finally:
            site.cleanup()
    for op in ops:
        if not op.startswith("materialize"):
            continue
        backend = op.split(".")[1]
        if backend == "redis":
            if redis_url is None:
                common.log("materialize.redis: skipped (no Redis; pass --redis URL)")
                continue
            online = redis_on_db15(redis_url)
        else:
            online = "sqlite:///.keel/online.db"
        site = Site.create(folder / backend, sizes, online=online, seed=seed)
        try:
            common.log(f"{op}: {kills[op]} kills")
            workload = workload_materialize(site, kills[op], rng, backend=backend)
            lines.append(workload.line(params))
            emit(lines[-1])
        finally:
            site.cleanup()
    total = {
        "bench": "crash.total",
        "params": params,
        "kills": sum(line["kills"] for line in lines),
        "corrupt_states": sum(line["corrupt_states"] for line in lines),
        "reruns_succeeded": sum(line["reruns_succeeded"] for line in lines),
        "per_operation": {
            line["bench"][6:]: [line["kills"], line["corrupt_states"], line["reruns_succeeded"]] for line in lines
        },
        "keel": {"median_s": 0.0},
        "baseline": {"name": "-", "median_s": 0.0},
        "ratio": 0.0,
        "target": {"ratio_max": None, "corrupt_states": 0},
        "checks": {"no_corrupt_state": all(line["corrupt_states"] == 0 for line in lines)},
    }
    total["meets_target"] = all(line["meets_target"] for line in lines)
    total["env"] = common.environment()
    emit(total)
    lines.append(total)
    return lines


WORKLOADS: dict[str, Callable[[Site, int, random.Random], Workload]] = {
    "ingest": workload_ingest,
    "train": workload_train,
    "register": workload_register,
    "alias": workload_alias,
    "batch": workload_batch,
    "log": workload_log,
}


def redis_available(url: str) -> bool:
    try:
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=2)
        client.ping()
        client.close()
        return True
    except Exception:
        return False


def main() -> None:
    p = common.parser(__doc__.splitlines()[0], runs=1, warmup=0)
    p.add_argument("--seed", type=int, default=16, help="seed of the kill delays and the data (default 16)")
    p.add_argument(
        "--redis",
        default=os.environ.get("KEEL_TEST_REDIS", "redis://127.0.0.1:6379/0"),
        help="Redis URL (database 15 is used)",
    )
    p.add_argument("--no-redis", action="store_true", help="skip the Redis materialization workload")
    p.add_argument("--kills", type=float, default=1.0, help="multiply every operation's kills by this")
    p.add_argument("--tmp", type=Path, default=None, help="where to create the scratch projects")
    args = common.parse_args(p)
    table = QUICK_KILLS if args.quick else FULL_KILLS
    kills = {op: max(1, round(n * args.kills)) for op, n in table.items()}
    ops = [op for op in OPERATIONS if common.selected(args, op)]
    redis_url = None if args.no_redis or not redis_available(args.redis) else args.redis
    sizes = Sizes.quick() if args.quick else Sizes.full()
    with scratch(args.tmp) as folder:
        run(
            ops,
            kills=kills,
            sizes=sizes,
            seed=args.seed,
            redis_url=redis_url,
            folder=folder,
            emit=lambda line: common.emit(line, args),
        )


if __name__ == "__main__":
    main()
