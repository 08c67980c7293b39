"""Prometheus metrics of an HTTP service (requests and latency by method, route and status), and those of the
prediction service (:class:`PredictionMetrics`: requests by model, predictions, cache, reloads, the log).

Each app has its own registry, so several apps in one process (tests, or two services side by side) never
clash. A service adds its own metrics to :attr:`HttpMetrics.registry`, or hands the registry in.

With several worker processes (``--workers N``), set ``PROMETHEUS_MULTIPROC_DIR`` to an empty folder before
the workers start (``keel serve-features`` does): every worker then writes its values there and ``/metrics``
serves the sum over all workers, whichever worker answers the scrape.
"""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

__all__ = ["MULTIPROCESS_VARIABLE", "HttpMetrics", "PredictionMetrics"]

MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

#: Latency buckets in seconds, fine at the low end where an online read lives.
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class HttpMetrics:
    """The request counter and latency histogram of one app, in the app's own registry.

    Args:
        registry: the registry to count in (default: a new one).

    Attributes:
        registry: the app's registry; services register their own metrics here.
    """

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = CollectorRegistry() if registry is None else registry
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


class PredictionMetrics:
    """The prediction service's own metrics, in ``registry`` (which its app serves at ``/metrics``).

    The scorer counts predictions, cache lookups and reloads; the prediction log reports the rows it wrote or
    dropped (:meth:`logged`, :meth:`dropped`), the cache its failures (:meth:`cache_failed`); the app counts
    requests and their latency by model.

    Args:
        registry: where the metrics live (default: a new registry).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry = CollectorRegistry() if registry is None else registry
        self.requests = Counter(
            "keel_model_requests", "Prediction requests, by model and status.", ("model", "status"), registry=registry
        )
        self.latency = Histogram(
            "keel_model_request_duration_seconds",
            "Time to answer a prediction request, by model and status.",
            ("model", "status"),
            buckets=_BUCKETS,
            registry=registry,
        )
        self.predictions = Counter(
            "keel_predictions",
            "Predictions made, by model, version and predicted class (empty for regression).",
            ("model", "version", "prediction"),
            registry=registry,
        )
        cache = Counter(
            "keel_prediction_cache", "Prediction cache lookups, by result (hit, miss).", ("result",), registry=registry
        )
        # the children, looked up once: a label lookup takes a lock in prometheus-client
        self.cache_hits = cache.labels("hit")
        self.cache_misses = cache.labels("miss")
        self.reloads = Counter(
            "keel_model_reloads", "Models swapped to a new version by hot reload.", ("model",), registry=registry
        )
        self.cache_errors = Counter(
            "keel_prediction_cache_errors",
            "Prediction cache failures (Redis unreachable...), by operation; the request is scored without it.",
            ("operation",),
            registry=registry,
        )
        self.log_rows = Counter(
            "keel_prediction_log_rows", "Prediction rows written to the prediction log.", registry=registry
        )
        self.log_dropped = Counter(
            "keel_prediction_log_dropped_rows",
            "Prediction rows not logged (queue full, or a write failed).",
            registry=registry,
        )

    def cache_failed(self, operation: str, _exc: BaseException) -> None:
        """Count a cache failure (the cache logs it)."""
        self.cache_errors.labels(operation).inc()

    def logged(self, rows: int) -> None:
        """Count rows the prediction log published."""
        self.log_rows.inc(rows)

    def dropped(self, rows: int) -> None:
        """Count rows the prediction log dropped."""
        self.log_dropped.inc(rows)
