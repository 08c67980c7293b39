"""Steady load on a running HTTP service from several client threads, every answer recorded (a plain module on
``sys.path``, like ``_training_fixtures``), and the log records of Keel's loggers, for the outage tests."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

#: A request of one kind: given a client, sends it and returns the response.
Send = Callable[[httpx.Client], httpx.Response]
#: How long each outage of the outage tests lasts at least (seconds); by default, until enough answers were seen.
OUTAGE_SECONDS = float(os.environ.get("KEEL_OUTAGE_SECONDS") or 0)


def hold(since: float) -> None:
    """Keep the outage that started at ``since`` going for :data:`OUTAGE_SECONDS`."""
    time.sleep(max(0.0, since + OUTAGE_SECONDS - time.monotonic()))


def health(client: httpx.Client) -> httpx.Response:
    return client.get("/health")


@dataclass(frozen=True)
class Answer:
    """One request's outcome: when it was sent (``time.monotonic``), how long it took, its status (or the name
    of the client's exception: a timeout, a refused connection) and its JSON body."""

    kind: str
    sent: float
    seconds: float
    status: int | str
    body: Any = None


class Load:
    """Threads sending requests of each kind in a loop (``clients`` threads per kind, ``pause`` seconds between
    requests of a thread) until the block ends; :attr:`answers` holds every outcome.

    Example:
        >>> with Load(url, {"health": lambda c: c.get("/health")}) as load:  # doctest: +SKIP
        ...     load.wait(lambda: load.count("health", 200) >= 3)
    """

    def __init__(self, url: str, kinds: dict[str, Send], *, clients: int = 1, pause: float = 0.01) -> None:
        self.url = url
        self.kinds = kinds
        self.clients = clients
        self.pause = pause
        self.answers: list[Answer] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _run(self, kind: str, send: Send) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self._stop.is_set():
                sent = time.monotonic()
                body = None
                try:
                    response = send(client)
                    status: int | str = response.status_code
                    body = response.json() if response.headers.get("content-type") == "application/json" else None
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                answer = Answer(kind, sent, time.monotonic() - sent, status, body)
                with self._lock:
                    self.answers.append(answer)
                self._stop.wait(self.pause)

    def __enter__(self) -> Load:
        for kind, send in self.kinds.items():
            for i in range(self.clients):
                thread = threading.Thread(target=self._run, args=(kind, send), name=f"load-{kind}-{i}", daemon=True)
                thread.start()
                self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def of(self, kind: str, since: float = 0.0, until: float = float("inf")) -> list[Answer]:
        """The answers to requests of ``kind`` sent in ``[since, until)``."""
        with self._lock:
            return [a for a in self.answers if a.kind == kind and since <= a.sent < until]

    def count(self, kind: str, status: int, since: float = 0.0) -> int:
        return sum(1 for a in self.of(kind, since) if a.status == status)

    def recovered(self, kind: str, since: float) -> float:
        """Seconds from ``since`` to the end of the first 200 answer to ``kind`` sent after it."""
        return min(a.sent + a.seconds for a in self.of(kind, since) if a.status == 200) - since

    def summary(self, since: float = 0.0, until: float = float("inf")) -> dict[str, dict[str, int]]:
        """How many answers of each status each kind got, for requests sent in ``[since, until)``."""
        counts: dict[str, dict[str, int]] = {}
        for kind in self.kinds:
            for answer in self.of(kind, since, until):
                by_status = counts.setdefault(kind, {})
                by_status[str(answer.status)] = by_status.get(str(answer.status), 0) + 1
        return counts

    @staticmethod
    def wait(condition: Callable[[], bool], timeout: float = 15.0, what: str = "the condition") -> float:
        """Wait until ``condition()`` holds; returns the seconds it took (an AssertionError after ``timeout``)."""
        started = time.monotonic()
        while not condition():
            if time.monotonic() - started > timeout:
                raise AssertionError(f"{what} did not happen within {timeout} s")
            time.sleep(0.02)
        return time.monotonic() - started


class Records(logging.Handler):
    """Collects the records of a logger (and its children) at WARNING and above."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self, contains: str = "") -> list[str]:
        return [r.getMessage() for r in list(self.records) if contains in r.getMessage()]


@contextmanager
def keel_warnings(name: str = "keel") -> Iterator[Records]:
    """Every record of WARNING or above that Keel's loggers write inside the block (from any thread)."""
    logger = logging.getLogger(name)
    handler = Records()
    level = logger.level
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.WARNING:
        logger.setLevel(logging.WARNING)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
