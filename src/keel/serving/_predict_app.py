"""The prediction service: registered models scored over HTTP, features looked up online.

``POST /v1/models/{name}/predict`` takes ``{"records": [...]}``. Each record gives the entity keys (the
model's features are read from the online store, at the version it serves, and on-demand features are
computed from the record's request fields), raw feature values, or both: an explicit value, ``null``
included, overrides the looked-up one. Every value is checked against the model's input schema before the
model sees it, so bad input is a 4xx naming the field and the record, never a 500.

Answers are cached (the project's ``cache`` setting: an in-process LRU, none, or Redis shared by every
process, see :mod:`keel.serving._cache`) keyed by the SHA-256 of the model's name and version and the
resolved input rows (the canonical JSON of each record's feature values, after the online lookup): a
promotion, or a feature value pushed since, never serves a stale answer, and the online read stays cheap.

Every prediction is appended, off the response path, to the prediction log in the offline store (the
project's ``prediction_log`` setting; layout in :mod:`keel.prediction_log`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import os
import threading
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from fastapi import FastAPI, Request
from prometheus_client import Counter, Histogram
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from keel.errors import KeelError, NotFoundError, ValidationError
from keel.features._refs import FeatureRef
from keel.models._registry import parse_model_ref
from keel.models._schema import MAX_CATEGORIES
from keel.prediction_log import LogLayout, PredictionLog, build_layout, log_root
from keel.serving._app import DirectRoute, create_service_app
from keel.serving._body import check_fields, json_type, read_json_object
from keel.serving._cache import DEFAULT_CACHE_TTL_SECONDS, PredictionCache, open_cache
from keel.serving._http import RequestTooLargeError, json_bytes, request_id_of, status_of
from keel.serving._schemas import ErrorResponse

if TYPE_CHECKING:
    from keel.models import FeatureSchema, ModelPackage
    from keel.project import Project

__all__ = [
    "DEFAULT_CACHE_SIZE",
    "DEFAULT_MAX_RECORDS",
    "MODELS_VARIABLE",
    "PredictionCache",
    "app_from_environment",
    "create_prediction_app",
]

#: Where :func:`app_from_environment` finds the served model references, comma-separated.
MODELS_VARIABLE = "KEEL_SERVE_MODELS"
_OPTIONS_VARIABLE = "KEEL_SERVE_OPTIONS"
DEFAULT_MAX_RECORDS = 1000
#: Requests of up to this many records are scored on the event loop (see ``create_prediction_app``).
DEFAULT_INLINE_RECORDS = 16
DEFAULT_CACHE_SIZE = 10_000
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_UNKNOWN_MODEL = "<unknown>"

_DESCRIPTION = """\
Predictions of registered models, with their features looked up online.

* `POST /v1/models/{name}/predict` scores `{"records": [...]}`: each record gives entity keys (features are
  read from the online store), raw feature values, or both (explicit values win). The answer gives the
  predictions, the class probabilities of classifiers, the model's version and per-record warnings
  (unknown category, value outside the training range, missing value imputed).
* `GET /v1/models` lists the loaded models; `GET /ready` answers 200 once they are loaded.
* `GET /health` answers 200 while the process is up; `GET /metrics` serves Prometheus metrics.

Every error is a JSON object `{"error": {"type", "message", "field", "row", "request_id"}}`; `row` is the
index of the offending record. When the server has a `KEEL_API_TOKEN`, every endpoint but `/health`,
`/ready` and these docs needs `Authorization: Bearer <token>`.
"""

_PREDICT_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "The body is not a JSON object."},
    404: {"model": ErrorResponse, "description": "No model of that name is served."},
    413: {"model": ErrorResponse, "description": "Too many records, or a body over the size limit."},
    422: {"model": ErrorResponse, "description": "Invalid input: the error names the field and the record."},
    503: {"model": ErrorResponse, "description": "The online store failed; the error names it."},
}

_PREDICT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["records"],
                    "properties": {
                        "records": {
                            "type": "array",
                            "items": {"type": "object", "additionalProperties": True},
                            "description": "Entity keys, request fields and/or raw feature values, one per row.",
                        }
                    },
                },
                "example": {"records": [{"customer_id": 42}, {"customer_id": 7, "plan": "pro"}]},
            }
        },
    }
}


# -- the loaded models ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Input:
    """One input column of a model and where its value comes from online (``None``: explicit only)."""

    schema: FeatureSchema
    online_ref: str | None
    online_column: str | None


@dataclass(frozen=True)
class LoadedModel:
    """A model version loaded for serving: swapped as a whole, never mutated.

    Attributes:
        name: the name it is served under (the registered model's).
        ref: the reference it was loaded from (``churn@champion``).
        version: the registered version.
        digest: the package's SHA-256.
        package: the model package.
        loaded_at: when it was loaded (UTC).
    """

    name: str
    ref: str
    version: int
    digest: str
    package: ModelPackage
    loaded_at: datetime
    inputs: tuple[_Input, ...] = field(repr=False)
    full_names: bool = False

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ref": self.ref,
            "version": self.version,
            "digest": self.digest,
            "task": self.package.task,
            "features": self.package.feature_names,
            "feature_refs": self.package.feature_refs,
            "classes": self.package.classes,
            "loaded_at": self.loaded_at.isoformat(),
        }


def _inputs(package: ModelPackage) -> tuple[tuple[_Input, ...], bool]:
    """Each input column with the unpinned reference that reads it online.

    The package pins the versions it was trained on (``view@3:feature``); an online read of a pinned version
    the store no longer holds is refused, and the store holds one version per view, so the service reads
    whatever version is served (``view:feature``), as it would at any other time.
    """
    by_feature: dict[str, str] = {}
    by_full: dict[str, str] = {}
    for text in package.feature_refs:
        ref = FeatureRef.parse(text)
        unpinned = f"{ref.view}:{ref.feature}"
        by_feature.setdefault(ref.feature, unpinned)
        by_full[f"{ref.view}__{ref.feature}"] = unpinned
    names = package.feature_names
    full = bool(names) and all(n in by_full for n in names) and not all(n in by_feature for n in names)
    inputs = []
    for f in package.schema.features:
        online = (by_full if full else by_feature).get(f.name)
        inputs.append(_Input(f, online, f.name if online is not None else None))
    return tuple(inputs), full


def load_model(project: Project, ref: str, *, allow_pickle: bool = False) -> LoadedModel:
    """Load the version ``ref`` names now (the catalog is read once: the version and its package agree).

    Raises:
        ValidationError: the package is pickle-based (joblib) and ``allow_pickle`` is False.
    """
    record = project.models.get(ref)
    package = project.models.load(f"{record.name}:{record.version}", allow_pickle=allow_pickle)
    inputs, full = _inputs(package)
    return LoadedModel(
        name=record.name,
        ref=ref,
        version=record.version,
        digest=record.package_digest,
        package=package,
        loaded_at=datetime.now(UTC),
        inputs=inputs,
        full_names=full,
    )


# -- the cache key -------------------------------------------------------------------------------------------
def _canonical(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, np.generic):
        return value.item()
    return value


def cache_key(model: LoadedModel, rows: Sequence[Sequence[Any]]) -> str:
    """SHA-256 of the model's name and version and the resolved input rows, as canonical JSON."""
    digest = hashlib.sha256()
    digest.update(orjson.dumps([model.name, model.version, model.digest]))
    digest.update(orjson.dumps(rows, default=_canonical, option=orjson.OPT_SORT_KEYS))
    return digest.hexdigest()


# -- checking and resolving input ----------------------------------------------------------------------------
_MISSING = object()
_NUMERIC = ("int64", "float64")


def _bad(i: int, name: str, message: str) -> ValidationError:
    return ValidationError(f"records[{i}].{name}: {message}", field=name, row=i)


def _check_value(value: Any, f: FeatureSchema, i: int) -> Any:
    """``value`` of column ``f`` in record ``i``, checked against its type (timestamps parsed); ``None`` kept.

    Raises:
        ValidationError: the value is of the wrong type, or not finite.
    """
    if value is None:
        return None
    kind = type(value)
    dtype = f.dtype
    if dtype in _NUMERIC:
        if kind is int:
            return value
        if kind is float:
            if not math.isfinite(value):
                raise _bad(i, f.name, f"{value!r} is not allowed; send a finite number, or null to impute it")
            if dtype == "int64" and not value.is_integer():
                raise _bad(i, f.name, f"expected an integer, got {value!r}")
            return value
        if kind is str and value.strip().lower() in ("nan", "inf", "+inf", "-inf", "infinity", "-infinity"):
            raise _bad(i, f.name, f"{value!r} is not allowed; send a finite number, or null to impute it")
        want = "an integer" if dtype == "int64" else "a number"
        raise _bad(i, f.name, f"expected {want}, got {json_type(value)} {value!r}")
    if dtype == "bool":
        if kind is bool:
            return value
        raise _bad(i, f.name, f"expected true or false, got {json_type(value)} {value!r}")
    if dtype == "string":
        if kind is str:
            return value
        raise _bad(i, f.name, f"expected a string, got {json_type(value)} {value!r}")
    if dtype == "timestamp":
        if kind is str:
            import pandas as pd

            try:
                ts: Any = pd.Timestamp(value)
            except (ValueError, TypeError):
                ts = None
            if ts is None or pd.isna(ts):
                raise _bad(i, f.name, f"expected an ISO 8601 timestamp, got {value!r}")
            return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
        raise _bad(i, f.name, f"expected an ISO 8601 timestamp string, got {json_type(value)} {value!r}")
    return value


#: Integers below this in magnitude are exact as float64.
_EXACT = 2**53
#: The Python type of an online value that reads back unchanged through ``to_frame`` (by the value's dtype).
_PLAIN_TYPES: dict[str, type] = {"float64": float, "int64": int, "string": str, "bool": bool}


def _column(values: list[Any], dtype: str) -> Any:
    """A typed column of ``values`` (``None`` missing), as retrieval types it."""
    import pandas as pd

    if dtype in _NUMERIC:
        if all(v is None or type(v) is float or (type(v) is int and -_EXACT < v < _EXACT) for v in values):
            return np.array([np.nan if v is None else v for v in values], dtype=np.float64)  # as pandas gives them
        return pd.array(values, dtype="Float64").to_numpy(dtype=np.float64, na_value=np.nan)
    if dtype == "bool":
        return pd.array(values, dtype="boolean")
    if dtype == "timestamp":
        return pd.Series(values, dtype="datetime64[us, UTC]").array
    return np.array(values, dtype=object)


def _plain(value: Any) -> Any:
    """A looked-up value as a plain Python value (missing -> ``None``)."""
    import pandas as pd

    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


@dataclass
class _Resolved:
    columns: dict[str, list[Any]]
    looked_up: list[bool]


def _resolve(project: Project, model: LoadedModel, records: list[dict[str, Any]]) -> _Resolved:
    """Every record's value of every input column: explicit values checked, the others read online.

    Raises:
        ValidationError: a value is invalid, or a column has neither a value nor the keys to look it up.
    """
    columns: dict[str, list[Any]] = {inp.schema.name: [None] * len(records) for inp in model.inputs}
    wanted: dict[int, list[_Input]] = {}
    for i, record in enumerate(records):
        for inp in model.inputs:
            name = inp.schema.name
            value = record.get(name, _MISSING)
            if value is _MISSING:
                if inp.online_ref is None:
                    raise _bad(i, name, "missing, and it is not a feature the service can look up online")
                wanted.setdefault(i, []).append(inp)
            else:
                columns[name][i] = _check_value(value, inp.schema, i)
    looked_up = [False] * len(records)
    if wanted:
        rows = sorted(wanted)
        needed: dict[str, _Input] = {}
        for i in rows:
            looked_up[i] = True
            for inp in wanted[i]:
                needed.setdefault(inp.schema.name, inp)
        refs = [inp.online_ref for inp in needed.values() if inp.online_ref is not None]
        try:
            result = project.online_features(refs, [records[i] for i in rows], full_feature_names=model.full_names)
        except ValidationError as exc:
            raise _lookup_error(exc, rows, wanted) from None
        read = _looked_up(result, needed)
        for name in needed:
            values = read[name]
            column = columns[name]
            for position, i in enumerate(rows):
                if any(w.schema.name == name for w in wanted[i]):
                    column[i] = values[position] if values else None
    return _Resolved(columns, looked_up)


def _looked_up(result: Any, needed: dict[str, _Input]) -> dict[str, list[Any]]:
    """Each needed column's online values as plain Python values, as ``result.to_frame()`` types them.

    Values already of their dtype's plain type (float, int, str, bool, or None) read back unchanged through the
    frame (NaN as None), so the frame is built only for a column holding anything else.
    """
    out: dict[str, list[Any]] = {}
    frame = None
    for name, inp in needed.items():
        column = inp.online_column
        raw = result.values.get(column) if column is not None else None
        kind = _PLAIN_TYPES.get(result.dtypes.get(column, ""))
        if raw is not None and kind is not None and all(v is None or type(v) is kind for v in raw):
            out[name] = [None if v is None or v != v else v for v in raw]  # v != v: NaN
            continue
        if frame is None:
            frame = result.to_frame()
        out[name] = [_plain(v) for v in frame[column].tolist()] if column in frame.columns else []
    return out


def _lookup_error(exc: ValidationError, rows: list[int], wanted: dict[int, list[_Input]]) -> ValidationError:
    """The online read's error, told in terms of the request's records."""
    row = getattr(exc, "row", None)
    field_name = getattr(exc, "field", None)
    if row is None or not 0 <= row < len(rows):
        return ValidationError(f"looking up features online: {exc}", field=field_name)
    i = rows[row]
    missing = ", ".join(repr(inp.schema.name) for inp in wanted[i])
    return ValidationError(
        f"records[{i}]: no value for {missing}, and the record cannot be looked up online: {exc}",
        field=field_name,
        row=i,
    )


def _warnings(model: LoadedModel, resolved: _Resolved, prepared: dict[str, np.ndarray]) -> list[list[dict[str, Any]]]:
    """Per record: missing values imputed, unknown categories, values outside the training range."""
    count = len(resolved.looked_up)
    out: list[list[dict[str, Any]]] = [[] for _ in range(count)]
    for inp in model.inputs:
        f = inp.schema
        raw = resolved.columns[f.name]
        if f.dtype == "string":
            known = frozenset(f.categories) if f.categories and len(f.categories) < MAX_CATEGORIES else None
            for i, value in enumerate(raw):
                if value is None:
                    out[i].append(_missing(f, resolved.looked_up[i]))
                elif known is not None and value not in known:
                    out[i].append(
                        {
                            "type": "unknown_category",
                            "field": f.name,
                            "message": f"{f.name}: category {value!r} was not seen in training",
                        }
                    )
            continue
        numbers = prepared.get(f.name)
        for i, value in enumerate(raw):
            if value is None:
                out[i].append(_missing(f, resolved.looked_up[i]))
                continue
            if numbers is None or f.dtype == "bool" or f.min is None or f.max is None:
                continue
            x = float(numbers[i])
            if x < f.min or x > f.max:
                shown: Any = value
                lo: Any = f.min
                hi: Any = f.max
                if f.dtype == "timestamp":
                    shown = _canonical(value)
                    lo = datetime.fromtimestamp(f.min, UTC).isoformat()
                    hi = datetime.fromtimestamp(f.max, UTC).isoformat()
                out[i].append(
                    {
                        "type": "out_of_range",
                        "field": f.name,
                        "message": f"{f.name}: {shown!r} is outside the training range [{lo}, {hi}]",
                    }
                )
    return out


def _missing(f: FeatureSchema, looked_up: bool) -> dict[str, Any]:
    where = "no value online (unknown entity or expired)" if looked_up else "null"
    return {"type": "missing_imputed", "field": f.name, "message": f"{f.name}: {where}; the model imputes it"}


# -- the app -------------------------------------------------------------------------------------------------
class _Metrics:
    def __init__(self, app: FastAPI) -> None:
        registry = app.state.metrics.registry
        self.requests = Counter(
            "keel_model_requests", "Prediction requests, by model and status.", ("model", "status"), registry=registry
        )
        self.latency = Histogram(
            "keel_model_request_duration_seconds",
            "Time to answer a prediction request, by model and status.",
            ("model", "status"),
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.predictions = Counter(
            "keel_predictions",
            "Predictions made, by model, version and predicted class (empty for regression).",
            ("model", "version", "prediction"),
            registry=registry,
        )
        self.cache = Counter(
            "keel_prediction_cache", "Prediction cache lookups, by result (hit, miss).", ("result",), registry=registry
        )
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


def _cache_failed(metrics: _Metrics, cache: Any, operation: str, exc: BaseException) -> None:
    """Count a cache failure and warn (once per back-off period: the cache is not tried again meanwhile)."""
    from keel.serving._logging import service_log

    metrics.cache_errors.labels(operation).inc()
    where = getattr(cache, "uri", "the prediction cache")
    service_log.warning("prediction cache %s: %s failed (%s); scoring without the cache", where, operation, exc)


def _check_records(body: dict[str, Any], max_records: int) -> list[dict[str, Any]]:
    check_fields(body, required=("records",))
    records = body["records"]
    if type(records) is not list:
        raise ValidationError(f"'records' must be an array of objects, got {json_type(records)}", field="records")
    if len(records) > max_records:
        raise RequestTooLargeError(
            f"{len(records):,} records is over the server's limit of {max_records:,} per request; split the batch"
        )
    for i, record in enumerate(records):
        if type(record) is not dict:
            raise ValidationError(
                f"records[{i}] must be an object of entity keys and feature values, got {json_type(record)}",
                field="records",
                row=i,
            )
    return records


def create_prediction_app(
    project: Project,
    models: Sequence[str],
    *,
    api_token: str | None = None,
    max_records: int = DEFAULT_MAX_RECORDS,
    cache_size: int = DEFAULT_CACHE_SIZE,
    reload_seconds: float | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    close_project: bool = False,
    cache_ttl_seconds: float = DEFAULT_CACHE_TTL_SECONDS,
    allow_pickle: bool = False,
    prediction_log: bool | None = None,
    inline_records: int = DEFAULT_INLINE_RECORDS,
) -> FastAPI:
    """The prediction service of ``models`` (``["churn@champion", "fraud:3"]``), served by name.

    Endpoints: ``POST /v1/models/{name}/predict``, ``GET /v1/models``, ``GET /ready``, ``GET /health``,
    ``GET /metrics`` and the docs at ``/docs``.

    Args:
        project: the project whose registry and online store are used.
        models: model references; each is loaded now, so a wrong one fails at startup. Two references to the
            same model name are refused.
        api_token: the bearer token requests need; ``None`` reads ``KEEL_API_TOKEN`` (unset: no token).
        max_records: larger batches are refused with 413.
        cache_size: answers kept in the in-process LRU (0: no cache) when the project's ``cache`` is ``memory``.
        reload_seconds: poll each alias this often and swap to the version it names (``None``: never).
        max_body_bytes: larger request bodies are refused with 413.
        close_project: close the project when the app shuts down (when the app owns it).
        cache_ttl_seconds: how long a Redis cache keeps an answer.
        allow_pickle: load pickle-based (joblib) packages; without it they are refused at startup.
        prediction_log: log every prediction (``None``: the project's ``prediction_log.enabled``). The log is
            written by a background thread and flushed when the app shuts down (or the process exits).
        inline_records: requests of up to this many records are scored on the event loop (no thread hop, no
            GIL convoy with a scoring thread); larger ones in the process's scoring thread. 0 scores every
            request in the thread.

    Example:
        >>> app = create_prediction_app(keel.Project.open("."), ["churn@champion"])  # doctest: +SKIP
    """
    if not models:
        raise ValidationError("serve at least one model, like 'churn@champion'", field="model")
    loaded: dict[str, LoadedModel] = {}
    for ref in models:
        name = parse_model_ref(ref)[0]
        if name in loaded:
            raise ValidationError(
                f"model {name!r} is given twice ({loaded[name].ref!r} and {ref!r}); each name is served once",
                field="model",
            )
        loaded[name] = load_model(project, ref, allow_pickle=allow_pickle)
    project.online  # noqa: B018  opens the catalog and the store now, before requests race to do it
    cache = open_cache(
        project.config.cache,
        project_name=project.config.name,
        size=cache_size,
        ttl_seconds=cache_ttl_seconds,
        on_error=lambda operation, exc: _cache_failed(metrics, cache, operation, exc),
    )
    log_settings = project.config.prediction_log
    log = None
    if log_settings.enabled if prediction_log is None else prediction_log:
        log = PredictionLog(
            log_root(project.config.offline),
            max_bytes=log_settings.max_bytes,
            max_seconds=log_settings.max_seconds,
            linger_seconds=log_settings.linger_seconds,
            on_written=lambda rows: metrics.log_rows.inc(rows),
            on_dropped=lambda rows: metrics.log_dropped.inc(rows),
        )
    layouts: dict[tuple[str, int, str], LogLayout] = {}

    def layout_of(model: LoadedModel) -> LogLayout:
        """The log columns of ``model`` (computed once per version: it reads the catalog)."""
        key = (model.name, model.version, model.digest)
        layout = layouts.get(key)
        if layout is None:
            layout = layouts[key] = build_layout(
                model.name,
                model.version,
                model.package,
                project.definitions.key_types(model.package.feature_refs),
            )
        return layout

    def log_request(
        model: LoadedModel,
        request_id: str | None,
        records: list[dict[str, Any]],
        resolved: _Resolved,
        answer: dict[str, Any],
    ) -> None:
        """Queue the request's rows for the prediction log (the writer thread converts and writes them)."""
        if log is not None:
            at = datetime.now(UTC)
            log.append(layout_of(model), request_id or "", at, records, resolved.columns, answer)

    if log is not None:
        for model in loaded.values():
            layout_of(model)
    lock = threading.Lock()  # serializes reloads; reads take the current dict without locking

    def reload_once() -> list[str]:
        """Swap each model whose reference now names another version; the names swapped."""
        swapped = []
        with lock:
            for name, current in list(loaded.items()):
                if parse_model_ref(current.ref)[1] is not None:
                    continue  # pinned to a version: nothing to follow
                record = project.models.get(current.ref)
                if record.version != current.version:
                    new = load_model(project, current.ref, allow_pickle=allow_pickle)
                    if log is not None:
                        layout_of(new)  # the catalog read of its log columns, before it serves
                    loaded[name] = new  # one assignment: atomic for readers
                    swapped.append(name)
        return swapped

    async def watch(interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                for name in await run_in_threadpool(reload_once):
                    metrics.reloads.labels(name).inc()
            except Exception:  # a catalog hiccup must not stop the watcher; the old version keeps serving
                from keel.serving._logging import service_log

                service_log.exception("hot reload failed; still serving the loaded versions")

    # Where requests are scored. Tree ensembles release the GIL around every tree they walk, so a thread
    # scoring while another runs Python code hands the GIL back and forth hundreds of times per request and
    # waits for it each time (a GIL convoy: with 8 concurrent clients, Keel scored at a third of one thread's
    # speed). Small requests (the serving path: a few records, a couple of milliseconds) are therefore scored
    # on the event loop itself, as a bare endpoint would; larger ones go to one scoring thread per process,
    # so that the loop keeps answering meanwhile. More cores are used with more worker processes (--workers).
    scorer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="keel-score")

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(watch(reload_seconds)) if reload_seconds else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if log is not None:
                await run_in_threadpool(log.close)  # every queued row written, every file published
            scorer.shutdown(wait=True)
            cache.close()
            if close_project:
                project.close()

    app = create_service_app(
        title="Keel prediction service",
        service="predictions",
        description=_DESCRIPTION,
        api_token=api_token,
        public_paths=("/health", "/ready"),
        lifespan=lifespan,
    )
    app.state.project = project
    app.state.models = loaded
    app.state.cache = cache
    app.state.prediction_log = log
    app.state.reload = reload_once
    metrics = _Metrics(app)

    def score(model: LoadedModel, records: list[dict[str, Any]], request_id: str | None = None) -> dict[str, Any]:
        resolved = _resolve(project, model, records)
        schemas = [inp.schema for inp in model.inputs]
        key = cache_key(model, [[resolved.columns[f.name][i] for f in schemas] for i in range(len(records))])
        hit = cache.get(key)
        if hit is not None:
            metrics.cache.labels("hit").inc()
            cached = dict(hit)
            log_request(model, request_id, records, resolved, cached)
            return cached
        metrics.cache.labels("miss").inc()
        package = model.package
        # one preparation for the predictions, the probabilities and the warnings (the package's own)
        scored = package.score({f.name: _column(resolved.columns[f.name], f.dtype) for f in schemas})
        prepared = scored.prepared
        answer: dict[str, Any] = {"model": model.name, "version": model.version}
        answer["predictions"] = scored.predictions.tolist()
        if scored.probabilities is not None:
            classes = [str(c) for c in package.classes or []]
            probabilities = scored.probabilities
            answer["probabilities"] = [dict(zip(classes, row, strict=True)) for row in probabilities.tolist()]
            counted: dict[str, int] = {}
            for p in answer["predictions"]:
                counted[str(p)] = counted.get(str(p), 0) + 1
            for label, n in counted.items():
                metrics.predictions.labels(model.name, str(model.version), label).inc(n)
        else:
            metrics.predictions.labels(model.name, str(model.version), "").inc(len(records))
        answer["warnings"] = _warnings(model, resolved, prepared)
        cache.put(key, answer)
        log_request(model, request_id, records, resolved, answer)
        return answer

    async def predict(request: Request) -> Response:
        """Predictions for each record, in order, with class probabilities (classifiers) and warnings."""
        started = time.perf_counter()
        name = request.path_params["name"]
        model = loaded.get(name)
        label = name if model is not None else _UNKNOWN_MODEL
        status = 200
        try:
            if model is None:
                served = ", ".join(sorted(loaded)) or "none"
                raise NotFoundError(f"no model {name!r} is served here; served: {served}")
            body = await read_json_object(request, max_bytes=max_body_bytes)
            records = _check_records(body, max_records)
            if len(records) <= inline_records:
                answer = score(model, records, request_id_of(request))
            else:
                loop = asyncio.get_running_loop()
                answer = await loop.run_in_executor(scorer, score, model, records, request_id_of(request))
            return Response(json_bytes(answer), media_type="application/json")
        except KeelError as exc:
            status = status_of(exc)
            raise
        except Exception:
            status = 500
            raise
        finally:
            metrics.requests.labels(label, str(status)).inc()
            metrics.latency.labels(label, str(status)).observe(time.perf_counter() - started)

    async def list_models(_request: Request) -> Response:
        return Response(json_bytes({"models": [m.describe() for m in loaded.values()]}), media_type="application/json")

    async def ready(_request: Request) -> Response:
        body = {"status": "ready", "models": {n: m.version for n, m in loaded.items()}}
        return Response(json_bytes(body), media_type="application/json")

    router = app.router
    router.add_api_route(
        "/v1/models/{name}/predict",
        predict,
        methods=["POST"],
        route_class_override=DirectRoute,
        tags=["predictions"],
        summary="Predict",
        responses=_PREDICT_RESPONSES,
        openapi_extra=_PREDICT_BODY,
    )
    router.add_api_route(
        "/v1/models",
        list_models,
        methods=["GET"],
        route_class_override=DirectRoute,
        tags=["predictions"],
        summary="The loaded models",
    )
    router.add_api_route(
        "/ready",
        ready,
        methods=["GET"],
        route_class_override=DirectRoute,
        tags=["operations"],
        summary="The models are loaded",
    )
    return app


def app_from_environment() -> FastAPI:
    """The prediction service of ``$KEEL_SERVE_MODELS`` in the project ``$KEEL_PROJECT``, owning it.

    The app factory uvicorn's worker processes call (``keel serve --workers N``).
    """
    from keel.project import Project
    from keel.serving._features_app import PROJECT_VARIABLE

    project = Project.open(os.environ.get(PROJECT_VARIABLE) or ".")
    models = [m for m in os.environ.get(MODELS_VARIABLE, "").split(",") if m]
    options = orjson.loads(os.environ.get(_OPTIONS_VARIABLE) or "{}")
    return create_prediction_app(project, models, close_project=True, **options)
