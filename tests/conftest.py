"""Shared fixtures: real services (PostgreSQL, Redis) with per-run isolation, and scratch projects.

A test that needs a service skips with the reason when the service is absent, unless
``KEEL_REQUIRE_SERVICES=1`` (set by ``.ci/run``), in which case it fails.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

PG_URL = os.environ.get("KEEL_TEST_POSTGRES", "postgresql+psycopg://root@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("KEEL_TEST_REDIS", "redis://127.0.0.1:6379/0")


def _service_missing(name: str, reason: str) -> None:
    if os.environ.get("KEEL_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{name} is required (KEEL_REQUIRE_SERVICES=1) but unavailable: {reason}")
    pytest.skip(f"{name} unavailable: {reason}")


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the developer's KEEL_* settings, nor their AWS credentials, endpoint or profile (the S3
    tests set their own, for a private server)."""
    kept = (
        "KEEL_REQUIRE_SERVICES",
        "KEEL_TEST_POSTGRES",
        "KEEL_TEST_REDIS",
        "KEEL_TEST_CHROMIUM",
        "KEEL_UI_SCREENSHOTS",
    )
    for key in list(os.environ):
        if (key.startswith("KEEL_") and key not in kept) or key.startswith(("AWS_", "FSSPEC_S3")):
            monkeypatch.delenv(key)


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The PostgreSQL server's URL (database ``test``), or a skip/failure when it is absent."""
    try:
        import sqlalchemy as sa

        engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        engine.dispose()
    except Exception as exc:
        _service_missing("PostgreSQL", f"{PG_URL}: {exc}")
    return PG_URL


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A catalog URL on a fresh PostgreSQL schema, dropped after the test."""
    import sqlalchemy as sa

    schema = f"keel_test_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(postgres_server)
    with engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{postgres_server}?options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        engine.dispose()


@pytest.fixture(scope="session")
def redis_server() -> str:
    """The Redis server's URL, or a skip/failure when it is absent."""
    try:
        import redis

        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
        client.ping()
        client.close()
    except Exception as exc:
        _service_missing("Redis", f"{REDIS_URL}: {exc}")
    return REDIS_URL


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    """An empty project folder."""
    root = tmp_path / "project"
    root.mkdir()
    return root


#: The Spark session of the test run: local, two cores, few shuffle partitions (tests move little data).
SPARK_TEST_CONF = {
    "spark.sql.shuffle.partitions": "4",
    "spark.default.parallelism": "2",
    "spark.ui.enabled": "false",
    "spark.driver.memory": "2g",
}


@pytest.fixture(scope="session")
def spark_engine() -> Any:
    """The Spark engine on one local session shared by the whole test run (a process holds one session).

    Skips when PySpark or Java is missing, unless ``KEEL_REQUIRE_SERVICES=1``, where that fails.
    """
    import shutil

    try:
        import pyspark  # noqa: F401
    except ImportError as exc:
        _service_missing("PySpark", f"{exc}; pip install 'keel[spark]'")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        _service_missing("Java", "no java on PATH and no JAVA_HOME; Spark needs Java 17")
    from keel._backends import open_engine
    from keel.config import KeelConfig, SparkConfig

    # Spark's local Python workers get this process's sys.path when the session starts: every test folder goes
    # on it first, so that what a test hands to the workers by reference (a sink class of a test module)
    # unpickles there whichever test started the session.
    tests = Path(__file__).resolve().parent
    for folder in [tests, *sorted(p for p in tests.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))]:
        if str(folder) not in sys.path:
            sys.path.append(str(folder))
    config = KeelConfig(engine="spark", spark=SparkConfig(master="local[2]", conf=SPARK_TEST_CONF))
    engine = open_engine(config)
    engine.spark  # start the session now, with the path above  # noqa: B018
    return engine


@pytest.fixture(scope="session")
def spark_session(spark_engine: Any) -> Any:
    """The test run's Spark session (the one :func:`spark_engine` started)."""
    return spark_engine.spark


@pytest.fixture(scope="session")
def local_engine() -> Any:
    """The local engine, as ``engine: local`` builds it."""
    from keel._backends import open_engine
    from keel.config import KeelConfig

    return open_engine(KeelConfig(engine="local"))


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """moto's S3-compatible server, a subprocess on 127.0.0.1 and a free port, for the test run (started on first
    use); skips when moto's server is not installed, unless ``KEEL_REQUIRE_SERVICES=1``."""
    from _object_store import S3Server, ServerUnavailable

    try:
        server = S3Server(tmp_path_factory.mktemp("s3-server"))
    except ServerUnavailable as exc:
        _service_missing("moto's S3 server", str(exc))
    with server:
        yield server


@pytest.fixture
def s3_bucket(s3_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """A fresh bucket on :func:`s3_server`, with the credentials and the endpoint in the environment as a user
    sets them (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``) and no AWS file of the
    developer's read."""
    from _object_store import ACCESS_KEY, SECRET_KEY, use_s3_clients_for

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.url)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    use_s3_clients_for(s3_server.url)
    import fsspec

    name = f"keel-{uuid.uuid4().hex[:12]}"
    fsspec.filesystem("s3").mkdir(name)
    return name


@pytest.fixture(scope="module")
def private_redis() -> Iterator[Any]:
    """A Redis server of the module's own, which its tests may stop, hang (SIGSTOP) and restart (see
    ``_private_services``); skips when redis-server is not installed, unless ``KEEL_REQUIRE_SERVICES=1``."""
    from _private_services import PrivateRedis, ServiceUnavailable

    try:
        server = PrivateRedis()
    except ServiceUnavailable as exc:
        _service_missing("redis-server", str(exc))
    with server:
        yield server


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[Any]:
    """A PostgreSQL cluster of the module's own, which its tests may stop and restart (see ``_private_services``);
    skips when PostgreSQL's initdb is not installed, unless ``KEEL_REQUIRE_SERVICES=1``."""
    from _private_services import PrivatePostgres, ServiceUnavailable

    try:
        server = PrivatePostgres()
    except ServiceUnavailable as exc:
        _service_missing("PostgreSQL (initdb, pg_ctl)", str(exc))
    with server:
        yield server
