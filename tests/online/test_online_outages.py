"""The feature server through outages of Redis (its online store) and PostgreSQL (its catalog), under load from
several clients on a real server; both run privately for the test (the shared ones serve other test runs).

Throughout, the server stays up: ``/health`` answers at once, reads and pushes that need the missing backend
answer a clear 503 naming it, nothing answers 500 or hangs, the log says once when an outage starts and once when
it ends, and the server recovers by itself. Each test prints its figures; run with ``-s`` to see them.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from threadpoolctl import threadpool_limits

import keel
from _load import Load, health, hold, keel_warnings
from _private_services import PrivatePostgres, PrivateRedis
from _training_fixtures import build_project, push_fresh_online
from keel.errors import BackendError
from keel.online import OnlineFeatureService
from keel.serving._server import background_server

pytestmark = pytest.mark.slow

CUSTOMERS = 6
FEATURES = ["activity:spend", "activity:plan", "profile:age"]
#: A hang detector, not a speed target: Keel's Redis timeouts are one second.
HUNG = 5.0
_KEYS = itertools.count()
_PUSHED = itertools.count(1_000)


def read(client: httpx.Client) -> httpx.Response:
    return client.post("/features", json={"features": FEATURES, "entities": [{"customer_id": next(_KEYS) % CUSTOMERS}]})


def push(client: httpx.Client) -> httpx.Response:
    row = {"customer_id": next(_PUSHED), "event_time": datetime.now(UTC).isoformat(), "age": 30}
    return client.post("/push", json={"view": "profile", "rows": [row]})


KINDS = {"health": health, "read": read, "push": push}


@pytest.fixture(scope="module")
def project(
    tmp_path_factory: pytest.TempPathFactory, private_redis: PrivateRedis, private_postgres: PrivatePostgres
) -> Iterator[Any]:
    """Two views on a PostgreSQL catalog, the first customers' rows fresh in a Redis online store."""
    root = tmp_path_factory.mktemp("outages") / "project"
    with threadpool_limits(1):
        proj, _ = build_project(root, name="outages", online=private_redis.url(0), catalog=private_postgres.url)
    push_fresh_online(proj, CUSTOMERS)
    yield proj
    proj.close()


@pytest.fixture(scope="module")
def server(project: Any) -> Iterator[str]:
    with background_server(project.feature_app()) as url:
        yield url


def check_answers(load: Load, backend: str, started: float) -> None:
    """Only 200s and 503s naming ``backend``, the 503s ended after the outage started, none took long."""
    assert {a.status for a in load.answers} <= {200, 503}, load.summary()
    for answer in load.answers:
        if answer.status == 503:
            error = answer.body["error"]
            assert error["type"] == "BackendError" and backend in error["message"], error
            assert answer.kind != "health" and answer.sent + answer.seconds > started
        assert answer.seconds < HUNG, answer


def check_log(logs: Any, backend: str) -> None:
    """One line when the outage started, one when it ended, nothing else."""
    unavailable = [m for m in logs.messages(backend) if "is unavailable" in m]
    back = [m for m in logs.messages(backend) if "answers again after" in m]
    assert len(unavailable) == 1 and len(back) == 1 and len(logs.records) == 2, logs.messages()


def test_a_stopped_redis_online_store_answers_503_and_recovers_by_itself(
    server: str, private_redis: PrivateRedis
) -> None:
    with keel_warnings() as logs, Load(server, KINDS) as load:
        load.wait(lambda: load.count("read", 200) >= 5 and load.count("push", 200) >= 5, what="warm-up")
        down = time.monotonic()
        private_redis.stop()
        load.wait(lambda: load.count("read", 503, down) >= 10 and load.count("push", 503, down) >= 5, what="503s")
        hold(down)
        up = time.monotonic()
        private_redis.start()
        load.wait(lambda: load.count("read", 200, up) >= 5 and load.count("push", 200, up) >= 5, what="recovery")
        load.wait(lambda: bool(logs.messages("answers again after")), what="the outage's end logged")
    check_answers(load, "redis online store", down)
    check_log(logs, "redis online store")
    # A restarted Redis that kept its data serves the values read before the outage.
    before = {a.body["features"]["spend"][0] for a in load.of("read", 0, down) if a.status == 200}
    after = {a.body["features"]["spend"][0] for a in load.of("read", up) if a.status == 200}
    assert after == before
    print(
        "\nredis stopped:",
        load.summary(down, up),
        f"reads recovered {load.recovered('read', up):.2f} s after restart",
    )


def test_a_hung_redis_online_store_never_stalls_the_server(server: str, private_redis: PrivateRedis) -> None:
    with keel_warnings() as logs, Load(server, KINDS) as load:
        load.wait(lambda: load.count("read", 200) >= 5, what="warm-up")
        hung = time.monotonic()
        private_redis.hang()
        load.wait(lambda: load.count("read", 503, hung) >= 10 and load.count("health", 200, hung) >= 20, what="answers")
        hold(hung)
        resumed = time.monotonic()
        private_redis.resume()
        load.wait(lambda: load.count("read", 200, resumed) >= 5, what="recovery")
        load.wait(lambda: bool(logs.messages("answers again after")), what="the outage's end logged")
    check_answers(load, "redis online store", hung)
    check_log(logs, "redis online store")
    assert max(a.seconds for a in load.of("health", hung, resumed)) < 1.0, "the event loop stalled"
    slowest = {kind: round(max(a.seconds for a in load.of(kind, hung, resumed)), 3) for kind in KINDS}
    recovered = load.recovered("read", resumed)
    print("\nredis hung:", load.summary(hung, resumed), f"slowest {slowest} s, recovered {recovered:.2f} s")


def test_a_restarted_postgresql_catalog_fails_pushes_with_a_503_and_is_reconnected(
    server: str, private_postgres: PrivatePostgres
) -> None:
    with keel_warnings() as logs, Load(server, KINDS) as load:
        load.wait(lambda: load.count("read", 200) >= 5 and load.count("push", 200) >= 5, what="warm-up")
        down = time.monotonic()
        private_postgres.stop()
        load.wait(lambda: load.count("push", 503, down) >= 10, what="pushes refused")
        hold(down)
        up = time.monotonic()
        private_postgres.start()
        load.wait(lambda: load.count("push", 200, up) >= 5, what="pushes accepted again")
    check_answers(load, "catalog", down)
    check_log(logs, "catalog")
    # Reads go on from the last read plan: the views, keys and TTLs do not change while the catalog is out.
    assert {a.status for a in load.of("read")} == {200}
    print(
        "\npostgresql restarted:",
        load.summary(down, up),
        f"pushes recovered {load.recovered('push', up):.2f} s after restart",
    )


def test_reads_outlive_a_catalog_outage_on_their_last_plan(project: Any, private_postgres: PrivatePostgres) -> None:
    # Re-planned at every read, so that every read below asks the catalog.
    online = OnlineFeatureService(
        definitions=project.definitions,
        catalog=project.catalog,
        store=project.online_store,
        store_id=project.online_store_id,
        refresh_seconds=0,
    )
    expected = online.get(FEATURES, [{"customer_id": 1}]).to_dict()
    private_postgres.stop()
    try:
        assert online.get(FEATURES, [{"customer_id": 1}]).to_dict() == expected
        with pytest.raises(BackendError, match=r"catalog postgresql\+psycopg://.* (failed|is unavailable)"):
            online.get(["activity:orders"], [{"customer_id": 1}])  # never planned: it needs the catalog
    finally:
        private_postgres.start()
    Load.wait(lambda: _reads(online), what="a new plan once the catalog answers")


def _reads(online: OnlineFeatureService) -> bool:
    try:
        online.get(["activity:orders"], [{"customer_id": 1}])
    except BackendError:
        return False
    return True


def test_the_openapi_spec_documents_the_503(server: str) -> None:
    spec = httpx.get(f"{server}/openapi.json").json()
    for path in ("/features", "/push"):
        answer = spec["paths"][path]["post"]["responses"]["503"]
        assert "unavailable" in answer["description"]
        assert answer["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}


def test_timeouts_are_short_by_default_and_set_by_the_url_without_changing_the_store(project: Any) -> None:
    from keel._backends import backend_class

    url = project.config.online
    store_class = backend_class("online", url)
    with store_class(url) as default, store_class(f"{url}?socket_timeout=0.5&socket_connect_timeout=0.25") as tuned:
        assert default._client.get_connection_kwargs()["socket_timeout"] == 1.0
        assert default._client.get_connection_kwargs()["socket_connect_timeout"] == 1.0
        options = tuned._client.get_connection_kwargs()
        assert (options["socket_timeout"], options["socket_connect_timeout"]) == (0.5, 0.25)
    tuned_project = {"name": "outages", "catalog": project.config.catalog, "online": f"{url}?socket_timeout=0.5"}
    with keel.Project.open(project.root, **tuned_project) as other:
        # The same store to the catalog: the materializations it records for one are the other's.
        assert other.online_store_id == project.online_store_id
        assert (
            other.online_features(FEATURES, [{"customer_id": 1}]).to_dict()
            == project.online_features(FEATURES, [{"customer_id": 1}]).to_dict()
        )
