"""Redis clients with Keel's timeouts and retries, shared by the online store and the prediction cache.

redis-py waits five seconds for a connection or a reply by default, and a client built with its own defaults
retries up to ten times: a hung server (SIGSTOP, a network partition) would hold a request for many seconds.
Keel's clients give up after a short timeout instead, and retry once, quickly, only a broken connection (a
restarted server closed it: the retry takes a fresh one from the pool); a timeout is not retried, since a
server that did not answer in time will not answer better at once.

A URL's own options win: ``redis://host:6379/0?socket_timeout=2&socket_connect_timeout=0.5``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CONNECT_TIMEOUT", "RETRIES", "SOCKET_TIMEOUT", "redis_client", "unavailable_errors"]

#: Seconds an online store's client waits for a reply before the read (or write) fails with a BackendError.
SOCKET_TIMEOUT = 1.0
#: Seconds it waits for a connection.
CONNECT_TIMEOUT = 1.0
#: Retries of a command whose connection broke (not of a timeout).
RETRIES = 1


def redis_client(
    uri: str,
    *,
    socket_timeout: float = SOCKET_TIMEOUT,
    connect_timeout: float = CONNECT_TIMEOUT,
    retries: int = RETRIES,
) -> Any:
    """A ``redis.Redis`` for ``uri`` with these timeouts (unless the URL sets its own) and bounded retries.

    Raises:
        ValueError, redis.RedisError: an invalid URL (the caller says which setting it was).
    """
    import redis
    from redis.backoff import ExponentialBackoff
    from redis.retry import Retry

    retry = Retry(ExponentialBackoff(cap=0.05, base=0.005), retries, supported_errors=(redis.ConnectionError,))
    return redis.Redis.from_url(uri, socket_timeout=socket_timeout, socket_connect_timeout=connect_timeout, retry=retry)


def unavailable_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean the server is unavailable (refused, closed, timed out, still loading), as
    opposed to one that answered with an error."""
    import redis

    return (redis.ConnectionError, redis.TimeoutError, OSError)
