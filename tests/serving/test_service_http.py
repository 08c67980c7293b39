"""What every Keel HTTP service shares: JSON errors, bearer tokens, request ids, metrics and JSON logs."""

from __future__ import annotations

import json
import logging
import math
import re
import sys
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

import keel
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
from keel.serving import create_service_app
from keel.serving._http import json_bytes
from keel.serving._logging import JsonFormatter

GOOD = {"features": ["activity:spend"], "entities": [{"customer_id": 1}]}


class Order(BaseModel):
    customer_id: int
    amount: float


def service_app(**options: Any) -> FastAPI:
    """A bare service whose routes raise what the test asks for."""
    app = create_service_app(title="test service", service="test", **options)
    failures: dict[str, Exception] = {
        "validation": ValidationError("row 3 of 'x' is bad", field="x", row=3),
        "not-found": NotFoundError("no model 'churn'"),
        "conflict": ConflictError("version 3 exists"),
        "backend": BackendError("redis at 127.0.0.1:6379: connection refused"),
        "config": ConfigError("online: unknown scheme 'foo://'"),
        "integrity": IntegrityError("artifact abc: digest mismatch"),
        "extra": MissingExtraError("redis", "redis", "the Redis online store"),
        "keel": KeelError("something Keel refused"),
        "unexpected": ZeroDivisionError("division by zero in secret_function"),
    }

    @app.get("/fail/{kind}")
    def fail(kind: str) -> None:
        raise failures[kind]

    @app.post("/orders")
    def orders(order: Order) -> dict[str, float]:
        return {"total": order.amount}

    return app


@pytest.mark.parametrize(
    ("kind", "status", "type_"),
    [
        ("validation", 422, "ValidationError"),
        ("not-found", 404, "NotFoundError"),
        ("conflict", 409, "ConflictError"),
        ("backend", 503, "BackendError"),
        ("config", 500, "ConfigError"),
        ("integrity", 500, "IntegrityError"),
        ("extra", 500, "MissingExtraError"),
        ("keel", 400, "KeelError"),
    ],
)
def test_each_keel_error_has_its_status_and_json_body(kind: str, status: int, type_: str) -> None:
    with TestClient(service_app()) as client:
        response = client.get(f"/fail/{kind}")

    assert response.status_code == status
    error = response.json()["error"]
    assert error["type"] == type_
    assert error["message"]
    assert error["request_id"] == response.headers["x-request-id"]


def test_a_validation_error_carries_its_field_and_row() -> None:
    with TestClient(service_app()) as client:
        error = client.get("/fail/validation").json()["error"]

    assert error == {
        "type": "ValidationError",
        "message": "row 3 of 'x' is bad",
        "field": "x",
        "row": 3,
        "request_id": error["request_id"],
    }


def test_an_unexpected_exception_is_a_500_without_its_message_or_traceback() -> None:
    with TestClient(service_app(), raise_server_exceptions=False) as client:
        response = client.get("/fail/unexpected", headers={"X-Request-ID": "trace-me"})
        after = client.get("/health")

    assert response.status_code == 500
    assert response.json()["error"]["type"] == "InternalError"
    assert "trace-me" in response.json()["error"]["message"]
    assert "secret_function" not in response.text and "Traceback" not in response.text
    assert after.status_code == 200


def test_a_body_model_error_names_the_field_in_the_same_shape() -> None:
    with TestClient(service_app()) as client:
        response = client.post("/orders", json={"customer_id": 1, "amount": "lots"})

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["type"] == "ValidationError"
    assert error["field"] == "amount"
    assert "amount:" in error["message"]


# -- authentication


def test_without_a_token_configured_requests_need_none(
    feature_project: keel.Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KEEL_API_TOKEN", raising=False)
    with TestClient(feature_project.feature_app()) as client:
        assert client.post("/features", json=GOOD).status_code == 200
        assert client.get("/metrics").status_code == 200


def test_with_keel_api_token_every_endpoint_but_health_and_docs_needs_it(
    feature_project: keel.Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEEL_API_TOKEN", "s3cret-token")
    with TestClient(feature_project.feature_app()) as client:
        missing = client.post("/features", json=GOOD)
        wrong = client.post("/features", json=GOOD, headers={"Authorization": "Bearer nope"})
        right = client.post("/features", json=GOOD, headers={"Authorization": "Bearer s3cret-token"})
        scheme_case = client.post("/features", json=GOOD, headers={"Authorization": "bearer s3cret-token"})
        basic = client.post("/features", json=GOOD, headers={"Authorization": "Basic s3cret-token"})
        push = client.post("/push", json={"view": "activity", "rows": []})
        metrics = client.get("/metrics")
        public = [client.get(path).status_code for path in ("/health", "/docs", "/openapi.json")]

    for refused in (missing, wrong, basic, push, metrics):
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == "Bearer"
        assert refused.json()["error"]["type"] == "AuthenticationError"
        assert "s3cret" not in refused.text
    assert "not it" in wrong.json()["error"]["message"]
    assert right.status_code == 200 and scheme_case.status_code == 200
    assert public == [200, 200, 200]


def test_the_docs_declare_the_bearer_token_when_one_is_needed(feature_project: keel.Project) -> None:
    with TestClient(feature_project.feature_app(api_token="t")) as client:
        schema = client.get("/openapi.json").json()

    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert schema["paths"]["/features"]["post"]["security"] == [{"bearer": []}]
    assert "security" not in schema["paths"]["/health"]["get"]


# -- request ids


def test_a_request_id_is_echoed_or_made() -> None:
    with TestClient(service_app()) as client:
        given = client.get("/health", headers={"X-Request-ID": "client-id.42"})
        made = client.get("/health")
        forged = client.get("/health", headers={"X-Request-ID": "x" * 200})

    assert given.headers["x-request-id"] == "client-id.42"
    assert re.fullmatch("[0-9a-f]{32}", made.headers["x-request-id"])
    assert re.fullmatch("[0-9a-f]{32}", forged.headers["x-request-id"])


# -- metrics


def test_metrics_count_requests_and_latency_by_route_and_status(feature_project: keel.Project) -> None:
    with TestClient(feature_project.feature_app()) as client:
        client.post("/features", json=GOOD)
        client.post("/features", json=GOOD)
        client.post("/features", json={"features": []})
        client.get("/no/such/path")
        text = client.get("/metrics").text

    assert 'keel_http_requests_total{method="POST",route="/features",status="200"} 2.0' in text
    assert 'keel_http_requests_total{method="POST",route="/features",status="422"} 1.0' in text
    assert 'keel_http_requests_total{method="GET",route="<unmatched>",status="404"} 1.0' in text
    assert 'keel_http_request_duration_seconds_count{method="POST",route="/features",status="200"} 2.0' in text
    assert 'keel_http_request_duration_seconds_bucket{le="0.0005",method="POST",route="/features",status="200"}' in text


def test_two_apps_in_one_process_keep_their_own_metrics() -> None:
    first, second = service_app(), service_app()
    with TestClient(first) as one, TestClient(second) as two:
        one.get("/health")
        one.get("/health")
        two.get("/health")
        first_text, second_text = one.get("/metrics").text, two.get("/metrics").text

    assert 'keel_http_requests_total{method="GET",route="/health",status="200"} 2.0' in first_text
    assert 'keel_http_requests_total{method="GET",route="/health",status="200"} 1.0' in second_text


# -- JSON values and logs


def test_json_values_are_json_safe() -> None:
    values = {
        "nan": math.nan,
        "inf": math.inf,
        "datetime": datetime(2025, 1, 5, 10, 30, tzinfo=UTC),
        "date": date(2025, 1, 5),
        "timestamp": pd.Timestamp("2025-01-05T10:30:00Z"),
        "nat": pd.NaT,
        "na": pd.NA,
        "numpy": [np.int64(3), np.float32(0.5), np.bool_(True)],
        "array": np.array([1.5, 2.5]),
        "decimal": Decimal("1.25"),
    }

    assert json.loads(json_bytes(values)) == {
        "nan": None,
        "inf": None,
        "datetime": "2025-01-05T10:30:00+00:00",
        "date": "2025-01-05",
        "timestamp": "2025-01-05T10:30:00+00:00",
        "nat": None,
        "na": None,
        "numpy": [3, 0.5, True],
        "array": [1.5, 2.5],
        "decimal": 1.25,
    }


def test_log_records_are_one_json_object_per_line_with_their_fields() -> None:
    try:
        raise ValueError("bad thing")
    except ValueError:
        record = logging.LogRecord("keel.serving", logging.ERROR, __file__, 1, "failed %s", ("here",), sys.exc_info())
    record.request_id = "abc"

    line = JsonFormatter().format(record)

    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "failed here"
    assert entry["level"] == "error"
    assert entry["request_id"] == "abc"
    assert "ValueError: bad thing" in entry["exception"]
