"""Classification and regression diagnostics checked against scikit-learn on the same rows: confusion matrices,
ROC and precision–recall curves (thinned, monotone, their areas exact), calibration with its expected calibration
error, the threshold table, error metrics and residual summaries."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn import calibration as skc
from sklearn import metrics as skm

from keel.analysis._curves import (
    calibration_curve,
    classification_curves,
    confusion_matrices,
    precision_recall_curve,
    regression_errors,
    residual_bins,
    residual_report,
    roc_curve,
    threshold_table,
)
from keel.analysis._segments import segments_of
from keel.errors import ValidationError


def scored(n: int = 5000, seed: int = 0, decimals: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(np.int64)
    proba = 1 / (1 + np.exp(-(1.3 * rng.normal(1.4 * y, 1.0) - 1.6)))
    return y, (np.round(proba, decimals) if decimals is not None else proba)


def on_curve(x: tuple[float, ...], y: tuple[float, ...], full_x: np.ndarray, full_y: np.ndarray) -> bool:
    """Every (x, y) point is a point of the full curve."""
    points = set(zip(np.round(full_x, 12), np.round(full_y, 12), strict=True))
    return all((round(a, 12), round(b, 12)) in points for a, b in zip(x, y, strict=True))


# -- confusion matrices --------------------------------------------------------------------------------------
def test_confusion_matrices_equal_sklearn_overall_and_per_segment() -> None:
    rng = np.random.default_rng(1)
    n = 3000
    classes = ["cat", "cow", "dog"]
    y = rng.choice(classes, n)
    pred = np.where(rng.random(n) < 0.7, y, rng.choice(classes, n))
    frame = pd.DataFrame({"region": rng.choice(["n", "s"], n)})
    segments = segments_of(frame, ["region"])
    found = confusion_matrices(y, pred, segments=segments)
    assert found.classes == tuple(classes)
    assert (found.overall.as_array() == skm.confusion_matrix(y, pred, labels=classes)).all()
    for matrix, segment in zip(found.segments, segments, strict=True):
        expected = skm.confusion_matrix(y[segment.mask], pred[segment.mask], labels=classes)
        assert matrix.name == segment.name and (matrix.as_array() == expected).all()
        assert matrix.rows == segment.rows
    recall = found.overall.normalized().diagonal()
    assert recall == pytest.approx(skm.recall_score(y, pred, labels=classes, average=None))
    json.dumps(found.to_dict(), allow_nan=False)


def test_confusion_matrices_keep_the_declared_class_order_and_refuse_unknown_labels() -> None:
    found = confusion_matrices([1, 0, 1], [1, 1, 1], classes=[1, 0])
    assert found.overall.counts == ((2, 0), (1, 0))
    with pytest.raises(ValidationError, match="y_pred has label 2 at row 0"):
        confusion_matrices([1, 0], [2, 0], classes=[0, 1])


# -- ROC and precision-recall --------------------------------------------------------------------------------
@pytest.mark.parametrize("decimals", [None, 2])
def test_roc_curve_is_a_thinned_copy_of_sklearns_with_the_exact_area(decimals: int | None) -> None:
    y, proba = scored(decimals=decimals)
    curve = roc_curve(y, proba, max_points=200)
    fpr, tpr, thresholds = skm.roc_curve(y, proba, drop_intermediate=False)
    assert curve.auc == pytest.approx(skm.roc_auc_score(y, proba), abs=1e-12)
    assert curve.points == fpr.size
    assert len(curve.fpr) <= 200
    assert (curve.fpr[0], curve.tpr[0], curve.fpr[-1], curve.tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(curve.fpr) >= 0) and np.all(np.diff(curve.tpr) >= 0)
    assert np.all(np.diff(curve.thresholds) < 0)
    assert on_curve(curve.fpr, curve.tpr, fpr, tpr)
    assert set(curve.thresholds) <= set(thresholds.tolist())
    assert curve.positives == y.sum() and curve.negatives == (1 - y).sum()
    thinned_area = np.trapezoid(curve.tpr, curve.fpr)
    assert thinned_area == pytest.approx(curve.auc, abs=0.01)  # the thinned curve keeps the shape
    assert json.loads(json.dumps(curve.to_dict(), allow_nan=False))["thresholds"][0] is None


def test_a_short_roc_curve_is_not_thinned() -> None:
    y, proba = scored(n=60, seed=3, decimals=1)
    curve = roc_curve(y, proba)
    fpr, tpr, _ = skm.roc_curve(y, proba, drop_intermediate=False)
    assert curve.fpr == pytest.approx(fpr.tolist()) and curve.tpr == pytest.approx(tpr.tolist())


def test_precision_recall_curve_equals_sklearns_and_average_precision() -> None:
    y, proba = scored(decimals=3)
    curve = precision_recall_curve(y, proba, max_points=150)
    precision, recall, _ = skm.precision_recall_curve(y, proba, drop_intermediate=False)
    assert curve.average_precision == pytest.approx(skm.average_precision_score(y, proba), abs=1e-12)
    assert curve.points == recall.size
    assert len(curve.recall) <= 150
    assert np.all(np.diff(curve.recall) >= 0) and np.all(np.diff(curve.thresholds) < 0)
    assert (curve.recall[0], curve.precision[0], curve.recall[-1]) == (0.0, 1.0, 1.0)
    assert on_curve(curve.recall, curve.precision, recall, precision)
    assert curve.prevalence == pytest.approx(y.mean())


def test_curves_of_text_labels_need_the_positive_class_only_when_it_is_ambiguous() -> None:
    y, proba = scored(n=400, seed=2)
    labels = np.where(y == 1, "churn", "stay")
    by_default = roc_curve(labels, proba)  # "stay" > "churn": the larger label is positive
    assert by_default.auc == pytest.approx(skm.roc_auc_score(labels == "stay", proba))
    named = roc_curve(labels, proba, pos_label="churn")
    assert named.auc == pytest.approx(skm.roc_auc_score(y, proba))
    three = np.where(y == 1, "churn", np.where(proba > 0.2, "stay", "left"))
    with pytest.raises(ValidationError, match="pos_label"):
        roc_curve(three, proba)
    assert roc_curve(three, proba, pos_label="churn").auc == pytest.approx(named.auc)


# -- calibration ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
def test_calibration_curve_equals_sklearns_with_its_calibration_error(strategy: str) -> None:
    y, proba = scored(seed=4)
    curve = calibration_curve(y, proba, n_bins=8, strategy=strategy)  # type: ignore[arg-type]
    prob_true, prob_pred = skc.calibration_curve(y, proba, n_bins=8, strategy=strategy)
    assert curve.fraction_positive == pytest.approx(prob_true.tolist(), abs=1e-12)
    assert curve.mean_predicted == pytest.approx(prob_pred.tolist(), abs=1e-12)
    assert sum(curve.counts) == y.size
    weights = np.array(curve.counts) / y.size
    assert curve.ece == pytest.approx(float(np.sum(weights * np.abs(prob_true - prob_pred))), abs=1e-12)
    assert curve.mce == pytest.approx(float(np.max(np.abs(prob_true - prob_pred))))
    assert curve.brier == pytest.approx(skm.brier_score_loss(y, proba))
    json.dumps(curve.to_dict(), allow_nan=False)


def test_expected_calibration_error_is_small_for_calibrated_and_large_for_overconfident_probabilities() -> None:
    rng = np.random.default_rng(5)
    proba = rng.random(50_000)
    y = (rng.random(proba.size) < proba).astype(int)  # calibrated by construction
    calibrated = calibration_curve(y, proba, n_bins=10)
    assert calibrated.ece < 0.015
    coin = (rng.random(proba.size) < 0.5).astype(int)
    overconfident = calibration_curve(coin, np.full(coin.size, 0.8), n_bins=10)  # says 0.8, happens half the time
    assert overconfident.ece == pytest.approx(0.8 - coin.mean(), abs=1e-12)
    assert overconfident.counts == (coin.size,) and overconfident.mce == overconfident.ece


# -- thresholds ----------------------------------------------------------------------------------------------
def test_threshold_table_equals_sklearn_at_every_threshold() -> None:
    y, proba = scored(seed=6, decimals=2)  # ties at the thresholds themselves
    table = threshold_table(y, proba)
    assert [r.threshold for r in table.rows] == pytest.approx([0.05 * i for i in range(1, 20)])
    for row in table.rows:
        pred = (proba >= row.threshold).astype(int)
        assert row.recall == pytest.approx(skm.recall_score(y, pred))
        assert row.f1 == pytest.approx(skm.f1_score(y, pred))
        assert row.accuracy == pytest.approx(skm.accuracy_score(y, pred))
        assert row.share_positive == pytest.approx(pred.mean())
        if pred.any():
            assert row.precision == pytest.approx(skm.precision_score(y, pred))
        assert (row.tn, row.fp, row.fn, row.tp) == tuple(skm.confusion_matrix(y, pred, labels=[0, 1]).ravel())
    assert table.best_f1().f1 == max(r.f1 for r in table.rows)
    assert len(table.to_frame()) == 19
    custom = threshold_table(y, proba, thresholds=[0.999, 0.3])
    assert [r.threshold for r in custom.rows] == [0.3, 0.999]
    assert np.isnan(custom.rows[1].precision) and custom.rows[1].to_dict()["precision"] is None


def test_classification_curves_from_predict_proba_output() -> None:
    rng = np.random.default_rng(7)
    n, classes = 3000, ["a", "b", "c"]
    y = rng.choice(classes, n)
    logits = rng.normal(size=(n, 3)) + 1.2 * (y[:, None] == np.array(classes)[None, :])
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    pred = np.array(classes)[proba.argmax(axis=1)]
    found = classification_curves(y, proba, y_pred=pred, pos_label="b")
    assert found.roc.auc == pytest.approx(skm.roc_auc_score(y == "b", proba[:, 1]))
    assert found.confusion is not None and found.confusion.overall.rows == n
    json.dumps(found.to_dict(), allow_nan=False)
    with pytest.raises(ValidationError, match="pos_label"):
        classification_curves(y, proba)
    binary = classification_curves((y == "b").astype(int), proba[:, 1])
    assert binary.pos_label == 1 and binary.confusion is None
    assert binary.roc.auc == pytest.approx(found.roc.auc)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: roc_curve([0, 0, 0], [0.1, 0.2, 0.3]), "classes"),
        (lambda: roc_curve([0, 1, 0], [0.1, 0.2, 0.3], pos_label=1, max_points=1), "max_points"),
        (lambda: roc_curve([0, 1, 0], [0.1, np.nan, 0.3]), "row 1"),
        (lambda: roc_curve([0, 1, 0], [0.1, 0.2]), "2 rows but y_true has 3"),
        (lambda: roc_curve([0, 1, 2], [0.1, 0.2, 0.3], pos_label=5), "both the positive class 5"),
        (lambda: calibration_curve([0, 1, 0], [0.1, 1.2, 0.3]), "in [0, 1]"),
        (lambda: calibration_curve([0, 1, 0], [0.1, 0.2, 0.3], strategy="kmeans"), "strategy"),  # type: ignore[arg-type]
        (lambda: calibration_curve([0, 1, 0], [0.1, 0.2, 0.3], n_bins=0), "n_bins"),
        (lambda: threshold_table([0, 1, 0], [0.1, 0.2, 0.3], thresholds=[]), "thresholds"),
        (lambda: threshold_table([0, 1, 0], [0.1, 0.2, 0.3], thresholds=["x"]), "thresholds"),
        (lambda: regression_errors([1.0, 2.0], [1.0, np.inf]), "y_pred must hold finite numbers"),
        (lambda: residual_report([1.0, 2.0], [1.0, 2.0], frame=pd.DataFrame({"x": [1]})), "frame has 1 rows"),
    ],
)
def test_bad_inputs_get_clear_errors(call: object, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        call()  # type: ignore[operator]
    assert message in str(caught.value), str(caught.value)


# -- regression ----------------------------------------------------------------------------------------------
def test_regression_errors_equal_sklearn() -> None:
    rng = np.random.default_rng(8)
    y = rng.normal(50, 10, 2000)
    pred = y + rng.normal(1.0, 4.0, 2000)
    errors = regression_errors(y, pred)
    assert errors.rows == 2000
    assert errors.mae == pytest.approx(skm.mean_absolute_error(y, pred))
    assert errors.rmse == pytest.approx(skm.root_mean_squared_error(y, pred))
    assert errors.r2 == pytest.approx(skm.r2_score(y, pred))
    assert errors.median_absolute_error == pytest.approx(skm.median_absolute_error(y, pred))
    assert errors.max_error == pytest.approx(skm.max_error(y, pred))
    assert errors.bias == pytest.approx(float(np.mean(pred - y)))
    assert regression_errors([3.0, 3.0], [3.0, 3.0]).r2 == skm.r2_score([3.0, 3.0], [3.0, 3.0])


def test_residuals_by_a_numeric_variable_in_quantile_bins() -> None:
    rng = np.random.default_rng(9)
    x = rng.gamma(2.0, 10.0, 4000)
    x[:40] = np.nan
    residuals = rng.normal(0.0, 1.0, x.size) + 0.1 * np.nan_to_num(x)  # the model under-predicts large x
    found = residual_bins(x, residuals, variable="x", n_bins=5)
    assert found.kind == "numeric" and found.labels[-1] == "__missing__"
    assert len(found.labels) == 6 and sum(found.counts) == x.size
    edges = np.quantile(x[~np.isnan(x)], np.linspace(0, 1, 6))
    for b in range(5):
        inside = (x >= edges[b]) & ((x < edges[b + 1]) if b < 4 else (x <= edges[b + 1]))
        assert found.counts[b] == inside.sum()
        assert found.left[b] == pytest.approx(edges[b]) and found.right[b] == pytest.approx(edges[b + 1])
        assert found.centre[b] == pytest.approx(x[inside].mean())
        assert found.mean[b] == pytest.approx(residuals[inside].mean())
        for q, values in found.quantiles.items():
            assert values[b] == pytest.approx(np.quantile(residuals[inside], q))
    assert found.mean[4] > found.mean[0] + 2  # the trend is visible
    assert found.counts[5] == 40 and found.mean[5] == pytest.approx(residuals[:40].mean())
    json.dumps(found.to_dict(), allow_nan=False)


def test_residuals_by_category_keep_the_most_frequent_and_group_the_rest() -> None:
    values = np.array(["a"] * 50 + ["b"] * 30 + ["c"] * 10 + ["d"] * 5 + [None] * 5, dtype=object)
    residuals = np.arange(values.size, dtype=np.float64)
    found = residual_bins(values, residuals, variable="plan", max_categories=2)
    assert found.kind == "categorical"
    assert found.labels == ("a", "b", "__other__", "__missing__")
    assert found.counts == (50, 30, 15, 5)
    assert found.mean[0] == pytest.approx(residuals[:50].mean())
    assert found.quantiles[0.5][2] == pytest.approx(np.median(residuals[80:95]))
    assert found.centre == (None, None, None, None)


def test_residual_report_covers_the_prediction_and_every_usable_feature() -> None:
    rng = np.random.default_rng(10)
    n = 1000
    frame = pd.DataFrame(
        {
            "size": rng.gamma(2, 50, n),
            "city": rng.choice(["paris", "lyon"], n),
            "new": rng.random(n) < 0.5,
            "listed": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 90, n), unit="D"),
        }
    )
    y = rng.normal(100, 20, n)
    pred = y + rng.normal(0, 5, n)
    report = residual_report(y, pred, frame, n_bins=4)
    assert report.by_prediction.variable == "prediction" and sum(report.by_prediction.counts) == n
    assert [b.variable for b in report.by_feature] == ["size", "city", "new"]  # the date column is skipped
    assert report.by_feature[0].kind == "numeric" and report.by_feature[1].kind == "categorical"
    assert report.errors.mae == pytest.approx(skm.mean_absolute_error(y, pred))
    overall_mean = float(np.mean(y - pred))
    weighted = np.dot(report.by_prediction.counts, report.by_prediction.mean) / n
    assert weighted == pytest.approx(overall_mean)
    json.dumps(report.to_dict(), allow_nan=False)
    with pytest.raises(ValidationError, match="holds dates"):
        residual_bins(frame["listed"], y - pred, variable="listed")
