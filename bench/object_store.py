"""Object store benchmark: the loop with artifacts and the offline store on S3 against the same loop on local files.

The S3 side talks to an S3-compatible server run locally (moto's, ``python -m moto.server`` in a subprocess on
127.0.0.1, from the dev extra), through s3fs, with the credentials and the endpoint in the environment as a user
sets them. Over loopback a request costs well under a millisecond; on a real object store each costs 10-50 ms,
so the figure to carry over is ``checks.requests`` (the round trips one operation makes, counted by the server),
more than the ratio.

Data, seeded: one feature view ``activity`` (an integer key, an event time over 60 days, a float with nulls, an
integer and a string) of ``rows`` rows, one row per customer; label rows an hour after each feature row.

Workloads (one JSON line each; ``keel`` is the S3 side, ``baseline`` the same call on local files):

``object_store.ingest``
    ``project.ingest("activity")`` into a fresh project (a new prefix, a new folder): staging write, digest,
    publication of the version (files copied server-side to their final keys, the manifest last), catalog row.
``object_store.historical_features``
    ``project.historical_features`` of every label row with three features (DuckDB reading the version's
    Parquet file through s3fs).
``object_store.train_register``
    ``project.train(spec)`` (a logistic regression) and ``project.models.register``: the fit costs both sides
    the same; the package and the training set's profile are uploaded on the S3 side.
``object_store.load``
    ``keel.Project.open(...).models.load("churn@champion")``: alias lookup, one read of the package, SHA-256
    check, load.
``object_store.batch``
    ``project.predict_batch`` of every label row, features joined from the offline store, the input read from
    and the scores written to the store's side (S3 or the local disk).

Every workload checks that both sides give the same result (version digest, training-set frame, predictions,
scores). Run ``python bench/object_store.py`` (about a minute) or ``--quick`` (seconds).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # the private S3 server

import _common as common

SEED = 20240115
FULL = {"rows": 200_000}
QUICK = {"rows": 10_000}
FEATURES = ["activity:spend", "activity:orders", "activity:plan"]
#: The bench's own credentials for the private server (it checks no signature).
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "AKIAKEELBENCHEXAMPLE", "AWS_SECRET_ACCESS_KEY": "keel-bench-secret-example"}


# -- data and projects ---------------------------------------------------------------------------------------
def frames(rows: int) -> tuple[Any, Any]:
    """``(activity, labels)``: one feature row per customer, one label row an hour after it."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(SEED)
    t0 = pd.Timestamp("2024-01-01", tz="UTC")
    hours = np.sort(rng.integers(0, 60 * 24, rows))
    event = pd.Series(t0 + pd.to_timedelta(hours, unit="h"), dtype="datetime64[us, UTC]")
    spend = 20.0 + rng.normal(0, 15, rows)
    spend[rng.random(rows) < 0.05] = np.nan
    plan = rng.choice(["basic", "pro", "team"], rows)
    orders = rng.integers(0, 10, rows).astype(np.int64)
    activity = pd.DataFrame(
        {
            "customer_id": np.arange(rows, dtype=np.int64),
            "event_time": event,
            "spend": spend,
            "orders": orders,
            "plan": plan,
        }
    )
    score = -0.03 * np.nan_to_num(spend, nan=20.0) + 0.4 * orders + 1.5 * (plan == "basic") + rng.normal(0, 1, rows)
    labels = pd.DataFrame(
        {
            "customer_id": activity["customer_id"],
            "ts": event + timedelta(hours=1),
            "churned": (score > np.median(score)).astype(np.int64),
        }
    )
    return activity, labels


def definitions() -> list[Any]:
    from keel import Entity, FeatureView, Field, ParquetSource

    customer = Entity("customer", ["customer_id"])
    view = FeatureView(
        "activity",
        entities=[customer],
        source=ParquetSource("data/activity.parquet", timestamp="event_time"),
        schema=[Field("spend", "float64"), Field("orders", "int64"), Field("plan", "string")],
        ttl=timedelta(days=7),
    )
    return [customer, view]


class Side:
    """One side of the comparison: where its projects keep artifacts, versions and batch files."""

    def __init__(self, name: str, work: Path, data: Path, bucket: str | None) -> None:
        self.name = name
        self.work = work / name
        self.work.mkdir()
        self.data = data
        self.bucket = bucket

    def stores(self, tag: str) -> dict[str, str]:
        if self.bucket is None:
            return {}
        return {"artifacts": f"s3://{self.bucket}/{tag}/artifacts", "offline": f"s3://{self.bucket}/{tag}/offline"}

    def io(self, tag: str) -> str:
        return f"s3://{self.bucket}/{tag}/io" if self.bucket else str(self.work / tag / "io")

    def project(self, tag: str, *, apply: bool = True) -> Any:
        """A project folder ``tag`` (its catalog is always local); its data file linked from the shared one."""
        import keel

        root = self.work / tag
        if not root.exists():
            (root / "data").mkdir(parents=True)
            (root / "io").mkdir()
            os.link(self.data, root / "data" / "activity.parquet")
        project = keel.Project.open(root, **self.stores(tag))
        if apply:
            project.apply(definitions())
        return project


def spec(labels: Any) -> Any:
    from sklearn.linear_model import LogisticRegression

    from keel.training import TrainingSpec

    return TrainingSpec(
        "churn", labels=labels, label="churned", features=FEATURES, model=LogisticRegression(max_iter=300)
    )


@contextlib.contextmanager
def s3_environment(url: str) -> Iterator[None]:
    """The credentials and the endpoint in the environment, as a user sets them; the caller's restored after."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    for key in saved:
        del os.environ[key]
    os.environ.update(CREDENTIALS, AWS_ENDPOINT_URL=url, AWS_DEFAULT_REGION="us-east-1")
    try:
        yield
    finally:
        for key in [k for k in os.environ if k.startswith("AWS_")]:
            del os.environ[key]
        os.environ.update(saved)


# -- workloads -----------------------------------------------------------------------------------------------
def counted(server: Any, fn: Callable[[], Any]) -> tuple[Any, dict[str, int]]:
    """``fn()``'s value and the requests it made to the server, by kind."""
    from _object_store import request_kinds

    before = len(server.requests())
    value = fn()
    made = server.requests()[before:]
    return value, {**request_kinds(made), "total": len(made)}


def report(
    args: Any,
    name: str,
    timings: dict[str, common.Timing],
    requests: dict[str, int],
    params: dict[str, Any],
    checks: dict[str, Any],
) -> None:
    for side, t in timings.items():
        common.log(f"{name} {side}: median {t.median_s * 1000:.1f} ms runs {[round(r, 4) for r in t.runs]}")
    common.log(f"{name} requests: {requests}")
    line = common.result(
        f"object_store.{name}",
        params=params,
        keel=timings["s3"],
        baseline_name="the same call with artifacts and the offline store on local files",
        baseline=timings["local"],
        ratio_max=None,
        checks={"requests": requests, **checks},
    )
    common.emit(line, args)


def bench_ingest(args: Any, sides: dict[str, Side], server: Any, params: dict[str, Any]) -> None:
    def setup(side: Side) -> Callable[[], Any]:
        return lambda: side.project(f"ingest-{uuid.uuid4().hex[:8]}")

    def ingest(project: Any) -> Any:
        result = project.ingest("activity")
        project.close()
        return result.version

    timings = common.interleaved_with_setup(
        {name: (setup(side), ingest) for name, side in sides.items()}, runs=args.runs, warmup=args.warmup
    )
    fresh = sides["s3"].project("ingest-counted")
    version, requests = counted(server, lambda: ingest(fresh))
    local = timings["local"].last
    report(
        args,
        "ingest",
        timings,
        requests,
        params,
        {
            "same_digest": version.data_digest == local.data_digest == timings["s3"].last.data_digest,
            "same_files": version.files == local.files,
            "files": len(version.files),
        },
    )


def bench_loop(args: Any, sides: dict[str, Side], server: Any, labels: Any, params: dict[str, Any]) -> None:
    """The workloads after ingestion, on one ingested project per side."""
    import numpy as np
    import pandas as pd

    import keel

    projects = {}
    for name, side in sides.items():
        project = side.project("loop")
        project.ingest("activity")
        projects[name] = project
    entities = labels[["customer_id", "ts"]]

    if common.selected(args, "object_store.historical_features"):
        timings = common.interleaved(
            {name: (lambda p=p: p.historical_features(entities, FEATURES)) for name, p in projects.items()},
            runs=args.runs,
            warmup=args.warmup,
        )
        frame, requests = counted(server, lambda: projects["s3"].historical_features(entities, FEATURES))
        same = timings["local"].last.equals(frame)
        report(args, "historical_features", timings, requests, params, {"rows": len(frame), "identical": same})

    training = spec(labels)

    def train_register(project: Any) -> tuple[Any, Any]:
        run = project.train(training)
        return run, project.models.register(run)

    timings = common.interleaved(
        {name: (lambda p=p: train_register(p)) for name, p in projects.items()}, runs=args.runs, warmup=args.warmup
    )
    if common.selected(args, "object_store.train_register"):
        (run, _), requests = counted(server, lambda: train_register(projects["s3"]))
        local_run, _ = timings["local"].last
        report(
            args,
            "train_register",
            timings,
            requests,
            params,
            {"same_metrics": run.metrics == local_run.metrics == timings["s3"].last[0].metrics},
        )
    for name, p in projects.items():
        p.models.set_alias("churn", "champion", timings[name].last[1].version)

    if common.selected(args, "object_store.load"):

        def load(name: str) -> Any:
            with keel.Project.open(projects[name].root, **sides[name].stores("loop")) as fresh:
                return fresh.models.load("churn@champion")

        timings = common.interleaved(
            {name: (lambda n=name: load(n)) for name in projects}, runs=args.runs, warmup=args.warmup
        )
        package, requests = counted(server, lambda: load("s3"))
        features = pd.DataFrame({"spend": [1.0, np.nan], "orders": [1, 2], "plan": ["basic", "team"]})
        same = bool((package.predict_proba(features) == timings["local"].last.predict_proba(features)).all())
        report(args, "load", timings, requests, params, {"same_predictions": same})

    if common.selected(args, "object_store.batch"):
        for side in sides.values():
            local_input = side.work / "loop" / "entities.parquet"
            entities.to_parquet(local_input, index=False)
            import fsspec

            with fsspec.open(f"{side.io('loop')}/entities.parquet", "wb") as f:
                f.write(local_input.read_bytes())

        def batch(name: str) -> Any:
            io = sides[name].io("loop")
            result = projects[name].predict_batch(
                "churn@champion",
                f"{io}/entities.parquet",
                f"{io}/scores.parquet",
                feature_source="offline",
                timestamp="ts",
                resume=False,
            )
            assert result.ok
            return result

        timings = common.interleaved(
            {name: (lambda n=name: batch(n)) for name in projects}, runs=args.runs, warmup=args.warmup
        )
        _, requests = counted(server, lambda: batch("s3"))
        import fsspec

        scores = {}
        for name in projects:
            with fsspec.open(f"{sides[name].io('loop')}/scores.parquet", "rb") as f:
                scores[name] = pd.read_parquet(f)
        report(
            args,
            "batch",
            timings,
            requests,
            params,
            {"rows": len(scores["s3"]), "identical": scores["s3"].equals(scores["local"])},
        )
    for p in projects.values():
        p.close()


def main(argv: list[str] | None = None) -> int:
    args = common.parse_args(common.parser(__doc__.splitlines()[0], runs=5), argv)
    for key in [k for k in os.environ if k.startswith("KEEL_")]:  # the defaults, whatever the shell says
        del os.environ[key]
    from threadpoolctl import threadpool_limits

    from _object_store import S3Server, ServerUnavailable

    sizes = QUICK if args.quick else FULL
    params: dict[str, Any] = {"rows": sizes["rows"], "quick": args.quick, "seed": SEED, "server": "moto (loopback)"}
    common.DATA_DIR.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="object-store-", dir=common.DATA_DIR))
    try:
        try:
            server = S3Server(work)
        except ServerUnavailable as exc:
            common.log(f"skipped: {exc}")
            return 0
        with server, s3_environment(server.url), threadpool_limits(1):
            import fsspec

            bucket = f"keel-bench-{uuid.uuid4().hex[:8]}"
            fsspec.filesystem("s3").mkdir(bucket)
            activity, labels = frames(sizes["rows"])
            data = work / "activity.parquet"
            activity.to_parquet(data, index=False)
            sides = {"s3": Side("s3", work, data, bucket), "local": Side("local", work, data, None)}
            if common.selected(args, "object_store.ingest"):
                bench_ingest(args, sides, server, params)
            if any(
                common.selected(args, f"object_store.{w}")
                for w in ("historical_features", "train_register", "load", "batch")
            ):
                bench_loop(args, sides, server, labels[["customer_id", "ts", "churned"]], params)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
