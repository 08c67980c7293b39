"""A session-scoped local Spark session for the engine tests (imported by the tests that use it).

It skips with the reason when pyspark or Java is missing, unless ``KEEL_REQUIRE_SERVICES=1``, which fails
instead. Spark's Python workers run this interpreter and import the Keel under test (and these test helpers):
``PYTHONPATH`` is set for them before the session starts.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import keel


def _unavailable(reason: str) -> None:
    if os.environ.get("KEEL_REQUIRE_SERVICES") == "1":
        pytest.fail(f"Spark is required (KEEL_REQUIRE_SERVICES=1) but unavailable: {reason}")
    pytest.skip(f"Spark unavailable: {reason}")


@pytest.fixture(scope="session")
def spark_session() -> Iterator[Any]:
    """A ``local[2]`` session in UTC without the UI; stopped at the end of the test session."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        _unavailable(f"pyspark is not installed ({exc}); pip install 'keel[spark]'")
    java_home = os.environ.get("JAVA_HOME")
    if shutil.which("java") is None and not (java_home and Path(java_home, "bin", "java").exists()):
        _unavailable("no Java runtime (java is not on PATH and JAVA_HOME is not set)")
    # the workers must run this interpreter (else the system python3) and import the Keel being tested
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    paths = [str(Path(keel.__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]
    os.environ["PYTHONPATH"] = os.pathsep.join([*paths, *filter(None, [os.environ.get("PYTHONPATH")])])
    try:
        spark = (
            SparkSession.builder.master("local[2]")
            .appName("keel-tests")
            .config("spark.ui.enabled", "false")
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.sql.shuffle.partitions", "4")
            .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
            .getOrCreate()
        )
    except Exception as exc:  # a JVM that does not start
        _unavailable(f"the Spark session did not start: {exc}")
    spark.sparkContext.setLogLevel("FATAL")  # a job failing on purpose would print pages of stack traces
    yield spark
    spark.stop()
