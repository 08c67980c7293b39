"""One specification of the prediction cache, run on every backend: the in-process LRU and the real Redis server.

Every backend: an answer stored is read back, an unknown key misses, a key names the model's version (so a new
version, or a hot reload to one, never reads an old answer), and concurrent use is safe. Then what each
backend offers of its own: the LRU's eviction, Redis's TTL and shared entries, and a Redis failure that never
fails a request.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import keel
from _training_fixtures import build_project, push_fresh_online, register_churn_versions
from keel._backends import open_cache
from keel.errors import ConfigError
from keel.serving import CacheOptions, LoadedModel, MemoryPredictionCache, PredictionCache, Predictor
from keel.serving._cache import cache_key, cache_prefix

OpenCache = Callable[..., PredictionCache]
ANSWER = {
    "model": "churn",
    "version": 3,
    "predictions": [0, 1],
    "probabilities": [{"0": 0.75, "1": 0.25}, {"0": 0.125, "1": 0.875}],
    "warnings": [[], [{"type": "missing_imputed", "field": "spend", "message": "spend: null; the model imputes it"}]],
}


def redis_url_on_test_db(url: str) -> str:
    """The server's URL on database 15, away from anything a developer keeps in database 0."""
    return urlunsplit(urlsplit(url)._replace(path="/15"))


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@contextmanager
def caches_at(setting: str) -> Iterator[OpenCache]:
    """Opens caches at ``setting`` through the plug-in table, under a project name unique to the test; every
    cache is closed and the Redis keys written under the name are removed afterwards."""
    name = f"kc{uuid.uuid4().hex[:12]}"
    opened: list[PredictionCache] = []

    def open_(**options: Any) -> PredictionCache:
        cache: PredictionCache = open_cache(setting, CacheOptions(name, **options))
        opened.append(cache)
        return cache

    try:
        yield open_
    finally:
        for cache in opened:
            cache.close()
        if setting.startswith("redis://"):
            import redis

            client = redis.Redis.from_url(setting)
            try:
                doomed = list(client.scan_iter(match=cache_prefix(name) + "*"))
                if doomed:
                    client.delete(*doomed)
            finally:
                client.close()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def open_cache_of(request: pytest.FixtureRequest) -> Iterator[OpenCache]:
    """Opens caches of one backend (see :func:`caches_at`)."""
    setting = "memory"
    if request.param == "redis":
        setting = redis_url_on_test_db(request.getfixturevalue("redis_server"))
    with caches_at(setting) as open_:
        yield open_


@pytest.fixture
def open_redis_cache(redis_server: str) -> Iterator[OpenCache]:
    """Opens Redis caches (see :func:`caches_at`)."""
    with caches_at(redis_url_on_test_db(redis_server)) as open_:
        yield open_


def model(version: int, digest: str = "d" * 64) -> LoadedModel:
    """What a key reads of a loaded model: its name, version and package digest."""
    return LoadedModel("churn", "churn@champion", version, digest, None, datetime.now(UTC), ())  # type: ignore[arg-type]


# -- every backend -------------------------------------------------------------------------------------------
def test_an_answer_stored_is_read_back_and_an_unknown_key_misses(open_cache_of: OpenCache) -> None:
    cache = open_cache_of()
    key = cache_key(model(3), [[12.5, "basic"], [None, "pro"]])
    assert cache.get(key) is None
    cache.put(key, ANSWER)
    assert cache.get(key) == ANSWER
    assert cache.get(cache_key(model(3), [[12.5, "basic"]])) is None


def test_a_put_replaces_the_answer_under_its_key(open_cache_of: OpenCache) -> None:
    cache = open_cache_of()
    key = cache_key(model(1), [[1.0]])
    cache.put(key, {**ANSWER, "predictions": [0]})
    cache.put(key, {**ANSWER, "predictions": [1]})
    assert cache.get(key)["predictions"] == [1]


def test_a_key_names_the_model_version_and_package(open_cache_of: OpenCache) -> None:
    cache = open_cache_of()
    rows = [[12.5, "basic", datetime(2025, 1, 5, tzinfo=UTC)]]
    cache.put(cache_key(model(1), rows), ANSWER)
    assert cache.get(cache_key(model(1), rows)) == ANSWER
    assert cache.get(cache_key(model(2), rows)) is None  # a new version never reads an old answer
    assert cache.get(cache_key(model(1, "e" * 64), rows)) is None  # nor another package under the same number
    # the same values, however typed, are the same key
    same = [[np.float64(12.5), "basic", datetime(2025, 1, 5, tzinfo=UTC).isoformat()]]
    assert cache.get(cache_key(model(1), same)) == ANSWER


def test_concurrent_readers_and_writers_see_whole_answers(open_cache_of: OpenCache) -> None:
    cache = open_cache_of(size=1000)
    keys = [cache_key(model(1), [[float(i)]]) for i in range(40)]
    seen: list[Any] = []
    failures: list[BaseException] = []

    def work(offset: int) -> None:
        try:
            for i, key in enumerate(keys):
                cache.put(key, {**ANSWER, "predictions": [i]})
                seen.append(cache.get(keys[(i + offset) % len(keys)]))
        except BaseException as exc:  # reported by the assertion below
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert all(v is None or (v["model"] == "churn" and len(v["predictions"]) == 1) for v in seen)
    assert [cache.get(k)["predictions"] for k in keys] == [[i] for i in range(len(keys))]


# -- through the predictor: a hot reload invalidates by version ---------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[keel.Project]:
    """``churn`` v1 and v2 (champion: v1) and fresh online rows."""
    with threadpool_limits(1):
        project, labels = build_project(tmp_path_factory.mktemp("cache-conformance") / "project", n=80)
        register_churn_versions(project, labels)
    project.models.set_alias("churn", "champion", 1)
    push_fresh_online(project, 4)
    yield project
    project.close()


def test_after_a_reload_the_new_version_is_scored_not_read_from_the_cache(
    open_cache_of: OpenCache, trained: keel.Project
) -> None:
    trained.models.set_alias("churn", "champion", 1)
    predictor = Predictor(trained.models, trained.online, open_cache_of(), None, trained.definitions.key_types)
    predictor.load(["churn@champion"])
    records = [{"customer_id": 1}, {"customer_id": 2}]

    def hits() -> float | None:
        return predictor.metrics.registry.get_sample_value("keel_prediction_cache_total", {"result": "hit"})

    try:
        first = predictor.score("churn", records)
        assert predictor.score("churn", records) == first and hits() == 1
        trained.models.set_alias("churn", "champion", 2)
        assert predictor.reload_once() == ["churn"]
        second = predictor.score("churn", records)
        assert (first["version"], second["version"]) == (1, 2)
        assert second["probabilities"] != first["probabilities"]
        assert hits() == 1  # v2 was scored, not read
        assert predictor.score("churn", records) == second and hits() == 2
    finally:
        trained.models.set_alias("churn", "champion", 1)


# -- what each backend offers of its own ---------------------------------------------------------------------
def test_the_memory_cache_evicts_the_least_recently_used_answer() -> None:
    cache = MemoryPredictionCache(2)
    a, b, c = (cache_key(model(1), [[float(i)]]) for i in range(3))
    cache.put(a, ANSWER)
    cache.put(b, ANSWER)
    assert cache.get(a) == ANSWER  # a is now the most recently used
    cache.put(c, ANSWER)
    assert (cache.get(a), cache.get(b), cache.get(c)) == (ANSWER, None, ANSWER)
    assert len(cache) == 2
    cache.close()
    assert cache.get(a) is None and len(cache) == 0


@pytest.mark.parametrize("setting", ["none", "NONE", "Memory"])
def test_none_keeps_nothing_and_size_zero_too(setting: str) -> None:
    cache = open_cache(setting, CacheOptions("p", size=0 if setting == "Memory" else 10))
    assert cache.kind == "memory"
    cache.put("k", ANSWER)
    assert cache.get("k") is None


@pytest.mark.redis
def test_redis_expires_an_answer_after_its_ttl_and_shares_it_meanwhile(open_redis_cache: OpenCache) -> None:
    one, other = open_redis_cache(ttl_seconds=0.3), open_redis_cache(ttl_seconds=0.3)
    assert one.kind == "redis"
    key = cache_key(model(1), [[1.0]])
    one.put(key, ANSWER)
    assert other.get(key) == ANSWER  # another process or replica on the same database reads it
    time.sleep(0.5)
    assert one.get(key) is None


def test_an_unreachable_redis_never_raises_and_backs_off(caplog: pytest.LogCaptureFixture) -> None:
    errors: list[tuple[str, BaseException]] = []
    down = f"redis://127.0.0.1:{unused_port()}/0"
    cache = open_cache(down, CacheOptions("p", on_error=lambda op, exc: errors.append((op, exc))))
    caplog.set_level(logging.WARNING, logger="keel.serving")
    key = cache_key(model(1), [[1.0]])
    assert cache.get(key) is None
    cache.put(key, ANSWER)  # backing off: not tried, not raised
    assert cache.get(key) is None
    assert [op for op, _ in errors] == ["get"]  # one failure reported per back-off period
    assert any("get failed" in r.getMessage() and "scoring without the cache" in r.getMessage() for r in caplog.records)
    cache.close()


@pytest.mark.redis
def test_a_damaged_redis_entry_is_a_miss_and_is_reported(open_redis_cache: OpenCache) -> None:
    errors: list[str] = []
    cache = open_redis_cache(on_error=lambda op, _exc: errors.append(op))
    key = cache_key(model(1), [[1.0]])
    cache._client.set(cache.prefix + key, b"\x00not json")  # type: ignore[attr-defined]  written by another
    assert cache.get(key) is None
    assert errors == ["get"]


def test_an_unknown_setting_lists_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown scheme 'memcached'; valid schemes are: memory, none, redis"):
        open_cache("memcached://x", CacheOptions("p"))
    with pytest.raises(ConfigError, match="not a valid Redis URL"):
        open_cache("redis://host:notaport/0", CacheOptions("p"))
