"""The command line as a user runs it: help everywhere, the apply/ingest/retrieve loop, clear errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from keel.cli import app

runner = CliRunner()

FEATURES = textwrap.dedent(
    """
    from datetime import timedelta
    from keel import Entity, FeatureView, Field, ParquetSource

    customer = Entity("customer", join_keys=["customer_id"])
    activity = FeatureView(
        "activity",
        entities=[customer],
        source=ParquetSource("data/activity.parquet", timestamp="event_time"),
        schema=[Field("spend", "float64"), Field("plan", "string")],
        ttl=timedelta(days=10),
    )
    """
)


@pytest.fixture
def cli_project(project_dir: Path) -> Path:
    (project_dir / "data").mkdir()
    pd.DataFrame(
        {
            "customer_id": [1, 1, 2],
            "event_time": pd.to_datetime(["2025-01-01", "2025-01-05", "2025-01-03"], utc=True),
            "spend": [10.0, 20.0, 30.0],
            "plan": ["basic", "premium", "basic"],
        }
    ).to_parquet(project_dir / "data" / "activity.parquet")
    (project_dir / "features.py").write_text(FEATURES)
    return project_dir


def invoke(*args: str) -> object:
    result = runner.invoke(app, list(args))
    return result


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["init"],
        ["apply"],
        ["ingest"],
        ["demo"],
        ["features"],
        ["features", "list"],
        ["features", "versions"],
        ["features", "historical"],
    ],
)
def test_every_command_has_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_apply_dry_run_writes_nothing_then_apply_registers(cli_project: Path) -> None:
    dry = runner.invoke(app, ["apply", "--dry-run", "-p", str(cli_project)])
    assert dry.exit_code == 0, dry.output
    assert "activity" in dry.output and "to add" in dry.output

    listed = runner.invoke(app, ["features", "list", "-p", str(cli_project)])
    assert "activity" not in listed.output

    applied = runner.invoke(app, ["apply", "-p", str(cli_project)])
    assert applied.exit_code == 0, applied.output
    assert "2 added" in applied.output

    again = runner.invoke(app, ["apply", "-p", str(cli_project)])
    assert "0 added, 0 changed, 0 removed, 2 unchanged" in again.output


def test_ingest_then_reingest_reports_unchanged(cli_project: Path) -> None:
    runner.invoke(app, ["apply", "-p", str(cli_project)])
    first = runner.invoke(app, ["ingest", "-p", str(cli_project)])
    assert first.exit_code == 0, first.output
    assert "v1" in first.output and "new" in first.output
    second = runner.invoke(app, ["ingest", "activity", "-p", str(cli_project)])
    assert second.exit_code == 0, second.output
    assert "unchanged" in second.output

    versions = runner.invoke(app, ["features", "versions", "activity", "-p", str(cli_project)])
    assert versions.exit_code == 0, versions.output
    assert "v1" in versions.output and "3" in versions.output


def test_features_historical_writes_every_entity_row(cli_project: Path, tmp_path: Path) -> None:
    runner.invoke(app, ["apply", "-p", str(cli_project)])
    runner.invoke(app, ["ingest", "-p", str(cli_project)])
    entities = pd.DataFrame(
        {
            "customer_id": [2, 1, 3, 1],
            "ts": pd.to_datetime(["2025-01-04", "2025-01-02", "2025-01-04", "2025-01-30"], utc=True),
            "label": [1, 0, 1, 0],
        }
    )
    entities.to_parquet(tmp_path / "entities.parquet")
    out = tmp_path / "train.csv"
    result = runner.invoke(
        app,
        [
            "features",
            "historical",
            "-e",
            str(tmp_path / "entities.parquet"),
            "-f",
            "activity:*",
            "-o",
            str(out),
            "-p",
            str(cli_project),
        ],
    )
    assert result.exit_code == 0, result.output
    train = pd.read_csv(out)
    assert list(train["customer_id"]) == [2, 1, 3, 1]
    assert train["spend"].tolist()[:2] == [30.0, 10.0]
    assert train["spend"].isna().tolist()[2:] == [True, True]  # unknown entity; value older than the TTL


def test_features_historical_at_rest_writes_a_folder_without_loading_the_entities(
    cli_project: Path, tmp_path: Path
) -> None:
    runner.invoke(app, ["apply", "-p", str(cli_project)])
    runner.invoke(app, ["ingest", "-p", str(cli_project)])
    entities = pd.DataFrame(
        {"customer_id": [2, 1, 3], "ts": pd.to_datetime(["2025-01-04", "2025-01-02", "2025-01-04"], utc=True)}
    )
    entities.to_parquet(tmp_path / "entities.parquet")
    out = tmp_path / "train"

    result = runner.invoke(
        app,
        [
            *("features", "historical", "--at-rest", "-e", str(tmp_path / "entities.parquet")),
            *("-f", "activity:spend", "--timestamp", "ts", "-o", str(out), "-p", str(cli_project)),
        ],
    )

    assert result.exit_code == 0, result.output
    assert "Wrote 3 rows" in result.output
    train = pd.read_parquet(out).sort_values("ts")
    assert train["spend"].tolist()[0] == 10.0


def _keel(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    code = "from keel.cli import main; main()"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_keel_error_prints_one_clear_line_and_exits_1(cli_project: Path) -> None:
    result = _keel("features", "versions", "nope", "-p", str(cli_project), cwd=cli_project)
    assert result.returncode == 1
    assert "error: unknown feature view 'nope'" in result.stderr
    assert "Traceback" not in result.stderr


def test_usage_error_exits_2_without_traceback(cli_project: Path) -> None:
    result = _keel("features", "historical", "-p", str(cli_project), cwd=cli_project)
    assert result.returncode == 2
    assert "Missing option" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_row_is_reported_with_its_row_and_column(cli_project: Path) -> None:
    pd.DataFrame(
        {
            "customer_id": [1, None, 2],
            "event_time": pd.to_datetime(["2025-01-01", "2025-01-05", "2025-01-03"], utc=True),
            "spend": [10.0, 20.0, 30.0],
            "plan": ["basic", "premium", "basic"],
        }
    ).to_parquet(cli_project / "data" / "activity.parquet")
    assert _keel("apply", "-p", str(cli_project), cwd=cli_project).returncode == 0
    result = _keel("ingest", "-p", str(cli_project), cwd=cli_project)
    assert result.returncode == 1
    assert "join key 'customer_id': row 1 is null" in result.stderr


def test_features_verify_reports_intact_versions_then_a_damaged_file(cli_project: Path) -> None:
    runner.invoke(app, ["apply", "-p", str(cli_project)])
    runner.invoke(app, ["ingest", "-p", str(cli_project)])
    intact = runner.invoke(app, ["features", "verify", "-p", str(cli_project)])
    assert intact.exit_code == 0, intact.output
    assert "intact" in intact.output

    [part] = list((cli_project / ".keel" / "offline" / "activity").rglob("*.parquet"))
    part.write_bytes(part.read_bytes()[:-10] + b"0123456789")
    damaged = _keel("features", "verify", "-p", str(cli_project), cwd=cli_project)

    assert damaged.returncode == 1
    assert "activity@1" in damaged.stdout
    assert "failed verification" in damaged.stderr
