"""The Spark session of the test run: one for every test (a JVM takes seconds to start), small and quiet.

Tests that need it skip, saying why, when PySpark or Java is missing, unless ``KEEL_REQUIRE_SERVICES=1``
(set by ``.ci/run``), in which case they fail.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from keel.errors import BackendError, MissingExtraError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

#: Small and fast: two cores, four shuffle partitions, no web UI.
TEST_CONF = {
    "spark.ui.enabled": "false",
    "spark.sql.shuffle.partitions": "4",
    "spark.default.parallelism": "2",
    "spark.sql.adaptive.coalescePartitions.initialPartitionNum": "4",
}
TEST_MASTER = "local[2]"


def _unavailable(reason: str) -> None:
    if os.environ.get("KEEL_REQUIRE_SERVICES") == "1":
        pytest.fail(f"Spark is required (KEEL_REQUIRE_SERVICES=1) but unavailable: {reason}")
    pytest.skip(f"Spark unavailable: {reason}")


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    """The process's Spark session (``local[2]``), shared by every engine the tests build."""
    from keel.engines._spark_session import spark_session, stop_session

    try:
        session = spark_session(TEST_MASTER, "keel-tests", TEST_CONF)
    except MissingExtraError as exc:
        _unavailable(str(exc))
    except BackendError as exc:  # no Java, or Spark failed to start
        _unavailable(str(exc))
    yield session
    stop_session()
