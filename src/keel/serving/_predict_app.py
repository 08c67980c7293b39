"""The prediction service: a :class:`~keel.serving._predictor.Predictor`'s models scored over HTTP.

``POST /v1/models/{name}/predict`` takes ``{"records": [...]}``; each record gives entity keys, raw feature
values, or both (:mod:`keel.serving._inputs`). Answers are cached and every prediction is logged by the
predictor (:mod:`keel.serving._cache`, :mod:`keel.prediction_log`). This module holds the HTTP side only: the
docs, the request checks, the route table, where each request is scored, and the lifespan (hot reload, and
writing the log out at shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from keel.errors import KeelError, ValidationError
from keel.serving._app import Endpoint, add_endpoints, create_service_app
from keel.serving._body import check_fields, json_type, read_json_object
from keel.serving._http import RequestTooLargeError, json_bytes, request_id_of, status_of
from keel.serving._predictor import Predictor, not_served
from keel.serving._schemas import ErrorResponse, ModelsResponse, PredictResponse, ReadyResponse

__all__ = ["DEFAULT_INLINE_RECORDS", "DEFAULT_MAX_BODY_BYTES", "DEFAULT_MAX_RECORDS", "create_prediction_app"]

DEFAULT_MAX_RECORDS = 1000
#: Requests of up to this many records are scored on the event loop (see ``create_prediction_app``).
DEFAULT_INLINE_RECORDS = 16
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
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
    503: {
        "model": ErrorResponse,
        "description": "A backend the request needs (the online store, the catalog) is unavailable; the error "
        "names it. Retry later: the service recovers by itself when the backend answers again.",
    },
}

#: ``GET /v1/models`` links to predicting with a listed model, so that schema-driven clients (and the stateful
#: fuzz tests) can chain the two.
_MODELS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "links": {
            "PredictWithTheFirstModel": {
                "operationRef": "#/paths/~1v1~1models~1{name}~1predict/post",
                "parameters": {"name": "$response.body#/models/0/name"},
                "description": "Predict with the first loaded model.",
            }
        }
    }
}

_PREDICT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["records"],
                    "additionalProperties": False,
                    "properties": {
                        "records": {
                            "type": "array",
                            "items": {"type": "object", "additionalProperties": True},
                            "description": "Entity keys, request fields and/or raw feature values, one per row.",
                        }
                    },
                },
                "example": {"records": [{"customer_id": 100042}, {"customer_id": 100007, "plan": "premium"}]},
            }
        },
    }
}


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


def _lifespan(
    predictor: Predictor,
    scorer: ThreadPoolExecutor,
    reload_seconds: float | None,
    on_shutdown: Callable[[], None] | None,
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Hot reload while the app runs; at shutdown, the log written out, the cache closed, then ``on_shutdown``."""

    async def watch(interval: float) -> None:
        from keel.serving._logging import service_log

        failing = False  # a run of failed reloads is logged once, and its end once
        while True:
            await asyncio.sleep(interval)
            try:
                await run_in_threadpool(predictor.reload_once)
            except KeelError as exc:  # the catalog or the artifact store failed; the old versions keep serving
                if not failing:
                    service_log.warning("hot reload failed (%s); still serving the loaded versions", exc)
                failing = True
                continue
            except Exception:  # must not stop the watcher either; the old versions keep serving
                if not failing:
                    service_log.exception("hot reload failed; still serving the loaded versions")
                failing = True
                continue
            if failing:
                service_log.warning("hot reload works again")
                failing = False

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
            scorer.shutdown(wait=True)
            await run_in_threadpool(predictor.close)  # every queued row written, every file published
            if on_shutdown is not None:
                on_shutdown()

    return lifespan


def create_prediction_app(
    predictor: Predictor,
    *,
    api_token: str | None = None,
    max_records: int = DEFAULT_MAX_RECORDS,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    reload_seconds: float | None = None,
    inline_records: int = DEFAULT_INLINE_RECORDS,
    on_shutdown: Callable[[], None] | None = None,
) -> FastAPI:
    """The prediction service of ``predictor``'s loaded models, served by name.

    Endpoints: ``POST /v1/models/{name}/predict``, ``GET /v1/models``, ``GET /ready``, ``GET /health``,
    ``GET /metrics`` (the predictor's metrics and the HTTP ones) and the docs at ``/docs``. When the app shuts
    down, the predictor is closed (its prediction log written out), then ``on_shutdown`` is called.

    Args:
        predictor: the models to serve, loaded (:meth:`Predictor.load`).
        api_token: the bearer token requests need; ``None`` reads ``KEEL_API_TOKEN`` (unset: no token).
        max_records: larger batches are refused with 413.
        max_body_bytes: larger request bodies are refused with 413.
        reload_seconds: poll each alias this often and swap to the version it names (``None``: never).
        inline_records: requests of up to this many records are scored on the event loop (no thread hop, no
            GIL convoy with a scoring thread) when the predictor's backends are all in this process
            (:attr:`Predictor.in_process`; else in the thread pool, so that a hung Redis or PostgreSQL never
            stalls the loop); larger ones in the process's scoring thread. 0 scores every request in the thread.
        on_shutdown: called last when the app shuts down (``Project.prediction_app`` closes the project).

    Raises:
        ValidationError: the predictor has no model loaded.

    Example:
        >>> app = keel.Project.open(".").prediction_app(["churn@champion"])  # doctest: +SKIP
    """
    if not predictor.models:
        raise ValidationError("the predictor serves no model; load one first, like 'churn@champion'", field="model")
    models, metrics, score = predictor.models, predictor.metrics, predictor.score_loaded
    in_process = predictor.in_process
    # Where requests are scored. Tree ensembles release the GIL around every tree they walk, so a thread
    # scoring while another runs Python code hands the GIL back and forth hundreds of times per request and
    # waits for it each time (a GIL convoy: with 8 concurrent clients, Keel scored at a third of one thread's
    # speed). Small requests (the serving path: a few records, a couple of milliseconds) are therefore scored
    # on the event loop itself, as a bare endpoint would; larger ones go to one scoring thread per process,
    # so that the loop keeps answering meanwhile. More cores are used with more worker processes (--workers).
    scorer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="keel-score")
    app = create_service_app(
        title="Keel prediction service",
        service="predictions",
        description=_DESCRIPTION,
        api_token=api_token,
        public_paths=("/health", "/ready"),
        lifespan=_lifespan(predictor, scorer, reload_seconds, on_shutdown),
        registry=metrics.registry,
    )
    app.state.predictor = predictor
    app.state.models = models
    app.state.cache = predictor.cache
    app.state.prediction_log = predictor.log
    app.state.reload = predictor.reload_once

    async def predict(request: Request) -> Response:
        """Predictions for each record, in order, with class probabilities (classifiers) and warnings."""
        started = time.perf_counter()
        name = request.path_params["name"]
        model = models.get(name)
        label = name if model is not None else _UNKNOWN_MODEL
        status = 200
        try:
            if model is None:
                raise not_served(name, models)
            body = await read_json_object(request, max_bytes=max_body_bytes)
            records = _check_records(body, max_records)
            if len(records) <= inline_records and in_process:
                answer = score(model, records, request_id_of(request))
            elif len(records) <= inline_records:  # a backend that hangs must not stall the event loop
                answer = await run_in_threadpool(score, model, records, request_id_of(request))
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
        return Response(json_bytes({"models": [m.describe() for m in models.values()]}), media_type="application/json")

    async def ready(_request: Request) -> Response:
        body = {"status": "ready", "models": {n: m.version for n, m in models.items()}}
        return Response(json_bytes(body), media_type="application/json")

    add_endpoints(
        app,
        (
            Endpoint(
                "/v1/models/{name}/predict",
                predict,
                "POST",
                "predictions",
                "Predict",
                response_model=PredictResponse,
                responses=_PREDICT_RESPONSES,
                openapi_extra=_PREDICT_BODY,
            ),
            Endpoint(
                "/v1/models",
                list_models,
                "GET",
                "predictions",
                "The loaded models",
                response_model=ModelsResponse,
                responses=_MODELS_RESPONSES,
            ),
            Endpoint("/ready", ready, "GET", "operations", "The models are loaded", response_model=ReadyResponse),
        ),
    )
    return app
