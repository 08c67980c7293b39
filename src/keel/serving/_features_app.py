"""The feature server: online feature reads and pushes over HTTP.

``POST /features`` is the hot path. It parses its body with orjson and checks it by hand (see
:mod:`keel.serving._body`), and reads a local store (SQLite, memory) on the event loop: such a read takes
about ten microseconds, less than a hop to the thread pool costs. Reads of a networked store (Redis), and
reads of many entities, run in the thread pool so that they never stall other requests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Protocol

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from keel.errors import ValidationError
from keel.serving._app import Endpoint, add_endpoints, create_service_app
from keel.serving._body import check_fields, json_type, read_json_object
from keel.serving._http import json_bytes
from keel.serving._rows import rows_frame
from keel.serving._schemas import (
    ErrorResponse,
    FeaturesRequest,
    FeaturesResponse,
    PushRequest,
    PushResponse,
)

if TYPE_CHECKING:
    import pandas as pd

    from keel.features import FeatureView
    from keel.online import OnlineFeatureService

__all__ = ["DEFAULT_MAX_BODY_BYTES", "PushOutcome", "PushRows", "create_feature_app"]

DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
#: Stores read on the event loop (in-process, microseconds per read); others are read in the thread pool.
_LOCAL_STORES = frozenset({"memory", "sqlite"})
#: Above this many entities a read goes to the thread pool even from a local store.
_INLINE_MAX_ENTITIES = 256
_PUSH_TARGETS = ("online", "offline", "both")

_DESCRIPTION = """\
Online feature values for real-time inference, and streaming writes.

* `POST /features` reads the latest values of features for a list of entities, in request order.
* `POST /push` writes rows of a feature view, validated like ingestion, to the online store, the offline
  store, or both.
* `GET /health` answers 200 while the process is up; `GET /metrics` serves Prometheus metrics.

Every error is a JSON object `{"error": {"type", "message", "field", "row", "request_id"}}`. When the server
has a `KEEL_API_TOKEN`, every endpoint but `/health` and these docs needs `Authorization: Bearer <token>`.
"""


class PushOutcome(Protocol):
    """What the feature server reports of a push (``keel.Project.push`` returns one)."""

    @property
    def view(self) -> str: ...
    @property
    def rows(self) -> int: ...
    @property
    def online_rows(self) -> int: ...
    @property
    def offline_version(self) -> int | None: ...
    @property
    def warnings(self) -> list[str]: ...


class PushRows(Protocol):
    """Writes validated rows of a view to the online store, the offline store or both (``Project.push``)."""

    def __call__(self, view: str, df: pd.DataFrame, *, to: str) -> PushOutcome: ...


def _body_schema(model: type[FeaturesRequest] | type[PushRequest]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}


_BAD_REQUEST: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "The body is not a JSON object."},
    404: {"model": ErrorResponse, "description": "Unknown feature view."},
    413: {"model": ErrorResponse, "description": "The body is over the server's size limit."},
    422: {"model": ErrorResponse, "description": "Invalid request: the error names the field (and row)."},
    503: {
        "model": ErrorResponse,
        "description": "A backend the request needs (the online or offline store, the catalog) is unavailable; "
        "the error names it. Retry later: the server recovers by itself when the backend answers again.",
    },
}


def _check_features(features: Any) -> list[str]:
    if type(features) is not list:
        raise ValidationError(
            f"'features' must be an array of references like 'view:feature', got {json_type(features)}",
            field="features",
        )
    if not features:
        raise ValidationError("'features' is empty; request at least one 'view:feature' reference", field="features")
    for i, ref in enumerate(features):
        if type(ref) is not str:
            raise ValidationError(
                f"features[{i}] must be a string like 'view:feature', got {json_type(ref)}", field=f"features[{i}]"
            )
    return features


def _entity_count(entities: Any) -> int:
    """How many entities ``entities`` holds, after checking its shape (the join keys are checked by the read)."""
    if type(entities) is list:
        for i, row in enumerate(entities):
            if type(row) is not dict:
                raise ValidationError(
                    f'entities[{i}] must be an object of join keys like {{"customer_id": 42}}, got {json_type(row)}',
                    field="entities",
                    row=i,
                )
        return len(entities)
    if type(entities) is dict:
        count = 0
        for key, values in entities.items():
            if type(values) is not list:
                raise ValidationError(
                    f"entities.{key} must be an array with one value per entity, got {json_type(values)}", field=key
                )
            count = max(count, len(values))
        return count
    raise ValidationError(
        "'entities' must be an array of objects ([{\"customer_id\": 42}]) or an object of arrays "
        f'({{"customer_id": [42, 7]}}), got {json_type(entities)}',
        field="entities",
    )


def create_feature_app(
    online: OnlineFeatureService,
    push: PushRows,
    *,
    feature_view: Callable[[str], FeatureView],
    join_keys: Callable[[FeatureView], list[str]],
    store_kind: str = "",
    api_token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    on_shutdown: Callable[[], None] | None = None,
) -> FastAPI:
    """The feature server: ``POST /features``, ``POST /push``, ``GET /health``, ``GET /metrics`` and the
    OpenAPI docs at ``/docs``.

    Args:
        online: the online reads ``POST /features`` serves (its backends open: a configuration error then
            shows at startup rather than at the first request).
        push: writes the rows of ``POST /push``, validated like ingestion.
        feature_view: the registered view of a name (the JSON rows are checked against its schema).
        join_keys: a view's join keys.
        store_kind: the online store's kind: ``memory`` and ``sqlite`` (microseconds per read) are read on the
            event loop (unless the catalog is a server: :attr:`OnlineFeatureService.in_process`), any other in
            the thread pool.
        api_token: the bearer token requests need; ``None`` reads ``KEEL_API_TOKEN`` (unset: no token).
        max_body_bytes: larger request bodies are refused with 413.
        on_shutdown: called when the app shuts down (``Project.feature_app`` closes the project).

    Example:
        >>> app = keel.Project.open(".").feature_app()  # doctest: +SKIP
        >>> uvicorn.run(app, port=6566)  # doctest: +SKIP
    """
    # A read that may wait on a server (Redis, or a PostgreSQL catalog when the read plan is refreshed) runs in
    # the thread pool: a hung server must not stall the event loop.
    inline = store_kind in _LOCAL_STORES and online.in_process
    online_features = online.get

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if on_shutdown is not None:
                on_shutdown()

    app = create_service_app(
        title="Keel feature server",
        service="features",
        description=_DESCRIPTION,
        api_token=api_token,
        lifespan=lifespan,
    )

    async def read_features(request: Request) -> Response:
        """Latest values of ``features`` for each entity, in request order.

        A value older than its view's TTL reads as null, as do unknown entities; `versions` gives the ingested
        version of each view that served the values.
        """
        body = await read_json_object(request, max_bytes=max_body_bytes)
        check_fields(body, required=("features", "entities"), optional=("full_feature_names",))
        features = _check_features(body["features"])
        entities = body["entities"]
        count = _entity_count(entities)
        full_names = body.get("full_feature_names", False)
        if type(full_names) is not bool:
            raise ValidationError(
                f"'full_feature_names' must be true or false, got {json_type(full_names)}", field="full_feature_names"
            )
        if inline and count <= _INLINE_MAX_ENTITIES:
            result = online_features(features, entities, full_feature_names=full_names)
        else:
            result = await run_in_threadpool(online_features, features, entities, full_feature_names=full_names)
        return Response(
            json_bytes({"features": result.to_dict(), "versions": result.versions}), media_type="application/json"
        )

    async def push_rows(request: Request) -> Response:
        """Write rows of a feature view, validated like ingestion: upserted into the online store (rows older
        than the stored ones are ignored), appended as a new offline version, or both."""
        body = await read_json_object(request, max_bytes=max_body_bytes)
        check_fields(body, required=("view", "rows"), optional=("to",))
        view, to = body["view"], body.get("to", "online")
        if type(view) is not str:
            raise ValidationError(f"'view' must be a feature view's name, got {json_type(view)}", field="view")
        if to not in _PUSH_TARGETS:
            raise ValidationError(f"'to' must be 'online', 'offline' or 'both', got {to!r}", field="to")
        result = await run_in_threadpool(_push_rows, push, feature_view, join_keys, view, body["rows"], to)
        return Response(
            json_bytes(
                {
                    "view": result.view,
                    "rows": result.rows,
                    "online_rows": result.online_rows,
                    "offline_version": result.offline_version,
                    "warnings": result.warnings,
                }
            ),
            media_type="application/json",
        )

    add_endpoints(
        app,
        (
            Endpoint(
                path,
                endpoint,
                "POST",
                "features",
                summary,
                response_model=response_model,
                responses=_BAD_REQUEST,
                openapi_extra=_body_schema(request_model),
                name=name,
            )
            for path, endpoint, name, summary, request_model, response_model in (
                ("/features", read_features, None, "Read online feature values", FeaturesRequest, FeaturesResponse),
                ("/push", push_rows, "push", "Push rows of a feature view", PushRequest, PushResponse),
            )
        ),
    )
    return app


def _push_rows(
    push: PushRows,
    feature_view: Callable[[str], FeatureView],
    join_keys: Callable[[FeatureView], list[str]],
    view_name: str,
    rows: Any,
    to: str,
) -> PushOutcome:
    """Push the JSON ``rows`` of a view, checked against its schema first."""
    view = feature_view(view_name)
    return push(view_name, rows_frame(rows, view, join_keys(view)), to=to)
