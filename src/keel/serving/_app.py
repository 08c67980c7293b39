"""The skeleton every Keel HTTP service is built on: errors, authentication, metrics, request ids, logs,
``/health`` and ``/metrics``. A service adds its own routes to the app :func:`create_service_app` returns."""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from prometheus_client import CollectorRegistry
from starlette.requests import Request
from starlette.responses import Response

from keel.serving._auth import BearerAuth
from keel.serving._http import install_error_handlers, json_bytes
from keel.serving._metrics import HttpMetrics
from keel.serving._middleware import ServiceMiddleware
from keel.serving._schemas import ErrorResponse, HealthResponse

__all__ = ["DOCS_PATHS", "ERROR_RESPONSES", "DirectRoute", "Endpoint", "add_endpoints", "create_service_app"]

#: The API documentation is public: it describes the contract and holds no data.
DOCS_PATHS = ("/docs", "/docs/oauth2-redirect", "/openapi.json")

#: The error answers every endpoint may give, for the OpenAPI documentation.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Missing or wrong bearer token (when KEEL_API_TOKEN is set)."},
    500: {"model": ErrorResponse, "description": "Unexpected error; the log has the details under the request id."},
}


class DirectRoute(APIRoute):
    """A route whose endpoint takes the :class:`~starlette.requests.Request` and returns the
    :class:`~starlette.responses.Response` itself, skipping FastAPI's parameter solving and response
    serialization (about 20 µs a request, twice what an online read costs).

    It is documented like any route: give the body's schema in ``openapi_extra`` and the answer's model in
    ``response_model``. Errors still reach the app's exception handlers.

    Example:
        >>> app.router.add_api_route("/features", read, methods=["POST"], route_class_override=DirectRoute)
        ... # doctest: +SKIP
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """The endpoint itself: it is a coroutine function of the request, returning the response."""
        endpoint: Callable[[Request], Coroutine[Any, Any, Response]] = self.endpoint
        return endpoint


@dataclass(frozen=True)
class Endpoint:
    """One route of a service, as its route table lists it (served by a :class:`DirectRoute`).

    Attributes:
        path: the URL path (``/v1/models/{name}/predict``).
        endpoint: a coroutine function of the request, returning the response.
        method: the HTTP method.
        tag: the docs' group.
        summary: the docs' one-line title.
        response_model: the answer's model, for the docs.
        responses: the documented answers besides 200 (the errors).
        openapi_extra: more of the operation's OpenAPI text (the request body's schema).
        response_class: the answer's class, for the docs (default: JSON).
        name: the route's name, of which the OpenAPI operation id is made (default: the endpoint's).
    """

    path: str
    endpoint: Callable[[Request], Coroutine[Any, Any, Response]]
    method: str
    tag: str
    summary: str
    response_model: Any = None
    responses: dict[int | str, dict[str, Any]] | None = None
    openapi_extra: dict[str, Any] | None = None
    response_class: type[Response] | None = None
    name: str | None = None


def path_parameters(path: str) -> list[dict[str, Any]]:
    """The OpenAPI declaration of each ``{parameter}`` of a path template: a :class:`DirectRoute` skips FastAPI's
    parameter solving, so the spec would otherwise name a path parameter it never declares (an invalid spec that
    schema-driven clients and fuzzers refuse)."""
    return [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string", "title": name.title()}}
        for name in re.findall(r"{([^}:]+)(?::[^}]*)?}", path)
    ]


def add_endpoints(app: FastAPI, endpoints: Iterable[Endpoint]) -> None:
    """Add each endpoint of a route table to ``app``."""
    for e in endpoints:
        extra = dict(e.openapi_extra or {})
        declared = path_parameters(e.path)
        if declared:
            extra["parameters"] = [*declared, *extra.get("parameters", [])]
        documented = {
            "response_model": e.response_model,
            "responses": e.responses,
            "openapi_extra": extra or None,
            "response_class": e.response_class,
            "name": e.name,
        }
        app.router.add_api_route(
            e.path,
            e.endpoint,
            methods=[e.method],
            route_class_override=DirectRoute,
            tags=[e.tag],
            summary=e.summary,
            **{k: v for k, v in documented.items() if v is not None},
        )


def create_service_app(
    *,
    title: str,
    service: str,
    description: str = "",
    api_token: str | None = None,
    public_paths: Iterable[str] = ("/health",),
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
    registry: CollectorRegistry | None = None,
) -> FastAPI:
    """A FastAPI app with everything Keel services share, ready for the service's routes.

    It answers every error with the JSON error shape of :mod:`keel.serving._http`; refuses requests without
    the bearer token when one is set (except on ``public_paths`` and the docs); gives each request an id
    (``X-Request-ID``, in and out); counts requests and latency in its own Prometheus registry
    (``app.state.metrics.registry``), served at ``GET /metrics``; writes one structured access-log line per
    request; and serves ``GET /health`` (200 whenever the process is up) and the OpenAPI docs at ``/docs``.

    Args:
        title: the API's title in the docs.
        service: the service's short name (``features``), reported by ``/health``.
        description: the API's description in the docs (Markdown).
        api_token: the bearer token requests need; ``None`` reads ``KEEL_API_TOKEN`` now (unset or empty:
            no authentication).
        public_paths: paths served without a token, besides the docs.
        lifespan: the app's lifespan (startup and shutdown work).
        registry: the Prometheus registry to count in, when the service's own metrics already live in one
            (default: a new registry).
    """
    from keel._version import __version__

    auth = BearerAuth.from_environment() if api_token is None else BearerAuth(api_token)
    metrics = HttpMetrics(registry)
    app = FastAPI(
        title=title,
        description=description,
        version=__version__,
        lifespan=lifespan,
        redoc_url=None,
        responses=ERROR_RESPONSES,
    )
    app.state.metrics = metrics
    app.state.auth = auth
    public = {*public_paths, *DOCS_PATHS}
    install_error_handlers(app)
    app.add_middleware(ServiceMiddleware, auth=auth, metrics=metrics, public_paths=public, routes=app.router.routes)

    health_body = json_bytes({"status": "ok", "service": service, "version": __version__})

    async def health(_request: Request) -> Response:
        return Response(health_body, media_type="application/json")

    async def scrape(_request: Request) -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    metrics_doc: dict[int | str, dict[str, Any]] = {
        200: {"content": {"text/plain": {}}, "description": "The Prometheus text format."}
    }
    add_endpoints(
        app,
        (
            Endpoint("/health", health, "GET", "operations", "The process is up", response_model=HealthResponse),
            Endpoint(
                "/metrics",
                scrape,
                "GET",
                "operations",
                "Prometheus metrics",
                responses=metrics_doc,
                response_class=Response,
            ),
        ),
    )
    if auth.enabled:
        _document_bearer_auth(app, public)
    return app


def _document_bearer_auth(app: FastAPI, public: set[str]) -> None:
    """Declare the bearer token in the OpenAPI schema, so the docs' "Authorize" button sends it."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schema.setdefault("components", {}).setdefault("securitySchemes", {})["bearer"] = {
                "type": "http",
                "scheme": "bearer",
                "description": "The server's KEEL_API_TOKEN.",
            }
            for path, operations in schema.get("paths", {}).items():
                if path not in public:
                    for operation in operations.values():
                        operation["security"] = [{"bearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
