"""The model host: registered models loaded by reference, scored with their features looked up online, the
answers cached and logged; hot reload swaps a model when its alias moves. No HTTP here: the prediction
service (:mod:`keel.serving._predict_app`) routes requests to a :class:`Predictor`, and a test, the demo or a
benchmark can score through one directly.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from keel.errors import NotFoundError, ValidationError
from keel.models import parse_model_ref
from keel.prediction_log import LogLayout, build_layout
from keel.serving._cache import cache_key
from keel.serving._inputs import resolve, typed_column, warnings_of
from keel.serving._loaded import LoadedModel, load_model
from keel.serving._metrics import PredictionMetrics

if TYPE_CHECKING:
    from keel.models import ModelRegistry
    from keel.online import OnlineFeatureService
    from keel.prediction_log import PredictionLog
    from keel.serving._cache import PredictionCache
    from keel.serving._inputs import Resolved

__all__ = ["KeyTypes", "Predictor", "not_served"]

#: ``(join key, "int64" | "string")`` of the views some feature references read (``Definitions.key_types``).
KeyTypes = Callable[[Sequence[str]], tuple[tuple[str, str], ...]]


def not_served(name: str, models: dict[str, LoadedModel]) -> NotFoundError:
    """The error for a request to a model that is not served, naming those that are."""
    served = ", ".join(sorted(models)) or "none"
    return NotFoundError(f"no model {name!r} is served here; served: {served}")


class Predictor:
    """Scores records with loaded model versions, served by name.

    Each record gives entity keys (the model's features are read online, at the version the store serves),
    raw feature values, or both; every value is checked against the model's input schema first. Answers are
    cached by the model's version and the resolved inputs, so a promotion, or a feature value pushed since,
    never serves a stale answer. Every scored record is queued for the prediction log, when there is one.

    Args:
        registry: where models are loaded from (and aliases re-read by :meth:`reload_once`).
        online: the online feature reads.
        cache: the answer cache (``MemoryPredictionCache(0)``: none).
        log: the prediction log (``None``: predictions are not logged).
        key_types: the entity keys of the views a model reads, for the log's ``key.*`` columns.
        allow_pickle: load pickle-based (joblib) packages; without it they are refused.
        metrics: where predictions, cache lookups and reloads are counted (default: a registry of its own).

    Attributes:
        models: the loaded models by name; a reload replaces an entry (readers never lock).

    Example:
        >>> predictor = Predictor(project.models, project.online, MemoryPredictionCache(100), None,
        ...                       project.definitions.key_types)  # doctest: +SKIP
        >>> predictor.load(["churn@champion"])  # doctest: +SKIP
        >>> predictor.score("churn", [{"customer_id": 42}])["predictions"]  # doctest: +SKIP
        [0]
    """

    def __init__(
        self,
        registry: ModelRegistry,
        online: OnlineFeatureService,
        cache: PredictionCache,
        log: PredictionLog | None,
        key_types: KeyTypes,
        *,
        allow_pickle: bool = False,
        metrics: PredictionMetrics | None = None,
    ) -> None:
        self.registry = registry
        self.online = online
        self.cache = cache
        self.log = log
        self.key_types = key_types
        self.allow_pickle = allow_pickle
        self.metrics = PredictionMetrics() if metrics is None else metrics
        self.models: dict[str, LoadedModel] = {}
        self._layouts: dict[tuple[str, int, str], LogLayout] = {}
        self._lock = threading.Lock()  # serializes loads and reloads; readers take the current dict entry

    @property
    def in_process(self) -> bool:
        """Whether scoring touches only this process and local files (an in-process cache, a memory or SQLite
        online store, a SQLite catalog): it never waits on a server. Otherwise a service must not score on its
        event loop, which a hung Redis or PostgreSQL would stall."""
        return self.cache.kind == "memory" and self.online.in_process

    # -- the models ----------------------------------------------------------------------------------------
    def load(self, refs: Sequence[str]) -> None:
        """Load the models ``refs`` name (``["churn@champion", "fraud:3"]``), each served by its name.

        Every reference is loaded before any is served, so a wrong one fails here and serves nothing.

        Raises:
            ValidationError: no reference, a name given twice (or already served), or a pickle-based package
                without ``allow_pickle``.
            NotFoundError: no such model, version or alias.
        """
        if not refs:
            raise ValidationError("serve at least one model, like 'churn@champion'", field="model")
        with self._lock:
            loaded: dict[str, LoadedModel] = {}
            for ref in refs:
                name = parse_model_ref(ref)[0]
                first = loaded.get(name) or self.models.get(name)
                if first is not None:
                    raise ValidationError(
                        f"model {name!r} is given twice ({first.ref!r} and {ref!r}); each name is served once",
                        field="model",
                    )
                loaded[name] = self._loaded(ref)
            self.models.update(loaded)

    def _loaded(self, ref: str) -> LoadedModel:
        model = load_model(self.registry, ref, allow_pickle=self.allow_pickle)
        if self.log is not None:
            self.layout_of(model)  # the catalog read of its log columns, before it serves
        return model

    def reload_once(self) -> list[str]:
        """Swap each model whose reference now names another version; the names swapped."""
        swapped = []
        with self._lock:
            for name, current in list(self.models.items()):
                if parse_model_ref(current.ref)[1] is not None:
                    continue  # pinned to a version: nothing to follow
                if self.registry.get(current.ref).version != current.version:
                    self.models[name] = self._loaded(current.ref)  # one assignment: atomic for readers
                    self.metrics.reloads.labels(name).inc()
                    swapped.append(name)
        return swapped

    def layout_of(self, model: LoadedModel) -> LogLayout:
        """The log columns of ``model`` (computed once per version: the key types read the catalog)."""
        key = (model.name, model.version, model.digest)
        layout = self._layouts.get(key)
        if layout is None:
            keys = self.key_types(model.package.feature_refs)
            layout = self._layouts[key] = build_layout(model.name, model.version, model.package, keys)
        return layout

    # -- scoring -------------------------------------------------------------------------------------------
    def score(self, name: str, records: list[dict[str, Any]], request_id: str | None = None) -> dict[str, Any]:
        """The answer for ``records`` (objects of entity keys, request fields and/or raw feature values).

        Returns:
            ``{"model", "version", "predictions", "probabilities" (classifiers), "warnings"}``: one entry per
            record in each list; the warnings name what the model had to make do with.

        Raises:
            NotFoundError: no model ``name`` is served.
            ValidationError: a record is invalid; the error names the field and the record.
        """
        model = self.models.get(name)
        if model is None:
            raise not_served(name, self.models)
        return self.score_loaded(model, records, request_id)

    def score_loaded(
        self, model: LoadedModel, records: list[dict[str, Any]], request_id: str | None = None
    ) -> dict[str, Any]:
        """:meth:`score` with the model already looked up (the service's hot path)."""
        resolved = resolve(self.online, model, records)
        schemas = [inp.schema for inp in model.inputs]
        key = cache_key(model, [[resolved.columns[f.name][i] for f in schemas] for i in range(len(records))])
        metrics, log = self.metrics, self.log
        hit = self.cache.get(key)
        if hit is not None:
            metrics.cache_hits.inc()
            cached = dict(hit)
            if log is not None:
                self._log(log, model, request_id, records, resolved, cached)
            return cached
        metrics.cache_misses.inc()
        package = model.package
        # one preparation for the predictions, the probabilities and the warnings (the package's own)
        scored = package.score({f.name: typed_column(resolved.columns[f.name], f.dtype) for f in schemas})
        answer: dict[str, Any] = {"model": model.name, "version": model.version}
        answer["predictions"] = scored.predictions.tolist()
        if scored.probabilities is not None:
            classes = [str(c) for c in package.classes or []]
            answer["probabilities"] = [dict(zip(classes, row, strict=True)) for row in scored.probabilities.tolist()]
            counted: dict[str, int] = {}
            for p in answer["predictions"]:
                counted[str(p)] = counted.get(str(p), 0) + 1
            for label, n in counted.items():
                metrics.predictions.labels(model.name, str(model.version), label).inc(n)
        else:
            metrics.predictions.labels(model.name, str(model.version), "").inc(len(records))
        answer["warnings"] = warnings_of(model, resolved, scored.prepared)
        self.cache.put(key, answer)
        if log is not None:
            self._log(log, model, request_id, records, resolved, answer)
        return answer

    def _log(
        self,
        log: PredictionLog,
        model: LoadedModel,
        request_id: str | None,
        records: list[dict[str, Any]],
        resolved: Resolved,
        answer: dict[str, Any],
    ) -> None:
        """Queue the request's rows for the prediction log (the writer thread converts and writes them)."""
        log.append(self.layout_of(model), request_id or "", datetime.now(UTC), records, resolved.columns, answer)

    def close(self) -> None:
        """Write out the prediction log (every queued row, every file published) and close the cache."""
        if self.log is not None:
            self.log.close()
        self.cache.close()
