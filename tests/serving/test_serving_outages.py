"""The prediction service through outages of its backends, under load from several clients on a real server.

Redis (the online store and the answer cache) is stopped and restarted, then hung (SIGSTOP) and resumed;
PostgreSQL (the catalog) is restarted; the artifact store becomes unreadable. Each runs on a private server of
the test's own (the shared ones serve other test runs). Throughout, the service stays up: ``/health`` answers at
once, predictions that need the missing backend answer a clear 503 naming it and the others 200, nothing
answers 500 or hangs, the log says once when an outage starts and once when it ends, and the service recovers
by itself.

Each test prints its figures (answers during the outage, 5xx, time to recover); run with ``-s`` to see them.
Each outage lasts until enough answers were seen (a second or two); ``KEEL_OUTAGE_SECONDS=30`` holds each one
that long instead.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from threadpoolctl import threadpool_limits

from _load import Answer, Load, health, hold, keel_warnings
from _private_services import PrivatePostgres, PrivateRedis, free_port
from _training_fixtures import build_project, push_fresh_online, register_churn_versions
from keel.serving._server import background_server

pytestmark = pytest.mark.slow

CUSTOMERS = 6
#: A hang detector, not a speed target: Keel's Redis timeouts are one second, ``/health`` touches no backend.
HUNG = 5.0


_KEYS = itertools.count()
_VALUES = itertools.count()


def by_key(client: httpx.Client) -> httpx.Response:
    """One customer's prediction, its features read from the online store."""
    return client.post("/v1/models/churn/predict", json={"records": [{"customer_id": next(_KEYS) % CUSTOMERS}]})


def raw(client: httpx.Client) -> httpx.Response:
    """A prediction from raw values only (no online read); each one new, so each is a cache miss and a store."""
    record = {"spend": 10.0 + next(_VALUES), "orders": 2, "plan": "pro", "active": True}
    record |= {"since": "2023-06-01T00:00:00Z", "age": 40}
    return client.post("/v1/models/churn/predict", json={"records": [record]})


KINDS = {"health": health, "by_key": by_key, "raw": raw}


@pytest.fixture(scope="module")
def project(
    tmp_path_factory: pytest.TempPathFactory, private_redis: PrivateRedis, private_postgres: PrivatePostgres
) -> Iterator[Any]:
    """``churn`` v1 (champion) and v2, on a PostgreSQL catalog, a Redis online store and a Redis answer cache."""
    overrides = {"online": private_redis.url(0), "cache": private_redis.url(1), "catalog": private_postgres.url}
    root = tmp_path_factory.mktemp("outages") / "project"
    with threadpool_limits(1):
        proj, labels = build_project(root, name="outages", prediction_log={"enabled": False}, **overrides)
        register_churn_versions(proj, labels)
    proj.models.set_alias("churn", "champion", 1)
    push_fresh_online(proj, CUSTOMERS)
    yield proj
    proj.close()


@pytest.fixture(scope="module")
def service(project: Any) -> Iterator[str]:
    """The prediction service of ``churn@champion`` on a real server in this process, following the alias."""
    app = project.prediction_app(["churn@champion"], reload_seconds=0.2)
    with background_server(app) as url:
        yield url


def assert_503_names(answer: Answer, backend: str) -> None:
    assert answer.status == 503, answer
    error = answer.body["error"]
    assert error["type"] == "BackendError" and backend in error["message"], error


def assert_one_warning_each(logs: Any, backends: list[str]) -> None:
    """For each backend, exactly one line when its outage started and one when it ended; no traceback."""
    for backend in backends:
        assert len([m for m in logs.messages(backend) if "is unavailable" in m]) == 1, logs.messages()
        assert len([m for m in logs.messages(backend) if "answers again after" in m]) == 1, logs.messages()
    assert not [r for r in logs.records if r.exc_info], logs.messages()


def test_a_stopped_redis_fails_keyed_predictions_with_a_503_scores_the_rest_and_recovers(
    service: str, private_redis: PrivateRedis
) -> None:
    with keel_warnings() as logs, Load(service, KINDS) as load:
        load.wait(lambda: load.count("by_key", 200) >= 5 and load.count("raw", 200) >= 5, what="warm-up")
        down = time.monotonic()
        private_redis.stop()
        load.wait(
            lambda: load.count("by_key", 503, down) >= 10 and load.count("raw", 200, down) >= 10,
            what="503s for keyed predictions and raw ones scored without the cache",
        )
        hold(down)
        up = time.monotonic()
        private_redis.start()
        load.wait(lambda: load.count("by_key", 200, up) >= 5, what="keyed predictions served again")
        load.wait(lambda: len(logs.messages("answers again after")) >= 2, what="both outages' end logged")
    answers = load.answers
    assert {a.status for a in answers} <= {200, 503}, load.summary()
    for answer in answers:
        if answer.status == 503:
            assert answer.kind == "by_key" and answer.sent + answer.seconds > down
            assert_503_names(answer, "redis online store")
        assert answer.seconds < HUNG, answer
    recovered = load.recovered("by_key", up)
    assert_one_warning_each(logs, ["redis online store", "prediction cache"])
    assert len(logs.records) == 4, logs.messages()
    print("\nredis stopped:", load.summary(down, up), f"keyed predictions recovered {recovered:.2f} s after restart")


def test_a_hung_redis_never_stalls_the_service(service: str, private_redis: PrivateRedis) -> None:
    with keel_warnings() as logs, Load(service, KINDS) as load:
        load.wait(lambda: load.count("by_key", 200) >= 5 and load.count("raw", 200) >= 5, what="warm-up")
        hung = time.monotonic()
        private_redis.hang()
        load.wait(
            lambda: (
                load.count("by_key", 503, hung) >= 10
                and load.count("raw", 200, hung) >= 10
                and load.count("health", 200, hung) >= 20
            ),
            what="answers while Redis hangs",
        )
        hold(hung)
        resumed = time.monotonic()
        private_redis.resume()
        load.wait(lambda: load.count("by_key", 200, resumed) >= 5, what="keyed predictions served again")
        load.wait(lambda: len(logs.messages("answers again after")) >= 2, what="both outages' end logged")
    assert {a.status for a in load.answers} <= {200, 503}, load.summary()
    during = load.of("health", hung, resumed)
    assert max(a.seconds for a in during) < 1.0, "the event loop stalled while Redis hung"
    for answer in load.answers:
        if answer.status == 503:
            assert_503_names(answer, "redis online store")
        assert answer.seconds < HUNG, answer
    assert_one_warning_each(logs, ["redis online store", "prediction cache"])
    recovered = load.recovered("by_key", resumed)
    slowest = {kind: round(max(a.seconds for a in load.of(kind, hung, resumed)), 3) for kind in KINDS}
    print(
        "\nredis hung:",
        load.summary(hung, resumed),
        f"slowest answers {slowest} s, recovered {recovered:.2f} s after SIGCONT",
    )


def test_a_restarted_postgresql_catalog_is_reconnected_and_never_fails_a_prediction(
    service: str, project: Any, private_postgres: PrivatePostgres
) -> None:
    with keel_warnings() as logs, Load(service, KINDS) as load:
        load.wait(lambda: load.count("by_key", 200) >= 5, what="warm-up")
        down = time.monotonic()
        private_postgres.stop()
        load.wait(lambda: bool(logs.messages("hot reload failed")), what="the hot reload failing")
        load.wait(lambda: load.count("by_key", 200, down) >= 20, what="keyed predictions during the outage")
        hold(down)
        up = time.monotonic()
        private_postgres.start()
        load.wait(lambda: bool(logs.messages("answers again after")), what="the catalog answering again")
        project.models.set_alias("churn", "champion", 2)  # through the same, reconnected catalog
        moved = time.monotonic()
        load.wait(
            lambda: any(a.status == 200 and a.body["version"] == 2 for a in load.of("by_key", moved)),
            what="the service following the alias to v2 by itself",
        )
    project.models.set_alias("churn", "champion", 1)
    assert {a.status for a in load.answers} == {200}, load.summary()
    assert max(a.seconds for a in load.answers) < HUNG
    assert_one_warning_each(logs, ["catalog"])
    assert len(logs.messages("hot reload failed")) == 1 and len(logs.messages("hot reload works again")) == 1
    assert len(logs.records) == 4, logs.messages()
    print("\npostgresql restarted:", load.summary(down, up), f"catalog down {up - down:.1f} s")


# -- the artifact store -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def local_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """``churn`` v1 (champion) and v2 on the default backends: SQLite, local artifacts."""
    with threadpool_limits(1):
        root = tmp_path_factory.mktemp("artifacts") / "project"
        proj, labels = build_project(root, prediction_log={"enabled": False})
        register_churn_versions(proj, labels)
    proj.models.set_alias("churn", "champion", 1)
    push_fresh_online(proj, CUSTOMERS)
    yield proj
    proj.close()


@contextmanager
def unreadable(artifacts: Path) -> Iterator[Callable[[], None]]:
    """A file where the artifact store's folder was (its blobs cannot be opened) until the block ends or the
    function it gives is called."""
    away = artifacts.with_name(artifacts.name + ".away")
    artifacts.rename(away)
    artifacts.write_text("not a folder")

    def restore() -> None:
        if away.exists():
            artifacts.unlink()
            away.rename(artifacts)

    try:
        yield restore
    finally:
        restore()


def test_an_unreadable_artifact_store_keeps_the_loaded_model_serving(local_project: Any) -> None:
    artifacts = Path(local_project.artifacts.root)
    app = local_project.prediction_app(["churn@champion"], reload_seconds=0.2)
    with background_server(app) as url, keel_warnings() as logs, Load(url, KINDS) as load:
        load.wait(lambda: load.count("by_key", 200) >= 5, what="warm-up")
        with unreadable(artifacts) as restore:
            local_project.models.set_alias("churn", "champion", 2)  # v2's package cannot be read
            load.wait(lambda: bool(logs.messages("hot reload failed")), what="the hot reload failing")
            broken = time.monotonic()
            load.wait(lambda: load.count("by_key", 200, broken) >= 10, what="predictions while it is unreadable")
            hold(broken)
            fixed = time.monotonic()
            restore()
        load.wait(
            lambda: any(a.status == 200 and a.body["version"] == 2 for a in load.of("by_key", fixed)),
            what="v2 served once its package is readable",
        )
    local_project.models.set_alias("churn", "champion", 1)
    assert {a.status for a in load.answers} == {200}, load.summary()
    assert {a.body["version"] for a in load.of("by_key", broken) if a.sent + a.seconds < fixed} == {1}
    failed = logs.messages("hot reload failed")
    assert len(failed) == 1 and "artifact store" in failed[0] and "model churn v2" in failed[0], logs.messages()
    assert len(logs.messages("hot reload works again")) == 1, logs.messages()
    assert not [r for r in logs.records if r.exc_info], logs.messages()


def test_keel_serve_with_an_unreadable_artifact_store_is_a_clear_error(local_project: Any) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    keel_cli = Path(sys.executable).with_name("keel")
    command = [str(keel_cli)] if keel_cli.exists() else [sys.executable, "-c", "from keel.cli import main; main()"]
    command += ["serve", "-m", "churn@champion", "-p", str(local_project.root), "--port", str(free_port())]
    with unreadable(Path(local_project.artifacts.root)):
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 1, done.stderr
    assert "error:" in done.stderr and "artifact store" in done.stderr and "model churn v1" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_openapi_spec_documents_the_503(service: str) -> None:
    spec = httpx.get(f"{service}/openapi.json").json()
    answer = spec["paths"]["/v1/models/{name}/predict"]["post"]["responses"]["503"]
    assert "unavailable" in answer["description"]
    assert answer["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}
