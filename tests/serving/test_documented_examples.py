"""Every request example the feature server documents in its OpenAPI spec is served by it, on the example project
the examples name (a user pasting one from ``/docs`` gets an answer, not an error)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import keel


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Any:
    project = keel.Project.init(tmp_path_factory.mktemp("examples") / "churn", example="churn", customers=200)
    project.apply()
    for view in ("customer_profile", "customer_activity"):
        project.ingest(view)
    project.materialize()
    with TestClient(project.feature_app()) as client:
        yield client, client.get("/openapi.json").json()
    project.close()


def examples(spec: dict[str, Any], path: str) -> list[dict[str, Any]]:
    body = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    schema = spec["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]] if "$ref" in body else body
    found: list[dict[str, Any]] = schema.get("examples", [])
    return found


@pytest.mark.parametrize("path", ["/features", "/push"])
def test_each_documented_example_is_served(served: Any, path: str) -> None:
    client, spec = served
    documented = examples(spec, path)

    assert documented, f"{path} documents no example"
    for example in documented:
        response = client.post(path, json=example)
        assert response.status_code == 200, (example, response.text)


def test_the_prediction_services_documented_example_is_served(tmp_path: Path) -> None:
    project = keel.Project.init(tmp_path / "churn", example="churn", customers=200)
    try:
        project.apply()
        for view in ("customer_profile", "customer_activity"):
            project.ingest(view)
        project.materialize()
        version = project.models.register(project.train("churn"))
        project.models.promote("churn", version.version)
        with TestClient(project.prediction_app(["churn@champion"])) as client:
            spec = client.get("/openapi.json").json()
            operation = spec["paths"]["/v1/models/{name}/predict"]["post"]
            example = operation["requestBody"]["content"]["application/json"]["example"]
            response = client.post("/v1/models/churn/predict", json=example)
    finally:
        project.close()

    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == len(example["records"])
