"""Performance over time: aligned windows, point estimates equal to the training metrics, bootstrap intervals."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from keel.errors import ValidationError
from keel.monitoring import WindowMetrics, overall, performance_over_time
from keel.training._metrics import compute_metrics

START = pd.Timestamp("2024-01-04", tz="UTC")  # a Thursday: epoch-aligned 7-day windows start on Thursdays


def _binary(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, pd.Series]:
    rng = np.random.default_rng(seed)
    y = np.where(rng.random(n) < 0.4, "yes", "no")
    p = np.clip((y == "yes") * 0.35 + rng.random(n) * 0.65, 0, 1)
    proba = np.c_[1 - p, p]
    pred = np.where(p > 0.5, "yes", "no")
    ts = pd.Series(START + pd.to_timedelta(rng.integers(0, 21 * 86400, n), unit="s"))
    return y, pred, proba, ts


def test_windows_are_aligned_to_the_window_size() -> None:
    y, pred, proba, ts = _binary(3000, 1)
    windows = performance_over_time(
        y, pred, timestamps=ts, task="classification", classes=["no", "yes"], proba=proba, n_boot=0
    )
    assert [w.start for w in windows] == [START, START + pd.Timedelta(days=7), START + pd.Timedelta(days=14)]
    assert all(w.end - w.start == pd.Timedelta(days=7) for w in windows)  # type: ignore[operator]
    assert sum(w.rows for w in windows) == 3000
    monthly = performance_over_time(y, pred, timestamps=ts, task="classification", window="MS", n_boot=0)
    assert [w.start for w in monthly] == [pd.Timestamp("2024-01-01", tz="UTC")]
    assert monthly[0].end == pd.Timestamp("2024-02-01", tz="UTC")


def test_point_estimates_are_the_training_metrics() -> None:
    y, pred, proba, ts = _binary(3000, 2)
    window = overall(y, pred, timestamps=ts, task="classification", classes=["no", "yes"], proba=proba, n_boot=0)
    assert window.start == ts.min() and window.end == ts.max()
    expected = compute_metrics("classification", list(window.metrics), y, pred, proba, ["no", "yes"])
    assert {k: v.value for k, v in window.metrics.items()} == expected
    assert window.metrics["roc_auc"].value == pytest.approx(skm.roc_auc_score(y == "yes", proba[:, 1]))


def test_intervals_contain_the_estimate_and_narrow_with_more_rows() -> None:
    small = overall(*_binary(400, 3)[:2], task="classification", classes=["no", "yes"], proba=_binary(400, 3)[2])
    y, pred, proba, _ = _binary(20_000, 3)
    large = overall(y, pred, task="classification", classes=["no", "yes"], proba=proba)
    for name, est in small.metrics.items():
        assert est.low is not None and est.high is not None and est.value is not None
        assert est.low <= est.value <= est.high, name
        big = large.metrics[name]
        assert big.low is not None and big.high is not None
        assert big.high - big.low < (est.high - est.low) / 3, name  # sqrt(50) ~ 7 times narrower


def test_vectorised_intervals_match_the_resampling_loop() -> None:
    """The weighted formulas give, resample by resample, what compute_metrics gives on resampled rows."""
    from keel.monitoring._performance import _Inputs

    y, pred, proba, _ = _binary(300, 4)
    names = ["accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "brier"]
    data = _Inputs.of(y, pred, "classification", ["no", "yes"], proba, names)
    fast = data._bootstrap(y, pred, proba, 20, np.random.default_rng(0))
    draws = np.random.default_rng(0).integers(0, 300, size=(20, 300))
    for b in range(20):
        idx = np.sort(draws[b])
        slow = compute_metrics("classification", names, y[idx], pred[idx], proba[idx], ["no", "yes"])
        for name in names:
            assert fast[name][b] == pytest.approx(slow[name], rel=1e-9, abs=1e-12), name


def test_regression_intervals_and_determinism_by_seed() -> None:
    rng = np.random.default_rng(5)
    y = rng.normal(size=2000)
    pred = y + rng.normal(scale=0.3, size=2000)
    ts = START + pd.to_timedelta(np.arange(2000) * 600, unit="s")
    first = performance_over_time(y, pred, timestamps=ts, task="regression", window="1D", seed=7)
    again = performance_over_time(y, pred, timestamps=ts, task="regression", window="1D", seed=7)
    other = performance_over_time(y, pred, timestamps=ts, task="regression", window="1D", seed=8)
    assert first == again
    assert first != other
    for w in first:
        for est in w.metrics.values():
            assert est.low is not None and est.high is not None and est.value is not None
            assert est.low <= est.value <= est.high


def test_undefined_metric_is_none() -> None:
    y = np.array(["yes"] * 50)
    proba = np.c_[np.full(50, 0.2), np.full(50, 0.8)]
    result = overall(y, y, task="classification", classes=["no", "yes"], proba=proba, metrics=["roc_auc", "accuracy"])
    assert result.metrics["roc_auc"].value is None and result.metrics["roc_auc"].low is None
    assert result.metrics["accuracy"].value == 1.0


def test_window_metrics_round_trip_through_json() -> None:
    y, pred, proba, ts = _binary(500, 6)
    windows = performance_over_time(y, pred, timestamps=ts, task="classification", classes=["no", "yes"], proba=proba)
    data = json.loads(json.dumps([w.to_dict() for w in windows]))
    assert [WindowMetrics.from_dict(d) for d in data] == windows


def test_bad_inputs_are_validation_errors() -> None:
    y, pred, proba, ts = _binary(100, 7)
    with pytest.raises(ValidationError, match="no rows"):
        overall([], [], task="regression")
    with pytest.raises(ValidationError, match="99 values for 100"):
        overall(y, pred[:99], task="classification")
    with pytest.raises(ValidationError, match="unknown classification metric"):
        overall(y, pred, task="classification", metrics=["mae"])
    with pytest.raises(ValidationError, match="not a pandas offset alias"):
        performance_over_time(y, pred, timestamps=ts, task="classification", window="fortnight")
    with pytest.raises(ValidationError, match="proba needs classes"):
        overall(y, pred, task="classification", proba=proba)
    with pytest.raises(ValidationError, match="task must be"):
        overall(y, pred, task="ranking")
    ts_missing = ts.copy()
    ts_missing[3] = None
    with pytest.raises(ValidationError, match="first at row 3"):
        performance_over_time(y, pred, timestamps=ts_missing, task="classification")


def test_vectorised_multiclass_intervals_match_the_resampling_loop() -> None:
    """Macro precision, recall and F1 and one-vs-rest ROC AUC, resample by resample, as compute_metrics."""
    from keel.monitoring._performance import _Inputs

    rng = np.random.default_rng(8)
    classes = ["high", "low", "mid"]
    y = rng.choice(classes, 120, p=[0.2, 0.5, 0.3])
    proba = rng.dirichlet([1, 1, 1], 120)
    proba[np.arange(120), [classes.index(v) for v in y]] += 0.6
    proba /= proba.sum(axis=1, keepdims=True)
    pred = np.array(classes)[proba.argmax(axis=1)]
    pred[:3] = "low"
    names = ["accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"]
    data = _Inputs.of(y, pred, "classification", classes, proba, names)
    fast = data._bootstrap(y, pred, proba, 30, np.random.default_rng(1))
    draws = np.random.default_rng(1).integers(0, 120, size=(30, 120))
    for b in range(30):
        idx = np.sort(draws[b])
        slow = compute_metrics("classification", names, y[idx], pred[idx], proba[idx], classes)
        for name in names:
            if slow[name] is None or not np.isfinite(slow[name]):
                assert not np.isfinite(fast[name][b]), name
            else:
                assert fast[name][b] == pytest.approx(slow[name], rel=1e-9, abs=1e-12), name


def test_many_multiclass_windows_are_quick_enough_to_check_daily() -> None:
    rng = np.random.default_rng(9)
    classes = ["high", "low", "mid"]
    y = rng.choice(classes, 3000)
    proba = rng.dirichlet([1, 1, 1], 3000)
    pred = np.array(classes)[proba.argmax(axis=1)]
    ts = pd.Series(START + pd.to_timedelta(rng.integers(0, 60 * 86400, 3000), unit="s"))
    windows = performance_over_time(
        y, pred, timestamps=ts, task="classification", classes=classes, proba=proba, window="1D"
    )
    assert len(windows) == 60
    for w in windows:
        for name in ("precision", "recall", "f1", "roc_auc"):
            est = w.metrics[name]
            assert est.value is not None and est.low is not None and est.low <= est.value <= est.high, name
