"""Mirroring runs to MLflow: params, metrics and lineage arrive as they are in Keel's catalog, and the mirrored
pyfunc model predicts exactly what the package predicts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from _training_fixtures import build_project
from keel.training import TrainingSpec

mlflow = pytest.importorskip("mlflow", reason="MLflow interop needs the mlflow extra (installed by the dev extra)")


def test_a_run_is_mirrored_with_params_metrics_lineage_and_a_pyfunc_model(tmp_path: Path) -> None:
    tracking = tmp_path / "mlruns"
    project, labels = build_project(tmp_path / "project", mlflow_uri=str(tracking))
    spec = TrainingSpec(
        "churn",
        labels=labels,
        label="churned",
        features=["activity:spend", "activity:orders", "activity:plan"],
        model=LogisticRegression(max_iter=200),
    )

    run = project.train(spec)

    client = mlflow.MlflowClient(tracking_uri=str(tracking))
    [mirrored] = client.search_runs(
        [client.get_experiment_by_name(project.config.name).experiment_id],
        filter_string=f"tags.`keel.run_id` = '{run.id}'",
    )
    assert mirrored.info.status == "FINISHED"
    assert mirrored.data.metrics["roc_auc"] == pytest.approx(run.metrics["roc_auc"])
    assert mirrored.data.params["estimator.C"] == "1.0"
    versions = run.record.lineage["feature_versions"]
    assert mirrored.data.tags["keel.feature_version.activity"] == str(versions["activity"])
    assert mirrored.data.tags["keel.training_set_digest"] == run.record.lineage["training_set_digest"]
    assert mirrored.data.tags["keel.package_digest"] == run.record.package_digest

    local = client.download_artifacts(mirrored.info.run_id, "model", str(tmp_path / "download"))
    model = mlflow.pyfunc.load_model(local)
    frame = project.historical_features(labels.head(20), spec.features)
    np.testing.assert_array_equal(np.asarray(model.predict(frame)), run.package.predict(frame))


def test_an_unreachable_mlflow_server_warns_and_the_run_is_still_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # fail fast instead of retrying for minutes
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    project, labels = build_project(tmp_path / "project", mlflow_uri="http://127.0.0.1:9/")
    spec = TrainingSpec(
        "churn", labels=labels, label="churned", features=["activity:spend"], model=LogisticRegression()
    )

    with pytest.warns(RuntimeWarning, match="mirroring it failed"):
        run = project.train(spec)

    assert project.runs.get(run.id).status == "finished"
