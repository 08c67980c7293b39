"""The standalone Spark cluster of the end-to-end tests runs Python work in executors of its own.

The job runs in a child interpreter (``_cluster_job.py``): the test process may already hold the unit tests'
``local[2]`` session, and a process has one SparkSession.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from _spark_cluster import SparkCluster

JOB = Path(__file__).with_name("_cluster_job.py")
JOB_TIMEOUT_S = 300


@pytest.mark.spark
@pytest.mark.slow
def test_the_cluster_runs_python_work_in_another_jvm_and_process(running_spark_cluster: SparkCluster) -> None:
    cluster = running_spark_cluster
    try:
        proc = subprocess.run(
            [sys.executable, str(JOB), cluster.master_url],
            env=cluster.env,
            capture_output=True,
            text=True,
            timeout=JOB_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the job on {cluster.master_url} did not finish in {JOB_TIMEOUT_S}s\n{cluster.log_tails()}\n{exc}")
    assert proc.returncode == 0, f"the job failed:\n{proc.stderr[-4000:]}\n{cluster.log_tails()}"
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    tasks = report["tasks"]

    assert report["master"] == cluster.master_url
    assert len(tasks) == 4 and sum(t["rows"] for t in tasks) == 1_000
    for task in tasks:
        assert task["pid"] != report["driver_pid"], task  # another Python process...
        assert task["jvm_pid"] not in (-1, report["driver_jvm_pid"]), task  # ...under another JVM...
        assert task["executor_backend"] and task["executor_id"] != "driver", task  # ...an executor's
        assert task["python"] == sys.executable, task  # PYSPARK_PYTHON reached the executors
    assert cluster.state()["aliveworkers"] == 1


@pytest.mark.spark
@pytest.mark.slow
def test_the_cluster_listens_on_loopback_only(running_spark_cluster: SparkCluster) -> None:
    psutil = pytest.importorskip("psutil")
    listening = []
    for name, proc in running_spark_cluster.processes.items():
        for conn in psutil.Process(proc.pid).net_connections(kind="inet"):
            if conn.status == psutil.CONN_LISTEN:
                listening.append((name, conn.laddr.ip, conn.laddr.port))

    assert listening, "neither the master nor the worker listens on any port"
    elsewhere = [entry for entry in listening if entry[1] not in ("127.0.0.1", "::ffff:127.0.0.1")]
    assert not elsewhere, f"listening beyond 127.0.0.1: {elsewhere}"
