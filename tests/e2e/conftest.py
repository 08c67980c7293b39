"""End-to-end fixtures: a real standalone Spark cluster (master and worker JVMs on 127.0.0.1) for the session.

The cluster is started once per test session, on first use, and stopped at the end of the session, also when
tests fail or the run is interrupted. It skips with the reason when PySpark or Java is missing, unless
``KEEL_REQUIRE_SERVICES=1``, where it fails (the rule of the service fixtures in ``tests/conftest.py``). A
cluster that does not come up although both are there always fails, with the logs of its processes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from _spark_cluster import ClusterStartError, ClusterUnavailable, SparkCluster, start_cluster


@pytest.fixture(scope="session")
def running_spark_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkCluster]:
    """The running cluster: its master URL, web UI, folders and processes (for log tails in messages)."""
    try:
        cluster = start_cluster(tmp_path_factory.mktemp("spark-cluster"), cores=2, memory="2g")
    except ClusterUnavailable as exc:
        if os.environ.get("KEEL_REQUIRE_SERVICES") == "1":
            pytest.fail(f"a Spark cluster is required (KEEL_REQUIRE_SERVICES=1) but cannot start: {exc}")
        pytest.skip(f"Spark cluster unavailable: {exc}")
    except ClusterStartError as exc:
        pytest.fail(f"the Spark cluster did not start: {exc}")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def spark_cluster(running_spark_cluster: SparkCluster) -> str:
    """The master URL (``spark://127.0.0.1:<port>``) of a standalone cluster: one worker, 2 cores, 2 GiB."""
    return running_spark_cluster.master_url
