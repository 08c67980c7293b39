"""Schema-driven fuzzing of both HTTP services, served by uvicorn: whatever a client sends, the answer is never
a 5xx, always conforms to the served OpenAPI document (documented status, content type and body schema; a
declared bearer token enforced), and the service keeps answering ``/health`` afterwards.

The run is derandomized (the same requests every time) and bounded to a few hundred requests in total. For a
longer run, set the examples per operation and generation mode (default 16)::

    KEEL_FUZZ_EXAMPLES=300 .venv/bin/python -m pytest tests/serving/test_fuzz.py -s

Each test prints its report (cases sent, statuses, 5xx, distinct spec violations) as one JSON line, and
appends it to the file ``KEEL_FUZZ_REPORT`` names when set.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from _fuzz import FuzzReport, fuzz, json_values, rows_of
from hypothesis import strategies as st

import keel
from keel.serving import background_server

# Read when the module loads: the suite's autouse fixture clears KEEL_* variables before each test.
EXAMPLES = int(os.environ.get("KEEL_FUZZ_EXAMPLES") or 16)
REPORT_FILE = os.environ.get("KEEL_FUZZ_REPORT")
TOKEN = "fuzz-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def timestamps() -> st.SearchStrategy[str]:
    """ISO 8601 texts over every year Python knows, in any UTC offset (pandas' nanosecond timestamps stop at
    1677 and 2262), and texts just outside the years 1 to 9999."""
    offsets = st.timedeltas(min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23, minutes=59))
    zones = st.none() | st.just(UTC) | offsets.map(timezone)
    edges = st.sampled_from(
        ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59-14:00", "-0001-01-01", "0000-01-01", "+10000-01-01", "now"]
    )
    return st.datetimes(timezones=zones).map(datetime.isoformat) | edges


def publish(report: FuzzReport) -> None:
    line = json.dumps(report.summary(), ensure_ascii=False)
    print(line)
    if REPORT_FILE:
        with Path(REPORT_FILE).open("a") as out:
            out.write(line + "\n")


def assert_clean(report: FuzzReport) -> None:
    assert report.cases >= EXAMPLES, report.explain()
    assert report.server_errors == 0, report.explain()
    assert report.failures == {}, report.explain()
    assert report.healthy_after is True, report.explain()


# -- the prediction service ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def prediction_url(prediction_project: keel.Project) -> Iterator[str]:
    """The prediction service of ``churn@champion`` with a token, served by uvicorn in this process."""
    app = prediction_project.prediction_app(["churn@champion"], api_token=TOKEN, max_records=50)
    with background_server(app) as url:
        yield url


PREDICT = "POST /v1/models/{name}/predict"
RECORD_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "customer_id": st.integers(-2, 20) | st.integers(),
    "spend": st.floats(allow_nan=False, allow_infinity=False),
    "orders": st.integers(),
    "plan": st.sampled_from(["basic", "pro", "team", "unheard-of"]),
    "active": st.booleans(),
    "since": timestamps(),
    "age": st.integers(),
}


def test_the_prediction_service_survives_fuzzing_and_keeps_to_its_spec(prediction_url: str) -> None:
    report = fuzz(
        prediction_url,
        service="predictions",
        examples=EXAMPLES,
        headers=AUTH,
        path_parameters={PREDICT: {"name": "churn"}},
        bodies={PREDICT: st.fixed_dictionaries({"records": rows_of(RECORD_FIELDS)})},
        stateful=True,
    )
    publish(report)

    assert_clean(report)


# -- the feature server --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def feature_url(feature_project: keel.Project) -> Iterator[str]:
    """The feature server of a materialized project with a token, served by uvicorn in this process."""
    with background_server(feature_project.feature_app(api_token=TOKEN)) as url:
        yield url


FEATURE_REFS = st.sampled_from(
    [
        "activity:spend",
        "activity:plan",
        "activity:last_seen",
        "activity:embedding",
        "activity:*",
        "activity@1:orders",
        "activity@2:orders",
        "activity@0:orders",
        "activity@99999999999999999999999:orders",
        "activity@latest:active",
        "activity:nope",
        "nope:spend",
    ]
)
ACTIVITY_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "customer_id": st.integers(0, 5) | st.integers(),
    "event_time": timestamps(),
    "spend": st.floats(allow_nan=False, allow_infinity=False),
    "orders": st.integers(),
    "plan": st.text(max_size=10),
    "active": st.booleans(),
    "last_seen": timestamps(),
    "embedding": st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=3),
}
KEYS = st.sampled_from(["customer_id", "customer", ""])
FEATURE_BODIES = st.fixed_dictionaries(
    {
        "features": st.lists(FEATURE_REFS | st.text(max_size=12), max_size=3),
        "entities": st.one_of(
            st.lists(st.dictionaries(KEYS, st.integers(-1, 5) | json_values(), max_size=2), max_size=4),
            st.dictionaries(KEYS, st.lists(st.integers(-1, 5) | json_values(), max_size=4), max_size=2),
            json_values(),
        ),
    },
    optional={"full_feature_names": st.booleans() | json_values()},
)
#: Rows of the served view, to each store: the schema-generated bodies already try other views and targets.
PUSH_BODIES = st.fixed_dictionaries(
    {
        "view": st.just("activity"),
        "rows": rows_of(ACTIVITY_FIELDS),
        "to": st.sampled_from(["online", "offline", "both"]),
    }
)


def test_the_feature_server_survives_fuzzing_and_keeps_to_its_spec(feature_url: str) -> None:
    report = fuzz(
        feature_url,
        service="features",
        examples=EXAMPLES,
        headers=AUTH,
        bodies={"POST /features": FEATURE_BODIES, "POST /push": PUSH_BODIES},
    )
    publish(report)

    assert_clean(report)


# -- what fuzzing found --------------------------------------------------------------------------------------
ROW = {
    "customer_id": 77,
    "event_time": "2025-01-05T10:00:00Z",
    "spend": 1.0,
    "orders": 1,
    "plan": "basic",
    "active": True,
    "last_seen": "2025-01-05T10:00:00Z",
    "embedding": [0.5],
}


@pytest.mark.parametrize("to", ["online", "offline", "both"])
@pytest.mark.parametrize(
    ("last_seen", "problem"),
    [
        # pandas reads a negative year; the offline store's statistics then failed (a 503 BackendError)
        ("-0001-01-01", "which is not an ISO 8601 timestamp"),
        ("now", "which is not an ISO 8601 timestamp"),
        # 10000-01-01T13:59:59Z once in UTC: past what a timestamp can hold (the same 503 before)
        ("9999-12-31T23:59:59-14:00", "outside the years 1 to 9999 (UTC) that a timestamp can hold"),
    ],
)
def test_a_pushed_timestamp_outside_what_keel_stores_is_a_422_naming_the_field_and_row(
    feature_project: keel.Project, to: str, last_seen: str, problem: str
) -> None:
    from fastapi.testclient import TestClient

    rows = [ROW, {**ROW, "last_seen": last_seen}]
    with TestClient(feature_project.feature_app()) as client:
        response = client.post("/push", json={"view": "activity", "rows": rows, "to": to})
        after = client.post("/push", json={"view": "activity", "rows": [ROW], "to": to})

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["type"], error["field"], error["row"]) == ("ValidationError", "last_seen", 1)
    assert error["message"] == f"feature view 'activity', column 'last_seen': row 1 has {last_seen!r}, {problem}"
    assert after.status_code == 200, after.text


def test_the_predict_body_is_documented_as_closed_and_an_unknown_field_is_a_422_naming_it(
    prediction_project: keel.Project,
) -> None:
    from fastapi.testclient import TestClient

    with TestClient(prediction_project.prediction_app(["churn@champion"])) as client:
        spec = client.get("/openapi.json").json()
        response = client.post("/v1/models/churn/predict", json={"records": [{"customer_id": 1}], "recrods": []})

    body = spec["paths"]["/v1/models/{name}/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["additionalProperties"] is False
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "recrods"


def test_the_listed_models_link_to_predicting_with_them(prediction_project: keel.Project) -> None:
    from fastapi.testclient import TestClient

    with TestClient(prediction_project.prediction_app(["churn@champion"])) as client:
        spec = client.get("/openapi.json").json()
        listed = client.get("/v1/models").json()
        link = spec["paths"]["/v1/models"]["get"]["responses"]["200"]["links"]["PredictWithTheFirstModel"]
        pointer = link["parameters"]["name"].removeprefix("$response.body#")
        name = listed
        for part in pointer.strip("/").split("/"):
            name = name[int(part)] if isinstance(name, list) else name[part]
        path = link["operationRef"].removeprefix("#/paths/").split("/")[0].replace("~1", "/")
        answer = client.post(path.replace("{name}", name), json={"records": [{"customer_id": 1}]})

    assert "post" in spec["paths"][path]
    assert name == "churn"
    assert answer.status_code == 200, answer.text
