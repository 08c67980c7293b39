"""Invariant 2, end to end: the same rows scored in process, over HTTP and in batch give identical answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from fastapi.testclient import TestClient
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from _training_fixtures import activity_frame, build_project, profile_frame
from keel.training import TrainingSpec

CUSTOMERS = 20
REFS = ["activity:spend", "activity:orders", "activity:plan", "activity:active", "activity:since", "profile:age"]


def test_in_process_http_and_batch_scoring_agree_exactly(tmp_path: Path) -> None:
    with threadpool_limits(1):
        project, labels = build_project(tmp_path / "project")
        spec = TrainingSpec(
            "churn",
            labels=labels[["customer_id", "ts", "churned"]],
            label="churned",
            features=["activity:*", "profile:age"],
            model=LogisticRegression(max_iter=500),
        )
        version = project.models.register(project.train(spec))
    project.models.set_alias("churn", "champion", version.version)
    now = pd.Timestamp.now(tz="UTC").floor("s")
    for view, frame in (("activity", activity_frame(CUSTOMERS)), ("profile", profile_frame(CUSTOMERS))):
        fresh = frame.assign(event_time=now)
        fresh["event_time"] = fresh["event_time"].astype("datetime64[us, UTC]")
        project.push(view, fresh, to="online")
    ids = list(range(CUSTOMERS))
    features = project.online_features(REFS, [{"customer_id": i} for i in ids]).to_frame()
    package = project.models.load("churn@champion")

    # In process.
    in_process = package.predict(features)
    in_process_proba = package.predict_proba(features)

    # Over HTTP, by entity keys: the service looks the same features up online.
    with TestClient(project.prediction_app(["churn@champion"])) as client:
        response = client.post("/v1/models/churn/predict", json={"records": [{"customer_id": i} for i in ids]})
    assert response.status_code == 200, response.text
    answer = response.json()
    http_proba = np.array([[p[str(c)] for c in package.classes] for p in answer["probabilities"]])

    # In batch, from a file of the same rows.
    rows = tmp_path / "rows.parquet"
    features.assign(customer_id=ids).to_parquet(rows, index=False)
    result = project.predict_batch("churn@champion", rows, tmp_path / "scores.parquet", features="input")
    assert result.ok
    scores = pd.read_parquet(tmp_path / "scores.parquet")
    batch_proba = scores[[f"proba_{c}" for c in package.classes]].to_numpy()

    assert answer["predictions"] == in_process.tolist()
    assert scores["prediction"].tolist() == in_process.tolist()
    np.testing.assert_array_equal(http_proba, in_process_proba)
    np.testing.assert_array_equal(batch_proba, in_process_proba)
    project.close()
