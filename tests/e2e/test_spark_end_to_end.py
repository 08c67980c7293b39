"""The Spark engine on a real cluster gives what the local engine gives, end to end.

One scratch copy of the churn example (``keel init --example churn``, small) runs its whole life on the Spark
engine against the session's standalone cluster, another on the local engine, both with a Redis online store:
apply, ingest, the training set, train, register, promote, materialize to Redis, read online values, then
``keel predict``. The two must agree exactly: version digests, the training set row for row, the online values
of a sample of customers, every prediction and probability.

Each side runs in child interpreters (``_pipeline_job.py``, then the ``keel`` command line): a process holds one
SparkSession, the unit tests' ``local[2]`` one may live in this process, and each side's engine must build its
session from the configuration it is given (``KEEL_ENGINE``, ``KEEL_SPARK__MASTER``), as a user's would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pandas as pd
import pytest

import keel
from _spark_cluster import SparkCluster

JOB = Path(__file__).with_name("_pipeline_job.py")
SRC = Path(keel.__file__).resolve().parents[1]  # this checkout's keel, for the child interpreters
CUSTOMERS = 100  # about 110 customers, 11,600 activity rows, 385 labels: seconds of work on either engine
SEED = 7
SAMPLE = 25  # customers whose online values are compared (and one that does not exist)
STEP_TIMEOUT_S = 600
MODEL = "churn@champion"
#: Small and bounded: the machine has 2 cores, shared. ``spark.master`` is what KEEL_SPARK__MASTER replaces.
SPARK_SETTINGS = """
spark:
  master: local[2]                       # the Spark side's KEEL_SPARK__MASTER points it at the test cluster
  conf:
    spark.executor.memory: 1g
    spark.cores.max: "2"
    spark.driver.memory: 1g
    spark.sql.shuffle.partitions: "4"
    spark.ui.enabled: "false"
"""


@dataclass
class Side:
    """What one engine's run produced."""

    engine: str
    root: Path
    out: Path
    summary: dict[str, Any]

    def frame(self, name: str) -> pd.DataFrame:
        return pd.read_parquet(self.out / name)


def _child_env(**keel_settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), *filter(None, [env.get("PYTHONPATH")])])
    # The engine pins its own listeners to 127.0.0.1 too; this makes sure of it for whatever it starts.
    env["SPARK_LOCAL_IP"] = "127.0.0.1"
    env.update(keel_settings)
    return env


def _run(what: str, cmd: list[str], env: dict[str, str], cluster: SparkCluster | None) -> None:
    """Run one step; on failure, fail the test naming the step, with the child's and the cluster's logs."""
    __tracebackhide__ = True  # the message says it all; this helper's frame would only repeat it
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=STEP_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        logs = cluster.log_tails() if cluster else ""
        pytest.fail(f"{what}: did not finish in {STEP_TIMEOUT_S}s\n{exc.stderr or ''}\n{logs}")
    if proc.returncode != 0:
        logs = cluster.log_tails() if cluster else ""
        pytest.fail(
            f"{what}: exit code {proc.returncode}\n--- stdout ---\n{proc.stdout[-3000:]}\n"
            f"--- stderr ---\n{proc.stderr[-6000:]}\n{logs}"
        )


def _keel(*args: str) -> list[str]:
    """The ``keel`` command of this checkout (the console script may belong to another install)."""
    return [sys.executable, "-c", "from keel.cli import main; main()", *args]


def _shift_to_yesterday(data: Path) -> timedelta:
    """Move every timestamp of the example's files by whole days, so that the last activity day is yesterday.

    The example's data is dated 2025; materialized now, its activity (TTL 7 days) would read as expired online
    and the online comparison would compare nulls. Relative times, hence the training set, are unchanged.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    last = pq.read_table(data / "activity.parquet", columns=["event_time"])["event_time"]
    latest = pc.max(last).as_py()
    yesterday = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    shift = timedelta(days=(yesterday - latest.replace(hour=0, minute=0, second=0, microsecond=0)).days)
    for path in sorted(data.glob("*.parquet")):
        table = pq.read_table(path)
        for i, field in enumerate(table.schema):
            if pa.types.is_timestamp(field.type):
                moved = pc.add(table.column(i), pa.scalar(shift, type=pa.duration(field.type.unit)))
                table = table.set_column(i, field, moved.cast(field.type))
        pq.write_table(table, path)
    return shift


@pytest.fixture
def churn_source(tmp_path: Path) -> Path:
    """A small churn example project, its data dated up to yesterday, with bounded Spark settings."""
    root = tmp_path / "source"
    init = _keel("init", str(root), "--example", "churn", "--customers", str(CUSTOMERS), "--seed", str(SEED))
    _run("keel init", init, _child_env(), None)
    _shift_to_yesterday(root / "data")
    with (root / "keel.yaml").open("a") as f:
        f.write(SPARK_SETTINGS)
    return root


def _run_side(
    engine: str, source: Path, tmp_path: Path, settings: dict[str, str], cluster: SparkCluster | None
) -> Side:
    """Copy the source project and run the pipeline then ``keel predict`` on ``engine``."""
    root = tmp_path / engine
    shutil.copytree(source, root)
    out = tmp_path / f"{engine}-out"
    sample = tmp_path / "sample.txt"
    env = _child_env(KEEL_ENGINE=engine, **settings)
    pipeline = [sys.executable, str(JOB), str(root), str(out), str(sample)]
    _run(f"the pipeline on the {engine} engine", pipeline, env, cluster)
    predict = ["predict", "--model", MODEL, "--input", str(out / "score_input.parquet")]
    predict += ["--output", str(out / "predictions.parquet"), "--id-column", "row_id", "--project", str(root)]
    if engine == "spark":
        predict += ["--engine", "spark"]
    _run(f"keel predict on the {engine} engine", _keel(*predict), env, cluster)
    return Side(engine, root, out, json.loads((out / "summary.json").read_text()))


def _values_equal(a: pd.Series, b: pd.Series) -> np.ndarray:
    """Element-wise equality where two missing values are equal (floats compared exactly)."""
    missing_a, missing_b = pd.isna(a).to_numpy(), pd.isna(b).to_numpy()
    pairs = zip(a.astype(object).to_numpy(), b.astype(object).to_numpy(), missing_a | missing_b, strict=True)
    same = np.array([skip or bool(x == y) for x, y, skip in pairs], dtype=bool)
    return np.where(missing_a | missing_b, missing_a & missing_b, same)


def _frame_differences(what: str, spark: pd.DataFrame, local: pd.DataFrame, key: list[str]) -> list[str]:
    """What differs between two frames that should be identical: columns, dtypes, rows, values (with
    examples named by ``key``)."""
    out: list[str] = []
    if list(spark.columns) != list(local.columns):
        out.append(f"{what}: columns differ: spark {list(spark.columns)} vs local {list(local.columns)}")
    if len(spark) != len(local):
        out.append(f"{what}: {len(spark)} rows on spark vs {len(local)} on local")
        return out
    spark, local = spark.reset_index(drop=True), local.reset_index(drop=True)
    for column in [c for c in local.columns if c in spark.columns]:
        if spark[column].dtype != local[column].dtype:
            out.append(f"{what}: column {column!r} is {spark[column].dtype} on spark, {local[column].dtype} on local")
        equal = _values_equal(spark[column], local[column])
        if not equal.all():
            bad = np.flatnonzero(~equal)
            examples = "; ".join(
                f"{', '.join(f'{k}={local.at[i, k]}' for k in key)}: "
                f"spark {_shown(spark.at[i, column])} vs local {_shown(local.at[i, column])}"
                for i in bad[:3]
            )
            out.append(f"{what}: column {column!r} differs in {len(bad)} of {len(local)} rows, e.g. {examples}")
    return out


def _shown(value: Any) -> str:
    return repr(value.item() if isinstance(value, np.generic) else value)


def _summary_differences(spark: dict[str, Any], local: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for view in sorted(set(spark["views"]) | set(local["views"])):
        s, l_ = spark["views"].get(view), local["views"].get(view)
        if s is None or l_ is None:
            out.append(f"view {view!r} ingested on {'local only' if s is None else 'spark only'}")
            continue
        for field in ("rows", "digest", "event_time_min", "event_time_max", "has_duplicates"):
            if s[field] != l_[field]:
                out.append(f"view {view!r}: ingested {field} {s[field]!r} on spark vs {l_[field]!r} on local")
    for field in ("train_rows", "validation_rows", "metrics"):
        if spark["run"][field] != local["run"][field]:
            out.append(f"training run: {field} {spark['run'][field]!r} on spark vs {local['run'][field]!r} on local")
    if spark["materialized"] != local["materialized"]:
        out.append(f"materialized entities: {spark['materialized']} on spark vs {local['materialized']} on local")
    if spark["monitor"] != local["monitor"]:
        out.append(f"monitoring against reference rows at rest: {spark['monitor']} on spark vs {local['monitor']}")
    return out


def _applications(cluster: SparkCluster) -> int:
    """How many applications the cluster's master has seen (running or finished)."""
    state = cluster.state()
    return len(state.get("activeapps", [])) + len(state.get("completedapps", []))


def _drop_redis_keys(url: str, prefixes: list[str]) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        for prefix in prefixes:
            doomed = list(client.scan_iter(match=f"{prefix}:*", count=1_000))
            doomed += [prefix] if client.exists(prefix) else []
            if doomed:
                client.unlink(*doomed)
    finally:
        client.close()


@pytest.mark.spark
@pytest.mark.slow
@pytest.mark.redis
def test_spark_on_a_cluster_and_the_local_engine_agree_end_to_end(
    running_spark_cluster: SparkCluster, redis_server: str, churn_source: Path, tmp_path: Path
) -> None:
    cluster = running_spark_cluster
    online = urlunsplit(urlsplit(redis_server)._replace(path="/15"))  # away from a developer's database 0
    token = uuid.uuid4().hex[:10]
    names = {"spark": f"kt{token}spark", "local": f"kt{token}local"}  # the projects' key prefixes in Redis
    customers = pd.read_parquet(churn_source / "data" / "customers.parquet")["customer_id"].drop_duplicates()
    sample = [*customers.sample(SAMPLE, random_state=SEED).astype(int).tolist(), -1]  # -1: an unknown customer
    (tmp_path / "sample.txt").write_text("\n".join(map(str, sample)))
    apps_before = _applications(cluster)
    try:
        spark = _run_side(
            "spark",
            churn_source,
            tmp_path,
            {"KEEL_SPARK__MASTER": cluster.master_url, "KEEL_ONLINE": online, "KEEL_NAME": names["spark"]},
            cluster,
        )
        local = _run_side("local", churn_source, tmp_path, {"KEEL_ONLINE": online, "KEEL_NAME": names["local"]}, None)
    finally:
        _drop_redis_keys(online, list(names.values()))

    # The Spark side really ran on the cluster, not in a local session of its own.
    assert spark.summary["engine"] == "spark" and spark.summary["spark_master"] == cluster.master_url
    assert _applications(cluster) > apps_before, f"no application ran on {cluster.master_url}: the engine ignored it"
    assert local.summary["engine"] == "local"

    differences = _summary_differences(spark.summary, local.summary)
    differences += _frame_differences(
        "training set",
        spark.frame("training_set.parquet"),
        local.frame("training_set.parquet"),
        ["customer_id", "event_timestamp"],
    )
    differences += _frame_differences(
        "online values", spark.frame("online.parquet"), local.frame("online.parquet"), ["customer_id"]
    )
    predictions = {
        side.engine: side.frame("predictions.parquet").sort_values("row_id", kind="stable") for side in (spark, local)
    }
    differences += _frame_differences("predictions", predictions["spark"], predictions["local"], ["row_id"])
    assert not differences, "the Spark engine on the cluster and the local engine differ:\n- " + "\n- ".join(
        differences
    )
    # And the comparison compared something: rows were trained on, scored, and found online.
    assert local.summary["training_set"]["rows"] == len(predictions["local"]) > 100
    assert local.summary["monitor"]["reference_rows"] == len(predictions["local"])
    assert local.summary["monitor"]["drift"]["features"]  # a drift statistic per feature was compared
    online_values = local.frame("online.parquet")
    assert online_values.drop(columns="customer_id").iloc[:-1].notna().any(axis=1).mean() > 0.5
