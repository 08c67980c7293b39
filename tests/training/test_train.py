"""Training end to end on a small project: tracked runs, lineage, splits, preprocessing, determinism, errors."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sklearn
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

import keel
from _training_fixtures import T0, build_project
from keel.errors import NotFoundError, ValidationError
from keel.training import RandomSplit, TimeSplit, TrainingError, TrainingSpec
from keel.training._trainer import split_rows

CLASSIFICATION = {"accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "brier"}
REGRESSION = {"mae", "rmse", "r2"}


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """One native thread: tiny fits are quicker so, and a busy machine does not stall OpenMP's workers."""
    with threadpool_limits(1):
        yield


@pytest.fixture
def built(project_dir: Path) -> Iterator[tuple[keel.Project, pd.DataFrame]]:
    project, labels = build_project(project_dir)
    yield project, labels
    project.close()


@pytest.fixture
def project(built: tuple[keel.Project, pd.DataFrame]) -> keel.Project:
    return built[0]


@pytest.fixture
def labels(built: tuple[keel.Project, pd.DataFrame]) -> pd.DataFrame:
    return built[1][["customer_id", "ts", "churned"]]


def churn(labels: pd.DataFrame, **overrides: Any) -> TrainingSpec:
    values: dict[str, Any] = {
        "labels": labels,
        "label": "churned",
        "features": ["activity:*", "profile:age"],
        "model": LogisticRegression(max_iter=500),
    }
    values.update(overrides)
    return TrainingSpec("churn", **values)


class Exploding(BaseEstimator, ClassifierMixin):  # type: ignore[misc]
    """An estimator whose fit fails."""

    def fit(self, x: Any, y: Any) -> Exploding:
        raise RuntimeError("boom: the solver diverged")

    def predict(self, x: Any) -> Any:
        return np.zeros(len(x))


# -- the run record ------------------------------------------------------------------------------------------
def test_a_run_is_recorded_with_params_metrics_durations_and_lineage(project: keel.Project, labels: Any) -> None:
    steps: list[str] = []
    run = project.train(churn(labels), on_step=steps.append)

    assert steps[0] == "loading labels" and "fitting" in steps and "evaluating" in steps
    record = project.runs.get(run.id)
    assert record == run.record
    assert record.status == "finished" and record.error is None and record.finished_at is not None
    assert record.params["task"] == "classification"
    estimator = record.params["estimator"]
    assert estimator["class"] == "sklearn.linear_model._logistic.LogisticRegression"
    assert estimator["max_iter"] == 500 and estimator["C"] == 1.0
    assert set(record.metrics) == CLASSIFICATION
    assert all(isinstance(v, float) for v in record.metrics.values())
    assert 0.5 < record.metrics["roc_auc"] <= 1.0 and record.metrics["log_loss"] > 0
    assert {"build", "fit", "evaluate", "total"} <= set(record.durations)
    assert all(v >= 0 for v in record.durations.values())
    assert record.durations["total"] >= record.durations["fit"]

    lineage = record.lineage
    assert lineage["feature_versions"] == {"activity": 1, "profile": 1}
    assert lineage["feature_digests"] == {
        view: project.catalog.feature_version(view, 1).data_digest for view in ("activity", "profile")
    }
    assert lineage["features"] == [
        "activity@1:spend",
        "activity@1:orders",
        "activity@1:plan",
        "activity@1:active",
        "activity@1:since",
        "profile@1:age",
    ]
    assert len(lineage["training_set_digest"]) == 64
    assert lineage["rows"] == {"train": run.train_rows, "validation": run.validation_rows}
    assert run.train_rows + run.validation_rows == len(labels)
    assert lineage["git"] is None  # a temporary folder is no git work tree
    libraries = lineage["libraries"]
    assert libraries["scikit-learn"] == sklearn.__version__
    assert libraries["numpy"] == np.__version__ and libraries["pandas"] == pd.__version__
    assert "python" in libraries and "keel" in libraries

    assert record.package_format == "keel"
    assert project.artifacts.exists(record.package_digest or "")
    assert run.package.feature_refs == lineage["features"]
    assert project.runs.list() == [record]


def test_the_git_commit_is_recorded_when_the_project_is_a_git_work_tree(project: keel.Project, labels: Any) -> None:
    root = project.root

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    git("init", "-q")
    (root / ".gitignore").write_text(".keel/\n")
    git("add", "-A")
    git("commit", "-q", "-m", "features")
    head = git("rev-parse", "HEAD")

    clean = project.train(churn(labels))
    (root / "notes.txt").write_text("uncommitted")
    dirty = project.train(churn(labels))

    assert clean.record.lineage["git"] == {"commit": head, "dirty": False}
    assert dirty.record.lineage["git"] == {"commit": head, "dirty": True}


def test_regression_is_inferred_from_float_labels_and_gets_regression_metrics(
    built: tuple[keel.Project, pd.DataFrame],
) -> None:
    project, labels = built
    spec = TrainingSpec(
        "amount",
        labels=labels[["customer_id", "ts", "amount"]],
        label="amount",
        features=["activity:spend", "activity:orders"],
        model=LinearRegression(),
    )

    run = project.train(spec)

    assert run.record.params["task"] == "regression" and run.package.task == "regression"
    assert set(run.metrics) == REGRESSION
    assert run.metrics["r2"] > 0.5 and run.metrics["mae"] <= run.metrics["rmse"]
    with pytest.raises(ValidationError, match="class probabilities"):
        run.package.predict_proba(project.historical_features(labels.head(3), ["activity:spend", "activity:orders"]))


def test_the_task_follows_the_estimator_and_a_contradiction_is_refused(project: keel.Project, labels: Any) -> None:
    floats = labels.assign(churned=labels["churned"].astype(float))  # 0.0 / 1.0: a classifier makes it a class

    run = project.train(churn(floats))

    assert run.record.params["task"] == "classification" and set(run.metrics) == CLASSIFICATION
    assert run.package.classes == [0.0, 1.0]
    with pytest.raises(ValidationError, match="task is 'regression' but the model LogisticRegression is a classifier"):
        project.train(churn(labels, task="regression"))


@pytest.mark.parametrize("kind", ["bool", "boolean", "Int64", "str", "category"])
def test_labels_of_every_kind_train_a_classifier(project: keel.Project, labels: Any, kind: str) -> None:
    given = labels["churned"].map({0: "stay", 1: "churn"}) if kind in ("str", "category") else labels["churned"]
    run = project.train(churn(labels.assign(churned=given.astype(kind)), features=["activity:spend"]))

    assert run.record.params["task"] == "classification"
    assert len(run.package.classes or []) == 2
    assert 0.0 <= run.metrics["roc_auc"] <= 1.0


def test_metrics_can_be_chosen_and_must_suit_the_task(project: keel.Project, labels: Any) -> None:
    run = project.train(churn(labels, metrics=["accuracy", "roc_auc"]))
    assert set(run.metrics) == {"accuracy", "roc_auc"}

    with pytest.raises(ValidationError, match="rmse") as info:
        project.train(churn(labels, metrics=["accuracy", "rmse"]))
    assert "classification" in str(info.value)
    with pytest.raises(ValidationError, match="unknown metric"):
        churn(labels, metrics=["auc"])


# -- preprocessing -------------------------------------------------------------------------------------------
def test_preprocessing_is_fitted_on_the_training_split_only(project: keel.Project, labels: Any) -> None:
    run = project.train(churn(labels, features=["activity:spend", "activity:orders"]))

    cutoff = pd.Timestamp(run.record.params["split"]["cutoff"])
    frame = project.historical_features(labels, ["activity:spend", "activity:orders"])
    training = frame[frame["ts"] < cutoff]
    assert len(training) == run.train_rows
    numeric = run.package.preprocessor.named_transformers_["numeric"]
    medians = numeric.named_steps["impute"].statistics_
    assert medians[0] == pytest.approx(training["spend"].median())
    assert medians[0] != pytest.approx(frame["spend"].median())  # the whole set's median differs (spend trends up)
    imputed = training["spend"].fillna(training["spend"].median())
    assert numeric.named_steps["scale"].mean_[0] == pytest.approx(imputed.mean())


def test_every_feature_type_goes_through_auto_preprocessing_and_unknown_categories_are_handled(
    project: keel.Project, labels: Any
) -> None:
    for model in (LogisticRegression(max_iter=500), HistGradientBoostingClassifier(max_iter=20)):
        run = project.train(churn(labels, model=model))
        schema = {f.name: f.dtype for f in run.package.schema.features}
        assert schema == {
            "spend": "float64",
            "orders": "int64",
            "plan": "string",
            "active": "bool",
            "since": "timestamp",
            "age": "int64",
        }
        frame = project.historical_features(labels.head(20), ["activity:*", "profile:age"])
        expected = run.package.predict_proba(frame)
        frame["plan"] = ["enterprise", None, *frame["plan"].iloc[2:]]  # unseen category and a null
        proba = run.package.predict_proba(frame)
        assert proba.shape == (20, 2) and np.isfinite(proba).all()
        np.testing.assert_array_equal(proba[2:], expected[2:])


def test_explicit_preprocessing_and_none(project: keel.Project, labels: Any) -> None:
    features = ["activity:spend", "activity:orders"]
    frame = project.historical_features(labels.head(10), features)

    scaled = project.train(
        churn(labels, features=features, preprocessing=make_pipeline(StandardScaler()), model=RandomForestClassifier())
    )
    assert scaled.package.predict(frame).shape == (10,)

    # None: the estimator takes the prepared columns as they are (here, one that copes with NaN)
    raw = project.train(churn(labels, features=features, preprocessing=None, model=HistGradientBoostingClassifier()))
    assert raw.package.preprocessor is None
    assert raw.package.predict(frame).shape == (10,)


# -- splits --------------------------------------------------------------------------------------------------
def test_the_default_split_is_by_time_with_every_validation_row_after_the_training_rows(
    project: keel.Project, labels: Any
) -> None:
    run = project.train(churn(labels))

    split = run.record.params["split"]
    assert split["kind"] == "time"
    cutoff = pd.Timestamp(split["cutoff"])
    assert (labels["ts"] >= cutoff).sum() == run.validation_rows
    assert (labels["ts"] < cutoff).sum() == run.train_rows
    assert run.validation_rows == pytest.approx(0.2 * len(labels), abs=2)


def test_an_explicit_cutoff_and_a_cutoff_that_leaves_nothing(project: keel.Project, labels: Any) -> None:
    cutoff = T0 + pd.Timedelta(days=30)
    run = project.train(churn(labels, split=TimeSplit(cutoff=cutoff.isoformat())))
    assert run.validation_rows == (labels["ts"] >= cutoff).sum()

    with pytest.raises(ValidationError, match="0 training"):
        project.train(churn(labels, split=TimeSplit(cutoff="2023-01-01")))
    with pytest.raises(ValidationError, match="0 validation"):
        project.train(churn(labels, split=TimeSplit(cutoff="2030-01-01")))
    with pytest.raises(ValidationError, match="validation_fraction"):
        TimeSplit(validation_fraction=1.5)
    with pytest.raises(ValidationError, match="cutoff 'next tuesday' is not a timestamp"):
        TimeSplit(cutoff="next tuesday")
    with pytest.raises(ValidationError, match="validation_fraction"):
        RandomSplit(validation_fraction=0)


def test_csv_labels_with_text_timestamps_are_split_by_time(project: keel.Project, labels: Any) -> None:
    text = labels.assign(ts=labels["ts"].map(lambda t: t.isoformat()))
    text.rename(columns={"ts": "event_time"}).to_csv(project.root / "found.csv", index=False)
    text.to_csv(project.root / "named.csv", index=False)
    expected = project.train(churn(labels, features=["activity:spend"])).validation_rows

    found = project.train(churn("found.csv", features=["activity:spend"]))  # the join finds event_time by name
    named = project.train(churn("named.csv", features=["activity:spend"], timestamp="ts"))

    for run in (found, named):
        assert run.record.params["split"]["kind"] == "time"
        assert run.validation_rows == expected


def test_a_random_split_is_seeded_and_stratified() -> None:
    rng = np.random.default_rng(0)
    y = np.array([0] * 90 + [1] * 10)
    rng.shuffle(y)
    frame = pd.DataFrame({"x": np.arange(100)})
    spec = TrainingSpec("s", labels=frame, label="y", features=["v:x"], model=LogisticRegression())

    def split(seed: int | None, stratify: bool = True, spec_seed: int = 0) -> tuple[Any, Any, dict[str, Any]]:
        s = TrainingSpec(
            "s",
            labels=frame,
            label="y",
            features=["v:x"],
            model=LogisticRegression(),
            split=RandomSplit(seed=seed, stratify=stratify),
            seed=spec_seed,
        )
        return split_rows(s, frame, None, y, "classification")

    train_a, valid_a, described = split(7)
    _, valid_b, _ = split(7)
    np.testing.assert_array_equal(valid_a, valid_b)
    assert not np.array_equal(valid_a, split(8)[1])
    assert len(valid_a) == 20 and len(train_a) == 80
    assert (y[valid_a] == 1).sum() == 2 and (y[train_a] == 1).sum() == 8  # class shares kept
    assert described == {"kind": "random", "validation_fraction": 0.2, "seed": 7, "stratify": True}
    # without a seed of its own, the split takes the spec's, and records the one it used
    assert split(None, spec_seed=5)[2]["seed"] == 5
    np.testing.assert_array_equal(split(None, spec_seed=7)[1], valid_a)
    # without timestamps the default is a random split
    assert split_rows(spec, frame, None, y, "classification")[2]["kind"] == "random"


def test_a_random_split_end_to_end(project: keel.Project, labels: Any) -> None:
    spec = churn(labels, split=RandomSplit(seed=3))
    a, b = project.train(spec), project.train(spec)

    assert a.record.params["split"]["kind"] == "random" and a.validation_rows == 48
    assert a.metrics == b.metrics
    assert a.record.lineage["training_set_digest"] == b.record.lineage["training_set_digest"]


# -- search, determinism -------------------------------------------------------------------------------------
def test_a_param_grid_search_is_recorded(project: keel.Project, labels: Any) -> None:
    run = project.train(churn(labels, param_grid={"C": [0.01, 1.0, 100.0]}, cv=3))

    search = run.record.params["search"]
    assert search["candidates"] == 3 and search["cv"] == 3
    assert search["best_params"]["C"] in (0.01, 1.0, 100.0)
    assert isinstance(search["best_cv_score"], float)
    assert run.record.params["estimator"]["C"] == search["best_params"]["C"]
    assert search["best_params"]["C"] == run.package.estimator.C
    assert run.record.spec_snapshot["param_grid"] == {"C": ["0.01", "1.0", "100.0"]}


def test_the_same_spec_on_the_same_data_gives_the_same_model(project: keel.Project, labels: Any) -> None:
    frame = project.historical_features(labels, ["activity:*", "profile:age"])
    for model in (HistGradientBoostingClassifier(max_iter=20), RandomForestClassifier(n_estimators=10)):
        spec = churn(labels, model=model, seed=11)
        a, b = project.train(spec), project.train(spec)
        assert a.id != b.id
        assert a.metrics == b.metrics
        assert a.record.params == b.record.params
        assert a.record.params["estimator"]["random_state"] == 11  # the spec's seed, made explicit
        np.testing.assert_array_equal(a.package.predict_proba(frame), b.package.predict_proba(frame))


def test_the_seed_reaches_nested_estimators(project: keel.Project, labels: Any) -> None:
    pipeline = make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=5))
    spec = churn(labels, features=["activity:spend", "activity:orders"], model=pipeline, seed=4)

    a, b = project.train(spec), project.train(spec)

    assert a.record.params["estimator"]["randomforestclassifier__random_state"] == 4
    assert a.metrics == b.metrics


# -- failures ------------------------------------------------------------------------------------------------
def test_a_failing_fit_is_recorded_as_failed_and_raises_naming_the_run(project: keel.Project, labels: Any) -> None:
    with pytest.raises(TrainingError, match="boom") as info:
        project.train(churn(labels, model=Exploding()))

    failed = project.runs.list(status="failed")
    assert len(failed) == 1
    record = failed[0]
    assert record.id in str(info.value)
    assert record.status == "failed" and record.error is not None and "RuntimeError: boom" in record.error
    assert record.package_digest is None and record.metrics == {}
    assert record.params["estimator"]["class"].endswith("Exploding")  # what was tried is kept
    assert record.lineage["feature_versions"] == {"activity": 1, "profile": 1}
    assert "total" in record.durations
    with pytest.raises(ValidationError, match="failed"):
        project.models.register(record)


class Interrupted(Exploding):
    def fit(self, x: Any, y: Any) -> Interrupted:
        raise KeyboardInterrupt


def test_an_interrupted_fit_is_recorded_as_failed_and_the_interrupt_goes_on(project: keel.Project, labels: Any) -> None:
    with pytest.raises(KeyboardInterrupt):
        project.train(churn(labels, model=Interrupted()))

    (record,) = project.runs.list()
    assert record.status == "failed" and record.error == "KeyboardInterrupt: "


def test_a_param_grid_naming_an_unknown_parameter_is_a_clear_error(project: keel.Project, labels: Any) -> None:
    with pytest.raises(ValidationError, match="param_grid: Invalid parameter 'depth'") as info:
        project.train(churn(labels, param_grid={"depth": [1, 2]}))
    assert info.value.field == "param_grid"
    assert [r.status for r in project.runs.list()] == ["failed"]


def test_bad_inputs_each_get_a_clear_error_and_record_nothing(project: keel.Project, labels: Any) -> None:
    with pytest.raises(NotFoundError, match="nosuch"):
        project.train(churn(labels, features=["nosuch:*"]))
    with pytest.raises(ValidationError, match="no feature 'nope'"):
        project.train(churn(labels, features=["activity:nope"]))
    with pytest.raises(ValidationError, match="malformed feature reference"):
        churn(labels, features=["activity"])
    with pytest.raises(ValidationError, match="no column 'target'") as missing:
        project.train(churn(labels, label="target"))
    assert missing.value.field == "target" and "churned" in str(missing.value)
    with pytest.raises(ValidationError, match="single class"):
        project.train(churn(labels.assign(churned=1)))
    with pytest.raises(ValidationError, match="no labelled rows"):
        project.train(churn(labels.head(0)))
    with pytest.raises(ValidationError, match="no labelled rows"):
        project.train(churn(labels.assign(churned=None)))
    with pytest.raises(ValidationError, match="model must be"):
        churn(labels, model="logistic regression")
    with pytest.raises(ValidationError, match="not an estimator"):
        project.train(churn(labels, model=lambda: 42))
    with pytest.raises(ValidationError, match="model factory failed"):
        project.train(churn(labels, model=lambda: 1 / 0))
    with pytest.raises(ValidationError, match="no labels file"):
        project.train(churn("missing.parquet"))
    with pytest.raises(NotFoundError, match="no training spec 'ghost'"):
        project.train("ghost")

    assert project.runs.list() == []


def test_a_training_split_of_one_class_fails_the_run_clearly(project: keel.Project, labels: Any) -> None:
    late = labels["ts"] >= labels["ts"].quantile(0.9)
    one_class_first = labels.assign(churned=np.where(late, labels["churned"], 0))

    with pytest.raises(ValidationError, match="training split holds a single class"):
        project.train(churn(one_class_first))
    assert [r.status for r in project.runs.list()] == ["failed"]


def test_a_model_factory_builds_a_fresh_estimator_per_run(project: keel.Project, labels: Any) -> None:
    run = project.train(churn(labels, model=lambda: LogisticRegression(C=0.5)))
    assert run.record.params["estimator"]["C"] == 0.5
    assert project.train(churn(labels, model=LogisticRegression)).record.params["estimator"]["C"] == 1.0


def test_runs_are_listed_newest_first_or_by_a_metric_and_compared(project: keel.Project, labels: Any) -> None:
    runs = [project.train(churn(labels, model=LogisticRegression(C=c))) for c in (0.001, 1.0, 10.0)]

    assert [r.id for r in project.runs.list()] == [r.id for r in reversed(runs)]
    best_first = project.runs.list(sort_by="log_loss", ascending=True)
    assert [r.metrics["log_loss"] for r in best_first] == sorted(r.metrics["log_loss"] for r in runs)
    assert len(project.runs.list(limit=2)) == 2
    with pytest.raises(ValidationError, match="no run has metric 'auc'"):
        project.runs.list(sort_by="auc")

    table = project.runs.compare([runs[0].id, runs[1].id[:8]])
    assert list(table.columns) == [runs[0].id[:8], runs[1].id[:8]]
    assert "param.estimator.C" in table.index and "metric.roc_auc" in table.index
    assert "param.estimator.max_iter" not in table.index  # equal params are left out
    assert project.runs.get(runs[2].id[:10]).id == runs[2].id


def test_a_project_can_store_packages_with_skops_instead(tmp_path: Path) -> None:
    project, labels = build_project(tmp_path, package_format="skops")
    run = project.train(churn(labels[["customer_id", "ts", "churned"]], model=HistGradientBoostingClassifier()))
    assert run.record.package_format == "skops"
    version = project.models.register(run)
    loaded = project.models.load(f"churn:{version.version}")
    rows = project.historical_features(labels[["customer_id", "ts"]].head(20), run.package.feature_refs)
    np.testing.assert_array_equal(loaded.predict_proba(rows), run.package.predict_proba(rows))
    project.close()
    with pytest.raises(keel.errors.ConfigError, match="package_format"):
        keel.Project.open(tmp_path, package_format="pickle")
