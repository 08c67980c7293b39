"""One monitoring check end to end on a small project: reference profile stored at training, drift, quality,
decay, the stored report and its audit events, the HTML page."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier

import keel
from _training_fixtures import build_project
from keel._time import parse_duration
from keel.errors import NotFoundError, ValidationError
from keel.monitoring import MonitorSettings, ReferenceProfile, default_html_path, write_html
from keel.training import RandomSplit, TrainingSpec

FEATURES = ["activity:spend", "activity:orders", "activity:plan", "activity:active", "profile:age"]


def _spec(labels: pd.DataFrame) -> TrainingSpec:
    return TrainingSpec(
        "churn",
        labels=labels,
        label="churned",
        features=FEATURES,
        model=HistGradientBoostingClassifier(max_iter=30, early_stopping=False),
        split=RandomSplit(validation_fraction=0.3),
        seed=3,
    )


@pytest.fixture
def served(tmp_path: Path) -> tuple[keel.Project, pd.DataFrame]:
    project, labels = build_project(tmp_path, n=600)
    run = project.train(_spec(labels))
    version = project.models.register(run)
    project.models.promote("churn", version.version)
    return project, labels


def _current(project: keel.Project, labels: pd.DataFrame, n: int = 600, seed: int = 11) -> pd.DataFrame:
    """Rows drawn from the labelled set the model was trained and validated on (a random split, so both parts
    share its distribution): the model's input columns, the label and its timestamp."""
    frame = project.historical_features(labels[["customer_id", "ts", "churned"]], FEATURES)
    return frame.sample(n=n, replace=True, random_state=seed).reset_index(drop=True)


def test_training_stores_a_reference_profile_of_the_inputs_and_predictions(
    served: tuple[keel.Project, pd.DataFrame],
) -> None:
    project, _ = served
    run = project.models.run_of("churn@champion")
    entry = run.lineage["reference_profile"]
    profile = ReferenceProfile.from_bytes(project.artifacts.get_bytes(entry["digest"]))
    package = project.models.load("churn@champion")
    assert set(profile.columns) == set(package.schema.names)
    assert profile.rows == entry["rows"] == run.lineage["rows"]["train"]
    assert profile.columns["spend"].kind == "numeric" and profile.columns["plan"].kind == "categorical"
    assert profile.prediction is not None and profile.prediction.kind == "numeric"  # P(churned = 1)
    assert 0.0 <= profile.prediction.minimum <= profile.prediction.maximum <= 1.0


def test_rows_like_the_training_data_stay_within_thresholds(served: tuple[keel.Project, pd.DataFrame]) -> None:
    project, labels = served
    report = project.monitor("churn@champion", current=_current(project, labels))
    assert not report.crossed, report.verdict
    assert report.drift is not None and report.drift.drifted_features == []
    stored = project.catalog.monitoring_report(report.id)
    assert stored.crossed is False and stored.version == 1
    assert stored.report["drift"]["share"] == report.drift.share
    assert [e.kind for e in project.catalog.monitoring_events("churn")] == ["checked"]


def test_a_shifted_feature_is_drift_and_an_audit_event(
    served: tuple[keel.Project, pd.DataFrame], tmp_path: Path
) -> None:
    project, labels = served
    current = _current(project, labels).assign(spend=lambda f: f["spend"] + 60.0)
    current["plan"] = np.where(np.arange(len(current)) % 2 == 0, "enterprise", current["plan"])
    settings = MonitorSettings(drift=keel.monitoring.DriftConfig(drift_share=0.2))
    report = project.monitor("churn@champion", current=current, settings=settings)
    assert report.crossed and report.verdict["drift"]
    assert {"spend", "plan"} <= set(report.drift.drifted_features)  # type: ignore[union-attr]
    assert "orders" not in report.drift.drifted_features  # type: ignore[union-attr]
    assert report.quality is not None and any("enterprise" in issue for issue in report.quality.issues)
    kinds = [e.kind for e in project.catalog.monitoring_events("churn")]
    assert kinds == ["checked", "threshold_crossed"]
    page = write_html(report, default_html_path(project.root, report)).read_text()
    assert "spend" in page and "<svg" in page


def test_labels_give_performance_and_decay(served: tuple[keel.Project, pd.DataFrame]) -> None:
    project, labels = served
    current = _current(project, labels)
    good = project.monitor("churn@champion", current=current)
    assert good.overall is not None and good.overall["rows"] == len(current)
    auc = good.overall["metrics"]["roc_auc"]
    assert auc["low"] <= auc["value"] <= auc["high"]
    assert not good.verdict["decay"]
    flipped = current.assign(churned=1 - current["churned"])  # the world inverted: the model is now wrong
    bad = project.monitor("churn@champion", current=flipped)
    assert bad.verdict["decay"] and bad.crossed
    assert any("roc_auc fell" in r for r in bad.verdict["reasons"])


def test_explicit_reference_rows_and_missing_profile_errors(served: tuple[keel.Project, pd.DataFrame]) -> None:
    project, labels = served
    current = _current(project, labels)
    report = project.monitor("churn@champion", current=current, reference=_current(project, labels, seed=21))
    assert report.reference["rows"] == 600 and not report.crossed
    with pytest.raises(ValidationError, match="lack the model's input columns"):
        project.monitor("churn@champion", current=current, reference=current.drop(columns=["spend"]))
    with pytest.raises(NotFoundError, match="no model named"):
        project.monitor("nope@champion", current=current)


def test_reference_rows_at_rest_are_profiled_by_the_engine_as_the_same_rows_in_memory(
    served: tuple[keel.Project, pd.DataFrame], tmp_path: Path
) -> None:
    project, labels = served
    current = _current(project, labels)
    reference = _current(project, labels, seed=21)
    path = tmp_path / "reference.parquet"
    reference.to_parquet(path, index=False)

    at_rest = project.monitor("churn@champion", current=current, reference=str(path), store=False)
    in_memory = project.monitor("churn@champion", current=current, reference=reference, store=False)

    assert at_rest.reference == {"rows": 600, "source": str(path)}
    assert at_rest.drift == in_memory.drift  # the same statistics from the same reference profile
    scratch = Path(project.config.offline) / "_scratch"
    assert not scratch.exists() or not any(scratch.iterdir())  # the predictions scored there are gone
    current.drop(columns=["spend"]).to_parquet(tmp_path / "narrow.parquet", index=False)
    with pytest.raises(ValidationError, match=r"reference: .*'spend'"):
        project.monitor("churn@champion", current=current, reference=str(tmp_path / "narrow.parquet"))


def test_too_few_rows_give_no_drift_verdict(served: tuple[keel.Project, pd.DataFrame]) -> None:
    project, labels = served
    report = project.monitor("churn@champion", current=_current(project, labels, n=10))
    assert report.drift is None and not report.crossed
    assert "no drift verdict" in report.verdict["notes"][0]


def test_durations_parse_and_bad_ones_are_refused() -> None:
    assert parse_duration("7d").days == 7
    assert parse_duration("90m").total_seconds() == 5400
    assert parse_duration(" 2w ").days == 14
    for bad in ("7", "seven days", "0h", "-1d"):
        with pytest.raises(ValidationError):
            parse_duration(bad, "window")


def test_labels_join_the_prediction_log_by_request_id_or_by_entity_and_time(
    served: tuple[keel.Project, pd.DataFrame],
) -> None:
    from fastapi.testclient import TestClient

    project, labels = served
    rows = _current(project, labels, n=90)
    inputs = ["spend", "orders", "plan", "active", "age"]
    records = [
        {"customer_id": int(c), **{k: (None if pd.isna(v) else v) for k, v in r.items()}}
        for c, r in zip(range(1000, 1090), rows[inputs].astype(object).to_dict("records"), strict=True)
    ]
    app = project.prediction_app(["churn@champion"], prediction_log=True)
    with TestClient(app) as client:
        ids = []
        for i in range(3):
            response = client.post(
                "/v1/models/churn/predict",
                json={"records": records[i * 30 : (i + 1) * 30]},
                headers={"X-Request-ID": f"req-{i}"},
            )
            assert response.status_code == 200, response.text
            ids.append(response.headers["X-Request-ID"])
    assert ids == ["req-0", "req-1", "req-2"]

    truth = rows["churned"].to_numpy()
    by_request = pd.DataFrame(
        {"request_id": [f"req-{i // 30}" for i in range(90)], "record": [i % 30 for i in range(90)], "churned": truth}
    )
    report = project.monitor("churn@champion", labels=by_request.iloc[:60])
    assert report.current["rows"] == 90  # every logged prediction is the current window
    assert report.overall is not None and report.overall["rows"] == 60  # the labelled ones are judged

    later = pd.Timestamp.now(tz="UTC") + pd.Timedelta(hours=1)
    by_entity = pd.DataFrame({"customer_id": range(1000, 1090), "ts": later, "churned": truth})
    joined = keel.monitoring.join_labels(project.predictions("churn"), by_entity, project.models.load("churn@champion"))
    assert len(joined) == 90
    assert joined.sort_values("key.customer_id")["label"].tolist() == truth.tolist()
    before = by_entity.assign(ts=pd.Timestamp("2020-01-01", tz="UTC"))  # labels older than every prediction
    assert project.monitor("churn@champion", labels=before).overall is None

    with pytest.raises(ValidationError, match="request_id column, or the entity keys"):
        project.monitor("churn@champion", labels=pd.DataFrame({"churned": [1]}))


@pytest.mark.parametrize("task", ["regression", "multiclass"])
def test_regressors_and_multiclass_models_are_monitored_too(tmp_path: Path, task: str) -> None:
    from sklearn.ensemble import HistGradientBoostingRegressor

    project, labels = build_project(tmp_path, n=600)
    if task == "regression":
        label, model = "amount", HistGradientBoostingRegressor(max_iter=30)
    else:
        labels = labels.assign(tier=pd.cut(labels["amount"], 3, labels=["low", "mid", "high"]).astype(str))
        label, model = "tier", HistGradientBoostingClassifier(max_iter=30, early_stopping=False)
    spec = TrainingSpec(
        "m",
        labels=labels[["customer_id", "ts", label]],
        label=label,
        features=FEATURES,
        model=model,
        split=RandomSplit(validation_fraction=0.3),
        seed=1,
    )
    project.models.promote("m", project.models.register(project.train(spec)).version)
    profile = ReferenceProfile.from_bytes(
        project.artifacts.get_bytes(project.models.run_of("m@champion").lineage["reference_profile"]["digest"])
    )
    assert profile.prediction is not None
    assert profile.prediction.kind == ("numeric" if task == "regression" else "categorical")

    rows = project.historical_features(labels[["customer_id", "ts", label]], FEATURES)
    current = rows.sample(n=500, replace=True, random_state=4).reset_index(drop=True)
    report = project.monitor("m@champion", current=current)
    assert report.drift is not None and report.drift.prediction is not None
    assert report.overall is not None and report.overall["rows"] == 500
    metric = report.verdict["metric"]
    assert metric == ("rmse" if task == "regression" else "roc_auc")
    assert report.overall["metrics"][metric]["value"] is not None
    assert not report.verdict["decay"]
    if task == "regression":  # the world changed: amounts doubled, the model's error grows
        worse = project.monitor("m@champion", current=current.assign(amount=current["amount"] * 2))
        assert worse.verdict["decay"] and any("rmse" in r for r in worse.verdict["reasons"])


def test_an_empty_prediction_log_gives_no_verdict_and_says_why(served: tuple[keel.Project, pd.DataFrame]) -> None:
    project, _ = served
    report = project.monitor("churn@champion")  # nothing served yet: the log's window is empty
    assert report.current["rows"] == 0 and report.drift is None and report.quality is None
    assert not report.crossed and "only 0 current rows" in report.verdict["notes"][0]
    assert report.window_end is not None and report.window_start == report.window_end - timedelta(days=7)
    assert "prediction log" in report.current["source"]
