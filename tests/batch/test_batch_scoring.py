"""Batch scoring: identical to ModelPackage.predict (invariant 2), streaming, order, failures, resume, joins, CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits
from typer.testing import CliRunner

import keel
from _training_fixtures import build_project
from keel.batch import ROW_COLUMN, BatchResult
from keel.batch import _worker as batch_worker
from keel.cli import app
from keel.errors import ValidationError
from keel.models import ModelPackage
from keel.training import TrainingSpec

MODEL = "churn@champion"


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[keel.Project, ModelPackage, pd.DataFrame]]:
    """A project with churn@champion (a LogisticRegression) and the labels' rows with their features joined."""
    root = tmp_path_factory.mktemp("batch") / "project"
    root.mkdir()
    project, labels = build_project(root)
    spec = TrainingSpec(
        "churn",
        labels=labels[["customer_id", "ts", "churned"]],
        label="churned",
        features=["activity:*", "profile:age"],
        model=LogisticRegression(max_iter=500),
    )
    version = project.models.register(project.train(spec))
    project.models.set_alias("churn", "champion", version.version)
    package = project.models.load(MODEL)
    rows = project.historical_features(labels[["customer_id", "ts"]], package.feature_refs, timestamp="ts")
    yield project, package, rows
    project.close()


@pytest.fixture
def project(scored: tuple[keel.Project, ModelPackage, pd.DataFrame]) -> keel.Project:
    return scored[0]


@pytest.fixture
def package(scored: tuple[keel.Project, ModelPackage, pd.DataFrame]) -> ModelPackage:
    return scored[1]


@pytest.fixture
def rows(scored: tuple[keel.Project, ModelPackage, pd.DataFrame]) -> pd.DataFrame:
    return scored[2]


def write(frame: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False, row_group_size=70)  # row groups that do not align with chunks
    return path


def assert_same_as_package(out: pd.DataFrame, package: ModelPackage, frame: pd.DataFrame, chunk_rows: int) -> None:
    """Invariant 2: batch predictions are the package's, row for row, in input order."""
    assert list(out[ROW_COLUMN]) == list(range(len(frame)))
    np.testing.assert_array_equal(out["prediction"].to_numpy(), package.predict(frame))
    proba = out[[f"proba_{c}" for c in package.classes or []]].to_numpy()
    chunked = np.vstack(
        [package.predict_proba(frame.iloc[i : i + chunk_rows]) for i in range(0, len(frame), chunk_rows)]
    )
    np.testing.assert_array_equal(proba, chunked)  # the same rows through the package: identical
    np.testing.assert_allclose(proba, package.predict_proba(frame), rtol=0, atol=1e-12)  # BLAS blocking only


# -- invariant 2: the same predictions as the package ----------------------------------------------------------
@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
@pytest.mark.parametrize("workers", [1, 2])
def test_batch_predictions_are_the_packages(
    project: keel.Project, package: ModelPackage, rows: pd.DataFrame, tmp_path: Path, suffix: str, workers: int
) -> None:
    source = write(rows, tmp_path / f"in{suffix}")
    frame = pd.read_parquet(source) if suffix == ".parquet" else pd.read_csv(source, parse_dates=["ts", "since"])
    progress: list[tuple[int, int | None]] = []
    result = project.predict_batch(
        MODEL,
        source,
        tmp_path / "out.parquet",
        workers=workers,
        chunk_rows=50,
        on_progress=lambda d, t: progress.append((d, t)),
    )
    assert isinstance(result, BatchResult) and result.ok
    assert (result.rows, result.chunks, result.chunks_resumed) == (240, 5, 0)  # 4 x 50 + 40
    assert result.output == str(tmp_path / "out.parquet")
    assert result.package_digest == project.models.get(MODEL).package_digest
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert list(out.columns) == [ROW_COLUMN, "prediction", "proba_0", "proba_1"]
    assert_same_as_package(out, package, frame, 50)
    assert progress[-1] == (240, 240 if suffix == ".parquet" else None)
    assert sorted(d for d, _ in progress) == [d for d, _ in progress]
    # nothing is left behind once every chunk succeeded
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in" + suffix, "out.parquet"]


@pytest.mark.parametrize("chunk_rows", [1, 7, 240, 241, 1000])
def test_chunk_boundaries_keep_every_row_once_in_order(
    project: keel.Project, package: ModelPackage, rows: pd.DataFrame, tmp_path: Path, chunk_rows: int
) -> None:
    source = write(rows.iloc[:60] if chunk_rows == 1 else rows, tmp_path / "in.parquet")
    frame = pd.read_parquet(source)
    result = project.predict_batch(MODEL, source, tmp_path / "out.parquet", chunk_rows=chunk_rows)
    assert result.chunks == -(-len(frame) // chunk_rows)
    assert_same_as_package(pd.read_parquet(tmp_path / "out.parquet"), package, frame, chunk_rows)


def test_a_given_id_column_is_copied_and_extra_columns_ignored(
    project: keel.Project, package: ModelPackage, rows: pd.DataFrame, tmp_path: Path
) -> None:
    frame = rows.assign(customer_id=rows["customer_id"] * 10 + 3, note="x")
    source = write(frame, tmp_path / "in.parquet")
    project.predict_batch(MODEL, source, tmp_path / "out.parquet", chunk_rows=64, id_column="customer_id")
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert list(out.columns[:2]) == ["customer_id", "prediction"]
    assert list(out["customer_id"]) == list(frame["customer_id"])
    np.testing.assert_array_equal(out["prediction"].to_numpy(), package.predict(frame))


def test_probabilities_can_be_left_out(
    project: keel.Project, package: ModelPackage, rows: pd.DataFrame, tmp_path: Path
) -> None:
    source = write(rows, tmp_path / "in.parquet")
    project.predict_batch(MODEL, source, tmp_path / "out.parquet", chunk_rows=100, probabilities=False)
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert list(out.columns) == [ROW_COLUMN, "prediction"]
    np.testing.assert_array_equal(out["prediction"].to_numpy(), package.predict(rows))


def test_an_empty_input_gives_an_empty_output(project: keel.Project, rows: pd.DataFrame, tmp_path: Path) -> None:
    source = write(rows.iloc[:0], tmp_path / "in.parquet")
    result = project.predict_batch(MODEL, source, tmp_path / "out.parquet")
    assert (result.rows, result.chunks, result.ok) == (0, 1, True)
    assert len(pd.read_parquet(tmp_path / "out.parquet")) == 0


# -- failures and resume ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("workers", [1, 2])
def test_a_failing_chunk_is_reported_with_its_rows_while_the_rest_completes(
    project: keel.Project, package: ModelPackage, rows: pd.DataFrame, tmp_path: Path, workers: int
) -> None:
    frame = rows.copy()
    frame.loc[123, "spend"] = -np.inf  # chunk 2 (rows 100-149) cannot be scored
    source = write(frame, tmp_path / "in.parquet")
    result = project.predict_batch(MODEL, source, tmp_path / "out.parquet", workers=workers, chunk_rows=50)
    assert not result.ok
    [failure] = result.failures
    assert (failure.chunk, failure.start_row, failure.end_row) == (2, 100, 150)
    assert "'spend'" in failure.error and "input row 123 (-inf)" in failure.error
    assert "rows 100-149" in str(failure)
    out = pd.read_parquet(tmp_path / "out.parquet")  # the other chunks, in order
    kept = [i for i in range(240) if not 100 <= i < 150]
    assert list(out[ROW_COLUMN]) == kept
    np.testing.assert_array_equal(out["prediction"].to_numpy(), package.predict(frame.iloc[kept]))
    manifest = json.loads((tmp_path / "out.parquet.manifest.json").read_text())
    assert sorted(manifest["chunks"]) == ["0", "1", "3", "4"]
    assert manifest["failures"]["2"]["start"] == 100


def test_a_failing_chunk_is_retried_once(
    project: keel.Project, rows: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempts: list[int] = []
    original = batch_worker.Scorer.predict

    def flaky(self: batch_worker.Scorer, frame: pd.DataFrame, start: int) -> Any:
        attempts.append(start)
        if start == 50 and attempts.count(50) == 1:
            raise OSError("transient: disk hiccup")
        return original(self, frame, start)

    monkeypatch.setattr(batch_worker.Scorer, "predict", flaky)
    result = project.predict_batch(MODEL, write(rows, tmp_path / "in.parquet"), tmp_path / "out.parquet", chunk_rows=50)
    assert result.ok and result.rows == 240
    assert attempts == [0, 50, 50, 100, 150, 200]


def test_a_rerun_resumes_where_an_interrupted_run_stopped(
    project: keel.Project,
    package: ModelPackage,
    rows: pd.DataFrame,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = write(rows, tmp_path / "in.parquet")
    output = tmp_path / "out.parquet"

    def interrupt(done: int, total: int | None) -> None:
        if done >= 100:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        project.predict_batch(MODEL, source, output, chunk_rows=50, on_progress=interrupt)
    assert not output.exists()
    manifest = json.loads((tmp_path / "out.parquet.manifest.json").read_text())
    assert sorted(manifest["chunks"]) == ["0", "1"]
    assert manifest["model"]["digest"] == project.models.get(MODEL).package_digest
    assert manifest["input"]["size"] == source.stat().st_size
    assert manifest["settings"]["chunk_rows"] == 50

    scored: list[int] = []
    original = batch_worker.Scorer.predict

    def counting(self: batch_worker.Scorer, frame: pd.DataFrame, start: int) -> Any:
        scored.append(start)
        return original(self, frame, start)

    monkeypatch.setattr(batch_worker.Scorer, "predict", counting)
    result = project.predict_batch(MODEL, source, output, chunk_rows=50)
    assert scored == [100, 150, 200]  # chunks 0 and 1 are not recomputed
    assert (result.chunks_resumed, result.rows, result.ok) == (2, 240, True)
    assert_same_as_package(pd.read_parquet(output), package, pd.read_parquet(source), 50)
    assert not (tmp_path / "out.parquet.manifest.json").exists()


def test_a_changed_input_or_setting_does_not_resume(
    project: keel.Project, rows: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = write(rows, tmp_path / "in.parquet")
    output = tmp_path / "out.parquet"

    def interrupt(done: int, total: int | None) -> None:
        if done >= 100:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        project.predict_batch(MODEL, source, output, chunk_rows=50, on_progress=interrupt)
    result = project.predict_batch(MODEL, source, output, chunk_rows=60)  # other chunks: start over
    assert (result.chunks_resumed, result.rows) == (0, 240)
    with pytest.raises(KeyboardInterrupt):
        project.predict_batch(MODEL, source, output, chunk_rows=50, on_progress=interrupt)
    assert project.predict_batch(MODEL, source, output, chunk_rows=50, resume=False).chunks_resumed == 0


# -- features from the stores ----------------------------------------------------------------------------------
def test_offline_features_are_joined_point_in_time_by_entity_keys(
    project: keel.Project, package: ModelPackage, rows: pd.DataFrame, tmp_path: Path
) -> None:
    entities = rows[["customer_id", "ts"]].copy()
    entities.loc[:9, "ts"] = pd.Timestamp("2023-01-01", tz="UTC")  # before any feature row: nulls, as offline
    source = write(entities, tmp_path / "entities.parquet")
    result = project.predict_batch(
        MODEL, source, tmp_path / "out.parquet", features="offline", timestamp="ts", chunk_rows=64
    )
    assert result.ok
    expected = project.historical_features(entities, package.feature_refs, timestamp="ts")
    assert expected["spend"].iloc[:10].isna().all()
    out = pd.read_parquet(tmp_path / "out.parquet")
    np.testing.assert_array_equal(out["prediction"].to_numpy(), package.predict(expected))
    assert list(out[ROW_COLUMN]) == list(range(240))


def test_online_features_are_looked_up_by_entity_keys(
    project: keel.Project, package: ModelPackage, tmp_path: Path
) -> None:
    project.materialize()
    keys = pd.DataFrame({"customer_id": np.arange(239, -1, -1, dtype=np.int64)})
    source = write(keys, tmp_path / "keys.csv")
    result = project.predict_batch(MODEL, source, tmp_path / "out.parquet", features="online", chunk_rows=100)
    assert result.ok and result.rows == 240
    refs = [f"{r.split('@')[0]}:{r.split(':')[1]}" for r in package.feature_refs]
    online = project.online_features(refs, {"customer_id": keys["customer_id"].tolist()}).to_frame()
    out = pd.read_parquet(tmp_path / "out.parquet")
    np.testing.assert_array_equal(out["prediction"].to_numpy(), package.predict(online))


# -- bad input: clear errors -----------------------------------------------------------------------------------
def test_a_missing_feature_column_is_a_clear_error(project: keel.Project, rows: pd.DataFrame, tmp_path: Path) -> None:
    source = write(rows.drop(columns=["plan", "age"]), tmp_path / "in.parquet")
    with pytest.raises(ValidationError, match=r"lacks feature column\(s\) \['plan', 'age'\].*features='offline'"):
        project.predict_batch(MODEL, source, tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"features": "offline", "timestamp": "when"}, "no timestamp column 'when'"),
        ({"id_column": "nope"}, "no id column 'nope'"),
        ({"features": "sideways"}, "feature_source must be one of"),
        ({"chunk_rows": 0}, "chunk_rows must be at least 1"),
    ],
)
def test_bad_arguments_are_clear_errors(
    project: keel.Project, rows: pd.DataFrame, tmp_path: Path, kwargs: dict[str, Any], message: str
) -> None:
    source = write(rows, tmp_path / "in.parquet")
    with pytest.raises(ValidationError, match=message):
        project.predict_batch(MODEL, source, tmp_path / "out.parquet", **kwargs)


def test_offline_without_entity_keys_is_a_clear_error(
    project: keel.Project, rows: pd.DataFrame, tmp_path: Path
) -> None:
    source = write(rows[["ts"]], tmp_path / "in.parquet")
    with pytest.raises(ValidationError, match=r"lacks entity key column\(s\) \['customer_id'\]"):
        project.predict_batch(MODEL, source, tmp_path / "out.parquet", features="offline", timestamp="ts")


def test_missing_input_and_wrong_output_type_are_clear_errors(project: keel.Project, tmp_path: Path) -> None:
    with pytest.raises(keel.errors.NotFoundError, match="no input file"):
        project.predict_batch(MODEL, tmp_path / "absent.parquet", tmp_path / "out.parquet")
    with pytest.raises(ValidationError, match="unsupported input type"):
        project.predict_batch(MODEL, tmp_path / "in.json", tmp_path / "out.parquet")


# -- the command line ------------------------------------------------------------------------------------------
def test_keel_predict_scores_a_file_and_fails_on_a_failed_chunk(
    project: keel.Project, package: ModelPackage, rows: pd.DataFrame, tmp_path: Path
) -> None:
    runner = CliRunner()
    source = write(rows, tmp_path / "in.csv")
    args = ["predict", "--model", MODEL, "--input", str(source), "--chunk-rows", "100", "-p", str(project.root)]
    done = runner.invoke(app, [*args, "--output", str(tmp_path / "out.parquet")])
    assert done.exit_code == 0, done.output
    assert "240 rows scored with churn v1" in done.output and "0 failed" in done.output
    out = pd.read_parquet(tmp_path / "out.parquet")
    frame = pd.read_csv(source, parse_dates=["ts", "since"])
    np.testing.assert_array_equal(out["prediction"].to_numpy(), package.predict(frame))

    bad = rows.assign(orders=rows["orders"].astype("float64"))
    bad.loc[5, "orders"] = 2.5  # not an integer: chunk 0 fails
    source = write(bad, tmp_path / "bad.parquet")
    args[args.index("--input") + 1] = str(source)
    failed = runner.invoke(app, [*args, "--output", str(tmp_path / "bad-out.parquet")])
    assert failed.exit_code == 1
    assert "chunk 0 (rows 0-99)" in failed.output and "input row 5 (2.5)" in failed.output
    assert len(pd.read_parquet(tmp_path / "bad-out.parquet")) == 140

    no_proba = runner.invoke(app, [*args, "--output", str(tmp_path / "p.parquet"), "--no-proba", "--workers", "2"])
    assert no_proba.exit_code == 1 and "chunk 0 (rows 0-99)" in no_proba.output
    assert list(pd.read_parquet(tmp_path / "p.parquet").columns) == [ROW_COLUMN, "prediction"]
    assert runner.invoke(app, ["predict", "--help"]).exit_code == 0


def test_float_columns_read_straight_from_arrow_score_like_the_frame(
    package: ModelPackage, rows: pd.DataFrame, tmp_path: Path
) -> None:
    import pyarrow as pa

    from keel.batch._io import from_ipc, to_ipc

    frame = rows.reset_index(drop=True).copy()
    floats = [c for c in package.feature_names if frame[c].dtype == np.float64]
    assert floats  # the direct path is exercised
    frame.loc[::7, floats[0]] = np.nan  # nulls in Arrow, NaN in numpy
    data = to_ipc(pa.Table.from_pandas(frame, preserve_index=False))
    scorer = batch_worker.Scorer(package, str(tmp_path / "parts"), None, probabilities=True)
    direct = scorer._columns(data)
    assert isinstance(direct, dict) and set(floats) <= set(direct)
    via_numpy = scorer.predict(direct, 10)
    via_frame = scorer.predict(from_ipc(data).to_pandas(), 10)
    assert via_numpy.equals(via_frame)
    assert via_numpy.column(ROW_COLUMN).to_pylist() == list(range(10, 10 + len(frame)))
    np.testing.assert_array_equal(via_numpy.column("prediction").to_numpy(), package.predict(frame))


@pytest.mark.parametrize("where", ["a folder", "in a file"])
def test_an_output_that_cannot_be_a_file_is_refused_before_any_row_is_scored(
    project: keel.Project, rows: pd.DataFrame, tmp_path: Path, where: str
) -> None:
    source = write(rows, tmp_path / "in.parquet")
    if where == "a folder":
        (tmp_path / "out.parquet").mkdir()
        output, says = tmp_path / "out.parquet", "is a folder; the output is one Parquet file"
    else:
        (tmp_path / "taken").write_text("")
        output, says = tmp_path / "taken" / "out.parquet", "is a file, not a folder"

    with pytest.raises(ValidationError, match=says) as raised:
        project.predict_batch(MODEL, source, output)
    assert raised.value.field == "output"
