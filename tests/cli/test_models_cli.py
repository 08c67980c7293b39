"""The training and registry commands as a user runs them: train, runs list/show/compare, models ..."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from threadpoolctl import threadpool_limits
from typer.testing import CliRunner

import keel
from _training_fixtures import activity_frame, labels_frame, write_activity
from keel.cli import app
from keel.cli._common import console
from keel.errors import NotFoundError, ValidationError

runner = CliRunner()

FEATURES = textwrap.dedent(
    """
    from datetime import timedelta

    from sklearn.linear_model import LogisticRegression

    from keel import Entity, FeatureView, Field, ParquetSource
    from keel.training import TrainingSpec

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
        model=LogisticRegression(C=C),
    )
    """
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    with threadpool_limits(1):
        yield


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables as wide as they need (off a terminal, rich would fit them in 80 columns)."""
    monkeypatch.setattr(console, "_width", 250)


def declare(root: Path, c: float = 1.0) -> None:
    (root / "features.py").write_text(FEATURES.replace("C=C", f"C={c}"))


@pytest.fixture
def cli_project(project_dir: Path) -> Path:
    activity = activity_frame(120)
    write_activity(project_dir, activity[["customer_id", "event_time", "spend", "orders", "plan"]])
    labels_frame(activity)[["customer_id", "ts", "churned"]].to_parquet(project_dir / "data" / "labels.parquet")
    declare(project_dir)
    for args in (["apply"], ["ingest", "activity"]):
        result = runner.invoke(app, [*args, "-p", str(project_dir)])
        assert result.exit_code == 0, result.output
    return project_dir


def invoke(root: Path, *args: str) -> str:
    result = runner.invoke(app, [*args, "-p", str(root)])
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return result.output


def fails(root: Path, *args: str) -> BaseException:
    result = runner.invoke(app, [*args, "-p", str(root)])
    assert result.exit_code != 0, result.output
    assert result.exception is not None
    return result.exception


def run_ids(root: Path) -> list[str]:
    with keel.Project.open(root) as project:
        return [r.id for r in project.runs.list()]


@pytest.mark.parametrize(
    "command",
    [
        ["train"],
        ["runs"],
        ["runs", "list"],
        ["runs", "show"],
        ["runs", "compare"],
        ["models"],
        ["models", "list"],
        ["models", "show"],
        ["models", "diff"],
        ["models", "promote"],
        ["models", "rollback"],
        ["models", "tag"],
        ["models", "verify"],
    ],
)
def test_every_command_has_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_train_records_a_run_and_prints_its_metrics(cli_project: Path) -> None:
    output = invoke(cli_project, "train", "churn")

    (run_id,) = run_ids(cli_project)
    assert f"Run {run_id[:8]} of churn" in output
    for metric in ("accuracy", "roc_auc", "log_loss", "brier"):
        assert metric in output
    assert "Registered" not in output
    with keel.Project.open(cli_project) as project:
        assert project.models.versions() == []


def test_train_register_promote_then_the_models_commands(cli_project: Path) -> None:
    first = invoke(cli_project, "train", "churn", "--register", "--promote", "champion")
    assert "Registered churn v1 (keel)" in first and "champion → v1" in first
    declare(cli_project, c=0.01)  # the spec changes: a second, different model
    second = invoke(cli_project, "train", "churn", "--register")
    assert "Registered churn v2" in second

    listed = invoke(cli_project, "models", "list")
    assert re.search(r"churn\s+│?\s*v1\s+│?\s*champion", listed), listed
    assert "v2" in listed and "keel" in listed

    shown = invoke(cli_project, "models", "show", "churn@champion")
    assert "churn v1" in shown and "aliases: champion" in shown
    assert '"feature_versions"' in shown and '"activity@1:spend"' in shown and '"roc_auc"' in shown

    diff = invoke(cli_project, "models", "diff", "churn:1", "churn:2")
    assert "metric roc_auc" in diff and "param estimator.C" in diff
    assert "training set" in diff and "identical" in diff

    promoted = invoke(cli_project, "models", "promote", "churn:2", "--reason", "lower loss")
    assert "churn@champion: v1 → v2" in promoted
    rolled = invoke(cli_project, "models", "rollback", "churn")
    assert "churn@champion: v2 → v1 (rolled back)" in rolled
    challenger = invoke(cli_project, "models", "promote", "churn:2", "--alias", "challenger")
    assert "churn@challenger: nobody → v2" in challenger

    tagged = invoke(cli_project, "models", "tag", "churn:2", "team=risk", "stage=dev", "--description", "low C")
    assert "team" in tagged and "risk" in tagged and "low C" in tagged
    untagged = invoke(cli_project, "models", "tag", "churn:2", "stage=")
    assert "stage" not in untagged and "risk" in untagged

    with keel.Project.open(cli_project) as project:
        assert project.models.get("churn@champion").version == 1
        assert project.models.get("churn@challenger").version == 2
        assert project.models.get("churn:2").tags == {"team": "risk"}
        assert project.models.get("churn:2").description == "low C"
        reasons = [h.reason for h in project.models.history("churn", "champion")]
        assert reasons == ["keel train --promote", "lower loss", "rollback from v2"]


def test_runs_list_show_and_compare(cli_project: Path) -> None:
    invoke(cli_project, "train", "churn")
    declare(cli_project, c=0.01)
    invoke(cli_project, "train", "churn")
    newest, oldest = run_ids(cli_project)

    listed = invoke(cli_project, "runs", "list")
    assert listed.index(newest[:8]) < listed.index(oldest[:8])
    assert "finished" in listed and "accuracy" in listed
    assert invoke(cli_project, "runs", "list", "--spec", "other").count("finished") == 0
    by_loss = invoke(cli_project, "runs", "list", "--sort-by", "log_loss", "--ascending", "--limit", "1")
    assert (newest[:8] in by_loss) != (oldest[:8] in by_loss)

    shown = invoke(cli_project, "runs", "show", oldest[:8])
    assert f"Run {oldest}" in shown and "finished" in shown
    assert '"training_set_digest"' in shown and '"format": "keel"' in shown

    compared = invoke(cli_project, "runs", "compare", oldest[:8], newest[:8])
    assert "param.estimator.C" in compared and "metric.roc_auc" in compared
    assert "1.0000" in compared and "0.0100" in compared


def test_bad_input_is_a_clear_error(cli_project: Path) -> None:
    assert isinstance(fails(cli_project, "train", "ghost"), NotFoundError)
    assert isinstance(fails(cli_project, "train", "churn", "--promote", "champion"), ValidationError)
    assert isinstance(fails(cli_project, "runs", "show", "nosuchrun"), NotFoundError)
    assert isinstance(fails(cli_project, "models", "show", "churn:0"), ValidationError)
    assert isinstance(fails(cli_project, "models", "show", "churn"), NotFoundError)
    assert isinstance(fails(cli_project, "models", "list", "churn"), NotFoundError)
    invoke(cli_project, "train", "churn", "--register")
    assert isinstance(fails(cli_project, "runs", "list", "--sort-by", "auc"), ValidationError)
    assert isinstance(fails(cli_project, "models", "rollback", "churn"), NotFoundError)
    assert isinstance(fails(cli_project, "models", "tag", "churn:1", "novalue"), ValidationError)
    assert isinstance(fails(cli_project, "models", "promote", "churn:1", "--alias", "latest"), ValidationError)
    assert isinstance(fails(cli_project, "models", "diff", "churn:1", "churn:9"), NotFoundError)


def test_a_failing_training_run_exits_non_zero_and_is_listed_as_failed(cli_project: Path) -> None:
    (cli_project / "features.py").write_text(
        FEATURES.replace("model=LogisticRegression(C=C)", "model=LogisticRegression(solver='nonsense')")
    )

    error = fails(cli_project, "train", "churn")

    assert "failed" in str(error)
    listed = invoke(cli_project, "runs", "list")
    assert "failed" in listed
    (run_id,) = run_ids(cli_project)
    shown = invoke(cli_project, "runs", "show", run_id)
    assert "error:" in shown and "solver" in shown
