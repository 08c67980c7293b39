"""The Spark session of the engine tests: the one of the whole test run (a JVM takes seconds to start).

It comes from the ``spark_engine`` fixture of ``tests/conftest.py``, which skips, saying why, when PySpark or
Java is missing, unless ``KEEL_REQUIRE_SERVICES=1`` (set by ``.ci/run``), in which case it fails.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


@pytest.fixture(scope="session")
def spark(spark_engine: Any) -> SparkSession:
    """The process's Spark session (``local[2]``), shared by every Spark engine the tests build."""
    session: SparkSession = spark_engine.spark
    return session
