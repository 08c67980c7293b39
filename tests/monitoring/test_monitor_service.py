"""A :class:`Monitor` built from its collaborators alone: an in-memory catalog, a registry, a ``memory://``
artifact store and a prediction log reader — no project folder."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from _training_fixtures import Services, champion_services, labels_frame
from keel.errors import NotFoundError, ValidationError
from keel.monitoring import Monitor, MonitoringReport, MonitorSettings, default_html_path, stored_profile, write_html

INPUTS = ["spend", "orders", "plan"]
END = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def services() -> Services:
    return champion_services(600, INPUTS)


class RecordingLog:
    """A prediction log reader serving one frame, remembering what it was asked for."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame
        self.calls: list[dict[str, Any]] = []

    def __call__(
        self, model: str, *, version: int | None = None, start: datetime | None = None, end: datetime | None = None
    ) -> pd.DataFrame:
        self.calls.append({"model": model, "version": version, "start": start, "end": end})
        return self.frame


def _logged(services: Services, *, shift: float = 0.0, n: int = 400) -> pd.DataFrame:
    """Rows shaped like the prediction log: the champion's inputs and its answers, made an hour apart."""
    rows = services.features.sample(n=n, replace=True, random_state=5).reset_index(drop=True)
    rows["spend"] = rows["spend"] + shift
    package = services.registry.load("churn@champion")
    scored = package.score(rows[INPUTS])
    frame = pd.DataFrame(
        {
            "request_id": [f"req-{i}" for i in range(n)],
            "record": np.zeros(n, dtype=np.int32),
            "predicted_at": pd.Series(END - timedelta(hours=1) * (n - i) for i in range(n)).astype(
                "datetime64[us, UTC]"
            ),
            "model": "churn",
            "version": 1,
            "key.customer_id": rows["customer_id"],
            **{f"feature.{name}": rows[name] for name in INPUTS},
            "prediction": scored.predictions,
        }
    )
    assert scored.probabilities is not None and package.classes is not None
    for i, cls in enumerate(package.classes):
        frame[f"proba.{cls}"] = scored.probabilities[:, i]
    return frame


def test_a_check_reads_the_log_window_and_stores_the_report_and_its_events(services: Services) -> None:
    log = RecordingLog(_logged(services, shift=80.0))
    monitor = Monitor(services.registry, services.artifacts, services.catalog, log)
    report, record = monitor.check("churn@champion", end=END)

    assert log.calls == [{"model": "churn", "version": 1, "start": END - timedelta(days=7), "end": END}]
    assert report.current["rows"] == 400 and "prediction log" in report.current["source"]
    assert report.crossed and report.drift is not None and "spend" in report.drift.drifted_features
    assert record is not None and record.id == report.id and record.crossed
    assert services.catalog.monitoring_report(report.id).report["verdict"] == report.verdict
    events = services.catalog.monitoring_events("churn")
    assert [e.kind for e in events] == ["checked", "threshold_crossed"]
    assert all(e.report_id == report.id and e.version == 1 for e in events)


def test_a_check_within_thresholds_records_one_event_and_store_false_records_none(services: Services) -> None:
    monitor = Monitor(services.registry, services.artifacts, services.catalog, RecordingLog(_logged(services)))
    report, record = monitor.check("churn@champion", end=END)
    assert not report.crossed, report.verdict
    assert record is not None
    assert [e.kind for e in services.catalog.monitoring_events("churn")] == ["checked"]

    unstored, nothing = monitor.check("churn@champion", end=END, store=False)
    assert nothing is None and unstored.id != report.id
    assert len(services.catalog.monitoring_reports("churn")) == 1


def test_a_log_uri_is_read_with_the_prediction_log_reader(services: Services, tmp_path: Path) -> None:
    monitor = Monitor(services.registry, services.artifacts, services.catalog, str(tmp_path / "_prediction_log"))
    report, _record = monitor.check("churn@champion", end=END.replace(tzinfo=None))  # naive: taken as UTC
    assert report.current["rows"] == 0 and report.drift is None and not report.crossed
    assert report.window_end == END and report.window_start == END - timedelta(days=7)
    assert "only 0 current rows" in report.verdict["notes"][0]


def test_labelled_current_rows_are_timed_by_their_time_column_even_as_text(services: Services) -> None:
    rows = services.features.sample(n=300, replace=True, random_state=8).reset_index(drop=True)
    labels = labels_frame(services.features).set_index("customer_id")["churned"]
    current = rows[INPUTS].assign(
        churned=labels.loc[rows["customer_id"]].to_numpy(),
        timestamp=[f"2024-05-{1 + i % 3:02d}T10:00:00Z" for i in range(300)],  # as a CSV file holds them
    )
    monitor = Monitor(services.registry, services.artifacts, services.catalog, RecordingLog(_logged(services)))
    report, _record = monitor.check("churn@champion", current=current, settings=MonitorSettings(min_rows=10))
    assert report.overall is not None and report.overall["rows"] == 300
    assert report.performance is not None
    assert [w["start"][:10] for w in report.performance] == ["2024-05-01", "2024-05-02", "2024-05-03"]

    bad = current.assign(timestamp=["not a time"] * 300)
    with pytest.raises(ValidationError, match="row 0 has 'not a time'") as caught:
        monitor.check("churn@champion", current=bad)
    assert caught.value.field == "timestamp"


def test_the_stored_profile_is_read_from_the_artifact_store(services: Services) -> None:
    run = services.registry.run_of("churn@champion")
    profile = stored_profile(services.artifacts, run)
    assert set(profile.columns) == set(INPUTS) and profile.rows == run.lineage["rows"]["train"]
    old = dataclasses.replace(run, lineage={})  # a run trained before profiles existed
    with pytest.raises(NotFoundError, match="no stored reference profile"):
        stored_profile(services.artifacts, old)


def test_the_html_page_is_written_whole_under_the_given_root(services: Services, tmp_path: Path) -> None:
    monitor = Monitor(services.registry, services.artifacts, services.catalog, RecordingLog(_logged(services)))
    report: MonitoringReport = monitor.check("churn@champion", end=END, store=False)[0]
    path = default_html_path(tmp_path / "project", report)
    assert path.parent == tmp_path / "project" / ".keel" / "reports"
    assert path.name.startswith("churn-v1-") and path.suffix == ".html"
    assert write_html(report, path) == path
    assert "<html" in path.read_text(encoding="utf-8")
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left beside it
