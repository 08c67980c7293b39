"""The feature server over HTTP: reads, pushes, and a clear 4xx JSON error for every bad request."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from _serving_project import LAST_SEEN, NOW, build_project
from fastapi.testclient import TestClient

import keel
from keel.errors import BackendError

ALL = [
    "activity:spend",
    "activity:orders",
    "activity:plan",
    "activity:active",
    "activity:last_seen",
    "activity:embedding",
]
GOOD = {"features": ["activity:spend", "activity:plan"], "entities": [{"customer_id": 1}]}
#: Push tests write their own customers, so that they never change what other tests read.
_new_customers = itertools.count(1_000)


@pytest.fixture
def client(feature_project: keel.Project) -> Iterator[TestClient]:
    with TestClient(feature_project.feature_app()) as test_client:
        yield test_client


def assert_good_request_served(client: TestClient) -> None:
    response = client.post("/features", json=GOOD)
    assert response.status_code == 200, response.text
    assert response.json()["features"] == {"spend": [10.5], "plan": ["basic"]}


def assert_validation_error(response: Any, status: int, field: str | None, row: int | None, words: str) -> None:
    """A JSON ValidationError with this status, naming this field and row, without a traceback."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == "ValidationError"
    assert words in error["message"]
    assert (error["field"], error["row"]) == (field, row)
    assert error["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text


# -- reading


def test_features_come_in_entity_order_with_null_for_unknown_entities_and_the_served_version(
    client: TestClient,
) -> None:
    entities = [{"customer_id": 2}, {"customer_id": 999}, {"customer_id": 1}]
    response = client.post("/features", json={"features": ALL, "entities": entities})

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "features": {
            "spend": [20.0, None, 10.5],
            "orders": [2, None, 1],
            "plan": ["premium", None, "basic"],
            "active": [False, None, True],
            "last_seen": [LAST_SEEN.isoformat(), None, LAST_SEEN.isoformat()],
            "embedding": [[0.3, 0.4], None, [0.1, 0.2]],
        },
        "versions": {"activity": 1},
    }


def test_missing_values_are_null_in_json(client: TestClient) -> None:
    response = client.post("/features", json={"features": ["activity:spend"], "entities": [{"customer_id": 3}]})

    assert response.status_code == 200
    assert response.text == '{"features":{"spend":[null]},"versions":{"activity":1}}'


def test_entities_given_as_columns_read_the_same_as_rows(client: TestClient) -> None:
    as_rows = client.post("/features", json={"features": ALL, "entities": [{"customer_id": 1}, {"customer_id": 2}]})
    as_columns = client.post("/features", json={"features": ALL, "entities": {"customer_id": [1, 2]}})

    assert as_columns.status_code == 200
    assert as_columns.json() == as_rows.json()


def test_full_feature_names_and_star_reference(client: TestClient) -> None:
    response = client.post(
        "/features",
        json={"features": ["activity:*"], "entities": [{"customer_id": 2}], "full_feature_names": True},
    )

    assert response.status_code == 200
    assert list(response.json()["features"]) == [f"activity__{ref.split(':')[1]}" for ref in ALL]


def test_many_entities_are_read_off_the_event_loop_and_agree(client: TestClient) -> None:
    ids = [1, 2, 3, 999] * 100  # above the in-loop limit: read in the thread pool
    response = client.post("/features", json={"features": ["activity:orders"], "entities": {"customer_id": ids}})

    assert response.status_code == 200
    assert response.json()["features"]["orders"] == [1, 2, 3, None] * 100


def test_string_keys_of_an_integer_key_are_read_as_integers(client: TestClient) -> None:
    response = client.post("/features", json={"features": ["activity:orders"], "entities": [{"customer_id": "2"}]})

    assert response.status_code == 200
    assert response.json()["features"] == {"orders": [2]}


def test_concurrent_reads_in_the_loop_and_in_the_thread_pool_all_get_their_own_answers(
    feature_project: keel.Project,
) -> None:
    small = {"features": ["activity:orders"], "entities": [{"customer_id": 2}]}
    large = {"features": ["activity:orders"], "entities": {"customer_id": [3, 1] * 200}}

    async def storm() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=feature_project.feature_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            requests = [client.post("/features", json=large if i % 3 else small) for i in range(60)]
            return await asyncio.gather(*requests)

    responses = asyncio.run(storm())

    for i, response in enumerate(responses):
        assert response.status_code == 200, response.text
        expected = [3, 1] * 200 if i % 3 else [2]
        assert response.json()["features"]["orders"] == expected


@pytest.mark.redis
def test_a_networked_online_store_serves_the_same_values(redis_server: str, tmp_path: Any) -> None:
    import uuid
    from urllib.parse import urlsplit, urlunsplit

    name = f"kt{uuid.uuid4().hex[:12]}"
    online = urlunsplit(urlsplit(redis_server)._replace(path="/15"))
    project = build_project(tmp_path / "project", name=name, online=online)
    try:
        with TestClient(project.feature_app()) as client:
            response = client.post("/features", json={"features": ALL, "entities": [{"customer_id": 2}]})
        assert response.status_code == 200, response.text
        assert response.json()["features"]["plan"] == ["premium"]
        assert response.json()["features"]["last_seen"] == [LAST_SEEN.isoformat()]
    finally:
        project.online_store.drop_view("activity")
        project.close()


# -- bad reads: a 4xx JSON error naming the problem, and the server keeps serving

BAD_READS = [
    # (id, body, status, field, row, words in the message)
    ("malformed JSON", b'{"features": [', 400, None, None, "not valid JSON"),
    ("empty body", b"", 400, None, None, "empty"),
    ("body not an object", b'["activity:spend"]', 400, None, None, "must be a JSON object"),
    ("missing features", {"entities": [{"customer_id": 1}]}, 422, "features", None, "lacks the field 'features'"),
    ("missing entities", {"features": ["activity:spend"]}, 422, "entities", None, "lacks the field 'entities'"),
    ("unknown field", {**GOOD, "entity": []}, 422, "entity", None, "unknown field 'entity'"),
    ("features not an array", {**GOOD, "features": "activity:spend"}, 422, "features", None, "must be an array"),
    ("empty features", {**GOOD, "features": []}, 422, "features", None, "empty"),
    ("feature not a string", {**GOOD, "features": ["activity:spend", 3]}, 422, "features[1]", None, "string"),
    ("malformed reference", {**GOOD, "features": ["spend"]}, 422, "spend", None, "malformed feature reference"),
    ("unknown feature", {**GOOD, "features": ["activity:nope"]}, 422, "activity:nope", None, "no feature 'nope'"),
    (
        "entity missing a join key",
        {**GOOD, "entities": [{"customer_id": 1}, {"customer": 2}]},
        422,
        "customer_id",
        1,
        "lacks join key 'customer_id'",
    ),
    (
        "wrong key type",
        {**GOOD, "entities": [{"customer_id": "abc"}]},
        422,
        "customer_id",
        0,
        "must be an integer",
    ),
    ("null key", {**GOOD, "entities": [{"customer_id": None}]}, 422, "customer_id", 0, "must be an integer"),
    ("fractional key", {**GOOD, "entities": [{"customer_id": 1.5}]}, 422, "customer_id", 0, "must be an integer"),
    ("entity not an object", {**GOOD, "entities": [{"customer_id": 1}, 2]}, 422, "entities", 1, "entities[1]"),
    ("entities a string", {**GOOD, "entities": "customer_id=1"}, 422, "entities", None, "array of objects"),
    ("entity column not an array", {**GOOD, "entities": {"customer_id": 1}}, 422, "customer_id", None, "array"),
    (
        "entity columns of different lengths",
        {**GOOD, "entities": {"customer_id": [1, 2], "region": ["eu"]}},
        422,
        None,
        None,
        "different lengths",
    ),
    (
        "full_feature_names not a boolean",
        {**GOOD, "full_feature_names": "yes"},
        422,
        "full_feature_names",
        None,
        "true",
    ),
]


@pytest.mark.parametrize(
    ("body", "status", "field", "row", "words"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD_READS],
)
def test_a_bad_read_gets_a_4xx_json_error_naming_the_problem_and_the_server_keeps_serving(
    client: TestClient, body: Any, status: int, field: str | None, row: int | None, words: str
) -> None:
    if isinstance(body, bytes):
        response = client.post("/features", content=body, headers={"content-type": "application/json"})
    else:
        response = client.post("/features", json=body)

    assert_validation_error(response, status, field, row, words)
    assert_good_request_served(client)


def test_an_unknown_view_is_404_not_found(client: TestClient) -> None:
    response = client.post("/features", json={**GOOD, "features": ["nope:spend"]})

    assert response.status_code == 404
    assert response.json()["error"]["type"] == "NotFoundError"
    assert "unknown feature view 'nope'" in response.json()["error"]["message"]
    assert_good_request_served(client)


def test_a_body_over_the_limit_is_413(feature_project: keel.Project) -> None:
    with TestClient(feature_project.feature_app(max_body_bytes=200)) as client:
        response = client.post("/features", json={**GOOD, "entities": [{"customer_id": i} for i in range(100)]})

        assert response.status_code == 413
        assert "limit of 200 bytes" in response.json()["error"]["message"]
        assert_good_request_served(client)


def test_an_unknown_endpoint_and_a_wrong_method_get_json_errors(client: TestClient) -> None:
    missing = client.get("/feature")
    wrong_method = client.get("/features")

    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "NotFoundError"
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["type"] == "MethodNotAllowed"


def test_an_unexpected_exception_is_a_500_json_without_traceback_and_logged(
    feature_project: keel.Project, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls = 0
    real_get = feature_project.online.get

    def flaky_get(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("secret internal detail")
        return real_get(*args, **kwargs)

    monkeypatch.setattr(feature_project.online, "get", flaky_get)
    with TestClient(feature_project.feature_app()) as client, caplog.at_level(logging.ERROR, "keel.serving"):
        response = client.post("/features", json=GOOD, headers={"X-Request-ID": "req-500"})

        assert response.status_code == 500
        error = response.json()["error"]
        assert error["type"] == "InternalError"
        assert "req-500" in error["message"]
        assert "secret" not in response.text and "Traceback" not in response.text
        assert_good_request_served(client)
    logged = [r for r in caplog.records if getattr(r, "request_id", None) == "req-500"]
    assert logged and logged[0].exc_info is not None
    assert "secret internal detail" in str(logged[0].exc_info[1])


def test_a_failing_store_is_503_naming_it(feature_project: keel.Project, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_get(*args: Any, **kwargs: Any) -> Any:
        raise BackendError("sqlite online store /x/online.db: view 'activity': reading failed: disk I/O error")

    monkeypatch.setattr(feature_project.online, "get", failing_get)
    with TestClient(feature_project.feature_app()) as client:
        response = client.post("/features", json=GOOD)

    assert response.status_code == 503
    assert response.json()["error"]["type"] == "BackendError"
    assert "disk I/O error" in response.json()["error"]["message"]


# -- pushing


def push_row(customer_id: int, **values: Any) -> dict[str, Any]:
    row = {
        "customer_id": customer_id,
        "event_time": NOW.isoformat(),
        "spend": 99.5,
        "orders": 7,
        "plan": "pro",
        "active": True,
        "last_seen": "2025-02-01T08:00:00Z",
        "embedding": [1.0, 2],
    }
    row.update(values)
    return row


def test_pushed_rows_are_served_at_once(client: TestClient) -> None:
    customer = next(_new_customers)
    response = client.post("/push", json={"view": "activity", "rows": [push_row(customer)]})

    assert response.status_code == 200, response.text
    assert response.json() == {"view": "activity", "rows": 1, "online_rows": 1, "offline_version": None, "warnings": []}
    read = client.post("/features", json={"features": ALL, "entities": [{"customer_id": customer}]})
    assert read.json()["features"] == {
        "spend": [99.5],
        "orders": [7],
        "plan": ["pro"],
        "active": [True],
        "last_seen": ["2025-02-01T08:00:00+00:00"],
        "embedding": [[1.0, 2.0]],
    }


def test_a_push_offline_makes_a_new_version_and_says_so(
    tmp_path: Any,
) -> None:
    project = build_project(tmp_path / "project")
    try:
        with TestClient(project.feature_app()) as client:
            rows = [push_row(7, spend=None), push_row(8, event_time=(NOW - timedelta(minutes=5)).isoformat())]
            response = client.post("/push", json={"view": "activity", "rows": rows, "to": "both"})

        assert response.status_code == 200, response.text
        assert response.json()["offline_version"] == 2
        assert response.json()["online_rows"] == 2
        assert [v.version for v in project.feature_versions("activity")] == [1, 2]
    finally:
        project.close()


def test_naive_event_times_are_taken_as_utc_with_a_warning(client: TestClient) -> None:
    naive = datetime.now(UTC).replace(tzinfo=None, microsecond=0).isoformat()
    response = client.post(
        "/push", json={"view": "activity", "rows": [push_row(next(_new_customers), event_time=naive)]}
    )

    assert response.status_code == 200, response.text
    assert any("UTC" in w for w in response.json()["warnings"])


BAD_PUSHES = [
    # (id, body, status, field, row, words in the message)
    ("missing rows", {"view": "activity"}, 422, "rows", None, "lacks the field 'rows'"),
    ("view not a string", {"view": 3, "rows": [{}]}, 422, "view", None, "feature view's name"),
    ("bad target", {"view": "activity", "rows": [{}], "to": "cloud"}, 422, "to", None, "'online', 'offline'"),
    ("rows not an array", {"view": "activity", "rows": {"customer_id": 1}}, 422, "rows", None, "array"),
    ("no rows", {"view": "activity", "rows": []}, 422, "rows", None, "empty"),
    ("row not an object", {"view": "activity", "rows": [push_row(1), 5]}, 422, "rows", 1, "rows[1]"),
    (
        "text in a float column",
        {"view": "activity", "rows": [push_row(1), push_row(2), push_row(3, spend="abc")]},
        422,
        "spend",
        2,
        "is not a number",
    ),
    (
        "fraction in an integer column",
        {"view": "activity", "rows": [push_row(1, orders=2.5)]},
        422,
        "orders",
        0,
        "not an integer",
    ),
    (
        "a join key missing",
        {"view": "activity", "rows": [push_row(1), {k: v for k, v in push_row(2).items() if k != "customer_id"}]},
        422,
        "customer_id",
        1,
        "null",
    ),
    (
        "keys of two types",
        {"view": "activity", "rows": [push_row(1), push_row("2")]},
        422,
        "customer_id",
        1,
        "like the rows before it",
    ),
    (
        "bad event time",
        {"view": "activity", "rows": [push_row(1), push_row(2, event_time="yesterday")]},
        422,
        "event_time",
        1,
        "not an ISO 8601 timestamp",
    ),
    (
        "number as a timestamp",
        {"view": "activity", "rows": [push_row(1, last_seen=1700000000)]},
        422,
        "last_seen",
        0,
        "ISO 8601",
    ),
    (
        "a missing column",
        {"view": "activity", "rows": [{k: v for k, v in push_row(1).items() if k != "plan"}]},
        422,
        "plan",
        None,
        "missing",
    ),
]


@pytest.mark.parametrize(
    ("body", "status", "field", "row", "words"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD_PUSHES],
)
def test_a_bad_push_gets_a_4xx_json_error_naming_the_row_and_the_server_keeps_serving(
    client: TestClient, body: Any, status: int, field: str | None, row: int | None, words: str
) -> None:
    response = client.post("/push", json=body)

    assert_validation_error(response, status, field, row, words)
    assert_good_request_served(client)


def test_a_push_to_an_unknown_view_is_404(client: TestClient) -> None:
    response = client.post("/push", json={"view": "nope", "rows": [push_row(1)]})

    assert response.status_code == 404
    assert "unknown feature view 'nope'" in response.json()["error"]["message"]
    assert_good_request_served(client)


# -- the contract as documented


def test_health_answers_without_touching_the_store(client: TestClient) -> None:
    response = client.get("/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "service": "features", "version": keel.__version__}


def test_openapi_documents_the_request_and_response_bodies(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()

    features = schema["paths"]["/features"]["post"]
    body = features["requestBody"]["content"]["application/json"]["schema"]
    assert {"features", "entities", "full_feature_names"} <= set(body["properties"])
    assert set(body["required"]) == {"features", "entities"}
    assert {"200", "400", "404", "422", "503"} <= set(features["responses"])
    push = schema["paths"]["/push"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(push["required"]) == {"view", "rows"}
    assert client.get("/docs").status_code == 200


def test_the_served_openapi_spec_is_valid(client: TestClient) -> None:
    from openapi_spec_validator import validate

    validate(client.get("/openapi.json").json())


BEYOND_INT64 = 18446744073709551616


@pytest.mark.parametrize(
    "body",
    [
        {"features": ["activity:spend"], "entities": [{"customer_id": BEYOND_INT64}]},
        {"features": ["activity:spend"], "entities": {"customer_id": [1, BEYOND_INT64]}},
    ],
)
def test_a_key_beyond_64_bits_is_a_422_naming_it(client: TestClient, body: dict[str, Any]) -> None:
    response = client.post("/features", json=body)

    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == "customer_id"
    assert "64-bit integer range" in response.json()["error"]["message"]


@pytest.mark.parametrize("column", ["customer_id", "orders"])
def test_a_pushed_integer_beyond_64_bits_is_a_422_naming_the_column(client: TestClient, column: str) -> None:
    row = {
        "customer_id": next(_new_customers),
        "event_time": "2024-01-01T00:00:00Z",
        "spend": 1.0,
        "orders": 1,
        "plan": "basic",
        column: BEYOND_INT64,
    }

    response = client.post("/push", json={"view": "activity", "rows": [row]})

    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == column and "within 64 bits" in response.json()["error"]["message"]
