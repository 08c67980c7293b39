"""`keel validate skew MODEL@ALIAS` on a served project: online values against offline ones for a sample of entities,
and the prediction log's features against training; a table, JSON and HTML, exit 1 when skew is found."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

import keel
from _training_fixtures import build_project
from keel.cli import app
from keel.cli._common import console
from keel.training import RandomSplit, TrainingSpec

runner = CliRunner()
FEATURES = ["activity:spend", "activity:orders", "activity:plan", "profile:age"]
INPUTS = ["spend", "orders", "plan", "age"]


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(console, "_width", 250)


@pytest.fixture
def served(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    project, labels = build_project(tmp_path / "p", n=1500)
    spec = TrainingSpec(
        "churn",
        labels=labels[["customer_id", "ts", "churned"]],
        label="churned",
        features=FEATURES,
        model=LogisticRegression(max_iter=500),
        split=RandomSplit(validation_fraction=0.3),
        seed=3,
    )
    version = project.models.register(project.train(spec))
    project.models.promote("churn", version.version)
    project.materialize(end=datetime.now(UTC))
    training = project.historical_features(labels[["customer_id", "ts"]], FEATURES)
    project.close()
    return tmp_path / "p", training


def serve(root: Path, rows: pd.DataFrame) -> None:
    records: list[dict[str, Any]] = [
        {"customer_id": 10_000 + i, **{k: (None if pd.isna(v) else v) for k, v in r.items()}}
        for i, r in enumerate(rows[INPUTS].astype(object).to_dict("records"))
    ]
    with keel.Project.open(root) as project, TestClient(project.prediction_app(["churn@champion"])) as client:
        for start in range(0, len(records), 250):
            response = client.post("/v1/models/churn/predict", json={"records": records[start : start + 250]})
            assert response.status_code == 200, response.text


def skew(root: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["validate", "skew", "churn@champion", "-p", str(root), *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def test_a_model_served_as_trained_from_a_materialized_store_has_no_skew(served: tuple[Path, pd.DataFrame]) -> None:
    root, training = served
    serve(root, training.sample(n=1500, replace=True, random_state=1))

    code, out = skew(root, "--json", str(root / "skew.json"), "--html", str(root / "skew.html"))

    assert code == 0, out
    document = json.loads((root / "skew.json").read_text())
    profile = next(o for o in document["online"] if o["view"] == "profile")
    assert profile["sampled"] == 1000 and profile["cases"]["same"] == 1000 and profile["errors"] == {}
    activity = next(o for o in document["online"] if o["view"] == "activity")
    assert activity["entities"] == 0  # a 7-day TTL over data from 2024: nothing is valid online now, nor offline
    assert document["serving"]["rows"] == 1500 and document["serving"]["skewed"] == []
    assert "as trained" in out and "SKEWED" not in out
    page = (root / "skew.html").read_text()
    assert page.count("<svg") == len(INPUTS) and "<script" not in page


def test_online_values_that_differ_and_a_feature_served_in_other_units_fail(served: tuple[Path, pd.DataFrame]) -> None:
    root, training = served
    with keel.Project.open(root) as project:
        profile = pd.read_parquet(root / "data" / "profile.parquet").iloc[:60].copy()
        profile["age"] = profile["age"] * 12  # months online, years offline
        project.push("profile", profile, to="online")
    rows = training.sample(n=1500, replace=True, random_state=2)
    rows["spend"] = rows["spend"] * 100
    serve(root, rows)

    code, out = skew(root, "--json", str(root / "skew.json"), "-n", "1500")

    assert code == 1, out
    document = json.loads((root / "skew.json").read_text())
    profile_skew = next(o for o in document["online"] if o["view"] == "profile")
    assert profile_skew["errors"] == {"value differs": 60} and profile_skew["features"] == {"age": 60}
    assert document["serving"]["skewed"] == ["spend"]
    assert "profile.age: 60 sampled entities differ" in out and "SKEWED" in out
    assert "training/serving skew found" in out
