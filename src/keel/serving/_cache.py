"""The prediction service's answer caches: an in-process LRU, or Redis shared by every worker and replica.

Both map a key (the SHA-256 of the model's name, version and package digest and of the request's resolved
input rows, :func:`keel.serving._predict_app.cache_key`) to the answer. The project's ``cache`` setting
chooses (:func:`open_cache`):

* ``memory`` (default): a thread-safe LRU in each process;
* ``none``: no cache;
* ``redis://host:port/db`` (``rediss://`` for TLS): answers serialized with orjson under
  ``keel:pred:<project name>:<key>``, expiring after a TTL (default one hour). A lookup is one ``GET`` round
  trip, a store one ``SET ... EX``. Every process and app pointed at the same database shares the entries; a
  new model version has another key, so a promotion never serves an old answer.

A Redis failure never fails a prediction: the lookup counts as a miss, the error is counted and logged (once
per back-off period, during which Redis is not tried again), and the request is scored without the cache.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

import orjson

from keel.errors import ConfigError, MissingExtraError

__all__ = [
    "DEFAULT_CACHE_TTL_SECONDS",
    "AnswerCache",
    "PredictionCache",
    "RedisPredictionCache",
    "cache_prefix",
    "open_cache",
]

#: How long a Redis cache keeps an answer.
DEFAULT_CACHE_TTL_SECONDS = 3600.0
#: After a Redis error, the cache is not tried again for this long (requests are scored without it).
RETRY_AFTER_SECONDS = 1.0
#: Socket timeouts of the Redis client unless the URL sets its own: a slow cache must not stall predictions.
_SOCKET_TIMEOUT = 0.25


class AnswerCache(Protocol):
    """What the prediction service needs of a cache."""

    @property
    def enabled(self) -> bool: ...

    def get(self, key: str) -> Any: ...

    def put(self, key: str, value: Any) -> None: ...

    def close(self) -> None: ...


class PredictionCache:
    """A thread-safe LRU of answers by key; ``size`` 0 disables it."""

    kind = "memory"

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.size > 0

    def get(self, key: str) -> Any:
        if self.size <= 0:
            return None
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: str, value: Any) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def close(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


class RedisPredictionCache:
    """Answers in Redis under ``prefix + key``, serialized with orjson, expiring after ``ttl_seconds``.

    Args:
        uri: a redis-py URL (``redis://[:password@]host:port/db``; options such as ``?socket_timeout=1``).
        prefix: the namespace of the keys (``keel:pred:<project name>:``).
        ttl_seconds: how long an answer is kept.
        on_error: called with the operation (``get``, ``put``) and the exception after each Redis failure.
        retry_after: after a failure, Redis is not tried again for this many seconds.

    Raises:
        MissingExtraError: redis-py is not installed.
        ConfigError: the URL is not a valid Redis URL, or the TTL is not positive.
    """

    kind = "redis"

    def __init__(
        self,
        uri: str,
        *,
        prefix: str,
        ttl_seconds: float = DEFAULT_CACHE_TTL_SECONDS,
        on_error: Callable[[str, BaseException], None] | None = None,
        retry_after: float = RETRY_AFTER_SECONDS,
    ) -> None:
        try:
            import redis
        except ImportError as exc:
            raise MissingExtraError("redis", "redis", "a Redis prediction cache") from exc
        if not ttl_seconds > 0:
            raise ConfigError(f"the prediction cache's TTL must be positive, got {ttl_seconds!r} seconds")
        from keel.online._store import safe_uri

        self.uri = safe_uri(uri)
        self.prefix = prefix
        self.ttl_ms = max(1, round(ttl_seconds * 1000))
        self._on_error = on_error
        self._retry_after = retry_after
        self._down_until = 0.0
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        try:
            # Any: redis-py's annotations do not know decode_responses=False.
            self._client: Any = redis.Redis.from_url(
                uri, socket_timeout=_SOCKET_TIMEOUT, socket_connect_timeout=_SOCKET_TIMEOUT
            )
        except (ValueError, redis.RedisError) as exc:
            raise ConfigError(f"cache: {self.uri!r} is not a valid Redis URL: {exc}") from exc

    @property
    def enabled(self) -> bool:
        return True

    def _failed(self, operation: str, exc: BaseException) -> None:
        self._down_until = time.monotonic() + self._retry_after
        if self._on_error is not None:
            self._on_error(operation, exc)

    def get(self, key: str) -> Any:
        """The answer stored under ``key``, or ``None`` (absent, or Redis failed: the failure is reported)."""
        if self._down_until and time.monotonic() < self._down_until:
            return None
        try:
            blob = self._client.get(self.prefix + key)
        except self._errors as exc:
            self._failed("get", exc)
            return None
        self._down_until = 0.0
        if blob is None:
            return None
        try:
            return orjson.loads(blob)
        except orjson.JSONDecodeError as exc:  # not ours, or damaged: treat as a miss
            self._failed("get", exc)
            return None

    def put(self, key: str, value: Any) -> None:
        """Store ``value`` under ``key`` for the TTL (a Redis failure is reported, never raised)."""
        if self._down_until and time.monotonic() < self._down_until:
            return
        try:
            self._client.set(self.prefix + key, orjson.dumps(value), px=self.ttl_ms)
        except self._errors as exc:
            self._failed("put", exc)

    def close(self) -> None:
        with contextlib.suppress(*self._errors):
            self._client.close()


def cache_prefix(project_name: str) -> str:
    """The prefix of a project's keys in a Redis cache."""
    return f"keel:pred:{project_name}:"


def open_cache(
    setting: str,
    *,
    project_name: str,
    size: int,
    ttl_seconds: float = DEFAULT_CACHE_TTL_SECONDS,
    on_error: Callable[[str, BaseException], None] | None = None,
) -> PredictionCache | RedisPredictionCache:
    """The cache the project's ``cache`` setting names: ``memory`` (an LRU of ``size``), ``none`` or a
    ``redis://`` / ``rediss://`` URL.

    Raises:
        ConfigError: any other setting, or an invalid Redis URL.
        MissingExtraError: a Redis cache without redis-py installed.
    """
    text = setting.strip()
    if text.lower() == "memory":
        return PredictionCache(size)
    if text.lower() == "none":
        return PredictionCache(0)
    if text.startswith(("redis://", "rediss://", "unix://")):
        return RedisPredictionCache(text, prefix=cache_prefix(project_name), ttl_seconds=ttl_seconds, on_error=on_error)
    raise ConfigError(
        f"cache: {setting!r} is not a prediction cache; use 'memory', 'none' or a redis://host:port/db URL"
    )
