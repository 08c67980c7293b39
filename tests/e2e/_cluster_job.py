"""Run by ``test_spark_cluster.py`` in its own interpreter: ``python _cluster_job.py MASTER_URL``.

Opens a SparkSession on the standalone cluster at ``MASTER_URL``, runs a ``mapInPandas`` whose function reports
the process it runs in (its pid, its interpreter, and the JVM above it: the executor that started its Python
worker) and prints one JSON object on stdout: the driver's side (pid, JVM pid) and one record per task.

Why a separate interpreter: a process holds one SparkSession, and the unit tests of the Spark engine open a
``local[2]`` one in the test process; a session on the cluster there would either clash with it or silently
reuse it (``getOrCreate`` returns the existing session, whatever master was asked for).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from typing import Any

PARTITIONS = 4


def where_it_ran(batches: Iterator[Any]) -> Iterator[Any]:
    """For each batch, the Python worker's pid and interpreter and its executor JVM's pid and arguments."""
    import pandas as pd
    import psutil
    from pyspark import TaskContext

    jvm = psutil.Process().parent()
    while jvm is not None and "java" not in jvm.name():  # the worker is forked by pyspark.daemon, under the JVM
        jvm = jvm.parent()
    cmdline = jvm.cmdline() if jvm is not None else []
    executor_id = cmdline[cmdline.index("--executor-id") + 1] if "--executor-id" in cmdline else "driver"
    ctx = TaskContext.get()
    for batch in batches:
        yield pd.DataFrame(
            {
                "partition": [ctx.partitionId() if ctx else -1],
                "rows": [len(batch)],
                "pid": [os.getpid()],
                "python": [sys.executable],
                "jvm_pid": [jvm.pid if jvm is not None else -1],
                "executor_id": [executor_id],
                "executor_backend": ["CoarseGrainedExecutorBackend" in " ".join(cmdline)],
            }
        )


def main(master_url: str) -> dict[str, Any]:
    # Set before the session starts, as the Spark engine does: executors start Python workers with this
    # interpreter (not the system's python3), and nothing binds beyond 127.0.0.1.
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master(master_url)
        .appName("keel-cluster-check")
        .config("spark.executor.memory", "1g")
        .config("spark.cores.max", "2")
        .config("spark.driver.memory", "1g")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    try:
        schema = (
            "partition int, rows long, pid long, python string, jvm_pid long, executor_id string, "
            "executor_backend boolean"
        )
        frame = spark.range(0, 1_000, numPartitions=PARTITIONS).mapInPandas(where_it_ran, schema)
        tasks = [row.asDict() for row in frame.collect()]
        driver_jvm_pid = int(spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid())  # type: ignore[union-attr]
        return {
            "master": spark.sparkContext.master,
            "driver_pid": os.getpid(),
            "driver_jvm_pid": driver_jvm_pid,
            "tasks": tasks,
        }
    finally:
        spark.stop()


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])), flush=True)
