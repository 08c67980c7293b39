"""The middleware every Keel HTTP service runs: request ids, authentication, metrics, access log, and the
last line of defence that turns an unexpected exception into a 500 JSON error without a traceback.

It is one plain ASGI middleware rather than a stack of ``BaseHTTPMiddleware`` layers: each such layer costs
tens of microseconds per request, which is most of what an online feature read costs.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Collection, Sequence
from time import perf_counter
from typing import Any

from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keel.serving._auth import BearerAuth
from keel.serving._http import error_response
from keel.serving._logging import access_log, service_log
from keel.serving._metrics import HttpMetrics

__all__ = ["REQUEST_ID_HEADER", "ServiceMiddleware"]

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID = REQUEST_ID_HEADER.lower().encode()
# A client's id is kept when it is short and plain, so it cannot forge log lines or flood them.
_VALID_ID = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")
_UNMATCHED = "<unmatched>"


class ServiceMiddleware:
    """Wraps an ASGI app with the behaviour every Keel service shares.

    For each HTTP request: takes the client's ``X-Request-ID`` (or makes one), stores it in the request state
    (``request.state.request_id``) and returns it in the response headers; refuses a request without the
    bearer token (401) unless its path is public; counts the request and its latency by method, route
    template and status; writes one access-log line; answers an exception that escaped every handler with a
    500 ``InternalError`` JSON body and logs its traceback.

    Args:
        app: the wrapped ASGI app.
        auth: the token check.
        metrics: where requests are counted.
        public_paths: paths served without a token.
        routes: the app's routes, to label requests refused before routing by their route (else
            ``<unmatched>``, so that unknown paths cannot multiply the metric series).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        auth: BearerAuth,
        metrics: HttpMetrics,
        public_paths: Collection[str],
        routes: Sequence[BaseRoute] = (),
    ) -> None:
        self.app = app
        self.auth = auth
        self.guarded = auth.enabled  # without a token, requests skip the check altogether
        self.metrics = metrics
        self.public_paths = frozenset(public_paths)
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one connection event (only HTTP requests are observed)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        given: bytes | None = None
        authorization: bytes | None = None
        for name, value in scope["headers"]:
            if name == _REQUEST_ID:
                given = value
            elif name == b"authorization":
                authorization = value
        if given is not None and _VALID_ID.fullmatch(given):
            request_id = given.decode()
            id_header = (_REQUEST_ID, given)
        else:
            request_id = os.urandom(16).hex()
            id_header = (_REQUEST_ID, request_id.encode())
        state = scope.get("state")
        if state is None:
            state = scope["state"] = {}
        state["request_id"] = request_id
        status = 500
        responded = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, responded
            if message["type"] == "http.response.start":
                status = message["status"]
                responded = True
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        try:
            if not self.guarded or self.auth.accepts(authorization) or scope["path"] in self.public_paths:
                await self.app(scope, receive, send_with_id)
            else:
                refusal = error_response(
                    401,
                    "AuthenticationError",
                    "this endpoint needs the header 'Authorization: Bearer <token>' with the server's "
                    "KEEL_API_TOKEN" + ("" if authorization is None else "; the token given is not it"),
                    field="Authorization",
                    request_id=request_id,
                    headers={"WWW-Authenticate": "Bearer"},
                )
                await refusal(scope, receive, send_with_id)
        except Exception:
            service_log.exception(
                "unexpected error answering %s %s",
                scope["method"],
                scope["path"],
                extra={"request_id": request_id},
            )
            if responded:  # too late for an error response: let the server drop the connection
                raise
            failure = error_response(
                500,
                "InternalError",
                f"internal error; the server's log has the details under request id {request_id}",
                request_id=request_id,
            )
            await failure(scope, receive, send_with_id)
        finally:
            seconds = perf_counter() - started
            route = self._route(scope)
            self.metrics.observe(scope["method"], route, status, seconds)
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    "%s %s %d",
                    scope["method"],
                    scope["path"],
                    status,
                    extra=_access_fields(scope, request_id, route, status, seconds),
                )

    def _route(self, scope: Scope) -> str:
        """The template of the route that served ``scope`` (``/features``, ``/v1/models/{name}/predict``)."""
        route = scope.get("route")
        path = getattr(route, "path", None)
        if isinstance(path, str):
            return path
        path = scope["path"]
        # Not routed (refused before routing): label it by its route only when it names one exactly.
        if any(getattr(r, "path", None) == path for r in self.routes):
            return str(path)
        return _UNMATCHED


def _access_fields(scope: Scope, request_id: str, route: str, status: int, seconds: float) -> dict[str, Any]:
    client = scope.get("client")
    return {
        "request_id": request_id,
        "method": scope["method"],
        "path": scope["path"],
        "route": route,
        "status": status,
        "duration_ms": round(seconds * 1000, 3),
        "client": client[0] if client else None,
    }
