"""The Redis online store on the real server: expiry, key layout and cleanup, and its failure modes."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pyarrow as pa
import pytest

from keel.errors import BackendError, MissingExtraError
from keel.online import RedisOnlineStore

EVENT = pa.timestamp("us", tz="UTC")


def rows(ids: list[int], at: datetime, **features: list[Any]) -> pa.Table:
    return pa.table({"customer_id": ids, "event_time": pa.array([at] * len(ids), EVENT), **features})


def write(store: RedisOnlineStore, view: str, table: pa.Table, features: list[str], **kwargs: Any) -> int:
    return store.write_batch(view, table, keys=["customer_id"], features=features, timestamp="event_time", **kwargs)


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def redis_url(redis_server: str) -> str:
    return urlunsplit(urlsplit(redis_server)._replace(path="/15"))


@pytest.fixture
def client(redis_url: str) -> Iterator[Any]:
    import redis

    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def prefix(client: Any) -> Iterator[str]:
    """A prefix of this test's own; every key under it is removed afterwards."""
    token = f"kt{uuid.uuid4().hex[:12]}"
    yield token
    doomed = list(client.scan_iter(match=f"{token}*", count=1_000))
    if doomed:
        client.unlink(*doomed)


@pytest.fixture
def store(redis_url: str, prefix: str) -> Iterator[RedisOnlineStore]:
    store = RedisOnlineStore(redis_url, prefix=prefix)
    yield store
    store.close()


@pytest.mark.redis
def test_with_a_ttl_each_entity_expires_at_its_event_time_plus_the_ttl(
    store: RedisOnlineStore, client: Any, prefix: str
) -> None:
    fresh, stale = now(), now() - timedelta(hours=2)
    write(store, "v", rows([1], fresh, a=[1.0]), ["a"], ttl=timedelta(hours=1))
    write(store, "v", rows([2], stale, a=[2.0]), ["a"], ttl=timedelta(hours=1))

    expires_ms = client.pexpiretime(f"{prefix}:v:1")
    assert expires_ms == int((fresh + timedelta(hours=1)).timestamp() * 1000)
    assert not client.exists(f"{prefix}:v:2")  # already past its expiry: gone at once
    assert store.read("v", [(1,), (2,)], ["a"]).to_dict() == {"a": [1.0, None]}


@pytest.mark.redis
def test_without_a_ttl_nothing_expires_and_a_write_without_ttl_clears_an_old_expiry(
    store: RedisOnlineStore, client: Any, prefix: str
) -> None:
    write(store, "v", rows([1], now(), a=[1.0]), ["a"], ttl=timedelta(days=1))
    assert client.pttl(f"{prefix}:v:1") > 0

    write(store, "v", rows([1], now() + timedelta(seconds=1), a=[2.0]), ["a"])

    assert client.pttl(f"{prefix}:v:1") == -1
    assert store.read("v", [(1,)], ["a"]).to_dict() == {"a": [2.0]}


@pytest.mark.redis
def test_an_ignored_older_write_keeps_the_stored_expiry(store: RedisOnlineStore, client: Any, prefix: str) -> None:
    at = now()
    write(store, "v", rows([1], at, a=[1.0]), ["a"], ttl=timedelta(hours=1))

    assert write(store, "v", rows([1], at - timedelta(minutes=1), a=[0.0]), ["a"], ttl=timedelta(days=7)) == 0

    assert client.pexpiretime(f"{prefix}:v:1") == int((at + timedelta(hours=1)).timestamp() * 1000)


@pytest.mark.redis
def test_one_compact_key_per_entity_and_one_metadata_hash_per_view(
    store: RedisOnlineStore, client: Any, prefix: str
) -> None:
    write(
        store,
        "v",
        rows([1, 2], now(), **{f"f{i}": [1.0, 2.0] for i in range(8)}),
        [f"f{i}" for i in range(8)],
    )

    assert sorted(client.scan_iter(match=f"{prefix}*")) == [
        f"{prefix}:v".encode(),
        b"%s:v:1" % prefix.encode(),
        b"%s:v:2" % prefix.encode(),
    ]
    # event time + layout id + null bitmap + 8 float64: no names, no pickle
    assert len(client.get(f"{prefix}:v:1")) == 8 + 8 + 1 + 8 * 8
    assert client.type(f"{prefix}:v") == b"hash"


@pytest.mark.redis
def test_drop_view_removes_every_key_of_the_view_and_nothing_else(
    store: RedisOnlineStore, redis_url: str, client: Any, prefix: str
) -> None:
    other = RedisOnlineStore(redis_url, prefix=f"{prefix}-other")
    many = list(range(2_500))  # more than one SCAN/UNLINK batch
    write(store, "v", rows(many, now(), a=[float(i) for i in many]), ["a"])
    write(store, "w", rows([1], now(), a=[1.0]), ["a"])
    write(other, "v", rows([1], now(), a=[1.0]), ["a"])

    store.drop_view("v")

    assert list(client.scan_iter(match=f"{prefix}:v*")) == []
    assert store.read("w", [(1,)], ["a"]).to_dict() == {"a": [1.0]}
    assert other.read("v", [(1,)], ["a"]).to_dict() == {"a": [1.0]}
    other.close()


def test_a_missing_redis_package_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)  # makes ``import redis`` fail as if not installed

    with pytest.raises(MissingExtraError, match=r"Redis online store needs the 'redis' package.*keel\[redis\]"):
        RedisOnlineStore("redis://127.0.0.1:6379/15")


def test_an_unreachable_server_is_a_backend_error_naming_the_store_and_view() -> None:
    store = RedisOnlineStore("redis://:secret@127.0.0.1:1/0?socket_connect_timeout=1")

    with pytest.raises(BackendError, match=r"redis online store redis://:\*\*\*@127\.0\.0\.1:1/0.*view 'v'") as err:
        store.read("v", [(1,)], ["a"])
    assert "secret" not in str(err.value)
    assert err.value.__cause__ is not None
    store.close()
