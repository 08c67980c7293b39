"""The whole loop on the example project: train → serve → predictions logged → the world drifts → monitor
detects it → retrain → the challenger wins → champion moves → the running service hot-reloads it."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import pandas as pd
from fastapi.testclient import TestClient

import keel

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "churn"
CUSTOMERS = 800
DAYS = 365
DRIFT_DAY = 200


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("churn_generate", EXAMPLE / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _project(root: Path) -> keel.Project:
    for name in ("features.py", "training.py", "keel.yaml"):
        shutil.copy(EXAMPLE / name, root / name)
    return keel.Project.open(root)


def _ingest(project: keel.Project) -> None:
    for view in ("customer_profile", "customer_activity"):
        project.ingest(view)


def test_drift_is_detected_retrained_promoted_and_hot_reloaded(tmp_path: Path) -> None:
    generate = _generator().generate
    start = (datetime.now(UTC) - timedelta(days=DAYS - 1)).date()  # the data ends today: online values are fresh
    data = tmp_path / "data"

    # Before the drift: the champion is trained on the first DRIFT_DAY days.
    generate(data, customers=CUSTOMERS, start=start, days=DRIFT_DAY)
    project = _project(tmp_path)
    project.apply()
    _ingest(project)
    champion = project.models.register(project.train("churn"))
    project.models.promote("churn", champion.version)

    # The world drifts; the new data (identical before the drift date) is ingested and materialized.
    generate(data, customers=CUSTOMERS, start=start, days=DAYS, drift_after=start + timedelta(days=DRIFT_DAY))
    _ingest(project)
    project.materialize()
    customers = pd.read_parquet(data / "customers.parquet")["customer_id"].drop_duplicates().tolist()[:400]

    app = project.prediction_app(["churn@champion"], prediction_log=True)
    with TestClient(app) as client:
        for i in range(0, len(customers), 100):
            records = [{"customer_id": int(c)} for c in customers[i : i + 100]]
            response = client.post("/v1/models/churn/predict", json={"records": records})
            assert response.status_code == 200, response.text
            assert response.json()["version"] == champion.version
        assert app.state.prediction_log.flush()
        logged = project.predictions("churn", version=champion.version)
        assert len(logged) == len(customers)

        report = project.monitor("churn@champion")
        assert report.current["rows"] == len(customers)
        assert report.crossed and report.verdict["drift"], report.verdict
        assert {"spend_30d", "avg_basket"} <= set(report.drift.drifted_features)  # type: ignore[union-attr]

        decision = project.retrain("churn@champion", report_id=report.id)
        assert decision.promoted, decision.reason
        assert decision.challenger_score is not None and decision.champion_score is not None
        assert decision.challenger_score > decision.champion_score
        assert project.models.get("churn@champion").version == decision.challenger

        # The running service picks the new champion up (its watcher calls this every few seconds).
        assert app.state.reload() == ["churn"]
        loaded = client.get("/v1/models").json()
        assert [m["version"] for m in loaded["models"]] == [decision.challenger]
        response = client.post("/v1/models/churn/predict", json={"records": [{"customer_id": int(customers[0])}]})
        assert response.json()["version"] == decision.challenger

    kinds = [e.kind for e in project.catalog.monitoring_events("churn")]
    assert kinds == ["checked", "threshold_crossed", "retrain_started", "compared", "promoted"]
    history = project.models.history("churn", "champion")
    assert history[-1].to_version == decision.challenger and "wins" in history[-1].reason
    project.close()
