"""The prediction service over HTTP: the same predictions as the package (invariant 2), by keys, by values
and by both; input validation that names the field and the record; the cache; warnings; hot reload."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from threadpoolctl import threadpool_limits
from typer.testing import CliRunner

import keel
from _training_fixtures import build_project, push_fresh_online, register_churn_versions
from keel.cli import app as cli_app

CUSTOMERS = 12
REFS = ["activity:spend", "activity:orders", "activity:plan", "activity:active", "activity:since", "profile:age"]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[keel.Project]:
    """Two registered versions of ``churn`` (champion: v1) and fresh online rows for a dozen customers."""
    with threadpool_limits(1):
        proj, labels = build_project(tmp_path_factory.mktemp("predict") / "project")
        register_churn_versions(proj, labels)
    proj.models.set_alias("churn", "champion", 1)
    push_fresh_online(proj, CUSTOMERS)
    yield proj
    proj.close()


@pytest.fixture(scope="module")
def client(project: keel.Project) -> Iterator[TestClient]:
    project.models.set_alias("churn", "champion", 1)
    with TestClient(project.prediction_app(["churn@champion"], max_records=50)) as c:
        yield c


def online_frame(project: keel.Project, ids: list[int]) -> pd.DataFrame:
    return project.online_features(REFS, [{"customer_id": i} for i in ids]).to_frame()


def predict(client: TestClient, records: Any, name: str = "churn") -> Any:
    return client.post(f"/v1/models/{name}/predict", json={"records": records})


def assert_same_as_package(answer: dict[str, Any], package: Any, frame: pd.DataFrame) -> None:
    assert answer["predictions"] == package.predict(frame).tolist()
    expected = package.predict_proba(frame)
    got = np.array([[p[str(c)] for c in package.classes] for p in answer["probabilities"]])
    np.testing.assert_array_equal(got, expected)


def explicit_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    records = []
    for row in frame.to_dict("records"):
        records.append(
            {
                "spend": None if pd.isna(row["spend"]) else float(row["spend"]),
                "orders": int(row["orders"]),
                "plan": row["plan"],
                "active": bool(row["active"]),
                "since": row["since"].isoformat(),
                "age": int(row["age"]),
            }
        )
    return records


# -- invariant 2 ---------------------------------------------------------------------------------------------
def test_predictions_by_keys_are_the_packages_on_the_online_rows(client: TestClient, project: keel.Project) -> None:
    ids = list(range(CUSTOMERS))
    response = predict(client, [{"customer_id": i} for i in ids])
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["model"] == "churn"
    assert answer["version"] == 1
    assert_same_as_package(answer, project.models.load("churn:1"), online_frame(project, ids))
    assert len(answer["warnings"]) == CUSTOMERS


def test_predictions_by_raw_values_need_no_keys(client: TestClient, project: keel.Project) -> None:
    frame = online_frame(project, [0, 1, 2, 3])
    response = predict(client, explicit_records(frame))
    assert response.status_code == 200, response.text
    assert_same_as_package(response.json(), project.models.load("churn:1"), frame)


def test_explicit_values_override_looked_up_ones(client: TestClient, project: keel.Project) -> None:
    frame = online_frame(project, [4, 5])
    frame["plan"] = ["basic", "team"]
    frame.loc[1, "orders"] = 7
    records = [{"customer_id": 4, "plan": "basic"}, {"customer_id": 5, "plan": "team", "orders": 7}]
    response = predict(client, records)
    assert response.status_code == 200, response.text
    assert_same_as_package(response.json(), project.models.load("churn:1"), frame)


# -- validation ----------------------------------------------------------------------------------------------
GOOD = {"customer_id": 1}


@pytest.mark.parametrize(
    ("records", "status", "field", "row"),
    [
        ([GOOD, {"customer_id": 2, "orders": "three"}], 422, "orders", 1),
        ([GOOD, GOOD, {"customer_id": 2, "spend": "NaN"}], 422, "spend", 2),
        ([{"customer_id": 2, "orders": 2.5}], 422, "orders", 0),
        ([GOOD, {"customer_id": 2, "active": "yes"}], 422, "active", 1),
        ([{"customer_id": 2, "plan": 3}], 422, "plan", 0),
        ([GOOD, {"customer_id": 2, "since": "not a date"}], 422, "since", 1),
        ([GOOD, {"plan": "pro"}], 422, "customer_id", 1),  # no value for the rest, and no key to look them up
        ([GOOD, {"customer_id": "abc"}], 422, "customer_id", 1),
        ([GOOD, 7], 422, "records", 1),
        ({"customer_id": 1}, 422, "records", None),
        ([GOOD] * 51, 413, None, None),
    ],
)
def test_bad_input_is_a_4xx_naming_field_and_record_and_the_service_keeps_serving(
    client: TestClient, records: Any, status: int, field: str | None, row: int | None
) -> None:
    response = predict(client, records)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["field"] == field
    assert error["row"] == row
    if row is not None:
        assert f"records[{row}]" in error["message"]
    assert predict(client, [GOOD]).status_code == 200


def test_malformed_bodies_are_refused(client: TestClient) -> None:
    not_json = client.post("/v1/models/churn/predict", content=b'{"records": [{"spend": NaN}]}')
    assert not_json.status_code == 400
    error = not_json.json()["error"]
    assert "records[0].spend is NaN" in error["message"] and (error["field"], error["row"]) == ("spend", 0)
    unknown = client.post("/v1/models/churn/predict", json={"records": [], "extra": 1})
    assert unknown.status_code == 422
    assert unknown.json()["error"]["field"] == "extra"
    empty = predict(client, [])
    assert empty.status_code == 200
    assert empty.json()["predictions"] == []


def test_an_unknown_model_is_a_404(client: TestClient) -> None:
    response = predict(client, [GOOD], name="fraud")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "NotFoundError"
    assert "churn" in response.json()["error"]["message"]


# -- warnings ------------------------------------------------------------------------------------------------
def test_warnings_name_unknown_categories_out_of_range_values_and_imputed_ones(client: TestClient) -> None:
    records = [
        {"customer_id": 1, "plan": "enterprise"},
        {"customer_id": 1, "orders": 10_000, "since": "1990-01-01T00:00:00Z"},
        {"customer_id": 1, "spend": None},
        {"customer_id": 99_999},  # no such customer online: every feature is missing, imputed
        {"customer_id": 1},
    ]
    response = predict(client, records)
    assert response.status_code == 200, response.text
    warnings = response.json()["warnings"]
    assert [(w["type"], w["field"]) for w in warnings[0]] == [("unknown_category", "plan")]
    assert [(w["type"], w["field"]) for w in warnings[1]] == [("out_of_range", "orders"), ("out_of_range", "since")]
    assert [(w["type"], w["field"]) for w in warnings[2]] == [("missing_imputed", "spend")]
    assert {w["type"] for w in warnings[3]} == {"missing_imputed"}
    assert len(warnings[3]) == 6
    assert warnings[4] == []


# -- operations ----------------------------------------------------------------------------------------------
def metric(client: TestClient, name: str, **labels: str) -> float:
    text = client.get("/metrics").text
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if match and ",".join(sorted(match[1].split(","))) == wanted:
            return float(match[2])
    return 0.0


def test_models_ready_health_and_metrics(client: TestClient) -> None:
    models = client.get("/v1/models").json()["models"]
    assert [(m["name"], m["ref"], m["version"]) for m in models] == [("churn", "churn@champion", 1)]
    assert len(models[0]["digest"]) == 64
    assert models[0]["loaded_at"]
    assert client.get("/ready").json()["models"] == {"churn": 1}
    assert client.get("/health").status_code == 200
    before = metric(client, "keel_model_requests_total", model="churn", status="200")
    predict(client, [GOOD])
    assert metric(client, "keel_model_requests_total", model="churn", status="200") == before + 1
    predict(client, [GOOD], name="nope")
    assert metric(client, "keel_model_requests_total", model="<unknown>", status="404") >= 1
    assert (
        metric(client, "keel_predictions_total", model="churn", version="1", prediction="0")
        + metric(client, "keel_predictions_total", model="churn", version="1", prediction="1")
        > 0
    )
    assert "keel_model_request_duration_seconds_bucket" in client.get("/metrics").text


def test_a_token_guards_predictions_but_not_health_or_ready(project: keel.Project) -> None:
    app = project.prediction_app(["churn:1"], api_token="secret")
    with TestClient(app) as c:
        assert predict(c, [GOOD]).status_code == 401
        assert c.get("/health").status_code == 200
        assert c.get("/ready").status_code == 200
        ok = c.post("/v1/models/churn/predict", json={"records": [GOOD]}, headers={"Authorization": "Bearer secret"})
        assert ok.status_code == 200
        assert "x-request-id" in ok.headers


# -- cache and promotion -------------------------------------------------------------------------------------
def test_a_repeated_request_hits_the_cache_and_a_promotion_changes_the_answer(project: keel.Project) -> None:
    project.models.set_alias("churn", "champion", 1)
    app = project.prediction_app(["churn@champion"], cache_size=8)
    records = [{"customer_id": 3}, {"customer_id": 6, "plan": "pro"}]
    try:
        with TestClient(app) as c:
            first = predict(c, records).json()
            assert metric(c, "keel_prediction_cache_total", result="miss") == 1
            assert predict(c, records).json() == first
            assert metric(c, "keel_prediction_cache_total", result="hit") == 1
            project.models.set_alias("churn", "champion", 2)
            assert app.state.reload() == ["churn"]
            second = predict(c, records).json()
            assert second["version"] == 2
            assert second["probabilities"] != first["probabilities"]
            assert metric(c, "keel_prediction_cache_total", result="miss") == 2
            frame = online_frame(project, [3, 6])
            frame.loc[1, "plan"] = "pro"
            assert_same_as_package(second, project.models.load("churn:2"), frame)
    finally:
        project.models.set_alias("churn", "champion", 1)


def test_hot_reload_follows_the_alias_in_the_background(project: keel.Project) -> None:
    project.models.set_alias("churn", "champion", 1)
    app = project.prediction_app(["churn@champion"], reload_seconds=0.05)
    try:
        with TestClient(app) as c:
            assert predict(c, [GOOD]).json()["version"] == 1
            project.models.set_alias("churn", "champion", 2)
            deadline = time.monotonic() + 10
            while predict(c, [GOOD]).json()["version"] != 2:
                assert time.monotonic() < deadline, "the service never swapped to version 2"
                time.sleep(0.05)
            assert c.get("/v1/models").json()["models"][0]["version"] == 2
    finally:
        project.models.set_alias("churn", "champion", 1)


def test_the_same_model_twice_or_an_unknown_one_fails_at_startup(project: keel.Project) -> None:
    with pytest.raises(keel.errors.ValidationError, match="twice"):
        project.prediction_app(["churn@champion", "churn:2"])
    with pytest.raises(keel.errors.NotFoundError):
        project.prediction_app(["fraud@champion"])


def test_keel_serve_is_a_command(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli_app, ["serve", "--help"])
    assert result.exit_code == 0
    assert "--model" in result.output


def test_small_requests_on_the_event_loop_and_large_ones_in_the_scoring_thread_agree(project: keel.Project) -> None:
    ids = list(range(20))
    records = [{"customer_id": i} for i in ids]
    answers = []
    for inline in (0, 100):  # every request in the scoring thread / every request on the event loop
        with TestClient(project.prediction_app(["churn:1"], inline_records=inline)) as c:
            answers.append([predict(c, records[i : i + 5]).json() for i in range(0, len(records), 5)])
    assert answers[0] == answers[1]
    assert_same_as_package(
        {k: [v for a in answers[0] for v in a[k]] for k in ("predictions", "probabilities")},
        project.models.load("churn:1"),
        online_frame(project, ids),
    )


def test_the_served_openapi_spec_is_valid_and_declares_the_model_name(client: TestClient) -> None:
    """Schema-driven clients and fuzzers read the spec: it must validate, with the path's ``name`` declared."""
    from openapi_spec_validator import validate

    spec = client.get("/openapi.json").json()

    validate(spec)
    [parameter] = spec["paths"]["/v1/models/{name}/predict"]["post"]["parameters"]
    assert parameter == {"name": "name", "in": "path", "required": True, "schema": {"type": "string", "title": "Name"}}


BEYOND_INT64 = 18446744073709551616


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ({"customer_id": BEYOND_INT64}, "customer_id"),  # a key read from the online store
        ({"customer_id": -BEYOND_INT64}, "customer_id"),
        (
            {
                "orders": BEYOND_INT64,
                "spend": 1.0,
                "plan": "basic",
                "active": True,
                "age": 30,
                "since": "2020-01-01T00:00:00Z",
            },
            "orders",
        ),  # a raw integer feature
    ],
)
def test_an_integer_beyond_64_bits_is_a_422_naming_the_field_and_nothing_is_logged(
    client: TestClient, project: keel.Project, record: dict[str, Any], field: str
) -> None:
    before = len(project.predictions("churn"))

    response = predict(client, [record])

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == field and "64-bit integer range" in error["message"]
    assert predict(client, [{"customer_id": 1}]).status_code == 200  # the service keeps serving
    assert len(project.predictions("churn")) <= before + 1
