"""The Redis prediction cache, on the real server: a hit after a miss, entries shared by app instances and
processes, a promotion never served an old answer, a TTL, and an outage that never fails a prediction."""

from __future__ import annotations

import logging
import re
import socket
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from threadpoolctl import threadpool_limits

import keel
from _training_fixtures import build_project, push_fresh_online, register_churn_versions
from keel.errors import ConfigError
from keel.serving._cache import cache_prefix

pytestmark = pytest.mark.redis

CUSTOMERS = 6
RECORDS = [{"customer_id": 1}, {"customer_id": 2, "plan": "pro"}]
#: A database of its own; every key the tests write is under their project's unique prefix, deleted after.
DB = 7


@pytest.fixture(scope="module")
def name() -> str:
    return f"cachetest-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def cache_url(redis_server: str) -> str:
    return re.sub(r"/\d*$", "", redis_server.rstrip("/")) + f"/{DB}"


@pytest.fixture(scope="module")
def client_redis(cache_url: str, name: str) -> Iterator[Any]:
    import redis

    client = redis.Redis.from_url(cache_url)
    yield client
    keys = list(client.scan_iter(match=cache_prefix(name) + "*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """``churn`` v1 and v2 (champion: v1) and fresh online rows; the project's name is the cache's prefix."""
    with threadpool_limits(1):
        proj, labels = build_project(tmp_path_factory.mktemp("cache") / "project", name=name)
        register_churn_versions(proj, labels)
    proj.models.set_alias("churn", "champion", 1)
    push_fresh_online(proj, CUSTOMERS)
    proj.close()
    return proj.root


@pytest.fixture
def project(root: Path, name: str, cache_url: str, client_redis: Any) -> Iterator[keel.Project]:
    """The project with the Redis cache, starting with no cached answers and champion v1."""
    for key in client_redis.scan_iter(match=cache_prefix(name) + "*"):
        client_redis.delete(key)
    with keel.Project.open(root, name=name, cache=cache_url, prediction_log={"enabled": False}) as proj:
        proj.models.set_alias("churn", "champion", 1)
        yield proj


def post(client: TestClient, records: list[dict[str, Any]] = RECORDS) -> dict[str, Any]:
    response = client.post("/v1/models/churn/predict", json={"records": records})
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def sample(client: TestClient, metric: str, **labels: str) -> float:
    value = client.app.state.metrics.registry.get_sample_value(metric, labels)  # type: ignore[attr-defined]
    return 0.0 if value is None else float(value)


def cached_keys(client_redis: Any, name: str) -> list[bytes]:
    return sorted(client_redis.scan_iter(match=cache_prefix(name) + "*"))


def test_a_repeated_request_hits_after_a_miss(project: keel.Project, client_redis: Any, name: str) -> None:
    app = project.prediction_app(["churn@champion"])
    assert app.state.cache.kind == "redis"
    with TestClient(app) as c:
        first = post(c)
        assert sample(c, "keel_prediction_cache_total", result="miss") == 1
        assert post(c) == first
        assert sample(c, "keel_prediction_cache_total", result="hit") == 1
        assert post(c, [RECORDS[0]]) != first
        assert sample(c, "keel_prediction_cache_total", result="miss") == 2

    keys = cached_keys(client_redis, name)
    assert len(keys) == 2
    assert all(re.fullmatch(rf"keel:pred:{name}:[0-9a-f]{{64}}", k.decode()) for k in keys)
    values = [orjson.loads(client_redis.get(k)) for k in keys]
    assert first in values
    assert all(0 < client_redis.ttl(k) <= 3600 for k in keys)


def test_the_ttl_is_configurable(project: keel.Project, client_redis: Any, name: str) -> None:
    with TestClient(project.prediction_app(["churn@champion"], cache_ttl_seconds=5)) as c:
        post(c)
    (key,) = cached_keys(client_redis, name)
    assert 0 < client_redis.pttl(key) <= 5000


def test_a_promotion_never_hits_the_old_versions_entries(project: keel.Project, client_redis: Any) -> None:
    app = project.prediction_app(["churn@champion"])
    with TestClient(app) as c:
        first = post(c)
        project.models.set_alias("churn", "champion", 2)
        assert app.state.reload() == ["churn"]
        second = post(c)
        assert (first["version"], second["version"]) == (1, 2)
        assert second["probabilities"] != first["probabilities"]
        assert sample(c, "keel_prediction_cache_total", result="miss") == 2
        assert sample(c, "keel_prediction_cache_total", result="hit") == 0
        assert post(c) == second  # and v2's own answer is cached
        assert sample(c, "keel_prediction_cache_total", result="hit") == 1


def test_app_instances_share_the_entries(project: keel.Project) -> None:
    with TestClient(project.prediction_app(["churn@champion"])) as one:
        answer = post(one)
    with TestClient(project.prediction_app(["churn@champion"])) as two:
        assert post(two) == answer
        assert sample(two, "keel_prediction_cache_total", result="hit") == 1
        assert sample(two, "keel_prediction_cache_total", result="miss") == 0


OTHER_PROCESS = textwrap.dedent(
    """
    import sys
    import orjson
    from fastapi.testclient import TestClient
    import keel

    root, name, url, records = sys.argv[1], sys.argv[2], sys.argv[3], orjson.loads(sys.argv[4])
    with keel.Project.open(root, name=name, cache=url, prediction_log={"enabled": False}) as project:
        app = project.prediction_app(["churn@champion"])
        with TestClient(app) as c:
            answer = c.post("/v1/models/churn/predict", json={"records": records}).json()
        hits = app.state.metrics.registry.get_sample_value("keel_prediction_cache_total", {"result": "hit"})
    print(orjson.dumps({"answer": answer, "hits": hits}).decode())
    """
)


def test_another_process_hits_the_entries(project: keel.Project, name: str, cache_url: str) -> None:
    with TestClient(project.prediction_app(["churn@champion"])) as c:
        answer = post(c)
    done = subprocess.run(
        [sys.executable, "-c", OTHER_PROCESS, str(project.root), name, cache_url, orjson.dumps(RECORDS).decode()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    other = orjson.loads(done.stdout.strip().splitlines()[-1])
    assert other == {"answer": answer, "hits": 1.0}


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_an_outage_never_fails_a_prediction(root: Path, name: str, caplog: pytest.LogCaptureFixture) -> None:
    down = f"redis://127.0.0.1:{unused_port()}/0"
    with (
        keel.Project.open(root, name=name, cache="memory", prediction_log={"enabled": False}) as proj,
        TestClient(proj.prediction_app(["churn:1"], cache_size=0)) as c,
    ):
        expected = post(c)
    caplog.set_level(logging.WARNING, logger="keel.serving")
    with (
        keel.Project.open(root, name=name, cache=down, prediction_log={"enabled": False}) as proj,
        TestClient(proj.prediction_app(["churn:1"])) as c,
    ):
        for _ in range(3):
            assert post(c) == expected
        assert sample(c, "keel_prediction_cache_errors_total", operation="get") >= 1
        assert sample(c, "keel_prediction_cache_total", result="hit") == 0
        assert c.get("/ready").status_code == 200
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("scoring without the cache" in w and "get failed" in w for w in warnings)


def test_none_disables_the_cache_and_a_wrong_setting_fails_at_startup(root: Path, name: str) -> None:
    with (
        keel.Project.open(root, name=name, cache="none", prediction_log={"enabled": False}) as proj,
        TestClient(proj.prediction_app(["churn:1"])) as c,
    ):
        assert post(c) == post(c)
        assert sample(c, "keel_prediction_cache_total", result="hit") == 0
    with (
        keel.Project.open(root, name=name, cache="memcached://x") as bad,
        pytest.raises(ConfigError, match="unknown scheme 'memcached'; valid schemes are: memory, none, redis"),
    ):
        bad.prediction_app(["churn:1"])
