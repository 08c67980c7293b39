"""The prediction service's answer caches: the :class:`PredictionCache` interface, an in-process LRU
(:class:`MemoryPredictionCache`) and Redis shared by every worker and replica (:class:`RedisPredictionCache`).

Every cache maps a key (:func:`cache_key`: the SHA-256 of the model's name, version and package digest and of
the request's resolved input rows) to the answer. The project's ``cache`` setting chooses the backend through
the plug-in table (:func:`keel._backends.open_cache`):

* ``memory`` (default): a thread-safe LRU in each process;
* ``none``: no cache;
* ``redis://host:port/db`` (``rediss://`` for TLS, ``unix://`` for a socket): answers serialized with orjson
  under ``keel:pred:<project name>:<key>``, expiring after a TTL (default one hour). A lookup is one ``GET``
  round trip, a store one ``SET ... PX``. Every process and app pointed at the same database shares the
  entries.

A new model version has other keys, so a promotion (or a hot reload) never serves an old answer, whatever the
backend. A backend failure never fails a prediction: the lookup counts as a miss, the failure is reported to
``on_error``, and the request is scored without the cache. While Redis stays unavailable it is tried again once
a second only (:class:`keel._outage.Outage`); the log says once when the outage started and once when it ended.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import orjson

from keel._outage import Outage
from keel.errors import ConfigError, MissingExtraError
from keel.online._redis_client import redis_client
from keel.serving._logging import service_log

if TYPE_CHECKING:
    from keel.serving._loaded import LoadedModel

__all__ = [
    "DEFAULT_CACHE_SIZE",
    "DEFAULT_CACHE_TTL_SECONDS",
    "CacheOptions",
    "MemoryPredictionCache",
    "OnCacheError",
    "PredictionCache",
    "RedisPredictionCache",
    "cache_key",
    "cache_prefix",
    "memory_cache",
    "no_cache",
    "redis_cache",
]

#: Answers an in-process cache keeps.
DEFAULT_CACHE_SIZE = 10_000
#: How long a Redis cache keeps an answer.
DEFAULT_CACHE_TTL_SECONDS = 3600.0
#: After a Redis error, the cache is not tried again for this long (requests are scored without it).
RETRY_AFTER_SECONDS = 1.0
#: Socket timeouts of the Redis client unless the URL sets its own (``?socket_timeout=``): a slow cache must not
#: stall predictions.
_SOCKET_TIMEOUT = 0.25

#: Called with the operation (``get``, ``put``) and the exception after each backend failure.
OnCacheError = Callable[[str, BaseException], None]


class PredictionCache(Protocol):
    """What the prediction service needs of an answer cache.

    ``get`` answers ``None`` for a key it does not hold (absent, expired, evicted, or the backend failed);
    ``put`` never raises for a backend failure. Values are JSON-like answers (dicts of lists, strings and
    numbers); a caller must not mutate what ``get`` returns.

    Attributes:
        kind: the backend's name (``memory``, ``redis``).
    """

    kind: str

    def get(self, key: str) -> Any:
        """The answer stored under ``key``, or ``None``."""
        ...

    def put(self, key: str, value: Any) -> None:
        """Store ``value`` under ``key``."""
        ...

    def close(self) -> None:
        """Release the cache's connections (its entries may be dropped)."""
        ...


class MemoryPredictionCache:
    """A thread-safe LRU of answers by key, in this process; ``size`` 0 disables it."""

    kind = "memory"

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Any:
        """The answer stored under ``key`` (now the most recently used), or ``None``."""
        if self.size <= 0:
            return None
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: str, value: Any) -> None:
        """Store ``value``; beyond ``size`` entries the least recently used one is evicted."""
        if self.size <= 0:
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def close(self) -> None:
        """Drop every entry."""
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
        on_error: OnCacheError | None = None,
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
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self._outage = Outage(
            f"prediction cache {self.uri}",
            service_log,
            consequence="scoring without the cache",
            retry_after=retry_after,
        )
        try:
            # Any: redis-py's annotations do not know decode_responses=False.
            self._client: Any = redis_client(uri, socket_timeout=_SOCKET_TIMEOUT, connect_timeout=_SOCKET_TIMEOUT)
        except (ValueError, redis.RedisError) as exc:
            raise ConfigError(f"cache: {self.uri!r} is not a valid Redis URL: {exc}") from exc

    def _failed(self, operation: str, exc: BaseException) -> None:
        """Report the failure; the first of an outage is logged, and Redis is tried again once a second only."""
        if self._on_error is not None:
            self._on_error(operation, exc)
        self._outage.failed(RuntimeError(f"{operation} failed: {exc}"))

    def get(self, key: str) -> Any:
        """The answer stored under ``key``, or ``None`` (absent, or Redis failed: the failure is reported)."""
        outage = self._outage
        if outage.since and outage.refused() is not None:
            return None
        try:
            blob = self._client.get(self.prefix + key)
        except self._errors as exc:
            self._failed("get", exc)
            return None
        if outage.since:
            outage.recovered()
        if blob is None:
            return None
        try:
            return orjson.loads(blob)
        except orjson.JSONDecodeError as exc:  # not ours, or damaged: a miss, reported (Redis answered: no outage)
            if self._on_error is not None:
                self._on_error("get", exc)
            return None

    def put(self, key: str, value: Any) -> None:
        """Store ``value`` under ``key`` for the TTL (a Redis failure is reported, never raised)."""
        outage = self._outage
        if outage.since and outage.refused() is not None:
            return
        try:
            self._client.set(self.prefix + key, orjson.dumps(value), px=self.ttl_ms)
        except self._errors as exc:
            self._failed("put", exc)
            return
        if outage.since:
            outage.recovered()

    def close(self) -> None:
        """Close the connection pool."""
        with contextlib.suppress(*self._errors):
            self._client.close()


def cache_prefix(project_name: str) -> str:
    """The prefix of a project's keys in a Redis cache."""
    return f"keel:pred:{project_name}:"


# -- the builders of the plug-in table (keel._backends: "cache") ---------------------------------------------
@dataclass(frozen=True)
class CacheOptions:
    """What a cache builder may use; each backend takes the settings that apply to it.

    Attributes:
        project_name: namespaces a shared cache's keys (:func:`cache_prefix`).
        size: answers an in-process cache keeps (0: none).
        ttl_seconds: how long a Redis cache keeps an answer.
        on_error: told of each backend failure (the prediction service counts them).
    """

    project_name: str
    size: int = DEFAULT_CACHE_SIZE
    ttl_seconds: float = DEFAULT_CACHE_TTL_SECONDS
    on_error: OnCacheError | None = None


def memory_cache(setting: str, options: CacheOptions) -> PredictionCache:
    """``memory``: an LRU of ``options.size`` answers in this process (no TTL, no backend to fail)."""
    return MemoryPredictionCache(options.size)


def no_cache(setting: str, options: CacheOptions) -> PredictionCache:
    """``none``: every request is scored."""
    return MemoryPredictionCache(0)


def redis_cache(setting: str, options: CacheOptions) -> PredictionCache:
    """``redis://``, ``rediss://``, ``unix://``: Redis under the project's prefix, for ``options.ttl_seconds``."""
    return RedisPredictionCache(
        setting, prefix=cache_prefix(options.project_name), ttl_seconds=options.ttl_seconds, on_error=options.on_error
    )


# -- the key -------------------------------------------------------------------------------------------------
def _canonical(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, np.generic):
        return value.item()
    return value


def cache_key(model: LoadedModel, rows: Sequence[Sequence[Any]]) -> str:
    """SHA-256 of the model's name, version and package digest and the resolved input rows, as canonical JSON."""
    digest = hashlib.sha256()
    digest.update(orjson.dumps([model.name, model.version, model.digest]))
    digest.update(orjson.dumps(rows, default=_canonical, option=orjson.OPT_SORT_KEYS))
    return digest.hexdigest()
