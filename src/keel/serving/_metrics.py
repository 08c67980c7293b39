"""Prometheus metrics of an HTTP service: requests and latency by method, route and status.

Each app has its own registry, so several apps in one process (tests, or two services side by side) never
clash. A service adds its own metrics to :attr:`HttpMetrics.registry`.

With several worker processes (``--workers N``), set ``PROMETHEUS_MULTIPROC_DIR`` to an empty folder before
the workers start (``keel serve-features`` does): every worker then writes its values there and ``/metrics``
serves the sum over all workers, whichever worker answers the scrape.
"""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

__all__ = ["MULTIPROCESS_VARIABLE", "HttpMetrics"]

MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

#: Latency buckets in seconds, fine at the low end where an online read lives.
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class HttpMetrics:
    """The request counter and latency histogram of one app, in the app's own registry.

    Attributes:
        registry: the app's registry; services register their own metrics here.
    """

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._requests = Counter(
            "keel_http_requests",
            "HTTP requests answered, by method, route and status.",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self._latency = Histogram(
            "keel_http_request_duration_seconds",
            "Time from receiving a request to sending its response, by method, route and status.",
            ("method", "route", "status"),
            buckets=_BUCKETS,
            registry=self.registry,
        )
        # Label lookups take a lock in prometheus-client; the children of each seen combination are kept.
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one request and record its latency."""
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            labels = (method, route, str(status))
            children = self._children[key] = (self._requests.labels(*labels), self._latency.labels(*labels))
        children[0].inc()
        children[1].observe(seconds)

    def render(self) -> bytes:
        """The metrics in the Prometheus text format (summed over all workers in multiprocess mode)."""
        if os.environ.get(MULTIPROCESS_VARIABLE):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)
