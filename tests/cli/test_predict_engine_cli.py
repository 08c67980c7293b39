"""``keel predict --engine``: the Spark engine scores the input's own features into a folder of Parquet files,
with the package's numbers; the local engine keeps batch scoring; what Spark does not do is refused clearly."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from threadpoolctl import threadpool_limits
from typer.testing import CliRunner

import keel
from _training_fixtures import Services, activity_frame, labels_frame
from keel.cli import app
from keel.errors import ValidationError
from keel.training import TrainingSpec

# the session fixture of the engine tests (tests/engines is not on the path of the tests of this folder)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engines"))

runner = CliRunner()
FEATURES = ["spend", "orders", "plan", "active", "since"]
ROWS = 200


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with ``churn`` v1 (HGB, Keel's preprocessing) at ``champion``, and ``data/customers.parquet``."""
    root = tmp_path_factory.mktemp("predict-engine") / "project"
    activity = activity_frame(ROWS)
    spec = TrainingSpec(
        "churn",
        labels=labels_frame(activity)[["customer_id", "ts", "churned"]],
        label="churned",
        features=[f"activity:{c}" for c in FEATURES],
        model=HistGradientBoostingClassifier(max_iter=20),
    )
    root.mkdir(parents=True)
    with keel.Project.open(root) as project, threadpool_limits(1):
        # trained on the activity rows joined by customer, recorded in the project's catalog and artifact store
        services = Services(project.catalog, project.artifacts, project.models, activity)
        project.models.register(services.train(spec))
        project.models.set_alias("churn", "champion", 1)
    (root / "data").mkdir()
    customers = activity_frame(ROWS, seed=9).drop(columns=["event_time"])
    pq.write_table(pa.Table.from_pandas(customers, preserve_index=False), root / "data" / "customers.parquet")
    return root


def predictions(folder: Path) -> pd.DataFrame:
    return pd.read_parquet(sorted(folder.glob("part-*.parquet"))).sort_values("customer_id", ignore_index=True)


@pytest.mark.spark
def test_the_spark_engine_scores_into_a_folder_with_the_packages_numbers(
    root: Path, spark_engine: Any, tmp_path: Path
) -> None:
    output = tmp_path / "scores"
    args = ["predict", "-m", "churn@champion", "-i", str(root / "data" / "customers.parquet"), "-o", str(output)]

    result = runner.invoke(app, [*args, "--engine", "spark", "--id-column", "customer_id", "-p", str(root)])

    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    assert f"{ROWS:,} rows scored with churn v1 on the spark engine" in result.output
    out = predictions(output)
    assert list(out.columns) == ["customer_id", "prediction", "proba_0", "proba_1"]
    with keel.Project.open(root) as project:
        package = project.models.load("churn@champion")
    source = pd.read_parquet(root / "data" / "customers.parquet").sort_values("customer_id", ignore_index=True)
    expected = package.score(source)
    assert expected.probabilities is not None
    assert np.array_equal(out["prediction"].to_numpy(), expected.predictions)
    assert out["proba_1"].to_numpy().tobytes() == expected.probabilities[:, 1].tobytes()


@pytest.mark.spark
def test_a_project_configured_for_spark_scores_on_spark_by_default(
    root: Path, spark_engine: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEEL_ENGINE", "spark")
    output = tmp_path / "scores"
    args = ["predict", "-m", "churn:1", "-i", str(root / "data"), "-o", str(output), "--no-proba", "-p", str(root)]

    result = runner.invoke(app, [*args, "--id-column", "customer_id"])  # a folder of Parquet files as input

    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    assert "on the spark engine" in result.output
    assert list(predictions(output).columns) == ["customer_id", "prediction"]


def test_local_overrides_a_spark_project_and_writes_one_file_in_input_order(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEEL_ENGINE", "spark")
    output = tmp_path / "scores.parquet"
    args = ["predict", "-m", "churn@champion", "-i", str(root / "data" / "customers.parquet"), "-o", str(output)]

    result = runner.invoke(app, [*args, "--engine", "local", "-p", str(root)])

    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    assert pd.read_parquet(output)["row_number"].tolist() == list(range(ROWS))


def test_spark_refuses_features_joined_from_the_stores(root: Path, tmp_path: Path) -> None:
    args = ["predict", "-m", "churn@champion", "-i", str(root / "data" / "customers.parquet")]

    result = runner.invoke(
        app, [*args, "-o", str(tmp_path / "o"), "--engine", "spark", "--features", "offline", "-p", str(root)]
    )

    assert isinstance(result.exception, ValidationError)
    assert "--features input" in str(result.exception) and "--engine local" in str(result.exception)


def test_an_unknown_engine_is_named(root: Path, tmp_path: Path) -> None:
    args = ["predict", "-m", "churn@champion", "-i", str(root / "data" / "customers.parquet"), "-o", str(tmp_path)]

    result = runner.invoke(app, [*args, "--engine", "dask", "-p", str(root)])

    assert isinstance(result.exception, ValidationError)
    assert "'dask'" in str(result.exception) and "local, spark" in str(result.exception)
