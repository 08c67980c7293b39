"""A backend's outages as its callers see them: one warning when it stops answering, one when it answers again,
and, in between, calls refused at once rather than each waiting for its own timeout.

A hung or stopped Redis or PostgreSQL would otherwise cost every request a full timeout and the log a traceback
per request. The backends that serve requests (the Redis online store and prediction cache, the SQL catalog)
each keep an :class:`Outage`: a call that finds the backend unavailable reports it (:meth:`Outage.failed`);
while it is out, calls are refused without trying (:meth:`Outage.refused`) except one every ``retry_after``
seconds, which tries it again; the first call that succeeds ends the outage (:meth:`Outage.recovered`).
"""

from __future__ import annotations

import logging
import threading
import time

from keel.errors import BackendError

__all__ = ["RETRY_AFTER_SECONDS", "Outage"]

#: While a backend is out, one call this often tries it again; the others are refused at once.
RETRY_AFTER_SECONDS = 1.0


class Outage:
    """Whether one backend answers, as its calls find it; thread-safe.

    Args:
        backend: how messages name the backend (``redis online store redis://host:6379/0 (prefix 'shop')``).
        logger: where the two warnings of an outage go.
        consequence: what callers do meanwhile, for the first warning (``scoring without the cache``).
        retry_after: while the backend is out, one call this often tries it again.

    Attributes:
        since: when the current outage started (:func:`time.monotonic`), 0.0 while the backend answers: the
            hot path's test is ``if outage.since:``.

    Example:
        >>> outage = Outage("redis online store", logging.getLogger("keel.online"))
        >>> outage.refused() is None  # available: the call goes ahead
        True
    """

    def __init__(
        self,
        backend: str,
        logger: logging.Logger,
        *,
        consequence: str = "calls fail at once meanwhile",
        retry_after: float = RETRY_AFTER_SECONDS,
    ) -> None:
        self.backend = backend
        self.logger = logger
        self.consequence = consequence
        self.retry_after = retry_after
        self.since = 0.0
        self._next_try = 0.0
        self._cause = ""
        self._failures = 0
        self._refusals = 0
        self._lock = threading.Lock()

    def refused(self) -> BackendError | None:
        """The error refusing a call while the backend is out, or ``None`` when the call may go ahead: the
        backend answers, or it is time to try it again (one caller at a time gets ``None`` then)."""
        if not self.since:
            return None
        now = time.monotonic()
        with self._lock:
            if not self.since:
                return None
            if now >= self._next_try:
                self._next_try = now + self.retry_after  # this caller tries it; the others are still refused
                return None
            self._refusals += 1
            return BackendError(
                f"{self.backend} is unavailable ({self._cause}); it has not answered for {now - self.since:.1f} s "
                f"and is tried again every {self.retry_after:g} s"
            )

    def failed(self, exc: BaseException) -> None:
        """A call found the backend unavailable (``exc``: the library's error): the first failure of an
        outage logs a warning."""
        now = time.monotonic()
        with self._lock:
            self._next_try = now + self.retry_after
            self._cause = " ".join(str(exc).split()) or type(exc).__name__  # one line (psycopg's messages have two)
            self._failures += 1
            if self.since:
                return
            self.since = now
        self.logger.warning(
            "%s is unavailable (%s); %s; tried again every %g s",
            self.backend,
            self._cause,
            self.consequence,
            self.retry_after,
            extra={"backend": self.backend, "outage": "started"},
        )

    def recovered(self) -> None:
        """A call succeeded: if the backend was out, the outage ends and a warning says how long it lasted."""
        if not self.since:
            return
        with self._lock:
            if not self.since:
                return
            seconds = time.monotonic() - self.since
            failures, refusals = self._failures, self._refusals
            self.since = 0.0
            self._failures = self._refusals = 0
        self.logger.warning(
            "%s answers again after %.1f s unavailable (%d calls failed, %d refused without trying)",
            self.backend,
            seconds,
            failures,
            refusals,
            extra={"backend": self.backend, "outage": "ended", "outage_seconds": round(seconds, 3)},
        )
