"""``keel serve``: a pickle-based package is refused without --allow-pickle and served with it; several models
in one service; the options reach the worker processes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits
from typer.testing import CliRunner

from _training_fixtures import build_project
from keel.cli import app
from keel.errors import ValidationError
from keel.training import TrainingSpec

runner = CliRunner()


class MajorityClassifier(BaseEstimator, ClassifierMixin):  # type: ignore[misc]
    """A type outside the trusted libraries: its package is stored with joblib (pickle)."""

    def fit(self, x: Any, y: Any) -> MajorityClassifier:
        values, counts = np.unique(y, return_counts=True)
        self.classes_ = values
        self.majority_ = values[np.argmax(counts)]
        return self

    def predict(self, x: Any) -> Any:
        return np.full(len(x), self.majority_)

    def predict_proba(self, x: Any) -> Any:
        return np.tile((self.classes_ == self.majority_).astype(float), (len(x), 1))


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``custom`` v1 (joblib) and ``churn`` v1 (a safe format, champion)."""
    with threadpool_limits(1):
        project, labels = build_project(tmp_path_factory.mktemp("serve") / "project", n=80)
        labels = labels[["customer_id", "ts", "churned"]]
        for name, model in (("custom", MajorityClassifier()), ("churn", LogisticRegression(max_iter=300))):
            spec = TrainingSpec(
                name, labels=labels, label="churned", features=["activity:*", "profile:age"], model=model
            )
            project.models.register(project.train(spec))
    assert project.models.get("custom:1").package_format == "joblib"
    assert project.models.get("churn:1").package_format != "joblib"  # a safe format: loads without pickle
    project.models.set_alias("churn", "champion", 1)
    project.close()
    return project.root


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """What ``keel serve`` hands the server (instead of running it)."""
    calls: list[dict[str, Any]] = []

    def run_server(app: Any, proj: Any, **kwargs: Any) -> None:
        calls.append({"app": app, "project": proj, **kwargs})

    monkeypatch.setattr("keel.cli._serve.run_server", run_server)
    yield calls
    for call in calls:
        call["project"].close()


RAW = {"spend": 12.5, "orders": 2, "plan": "basic", "active": True, "since": "2023-01-01T00:00:00Z", "age": 40}


def test_a_pickle_package_is_refused_without_allow_pickle(root: Path, served: list[dict[str, Any]]) -> None:
    result = runner.invoke(app, ["serve", "-m", "custom:1", "-p", str(root)])

    assert result.exit_code != 0
    assert isinstance(result.exception, ValidationError)
    assert "joblib" in str(result.exception) and "--allow-pickle" in str(result.exception)
    assert served == []  # never started


def test_the_refusal_is_one_clear_line_and_exit_1(root: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", "from keel.cli import main; main()", "serve", "-m", "custom:1", "-p", str(root)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "error:" in done.stderr and "--allow-pickle" in done.stderr
    assert "Traceback" not in done.stderr


def test_allow_pickle_serves_it_next_to_another_model(root: Path, served: list[dict[str, Any]]) -> None:
    args = ["serve", "-m", "custom:1", "--model", "churn@champion", "--allow-pickle", "-p", str(root)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"

    (call,) = served
    options = orjson.loads(call["environment"]["KEEL_SERVE_OPTIONS"])
    assert options["allow_pickle"] is True and options["cache_ttl_seconds"] == 3600.0
    assert call["environment"]["KEEL_SERVE_MODELS"] == "custom:1,churn@champion"
    with TestClient(call["app"]) as c:
        assert c.get("/ready").json()["models"] == {"custom": 1, "churn": 1}
        assert sorted(m["name"] for m in c.get("/v1/models").json()["models"]) == ["churn", "custom"]
        for name in ("custom", "churn"):
            response = c.post(f"/v1/models/{name}/predict", json={"records": [RAW, {"customer_id": 3, **RAW}]})
            assert response.status_code == 200, response.text
            assert response.json()["model"] == name and len(response.json()["predictions"]) == 2
        majority = c.post("/v1/models/custom/predict", json={"records": [RAW]}).json()["predictions"][0]
        assert majority in (0, 1)


def test_a_worker_process_gets_allow_pickle_too(
    root: Path, served: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    result = runner.invoke(app, ["serve", "-m", "custom:1", "--allow-pickle", "--workers", "2", "-p", str(root)])
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    (call,) = served
    assert call["workers"] == 2
    from keel.cli._serve import PROJECT_VARIABLE, prediction_app_from_environment

    # What a worker does: build its app from the environment keel serve sets.
    for key, value in {**call["environment"], PROJECT_VARIABLE: str(root)}.items():
        monkeypatch.setenv(key, value)
    with TestClient(prediction_app_from_environment()) as c:
        assert c.get("/ready").json()["models"] == {"custom": 1}
    monkeypatch.setenv("KEEL_SERVE_OPTIONS", orjson.dumps({"allow_pickle": False}).decode())
    with pytest.raises(ValidationError, match="joblib"):
        prediction_app_from_environment()
