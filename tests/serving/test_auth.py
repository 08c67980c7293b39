"""Bearer-token authentication of both HTTP services (``KEEL_API_TOKEN``).

With a token set, every endpoint but the public ones (``/health``, the prediction service's ``/ready``, the docs)
refuses a request without the token, or with another, with 401 and ``WWW-Authenticate: Bearer``. The endpoints
are enumerated from each app's routes, so that an endpoint added later is held to the rule without a test
naming it. Without a token nothing is refused. The token never reaches a log line or a response, it is compared
in constant time, and the OpenAPI document declares the bearer scheme exactly when a token is needed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.routing import Route

import keel
from keel.serving._app import DOCS_PATHS
from keel.serving._logging import JsonFormatter

TOKEN = "s3cret-t0ken-of-the-server"
WRONG = [
    {},
    {"Authorization": "Bearer not-the-token"},
    {"Authorization": f"Bearer {TOKEN}x"},
    {"Authorization": f"Bearer {TOKEN[:-1]}"},
    {"Authorization": "Bearer"},
    {"Authorization": f"Basic {TOKEN}"},
    {"Authorization": TOKEN},
]
RIGHT = {"Authorization": f"Bearer {TOKEN}"}

#: Each service: how a project builds its app, the endpoints served without a token besides the docs, and the
#: endpoints its users rely on (the enumeration must find them).
SERVICES: dict[str, tuple[Callable[..., FastAPI], set[str], set[str]]] = {
    "predictions": (
        lambda project, **kw: project.prediction_app(["churn@champion"], **kw),
        {"/health", "/ready"},
        {"/v1/models/{name}/predict", "/v1/models", "/metrics"},
    ),
    "features": (lambda project, **kw: project.feature_app(**kw), {"/health"}, {"/features", "/push", "/metrics"}),
}


@pytest.fixture(params=sorted(SERVICES))
def service(request: pytest.FixtureRequest) -> tuple[keel.Project, Callable[..., FastAPI], set[str], set[str]]:
    """A service's project, app builder, public paths (with the docs) and the paths its users rely on."""
    name = request.param
    project = request.getfixturevalue("prediction_project" if name == "predictions" else "feature_project")
    build, public, relied_on = SERVICES[name]
    return project, build, public | set(DOCS_PATHS), relied_on


def endpoints(app: FastAPI) -> list[tuple[str, str, str]]:
    """Every (method, route path, concrete URL) the app serves; path parameters take a served model's name."""
    found = []
    for route in app.routes:
        assert isinstance(route, Route), f"a route of another kind escapes this enumeration: {route!r}"
        for method in sorted(route.methods or ()):
            found.append((method, route.path, re.sub(r"{[^}]+}", "churn", route.path)))
    return found


def call(client: TestClient, method: str, url: str, headers: dict[str, str]) -> Any:
    body = {"content": b"{}", "headers": {**headers, "content-type": "application/json"}}
    return client.request(method, url, **(body if method in ("POST", "PUT", "PATCH") else {"headers": headers}))


def test_the_enumeration_finds_every_endpoint_users_rely_on(service: Any) -> None:
    project, build, public, relied_on = service
    paths = {path for _method, path, _url in endpoints(build(project, api_token=TOKEN))}

    assert relied_on | public <= paths


def test_with_keel_api_token_set_every_endpoint_but_the_public_ones_refuses_a_missing_or_wrong_token(
    service: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    project, build, public, _relied_on = service
    monkeypatch.setenv("KEEL_API_TOKEN", TOKEN)
    app = build(project)  # reads the variable
    refused: list[tuple[str, str]] = []
    with TestClient(app) as client:
        for method, path, url in endpoints(app):
            for headers in WRONG:
                response = call(client, method, url, headers)
                if path in public:
                    assert response.status_code != 401, (method, path, headers)
                    continue
                assert response.status_code == 401, (method, path, headers, response.text)
                assert response.headers["www-authenticate"] == "Bearer"
                if method != "HEAD":
                    error = response.json()["error"]
                    assert error["type"] == "AuthenticationError"
                    assert error["field"] == "Authorization"
                    assert "KEEL_API_TOKEN" in error["message"]
                assert TOKEN not in response.text
                refused.append((method, path))
            right = call(client, method, url, RIGHT)
            assert right.status_code != 401, (method, path, right.text)

    assert {path for _method, path in refused} == {path for _m, path, _u in endpoints(app)} - public


def test_the_right_token_is_accepted_whatever_the_case_of_the_scheme(
    service: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    project, build, _public, _relied_on = service
    monkeypatch.setenv("KEEL_API_TOKEN", TOKEN)
    with TestClient(build(project)) as client:
        answers = [
            client.get("/metrics", headers={"Authorization": f"{scheme} {TOKEN}"}) for scheme in ("bearer", "BEARER")
        ]

    assert [a.status_code for a in answers] == [200, 200]


def test_without_keel_api_token_no_endpoint_asks_for_one(service: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    project, build, _public, _relied_on = service
    monkeypatch.delenv("KEEL_API_TOKEN", raising=False)
    app = build(project)
    with TestClient(app) as client:
        for method, path, url in endpoints(app):
            for headers in ({}, {"Authorization": "Bearer anything"}):
                response = call(client, method, url, headers)
                assert response.status_code != 401, (method, path, headers, response.text)
                assert "www-authenticate" not in response.headers


def test_an_empty_keel_api_token_turns_authentication_off(service: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    project, build, _public, _relied_on = service
    monkeypatch.setenv("KEEL_API_TOKEN", "")
    with TestClient(build(project)) as client:
        assert client.get("/metrics").status_code == 200


def test_the_openapi_document_declares_the_bearer_scheme_exactly_when_a_token_is_needed(service: Any) -> None:
    project, build, public, _relied_on = service
    with TestClient(build(project, api_token=TOKEN)) as client:
        guarded = client.get("/openapi.json").json()
    with TestClient(build(project, api_token="")) as client:
        open_ = client.get("/openapi.json").json()

    assert guarded["components"]["securitySchemes"] == {
        "bearer": {"type": "http", "scheme": "bearer", "description": "The server's KEEL_API_TOKEN."}
    }
    for path, operations in guarded["paths"].items():
        for operation in operations.values():
            assert operation.get("security") == (None if path in public else [{"bearer": []}]), path
            assert "401" in operation["responses"], path
    assert "securitySchemes" not in open_.get("components", {})
    assert all("security" not in op for ops in open_["paths"].values() for op in ops.values())


def test_the_token_never_reaches_a_log_line_or_a_response(
    service: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    project, build, _public, _relied_on = service
    monkeypatch.setenv("KEEL_API_TOKEN", TOKEN)
    app = build(project)
    caplog.set_level(logging.DEBUG)
    with TestClient(app, raise_server_exceptions=False) as client:
        texts = [
            call(client, method, url, headers).text
            for method, _path, url in endpoints(app)
            for headers in (RIGHT, {"Authorization": f"Bearer {TOKEN}x"}, {"Authorization": f"Basic {TOKEN}"})
        ]
    lines = [JsonFormatter().format(record) for record in caplog.records]

    assert any('"status":401' in line for line in lines), "no access log line was captured"
    assert not [line for line in lines if TOKEN in line]
    assert not [text for text in texts if TOKEN in text]


def test_the_token_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    import hmac

    from keel.serving._auth import BearerAuth

    compare = hmac.compare_digest
    compared: list[tuple[bytes, bytes]] = []

    def spy(given: bytes, expected: bytes) -> bool:
        compared.append((given, expected))
        return compare(given, expected)

    monkeypatch.setattr("keel.serving._auth.hmac.compare_digest", spy)
    auth = BearerAuth(TOKEN)

    assert auth.accepts(b"Bearer nope") is False
    assert auth.accepts(f"Bearer {TOKEN}".encode()) is True
    assert compared == [(b"nope", TOKEN.encode()), (TOKEN.encode(), TOKEN.encode())]
