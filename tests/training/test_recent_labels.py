"""``TrainingSpec.with_recent_labels``: a spec that trains on the labels of the last window only (what
``keel monitor --retrain --labels-window`` retrains on)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from _training_fixtures import activity_frame, labels_frame
from keel.errors import ValidationError
from keel.training import TrainingSpec


def _spec(labels: pd.DataFrame | str, **options: object) -> TrainingSpec:
    return TrainingSpec(
        "churn", labels=labels, label="churned", features=["activity:spend"], model=LogisticRegression(), **options
    )


@pytest.fixture
def labels() -> pd.DataFrame:
    return labels_frame(activity_frame(240))[["customer_id", "ts", "churned"]]


def test_only_the_labels_of_the_last_window_are_kept_in_a_copy(labels: pd.DataFrame) -> None:
    spec = _spec(labels)
    recent = spec.with_recent_labels(timedelta(days=10), None)
    assert isinstance(recent.labels, pd.DataFrame)
    newest = labels["ts"].max()
    assert recent.labels["ts"].min() >= newest - pd.Timedelta(days=10)
    assert len(recent.labels) == int((labels["ts"] >= newest - pd.Timedelta(days=10)).sum()) < len(labels)
    assert recent.name == spec.name and recent.features == spec.features
    assert spec.labels is labels  # the spec itself is unchanged


def test_a_labels_file_is_read_relative_to_the_root_and_text_times_are_parsed(
    labels: pd.DataFrame, tmp_path: Path
) -> None:
    labels.assign(ts=labels["ts"].map(lambda t: t.isoformat())).to_csv(tmp_path / "labels.csv", index=False)
    recent = _spec("labels.csv", timestamp="ts").with_recent_labels(timedelta(days=10), tmp_path)
    assert isinstance(recent.labels, pd.DataFrame)
    assert len(recent.labels) == int((labels["ts"] >= labels["ts"].max() - pd.Timedelta(days=10)).sum())


def test_untimed_labels_and_a_non_positive_window_are_refused(labels: pd.DataFrame) -> None:
    with pytest.raises(ValidationError, match="labels_window needs timestamped labels") as caught:
        _spec(labels.drop(columns=["ts"])).with_recent_labels(timedelta(days=10), None)
    assert caught.value.field == "labels_window"
    with pytest.raises(ValidationError, match="positive duration") as caught:
        _spec(labels).with_recent_labels(timedelta(0), None)
    assert caught.value.field == "labels_window"
    with pytest.raises(ValidationError, match="training spec 'churn', labels: no timestamp column 'when'"):
        _spec(labels, timestamp="when").with_recent_labels(timedelta(days=1), None)
    with pytest.raises(ValidationError, match="no labels file"):
        _spec("missing.parquet").with_recent_labels(timedelta(days=1), Path("/nonexistent"))
