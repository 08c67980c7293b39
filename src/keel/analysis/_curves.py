"""Curves and tables of a model's errors, ready to plot: classification and regression diagnostics.

Classification (the positive class of a binary task is the larger of its two labels, as scikit-learn orders
``classes_``, unless ``pos_label`` says otherwise; a multiclass task is looked at one class against the rest):

- **confusion matrices**, overall and per segment (rows: true class, columns: predicted class);
- **ROC curve** and **precision–recall curve**: every distinct score is a threshold (scikit-learn's
  ``roc_curve`` / ``precision_recall_curve`` with ``drop_intermediate=False``); the area (ROC AUC, by the trapezoid
  rule, equal to ``roc_auc_score``) and the average precision (``Σ (R_n - R_{n-1}) P_n``, equal to
  ``average_precision_score``) are computed on the full curve, then the points are thinned to at most
  ``max_points`` evenly spaced along the curve's length (a subsequence, so the thresholds stay monotone and the
  curve's shape is kept where it bends);
- **calibration curve** (reliability diagram) of the positive class's probability, with scikit-learn's bins
  (``calibration_curve``): ``uniform`` — ``n_bins`` equal-width bins of [0, 1] — or ``quantile`` — bins holding
  equal numbers of rows, better when probabilities crowd near 0 or 1; empty bins are left out. The **expected
  calibration error** is the row-weighted mean gap between a bin's observed rate and its mean probability,
  ``ECE = Σ_b (n_b / n) |acc_b - conf_b|`` (Naeini, Cooper & Hauskrecht, 2015; Guo et al., 2017), where ``acc_b``
  is the share of positives in the bin and ``conf_b`` its mean predicted probability; the maximum gap (MCE) and
  the Brier score are given beside it;
- **threshold table**: for thresholds 0.05, 0.10, ..., 0.95 (a row is positive when its score is at least the
  threshold): precision, recall, F1, accuracy and the share predicted positive.

Regression: MAE, RMSE, R², median and maximum absolute error and the bias (mean of ``y_pred - y_true``); the
**residuals** ``y_true - y_pred`` (scikit-learn's convention) summarised against the prediction and against each
feature: numeric features in quantile bins (bin edges, the mean of the feature in the bin as its centre), others
per category (the most frequent ones, the rest together), missing values in a bin of their own; per bin the
rows, the mean residual and its 10th, 25th, 50th, 75th and 90th percentiles (numpy's linear interpolation).

Every result is a frozen dataclass with ``to_dict()`` giving JSON-safe values (NaN and infinities become null).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from keel.analysis._segments import (
    Segment,
    _check_int,
    _check_segments,
    _convert,
    _floats,
    _inputs,
    _labels,
    _vector,
)
from keel.errors import ValidationError

__all__ = [
    "CalibrationCurve",
    "ClassificationCurves",
    "ConfusionMatrices",
    "ConfusionMatrix",
    "PrecisionRecallCurve",
    "RegressionErrors",
    "ResidualBins",
    "ResidualReport",
    "RocCurve",
    "ThresholdRow",
    "ThresholdTable",
    "calibration_curve",
    "classification_curves",
    "confusion_matrices",
    "precision_recall_curve",
    "regression_errors",
    "residual_bins",
    "residual_report",
    "roc_curve",
    "threshold_table",
]

MAX_POINTS = 200
"""Default: the most points of a ROC or precision–recall curve kept for plotting."""

THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 20))
"""Default thresholds of the threshold table: 0.05, 0.10, ..., 0.95."""

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
"""Residual percentiles given per bin."""

MAX_CATEGORIES = 20
"""Default: categories of a feature shown one by one in the residual summary; the rest are one bin."""

OTHER = "__other__"
MISSING = "__missing__"


def _num(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _nums(values: Sequence[float]) -> list[float | None]:
    return [_num(v) for v in values]


def _label(value: Any) -> Any:
    return value if isinstance(value, str | int | float | bool) or value is None else str(value)


# -- confusion matrices --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConfusionMatrix:
    """Counts of (true class, predicted class) on one segment.

    Attributes:
        name: the segment's name (``overall`` for all rows).
        classes: the class labels, in the order of the rows and columns.
        counts: ``counts[i][j]`` rows of true class ``classes[i]`` predicted as ``classes[j]``.
    """

    name: str
    classes: tuple[Any, ...]
    counts: tuple[tuple[int, ...], ...]

    @property
    def rows(self) -> int:
        """All rows counted."""
        return sum(sum(r) for r in self.counts)

    def as_array(self) -> np.ndarray:
        """The counts as a ``(classes, classes)`` integer array."""
        return np.array(self.counts, dtype=np.int64).reshape(len(self.classes), len(self.classes))

    def normalized(self) -> np.ndarray:
        """Each row divided by its total (the recall of each true class on the diagonal); NaN for empty rows."""
        counts = self.as_array().astype(np.float64)
        totals = counts.sum(axis=1, keepdims=True)
        return np.asarray(np.divide(counts, totals, out=np.full_like(counts, np.nan), where=totals > 0))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict."""
        return {
            "name": self.name,
            "classes": [_label(c) for c in self.classes],
            "counts": [list(r) for r in self.counts],
            "rows": self.rows,
        }


@dataclass(frozen=True)
class ConfusionMatrices:
    """Confusion matrices of all rows and of each segment.

    Attributes:
        classes: the class labels, in matrix order.
        overall: the matrix of all rows.
        segments: one matrix per segment, in the order given.
    """

    classes: tuple[Any, ...]
    overall: ConfusionMatrix
    segments: tuple[ConfusionMatrix, ...]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict."""
        return {
            "classes": [_label(c) for c in self.classes],
            "overall": self.overall.to_dict(),
            "segments": [s.to_dict() for s in self.segments],
        }


def confusion_matrices(
    y_true: Any, y_pred: Any, *, classes: Sequence[Any] | None = None, segments: Sequence[Segment] = ()
) -> ConfusionMatrices:
    """Confusion matrices overall and per segment.

    Args:
        y_true: the true labels.
        y_pred: the predicted labels.
        classes: the labels in matrix order (default: the sorted labels found).
        segments: from :func:`~keel.analysis._segments.segments_of` on a frame aligned with the rows.

    Raises:
        ValidationError: mismatched lengths, missing labels, a label outside ``classes``, bad segments.
    """
    inputs = _inputs("classification", y_true, [("y_pred", y_pred)], [], classes)
    checked = _check_segments(list(segments), inputs.rows)
    k = inputs.k
    joint = inputs.y * k + inputs.preds[0]

    def matrix(name: str, mask: np.ndarray | None) -> ConfusionMatrix:
        counts = np.bincount(joint if mask is None else joint[mask], minlength=k * k).reshape(k, k)
        return ConfusionMatrix(name, inputs.classes, tuple(tuple(int(v) for v in row) for row in counts))

    return ConfusionMatrices(inputs.classes, matrix("overall", None), tuple(matrix(s.name, s.mask) for s in checked))


# -- binary scores -------------------------------------------------------------------------------------------
def _binary(y_true: Any, score: Any, pos_label: Any, *, probability: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(is positive, score) after validation; the positive class defaults to the larger of two labels."""
    labels = _labels(_vector(y_true, "y_true"), "y_true")
    if labels.size == 0:
        raise ValidationError("y_true is empty", field="y_true")
    values = _floats(_vector(score, "score", labels.shape[0]), "score")
    if probability and ((values < 0).any() or (values > 1).any()):
        row = int(np.flatnonzero((values < 0) | (values > 1))[0])
        raise ValidationError(f"probabilities must be in [0, 1]; row {row} is {values[row]!r}", field="score", row=row)
    found = pd.unique(pd.Series(labels, copy=False)).tolist()
    if pos_label is None:
        if len(found) != 2:
            raise ValidationError(
                f"y_true has {len(found)} classes {sorted(map(str, found))[:10]}; name the positive class with "
                "pos_label= (a one-against-rest curve)",
                field="pos_label",
            )
        try:
            pos_label = sorted(found)[1]
        except TypeError:
            raise ValidationError("labels of different types: name the positive class with pos_label=") from None
    positive = np.asarray(labels == pos_label, dtype=bool)
    if not positive.any() or positive.all():
        raise ValidationError(
            f"the curve needs rows of both the positive class {pos_label!r} and the others; y_true has "
            f"{int(positive.sum())} positive of {positive.size} rows",
            field="y_true",
        )
    return positive, values


def _counts_at_thresholds(positive: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True and false positives at each distinct score, highest first (a row is positive at or above it)."""
    order = np.argsort(-score, kind="stable")
    ranked, hits = score[order], positive[order]
    last = np.concatenate([np.flatnonzero(np.diff(ranked)), [ranked.size - 1]])
    tps = np.cumsum(hits)[last].astype(np.float64)
    fps = (last + 1) - tps
    return tps, fps, ranked[last]


def _thin(x: np.ndarray, y: np.ndarray, max_points: int) -> np.ndarray:
    """Indices of at most ``max_points`` points evenly spaced along the polyline, ends included, in order."""
    if x.size <= max_points:
        return np.arange(x.size)
    length = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(x), np.diff(y)))])
    targets = np.linspace(0.0, length[-1], max_points)
    keep = np.unique(np.concatenate([[0, x.size - 1], np.searchsorted(length, targets).clip(0, x.size - 1)]))
    if keep.size > max_points:  # only when points repeat: keep the ends
        keep = np.concatenate([keep[: max_points - 1], [x.size - 1]])
    return keep


def _check_points(max_points: Any) -> int:
    return _check_int(max_points, "max_points", 2, 1_000_000)


@dataclass(frozen=True)
class RocCurve:
    """The ROC curve, thinned for plotting.

    Attributes:
        fpr: false positive rates, non-decreasing from 0 to 1.
        tpr: true positive rates, non-decreasing from 0 to 1.
        thresholds: the score at or above which a row is positive at each point (the first is infinity:
            nothing positive), decreasing.
        auc: the area under the full curve (trapezoid rule), equal to ``roc_auc_score``.
        positives: rows of the positive class.
        negatives: rows of the other classes.
        points: the full curve's points before thinning.
    """

    fpr: tuple[float, ...]
    tpr: tuple[float, ...]
    thresholds: tuple[float, ...]
    auc: float
    positives: int
    negatives: int
    points: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (the infinite first threshold becomes null)."""
        return {
            "fpr": list(self.fpr),
            "tpr": list(self.tpr),
            "thresholds": _nums(self.thresholds),
            "auc": _num(self.auc),
            "positives": self.positives,
            "negatives": self.negatives,
            "points": self.points,
        }


def roc_curve(y_true: Any, score: Any, *, pos_label: Any = None, max_points: int = MAX_POINTS) -> RocCurve:
    """The ROC curve of a score for the positive class (see the module docstring).

    Raises:
        ValidationError: mismatched lengths, non-finite scores, one class only, no ``pos_label`` for more than
            two classes.
    """
    max_points = _check_points(max_points)
    positive, values = _binary(y_true, score, pos_label)
    tps, fps, thresholds = _counts_at_thresholds(positive, values)
    p, n = tps[-1], fps[-1]
    tpr = np.concatenate([[0.0], tps / p])
    fpr = np.concatenate([[0.0], fps / n])
    thresholds = np.concatenate([[math.inf], thresholds])
    auc = float(np.trapezoid(tpr, fpr))
    keep = _thin(fpr, tpr, max_points)
    return RocCurve(
        tuple(fpr[keep].tolist()),
        tuple(tpr[keep].tolist()),
        tuple(thresholds[keep].tolist()),
        auc,
        int(p),
        int(n),
        int(fpr.size),
    )


@dataclass(frozen=True)
class PrecisionRecallCurve:
    """The precision–recall curve, thinned for plotting, by increasing recall.

    Attributes:
        recall: recall, non-decreasing from 0 to 1.
        precision: precision at each point (the first point, nothing positive, has precision 1 by convention).
        thresholds: the score at or above which a row is positive (the first is infinity), decreasing.
        average_precision: ``Σ (R_n - R_{n-1}) P_n`` over the full curve, equal to ``average_precision_score``.
        prevalence: the share of positives: the precision of a random ranking (the chance line).
        points: the full curve's points before thinning.
    """

    recall: tuple[float, ...]
    precision: tuple[float, ...]
    thresholds: tuple[float, ...]
    average_precision: float
    prevalence: float
    points: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (the infinite first threshold becomes null)."""
        return {
            "recall": list(self.recall),
            "precision": list(self.precision),
            "thresholds": _nums(self.thresholds),
            "average_precision": _num(self.average_precision),
            "prevalence": self.prevalence,
            "points": self.points,
        }


def precision_recall_curve(
    y_true: Any, score: Any, *, pos_label: Any = None, max_points: int = MAX_POINTS
) -> PrecisionRecallCurve:
    """The precision–recall curve of a score for the positive class (see the module docstring).

    Raises:
        ValidationError: as :func:`roc_curve`.
    """
    max_points = _check_points(max_points)
    positive, values = _binary(y_true, score, pos_label)
    tps, fps, thresholds = _counts_at_thresholds(positive, values)
    recall = np.concatenate([[0.0], tps / tps[-1]])
    precision = np.concatenate([[1.0], tps / (tps + fps)])
    thresholds = np.concatenate([[math.inf], thresholds])
    average_precision = float(np.sum(np.diff(recall) * precision[1:]))
    keep = _thin(recall, precision, max_points)
    return PrecisionRecallCurve(
        tuple(recall[keep].tolist()),
        tuple(precision[keep].tolist()),
        tuple(thresholds[keep].tolist()),
        average_precision,
        float(positive.mean()),
        int(recall.size),
    )


@dataclass(frozen=True)
class CalibrationCurve:
    """The reliability diagram of the positive class's probability, with its calibration errors.

    Attributes:
        strategy: ``uniform`` or ``quantile`` (see the module docstring).
        n_bins: the bins asked for.
        edges: the ``n_bins + 1`` bin edges.
        mean_predicted: per non-empty bin, the mean predicted probability (``conf_b``).
        fraction_positive: per non-empty bin, the share of positives (``acc_b``).
        counts: per non-empty bin, its rows.
        ece: expected calibration error, ``Σ_b (n_b / n) |acc_b - conf_b|``.
        mce: maximum calibration error, the largest ``|acc_b - conf_b|``.
        brier: the Brier score, the mean squared difference of probability and outcome.
    """

    strategy: str
    n_bins: int
    edges: tuple[float, ...]
    mean_predicted: tuple[float, ...]
    fraction_positive: tuple[float, ...]
    counts: tuple[int, ...]
    ece: float
    mce: float
    brier: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict."""
        return {
            "strategy": self.strategy,
            "n_bins": self.n_bins,
            "edges": list(self.edges),
            "mean_predicted": list(self.mean_predicted),
            "fraction_positive": list(self.fraction_positive),
            "counts": list(self.counts),
            "ece": self.ece,
            "mce": self.mce,
            "brier": self.brier,
        }


def calibration_curve(
    y_true: Any,
    proba: Any,
    *,
    pos_label: Any = None,
    n_bins: int = 10,
    strategy: Literal["uniform", "quantile"] = "uniform",
) -> CalibrationCurve:
    """The calibration curve and expected calibration error of the positive class's probability.

    Raises:
        ValidationError: probabilities outside [0, 1], an unknown strategy, a bad bin count, as :func:`roc_curve`.
    """
    n_bins = _check_int(n_bins, "n_bins", 1, 1000)
    if strategy not in ("uniform", "quantile"):
        raise ValidationError(f"strategy must be 'uniform' or 'quantile', not {strategy!r}", field="strategy")
    positive, values = _binary(y_true, proba, pos_label, probability=True)
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    else:
        edges = np.percentile(values, np.linspace(0.0, 100.0, n_bins + 1))
    bins = np.searchsorted(edges[1:-1], values)  # scikit-learn's assignment, so the bins are the same
    counts = np.bincount(bins, minlength=n_bins)
    sums = np.bincount(bins, weights=values, minlength=n_bins)
    hits = np.bincount(bins, weights=positive.astype(np.float64), minlength=n_bins)
    filled = counts > 0
    conf = sums[filled] / counts[filled]
    acc = hits[filled] / counts[filled]
    gaps = np.abs(acc - conf)
    return CalibrationCurve(
        strategy=strategy,
        n_bins=n_bins,
        edges=tuple(float(e) for e in edges),
        mean_predicted=tuple(conf.tolist()),
        fraction_positive=tuple(acc.tolist()),
        counts=tuple(int(c) for c in counts[filled]),
        ece=float(np.sum(counts[filled] * gaps) / values.size),
        mce=float(gaps.max()),
        brier=float(np.mean((values - positive) ** 2)),
    )


@dataclass(frozen=True)
class ThresholdRow:
    """The classification at one threshold (a row is positive when its score is at least the threshold).

    Attributes:
        threshold: the threshold.
        precision: true positives over predicted positives (NaN when nothing is predicted positive).
        recall: true positives over positives.
        f1: the harmonic mean of precision and recall (0 when both are 0).
        accuracy: correct rows over all rows.
        share_positive: the share of rows predicted positive.
        tp: true positives.
        fp: false positives.
        fn: false negatives.
        tn: true negatives.
    """

    threshold: float
    precision: float
    recall: float
    f1: float
    accuracy: float
    share_positive: float
    tp: int
    fp: int
    fn: int
    tn: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict."""
        return {
            "threshold": self.threshold,
            "precision": _num(self.precision),
            "recall": self.recall,
            "f1": self.f1,
            "accuracy": self.accuracy,
            "share_positive": self.share_positive,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "tn": self.tn,
        }


@dataclass(frozen=True)
class ThresholdTable:
    """Precision, recall and F1 at a range of thresholds.

    Attributes:
        rows: one :class:`ThresholdRow` per threshold, by increasing threshold.
    """

    rows: tuple[ThresholdRow, ...]

    def best_f1(self) -> ThresholdRow:
        """The row with the highest F1 (the lowest threshold among ties)."""
        return max(self.rows, key=lambda r: (r.f1, -r.threshold))

    def to_frame(self) -> pd.DataFrame:
        """The table as a DataFrame, one row per threshold."""
        return pd.DataFrame([r.to_dict() for r in self.rows])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict."""
        return {"rows": [r.to_dict() for r in self.rows]}


def threshold_table(
    y_true: Any, score: Any, *, pos_label: Any = None, thresholds: Sequence[float] = THRESHOLDS
) -> ThresholdTable:
    """Precision, recall, F1, accuracy and the share predicted positive at each threshold.

    Raises:
        ValidationError: non-finite or empty thresholds, as :func:`roc_curve`.
    """
    try:
        cuts = np.asarray(list(thresholds), dtype=np.float64)
    except (TypeError, ValueError):
        raise ValidationError(f"thresholds must be a list of numbers, got {thresholds!r}") from None
    if cuts.ndim != 1 or cuts.size == 0 or not np.isfinite(cuts).all():
        raise ValidationError(f"thresholds must be a non-empty list of finite numbers, got {thresholds!r}")
    cuts = np.unique(cuts)
    positive, values = _binary(y_true, score, pos_label)
    ranked = np.sort(values)
    ranked_positive = np.sort(values[positive])
    n, p = values.size, ranked_positive.size
    predicted = n - np.searchsorted(ranked, cuts, side="left")
    tp = p - np.searchsorted(ranked_positive, cuts, side="left")
    fp, fn = predicted - tp, p - tp
    tn = n - p - fp
    out = []
    for i, t in enumerate(cuts):
        precision = tp[i] / predicted[i] if predicted[i] else math.nan
        recall = tp[i] / p
        f1 = 2 * tp[i] / (predicted[i] + p)
        accuracy = (tp[i] + tn[i]) / n
        out.append(
            ThresholdRow(
                float(t),
                float(precision),
                float(recall),
                float(f1),
                float(accuracy),
                float(predicted[i] / n),
                int(tp[i]),
                int(fp[i]),
                int(fn[i]),
                int(tn[i]),
            )
        )
    return ThresholdTable(tuple(out))


@dataclass(frozen=True)
class ClassificationCurves:
    """Every classification diagnostic of one model on one set of rows.

    Attributes:
        pos_label: the class the curves are drawn for.
        confusion: confusion matrices, overall and per segment (None without predicted labels).
        roc: the ROC curve.
        precision_recall: the precision–recall curve.
        calibration: the calibration curve with its ECE.
        thresholds: the threshold table.
    """

    pos_label: Any
    confusion: ConfusionMatrices | None
    roc: RocCurve
    precision_recall: PrecisionRecallCurve
    calibration: CalibrationCurve
    thresholds: ThresholdTable

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict."""
        return {
            "pos_label": _label(self.pos_label),
            "confusion": None if self.confusion is None else self.confusion.to_dict(),
            "roc": self.roc.to_dict(),
            "precision_recall": self.precision_recall.to_dict(),
            "calibration": self.calibration.to_dict(),
            "thresholds": self.thresholds.to_dict(),
        }


def classification_curves(
    y_true: Any,
    proba: Any,
    *,
    y_pred: Any = None,
    classes: Sequence[Any] | None = None,
    pos_label: Any = None,
    segments: Sequence[Segment] = (),
    n_bins: int = 10,
    strategy: Literal["uniform", "quantile"] = "uniform",
    max_points: int = MAX_POINTS,
) -> ClassificationCurves:
    """All classification diagnostics from a model's ``predict_proba`` output.

    Args:
        y_true: the true labels.
        proba: ``(rows, classes)`` probabilities in the order of ``classes`` (or the positive class's alone).
        y_pred: the predicted labels, for the confusion matrices (default: none).
        classes: the labels in the column order of ``proba`` (default: the sorted labels found).
        pos_label: the class to draw the curves for (default: ``classes[1]`` of a binary task; required for more
            classes).
        segments: segments for per-segment confusion matrices.
        n_bins: calibration bins.
        strategy: calibration binning, ``uniform`` or ``quantile``.
        max_points: the most points per curve.

    Raises:
        ValidationError: on any bad input.
    """
    preds = [("y_pred", y_pred)] if y_pred is not None else []
    inputs = _inputs("classification", y_true, preds, [("proba", proba)], classes)
    if pos_label is None:
        if inputs.k != 2:
            raise ValidationError(
                f"there are {inputs.k} classes; name the one to draw the curves for with pos_label=", field="pos_label"
            )
        pos_label = inputs.classes[1]
    if pos_label not in inputs.classes:
        raise ValidationError(f"pos_label {pos_label!r} is not one of the classes {list(inputs.classes)}")
    column = inputs.classes.index(pos_label)
    assert inputs.probas[0] is not None
    score = inputs.probas[0][:, column]
    positive = (inputs.y == column).astype(np.int64)
    confusion = None
    if y_pred is not None:
        confusion = confusion_matrices(y_true, y_pred, classes=inputs.classes, segments=segments)
    return ClassificationCurves(
        pos_label=pos_label,
        confusion=confusion,
        roc=roc_curve(positive, score, pos_label=1, max_points=max_points),
        precision_recall=precision_recall_curve(positive, score, pos_label=1, max_points=max_points),
        calibration=calibration_curve(positive, score, pos_label=1, n_bins=n_bins, strategy=strategy),
        thresholds=threshold_table(positive, score, pos_label=1),
    )


# -- regression ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RegressionErrors:
    """Error metrics of a regressor.

    Attributes:
        rows: rows scored.
        mae: mean absolute error.
        rmse: root mean squared error.
        r2: coefficient of determination (scikit-learn's ``r2_score``: 1 for a perfect fit of a constant target,
            else 0 there).
        median_absolute_error: median of the absolute errors.
        max_error: the largest absolute error.
        bias: the mean of ``y_pred - y_true`` (positive: the model over-predicts on average).
    """

    rows: int
    mae: float
    rmse: float
    r2: float
    median_absolute_error: float
    max_error: float
    bias: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict."""
        return {
            "rows": self.rows,
            "mae": _num(self.mae),
            "rmse": _num(self.rmse),
            "r2": _num(self.r2),
            "median_absolute_error": _num(self.median_absolute_error),
            "max_error": _num(self.max_error),
            "bias": _num(self.bias),
        }


def _regression_inputs(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    inputs = _inputs("regression", y_true, [("y_pred", y_pred)], [], None)
    return inputs.y, inputs.preds[0]


def regression_errors(y_true: Any, y_pred: Any) -> RegressionErrors:
    """MAE, RMSE, R², median and maximum absolute error and bias.

    Raises:
        ValidationError: mismatched lengths, empty or non-finite values.
    """
    y, pred = _regression_inputs(y_true, y_pred)
    error = pred - y
    absolute = np.abs(error)
    sse = float(np.sum(error**2))
    sst = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - sse / sst if sst > 0 else (1.0 if sse == 0 else 0.0)
    return RegressionErrors(
        rows=int(y.size),
        mae=float(absolute.mean()),
        rmse=math.sqrt(sse / y.size),
        r2=r2,
        median_absolute_error=float(np.median(absolute)),
        max_error=float(absolute.max()),
        bias=float(error.mean()),
    )


@dataclass(frozen=True)
class ResidualBins:
    """Residuals (``y_true - y_pred``) summarised by bins of one variable, ready to plot.

    Attributes:
        variable: what the residuals are binned by (``prediction`` or a feature's name).
        kind: ``numeric`` (quantile bins) or ``categorical`` (one bin per category).
        labels: a label per bin: ``[left, right)`` for numeric bins (the last one closed), the category,
            ``__other__`` for the remaining categories, ``__missing__`` for missing values.
        centre: per bin, the mean of the variable in it (None for categories and missing values).
        left: per bin, its lower edge (None for categories).
        right: per bin, its upper edge (None for categories).
        counts: rows per bin.
        mean: mean residual per bin.
        quantiles: percentile (0.1, 0.25, 0.5, 0.75, 0.9) -> per bin, that percentile of the residuals.
    """

    variable: str
    kind: str
    labels: tuple[str, ...]
    centre: tuple[float | None, ...]
    left: tuple[float | None, ...]
    right: tuple[float | None, ...]
    counts: tuple[int, ...]
    mean: tuple[float, ...]
    quantiles: dict[float, tuple[float, ...]]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (percentile keys as text, ``"0.1"``)."""
        return {
            "variable": self.variable,
            "kind": self.kind,
            "labels": list(self.labels),
            "centre": list(self.centre),
            "left": list(self.left),
            "right": list(self.right),
            "counts": list(self.counts),
            "mean": _nums(self.mean),
            "quantiles": {str(q): _nums(v) for q, v in self.quantiles.items()},
        }


def _bin_summary(
    codes: np.ndarray, residuals: np.ndarray, n_codes: int
) -> tuple[np.ndarray, np.ndarray, dict[float, np.ndarray]]:
    """Rows, mean and percentiles (linear interpolation) of the residuals per code, all at once."""
    order = np.lexsort((residuals, codes))
    ranked, ranked_codes = residuals[order], codes[order]
    counts = np.bincount(codes, minlength=n_codes)
    starts = np.searchsorted(ranked_codes, np.arange(n_codes), side="left")
    sums = np.bincount(codes, weights=residuals, minlength=n_codes)
    mean = np.divide(sums, counts, out=np.full(n_codes, np.nan), where=counts > 0)
    out: dict[float, np.ndarray] = {}
    for q in QUANTILES:
        position = q * np.maximum(counts - 1, 0)
        low = np.floor(position).astype(np.int64)
        high = np.minimum(low + 1, np.maximum(counts - 1, 0))
        frac = position - low
        base = np.minimum(starts, max(ranked.size - 1, 0))
        lo_v = ranked[np.minimum(base + low, ranked.size - 1)]
        hi_v = ranked[np.minimum(base + high, ranked.size - 1)]
        out[q] = np.where(counts > 0, lo_v + (hi_v - lo_v) * frac, np.nan)
    return counts, mean, out


def _edge_text(value: float) -> str:
    return f"{value:.4g}"


def residual_bins(
    values: Any, residuals: Any, *, variable: str, n_bins: int = 10, max_categories: int = MAX_CATEGORIES
) -> ResidualBins:
    """Residuals summarised by quantile bins of a numeric variable, or per category of another one.

    Args:
        values: the variable, one value per row (numbers, text, categories, booleans; missing values allowed).
        residuals: ``y_true - y_pred`` per row.
        variable: its name, for the result.
        n_bins: quantile bins of a numeric variable (fewer when values repeat).
        max_categories: categories shown one by one; the rest share the ``__other__`` bin.

    Raises:
        ValidationError: mismatched lengths, non-finite residuals, a date variable, bad counts.
    """
    n_bins = _check_int(n_bins, "n_bins", 1, 1000)
    max_categories = _check_int(max_categories, "max_categories", 1, 10_000)
    res = _floats(_vector(residuals, "residuals"), "residuals")
    series = pd.Series(_vector(values, variable, res.size), copy=False)
    col = _convert(variable, series)
    if col.kind == "datetime":
        raise ValidationError(
            f"{variable!r} holds dates; residuals are binned by numbers or categories", field=variable
        )
    missing = col.missing
    if col.kind == "numeric":
        x = np.asarray(col.values, dtype=np.float64)
        present = x[~missing]
        edges = np.unique(np.quantile(present, np.linspace(0, 1, n_bins + 1))) if present.size else np.array([])
        inner = edges[1:-1]
        n_numeric = max(edges.size - 1, 1) if present.size else 0
        codes = np.where(missing, n_numeric, np.searchsorted(inner, np.nan_to_num(x), side="right"))
        n_codes = n_numeric + int(missing.any())
        counts, mean, quantiles = _bin_summary(codes, res, n_codes)
        sums = np.bincount(codes, weights=np.where(missing, 0.0, x), minlength=n_codes)
        labels: list[str] = []
        centre: list[float | None] = []
        left: list[float | None] = []
        right: list[float | None] = []
        for b in range(n_numeric):
            lo, hi = (float(edges[b]), float(edges[b + 1])) if edges.size > 1 else (float(edges[0]),) * 2
            closing = "]" if b == n_numeric - 1 else ")"
            labels.append(f"[{_edge_text(lo)}, {_edge_text(hi)}{closing}")
            centre.append(float(sums[b] / counts[b]) if counts[b] else None)
            left.append(lo)
            right.append(hi)
        if missing.any():
            labels.append(MISSING)
            centre.append(None)
            left.append(None)
            right.append(None)
        kind = "numeric"
    else:
        text = pd.Series(np.asarray(col.values, dtype=object), copy=False).astype(str).to_numpy(dtype=object)
        frequent = pd.Series(text[~missing]).value_counts(sort=True)
        shown = [str(v) for v in frequent.index[:max_categories]]
        position = {v: i for i, v in enumerate(shown)}
        has_other = len(frequent) > max_categories
        other_code = len(shown)
        codes = np.array([position.get(v, other_code) for v in text], dtype=np.int64)
        missing_code = other_code + int(has_other)
        codes[missing] = missing_code
        n_codes = missing_code + int(missing.any())
        counts, mean, quantiles = _bin_summary(codes, res, n_codes)
        labels = [*shown, *([OTHER] if has_other else []), *([MISSING] if missing.any() else [])]
        centre = left = right = [None] * n_codes
        kind = "categorical"
    return ResidualBins(
        variable=variable,
        kind=kind,
        labels=tuple(labels),
        centre=tuple(centre),
        left=tuple(left),
        right=tuple(right),
        counts=tuple(int(c) for c in counts),
        mean=tuple(float(m) for m in mean),
        quantiles={q: tuple(float(v) for v in values_) for q, values_ in quantiles.items()},
    )


@dataclass(frozen=True)
class ResidualReport:
    """Error metrics and residual summaries of a regressor.

    Attributes:
        errors: the error metrics.
        by_prediction: residuals against the predicted value.
        by_feature: residuals against each feature of the frame (date columns skipped), in column order.
    """

    errors: RegressionErrors
    by_prediction: ResidualBins
    by_feature: tuple[ResidualBins, ...]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict."""
        return {
            "errors": self.errors.to_dict(),
            "by_prediction": self.by_prediction.to_dict(),
            "by_feature": [b.to_dict() for b in self.by_feature],
        }


def residual_report(
    y_true: Any,
    y_pred: Any,
    frame: pd.DataFrame | None = None,
    *,
    n_bins: int = 10,
    max_categories: int = MAX_CATEGORIES,
) -> ResidualReport:
    """Error metrics, and residuals against the prediction and against each feature of ``frame``.

    Raises:
        ValidationError: mismatched lengths, non-finite values, ``frame`` not a DataFrame.
    """
    y, pred = _regression_inputs(y_true, y_pred)
    residuals = y - pred
    features: list[ResidualBins] = []
    if frame is not None:
        if not isinstance(frame, pd.DataFrame):
            raise ValidationError(f"frame must be a pandas DataFrame, got {type(frame).__name__}", field="frame")
        if len(frame) != y.size:
            raise ValidationError(f"frame has {len(frame):,} rows but y_true has {y.size:,}", field="frame")
        for i, column in enumerate(frame.columns):
            series = frame.iloc[:, i]
            if _convert(str(column), series).kind in ("datetime", "empty"):
                continue
            features.append(
                residual_bins(series, residuals, variable=str(column), n_bins=n_bins, max_categories=max_categories)
            )
    return ResidualReport(
        errors=regression_errors(y, pred),
        by_prediction=residual_bins(pred, residuals, variable="prediction", n_bins=n_bins),
        by_feature=tuple(features),
    )
