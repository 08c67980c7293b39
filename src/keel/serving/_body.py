"""Reading and checking JSON request bodies by hand.

The hot endpoints parse their body with orjson and check the few fields they read directly: it is several
times cheaper per request than FastAPI's body models, and the errors name the field (and row) just as well.
The body models in :mod:`keel.serving._schemas` still describe these bodies in the OpenAPI documentation.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import orjson
from starlette.requests import Request

from keel.errors import ValidationError
from keel.serving._http import MalformedRequestError, RequestTooLargeError

__all__ = ["check_fields", "json_type", "read_json_object"]

_JSON_TYPES = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


def json_type(value: Any) -> str:
    """How JSON calls the type of a parsed value, for error messages ("an object", "a string" ...)."""
    return _JSON_TYPES.get(type(value), type(value).__name__)


async def read_json_object(request: Request, *, max_bytes: int) -> dict[str, Any]:
    """The request's body parsed as a JSON object.

    Raises:
        RequestTooLargeError: the body is over ``max_bytes`` (413).
        MalformedRequestError: the body is empty, is not JSON, or is not a JSON object (400).
    """
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise RequestTooLargeError(f"the request body is over the server's limit of {max_bytes:,} bytes")
        chunks.append(chunk)
    raw = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    if not raw.strip():
        raise MalformedRequestError("the request body is empty; send a JSON object")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _non_finite(raw) or MalformedRequestError(f"the request body is not valid JSON: {exc}") from None
    if type(body) is not dict:
        raise MalformedRequestError(f"the request body must be a JSON object, got {json_type(body)}")
    return body


class _Constant(str):
    """``NaN``, ``Infinity`` or ``-Infinity`` where a body has it (JSON has no such number)."""


def _non_finite(raw: bytes) -> MalformedRequestError | None:
    """The error naming where a body holds ``NaN`` or ``Infinity`` (which Python's ``json.dumps`` writes, but JSON
    has no such number; still a 400, the body is not JSON), as a bad value there is named; ``None`` when that is
    not why the body is not JSON. Only a refused body is read this way: the accepted ones are parsed once, by
    orjson."""
    import json

    try:
        body = json.loads(raw, parse_constant=_Constant)
    except (ValueError, RecursionError):
        return None
    stack: list[tuple[str, Any, int | None]] = [("", body, None)]
    while stack:
        path, value, row = stack.pop()
        if isinstance(value, _Constant):
            name = path.rpartition(".")[2] or None
            return MalformedRequestError(
                f"the request body is not valid JSON: {path.lstrip('.')} is {value}, which JSON has no number for; "
                "send a finite number, or null to impute it",
                field=name,
                row=row,
            )
        if isinstance(value, dict):
            stack.extend((f"{path}.{k}", v, row) for k, v in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", v, i if row is None else row) for i, v in reversed(list(enumerate(value))))
    return None


def check_fields(body: dict[str, Any], *, required: Collection[str], optional: Collection[str] = ()) -> None:
    """Refuse a body missing a required field or holding an unknown one, naming it.

    Raises:
        ValidationError: with ``field`` set to the missing or unknown field.
    """
    for name in required:
        if name not in body:
            raise ValidationError(f"the request body lacks the field {name!r}", field=name)
    if len(body) > len(required):
        for name in body:
            if name not in required and name not in optional:
                known = ", ".join(repr(n) for n in (*required, *optional))
                raise ValidationError(f"unknown field {name!r} in the request body; the fields are {known}", field=name)
