"""JSON responses and errors, shared by every Keel HTTP service.

Every error a client can get has one shape::

    {"error": {"type": "ValidationError", "message": "...", "field": "entities", "row": 0, "request_id": "..."}}

``type`` is the public Keel error class (``ValidationError``, ``NotFoundError`` ...) or, for errors of the HTTP
layer itself, ``AuthenticationError``, ``MethodNotAllowed`` or ``InternalError``. ``field`` and ``row`` name
the offending input when there is one, else they are ``null``. A body that is not a JSON object at all is a
400, one over the size limit a 413, an invalid field a 422. An unexpected exception becomes a
500 ``InternalError`` whose message gives the request id to look for in the server's log; the traceback is
logged, never sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, time
from decimal import Decimal
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from keel import errors
from keel.errors import (
    BackendError,
    ConfigError,
    ConflictError,
    IntegrityError,
    KeelError,
    MissingExtraError,
    NotFoundError,
    ValidationError,
)

__all__ = [
    "MalformedRequestError",
    "RequestTooLargeError",
    "error_body",
    "error_response",
    "install_error_handlers",
    "json_bytes",
    "json_response",
    "keel_error_response",
    "request_id_of",
    "status_of",
]

#: HTTP status of each Keel error; a subclass takes its nearest listed ancestor's, a KeelError 400.
_STATUS: dict[type[KeelError], int] = {
    ValidationError: 422,
    NotFoundError: 404,
    ConflictError: 409,
    BackendError: 503,
    # The server's own configuration or data is at fault, not the request: the message is still safe to show.
    ConfigError: 500,
    IntegrityError: 500,
    MissingExtraError: 500,
}

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
#: A request validation error lists this many problems, then how many more there are.
_SHOWN_PROBLEMS = 5


class MalformedRequestError(ValidationError):
    """The request body is not what the endpoint reads at all (not JSON, not an object): 400."""


class RequestTooLargeError(MalformedRequestError):
    """The request body is over the server's size limit: 413."""


_STATUS[MalformedRequestError] = 400
_STATUS[RequestTooLargeError] = 413


def _default(value: Any) -> Any:
    """What orjson cannot encode alone: pandas timestamps and missing values, numpy scalars, decimals, sets."""
    if isinstance(value, datetime | date | time):  # subclasses such as pandas.Timestamp
        if value != value:  # NaT
            return None
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    item = getattr(value, "item", None)  # numpy scalars orjson does not take (float16, datetime64 ...)
    if callable(item):
        return item()
    if value is None or type(value).__name__ in ("NAType", "NaTType"):
        return None
    raise TypeError(f"cannot encode {type(value).__name__} {value!r} as JSON")


def json_bytes(content: Any) -> bytes:
    """``content`` as JSON bytes: datetimes in ISO 8601, NaN and infinities as ``null``, numpy values as numbers."""
    return orjson.dumps(content, default=_default, option=_OPTIONS)


def json_response(content: Any, status_code: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """A JSON response encoded by :func:`json_bytes`."""
    return Response(json_bytes(content), status_code=status_code, headers=headers, media_type="application/json")


def status_of(exc: KeelError) -> int:
    """The HTTP status answering ``exc``."""
    for cls in type(exc).__mro__:
        status = _STATUS.get(cls)
        if status is not None:
            return status
    return 400


def _public_type(exc: KeelError) -> str:
    """The name of the nearest class of ``exc`` that :mod:`keel.errors` defines: the stable vocabulary."""
    for cls in type(exc).__mro__:
        if cls.__module__ == errors.__name__:
            return cls.__name__
    return KeelError.__name__


def error_body(
    kind: str,
    message: str,
    *,
    field: str | None = None,
    row: int | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """The JSON body of an error (see the module's docstring)."""
    return {"error": {"type": kind, "message": message, "field": field, "row": row, "request_id": request_id}}


def error_response(
    status_code: int,
    kind: str,
    message: str,
    *,
    field: str | None = None,
    row: int | None = None,
    request_id: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """A JSON error response (see the module's docstring)."""
    body = error_body(kind, message, field=field, row=row, request_id=request_id)
    return json_response(body, status_code, headers)


def request_id_of(request: Request) -> str | None:
    """The id the service middleware gave ``request`` (``None`` outside it)."""
    state = request.scope.get("state")
    return state.get("request_id") if isinstance(state, dict) else None


def keel_error_response(exc: KeelError, request_id: str | None) -> Response:
    """The response answering a Keel error: its status, type, message, field and row."""
    return error_response(
        status_of(exc),
        _public_type(exc),
        str(exc),
        field=getattr(exc, "field", None),
        row=getattr(exc, "row", None),
        request_id=request_id,
    )


async def _keel_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, KeelError)
    return keel_error_response(exc, request_id_of(request))


def _location(loc: tuple[int | str, ...]) -> tuple[str | None, int | None]:
    """A pydantic error location as a dotted field name (without the ``body``/``query`` head) and a row."""
    parts = list(loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc)
    row = next((p for p in parts if isinstance(p, int)), None)
    name = ".".join(str(p) for p in parts) or None
    return name, row


async def _request_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = exc.errors()
    first = problems[0] if problems else {"loc": (), "msg": "invalid request"}
    field, row = _location(tuple(first.get("loc", ())))
    messages = []
    for problem in problems[:_SHOWN_PROBLEMS]:
        where, _ = _location(tuple(problem.get("loc", ())))
        messages.append(f"{where}: {problem.get('msg')}" if where else str(problem.get("msg")))
    if len(problems) > _SHOWN_PROBLEMS:
        messages.append(f"and {len(problems) - _SHOWN_PROBLEMS} more")
    return error_response(
        422, ValidationError.__name__, "; ".join(messages), field=field, row=row, request_id=request_id_of(request)
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    if status == 404:
        kind, message = NotFoundError.__name__, f"no endpoint {request.url.path}; the endpoints are listed at /docs"
    elif status == 405:
        kind, message = "MethodNotAllowed", f"{request.url.path} does not accept {request.method}"
    else:
        try:
            kind = HTTPStatus(status).phrase.title().replace(" ", "")
        except ValueError:
            kind = "HTTPError"
        message = str(exc.detail)
    return error_response(status, kind, message, request_id=request_id_of(request), headers=exc.headers)


def install_error_handlers(app: FastAPI) -> None:
    """Answer Keel errors, request validation errors and HTTP errors of ``app`` with the JSON error shape.

    Unexpected exceptions are answered (500, no traceback) and logged by the service middleware.
    """
    app.add_exception_handler(KeelError, _keel_error)
    app.add_exception_handler(RequestValidationError, _request_validation_error)
    app.add_exception_handler(HTTPException, _http_error)
