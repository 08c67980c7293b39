"""``keel monitor`` as cron or a shell runs it: exit codes, the JSON summary, the HTML report, retraining,
the audit history, and a schedule that stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_limits
from typer.testing import CliRunner

import keel
from _training_fixtures import activity_frame, labels_frame, write_activity
from keel.cli import app
from keel.cli._common import console
from keel.cli._monitor import EXIT_CROSSED

runner = CliRunner()

FEATURES = textwrap.dedent(
    """
    from datetime import timedelta

    from sklearn.linear_model import LogisticRegression

    from keel import Entity, FeatureView, Field, ParquetSource
    from keel.training import RandomSplit, TrainingSpec

    customer = Entity("customer", join_keys=["customer_id"])
    activity = FeatureView(
        "activity",
        entities=[customer],
        source=ParquetSource("data/activity.parquet", timestamp="event_time"),
        schema=[Field("spend", "float64"), Field("orders", "int64"), Field("plan", "string")],
        ttl=timedelta(days=7),
    )
    churn = TrainingSpec(
        "churn",
        labels="data/labels.parquet",
        label="churned",
        features=["activity:*"],
        model=LogisticRegression(max_iter=500),
        split=RandomSplit(validation_fraction=0.3),  # the fixture's data trends: a random split spans its range
    )
    """
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    with threadpool_limits(1):
        yield


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(console, "_width", 250)


@pytest.fixture
def monitored(project_dir: Path) -> Path:
    activity = activity_frame(400)
    write_activity(project_dir, activity[["customer_id", "event_time", "spend", "orders", "plan"]])
    labels_frame(activity)[["customer_id", "ts", "churned"]].to_parquet(project_dir / "data" / "labels.parquet")
    (project_dir / "features.py").write_text(FEATURES)
    for args in (["apply"], ["ingest", "activity"], ["train", "churn", "--register", "--promote", "champion"]):
        result = runner.invoke(app, [*args, "-p", str(project_dir)])
        assert result.exit_code == 0, result.output
    like = activity_frame(400, seed=5)
    like[["spend", "orders", "plan"]].to_parquet(project_dir / "like.parquet")
    shifted = activity_frame(400, seed=6, shift=80.0)
    shifted["orders"] = shifted["orders"] + 6
    shifted["plan"] = np.where(np.arange(400) % 2 == 0, "enterprise", shifted["plan"])
    shifted[["spend", "orders", "plan"]].to_parquet(project_dir / "shifted.parquet")
    return project_dir


def monitor(root: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["monitor", "--model", "churn@champion", *args, "-p", str(root)])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


@pytest.mark.parametrize("command", [["monitor"], ["monitor", "history"]])
def test_monitor_commands_have_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def test_exit_code_zero_within_thresholds_and_an_html_report(monitored: Path) -> None:
    html = monitored / "report.html"
    code, output = monitor(monitored, "--current", str(monitored / "like.parquet"), "--html", str(html))
    assert code == 0, output
    assert "Within thresholds" in output
    page = html.read_text()
    assert "churn" in page and "spend" in page


def test_exit_code_three_when_drift_crosses_and_json_names_the_features(monitored: Path) -> None:
    code, output = monitor(monitored, "--current", str(monitored / "shifted.parquet"), "--json")
    assert code == EXIT_CROSSED
    summary = json.loads(output)
    assert summary["verdict"]["crossed"] and set(summary["drifted_features"]) == {"spend", "orders", "plan"}
    assert Path(summary["html"]).exists()
    with keel.Project.open(monitored) as project:
        stored = project.catalog.monitoring_report(summary["report_id"])
    assert stored.crossed


def test_retrain_without_new_data_keeps_the_champion_and_history_shows_why(monitored: Path) -> None:
    code, output = monitor(monitored, "--current", str(monitored / "shifted.parquet"), "--retrain")
    assert code == EXIT_CROSSED
    assert "Kept the champion" in output  # the same spec on the same labels cannot win
    with keel.Project.open(monitored) as project:
        assert project.models.get("churn@champion").version == 1
        assert project.models.get("churn@challenger").version == 2
    result = runner.invoke(app, ["monitor", "history", "--model", "churn", "-p", str(monitored)])
    assert result.exit_code == 0, result.output
    for kind in ("checked", "threshold_crossed", "retrain_started", "compared", "kept"):
        assert kind in result.output
    reports = runner.invoke(app, ["monitor", "history", "--model", "churn", "--reports", "-p", str(monitored)])
    assert reports.exit_code == 0 and "yes" in reports.output


def test_bad_arguments_are_clear_errors(monitored: Path) -> None:
    with pytest.raises(keel.errors.ValidationError, match="not a duration"):
        monitor(monitored, "--window", "a week")
    result = runner.invoke(app, ["monitor", "-p", str(monitored)])
    assert isinstance(result.exception, keel.errors.ValidationError)
    assert "needs --model" in str(result.exception)


def test_every_checks_on_a_schedule_and_stops_cleanly_on_sigterm(monitored: Path) -> None:
    command = [sys.executable, "-c", "from keel.cli import main; main()", "monitor", "--model", "churn@champion"]
    command += ["--current", str(monitored / "like.parquet"), "--every", "1h", "--json", "-p", str(monitored)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdout is not None
        first = process.stdout.readline()  # the first check's JSON summary
        assert json.loads(first)["verdict"]["crossed"] is False
        process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        _out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert time.monotonic() - started < 60
    assert "stopped after 1 check(s), 0 failed" in err
