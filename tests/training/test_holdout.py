"""A run's training set rebuilt for analysis is exactly the one it was trained and validated on, or refused."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from _training_fixtures import build_project
from keel.errors import ValidationError
from keel.training import RandomSplit, TimeSplit, TrainingSpec
from keel.training._holdout import rebuild_split


@pytest.mark.parametrize("split", [RandomSplit(validation_fraction=0.3), TimeSplit(validation_fraction=0.25)])
def test_the_rebuilt_holdout_is_the_runs(tmp_path: Path, split: object) -> None:
    project, labels = build_project(tmp_path, n=300)
    spec = TrainingSpec(
        "churn",
        labels=labels[["customer_id", "ts", "churned"]],
        label="churned",
        features=["activity:*", "profile:age"],
        model=LogisticRegression(max_iter=300),
        split=split,  # type: ignore[arg-type]
        seed=4,
    )
    run = project.train(spec)
    project.ingest("activity")  # unchanged data: the pinned version stays the one trained on

    rebuilt = rebuild_split(run.record, spec, root=tmp_path, build_training_set=project.historical_features)

    assert len(rebuilt.train) == run.train_rows and len(rebuilt.validation) == run.validation_rows
    holdout = rebuilt.rows("holdout")
    assert run.holdout is not None
    pd.testing.assert_frame_equal(holdout, run.holdout.reset_index(drop=True))
    assert len(rebuilt.rows("training")) == run.train_rows


def test_changed_labels_are_refused_not_read(tmp_path: Path) -> None:
    project, labels = build_project(tmp_path, n=200)
    spec = TrainingSpec(
        "churn", labels=labels, label="churned", features=["activity:*"], model=LogisticRegression(max_iter=300)
    )
    run = project.train(spec)
    later = TrainingSpec(
        "churn",
        labels=labels.iloc[:150],
        label="churned",
        features=["activity:*"],
        model=LogisticRegression(max_iter=300),
    )

    with pytest.raises(ValidationError, match="cannot be rebuilt as it was"):
        rebuild_split(run.record, later, root=tmp_path, build_training_set=project.historical_features)
    other = TrainingSpec("other", labels=labels, label="churned", features=["activity:*"], model=LogisticRegression())
    with pytest.raises(ValidationError, match="not 'other'"):
        rebuild_split(run.record, other, root=tmp_path, build_training_set=project.historical_features)


def test_labels_appended_since_the_run_are_told_apart(tmp_path: Path) -> None:
    project, labels = build_project(tmp_path, n=200)
    first = labels.iloc[:150].reset_index(drop=True)
    path = tmp_path / "data" / "labels.parquet"
    first.to_parquet(path)
    spec = TrainingSpec(
        "churn",
        labels="data/labels.parquet",
        label="churned",
        features=["activity:*"],
        model=LogisticRegression(max_iter=300),
        split=RandomSplit(validation_fraction=0.3),
    )
    run = project.train(spec)
    labels.to_parquet(path)  # fifty labels arrived since

    rebuilt = rebuild_split(run.record, spec, root=tmp_path, build_training_set=project.historical_features)

    assert len(rebuilt.frame) == 150
    assert run.holdout is not None
    pd.testing.assert_frame_equal(rebuilt.rows("holdout"), run.holdout.reset_index(drop=True))
