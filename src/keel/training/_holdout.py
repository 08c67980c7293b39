"""A run's training set rebuilt exactly as it was trained on: what analyses of a model version read.

Nothing of the training set is stored with a run but its digest. It is rebuilt from the spec's labels and the
feature-view versions the run pinned (its lineage), then split as the run split it (the same split, seed and
cutoff), and checked against the recorded digest: an analysis reads exactly the rows the model was trained and
validated on, or says why it cannot (labels that changed since, a view version deleted) instead of reading
others silently. Labels appended since the run (the usual way labels arrive) are told apart: the run's rows are the
file's first ones, and the digest confirms it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from keel.errors import ValidationError
from keel.training._lineage import frame_digest
from keel.training._spec import load_labels
from keel.training._trainer import _timestamp_column, split_rows

if TYPE_CHECKING:
    import pandas as pd

    from keel.catalog import RunRecord
    from keel.training._spec import TrainingSpec

__all__ = ["RebuiltSplit", "rebuild_split"]


@dataclass(frozen=True)
class RebuiltSplit:
    """A run's training set (features and label, in training order) and its split.

    Attributes:
        frame: the training set as the run built it.
        train: positions of the training rows.
        validation: positions of the validation (holdout) rows.
    """

    frame: pd.DataFrame
    train: np.ndarray
    validation: np.ndarray

    def rows(self, which: str) -> pd.DataFrame:
        """``"training"`` or ``"holdout"`` rows."""
        if which not in ("training", "holdout"):
            raise ValidationError(f"which rows: 'training' or 'holdout', not {which!r}", field="data")
        positions = self.train if which == "training" else self.validation
        return self.frame.iloc[positions].reset_index(drop=True)


def rebuild_split(
    run: RunRecord,
    spec: TrainingSpec,
    *,
    root: Path | None,
    build_training_set: Callable[..., pd.DataFrame],
) -> RebuiltSplit:
    """Rebuild ``run``'s training set from ``spec`` and the feature versions the run pinned, and split it as the run
    did.

    Raises:
        ValidationError: the spec is not the run's, or the rebuilt training set is not the one trained on (its
            digest differs: the labels or the data changed since).
    """
    if spec.name != run.spec:
        raise ValidationError(f"run {run.id[:8]} trained spec {run.spec!r}, not {spec.name!r}", field="spec")
    labels = load_labels(spec, root)
    if spec.label not in labels.columns:
        raise ValidationError(f"training spec {spec.name!r}: labels have no column {spec.label!r}", field=spec.label)
    labels = labels[labels[spec.label].notna()].reset_index(drop=True)
    pinned: list[str] = list(run.lineage.get("features") or spec.features)
    recorded = run.lineage.get("training_set_digest")
    counts = run.lineage.get("rows") or {}
    trained_rows = int(counts.get("train", 0)) + int(counts.get("validation", 0))
    if 0 < trained_rows < len(labels):  # labels appended since: the run read the first rows of the file
        labels = labels.iloc[:trained_rows].reset_index(drop=True)
    frame = build_training_set(labels, pinned, timestamp=spec.timestamp)
    feature_cols = [c for c in frame.columns if c not in labels.columns]
    if recorded and frame_digest(frame[[*feature_cols, spec.label]]) != recorded:
        raise ValidationError(
            f"the training set of run {run.id[:8]} cannot be rebuilt as it was: its labels or feature data changed "
            "since it was trained (the digest differs); analyse rows given as a file instead (--data PATH)",
            field="data",
        )
    task: Any = run.params.get("task")
    ts_col = _timestamp_column(labels, spec.timestamp)
    y = labels[spec.label].to_numpy()
    train_idx, valid_idx, _ = split_rows(spec, frame, labels[ts_col] if ts_col is not None else None, y, task)
    return RebuiltSplit(frame, train_idx, valid_idx)
