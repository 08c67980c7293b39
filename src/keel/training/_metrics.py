"""Validation metrics by task."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from keel.training._spec import CLASSIFICATION_METRICS, REGRESSION_METRICS

#: Metrics where a smaller value is better; every other metric is better when larger.
LOWER_IS_BETTER = frozenset({"mae", "rmse", "log_loss", "brier"})


def primary_metric(task: str, metrics: dict[str, Any] | None = None) -> str:
    """The metric decay and challenger/champion comparisons use by default: ROC AUC, or RMSE for regression."""
    wanted = "roc_auc" if task == "classification" else "rmse"
    if metrics is None or metrics.get(wanted) is not None:
        return wanted
    fallback = "accuracy" if task == "classification" else "mae"
    return fallback if metrics.get(fallback) is not None else wanted


def worse_by(metric: str, baseline: float, value: float) -> float:
    """How much worse ``value`` is than ``baseline``, relative to ``|baseline|`` (negative: better)."""
    delta = (value - baseline) if metric in LOWER_IS_BETTER else (baseline - value)
    return delta / abs(baseline) if baseline else delta


def default_metrics(task: str) -> list[str]:
    """Every metric of ``task``."""
    return list(CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS)


def compute_metrics(
    task: str,
    names: list[str],
    y_true: np.ndarray,
    y_pred: np.ndarray,
    proba: np.ndarray | None = None,
    classes: list[Any] | None = None,
) -> dict[str, float | None]:
    """The named metrics; a metric that is undefined on these rows (ROC AUC with one class) is ``None``."""
    from sklearn import metrics as m

    out: dict[str, float | None] = {}
    if task == "regression":
        for name in names:
            if name == "mae":
                out[name] = float(m.mean_absolute_error(y_true, y_pred))
            elif name == "rmse":
                out[name] = float(math.sqrt(m.mean_squared_error(y_true, y_pred)))
            elif name == "r2":
                out[name] = float(m.r2_score(y_true, y_pred)) if len(y_true) > 1 else None
        return out
    binary = classes is not None and len(classes) == 2
    average = "binary" if binary else "macro"
    pos = classes[1] if binary and classes is not None else None
    for name in names:
        try:
            if name == "accuracy":
                out[name] = float(m.accuracy_score(y_true, y_pred))
            elif name == "precision":
                kw: dict[str, Any] = {"pos_label": pos} if binary else {}
                out[name] = float(m.precision_score(y_true, y_pred, average=average, zero_division=0, **kw))
            elif name == "recall":
                kw = {"pos_label": pos} if binary else {}
                out[name] = float(m.recall_score(y_true, y_pred, average=average, zero_division=0, **kw))
            elif name == "f1":
                kw = {"pos_label": pos} if binary else {}
                out[name] = float(m.f1_score(y_true, y_pred, average=average, zero_division=0, **kw))
            elif name == "roc_auc" and proba is not None:
                if binary:
                    out[name] = float(m.roc_auc_score(y_true == pos, proba[:, 1]))
                else:
                    out[name] = float(m.roc_auc_score(y_true, proba, multi_class="ovr", labels=classes))
            elif name == "log_loss" and proba is not None:
                out[name] = float(m.log_loss(y_true, proba, labels=classes))
            elif name == "brier" and proba is not None and binary:
                out[name] = float(m.brier_score_loss(y_true == pos, proba[:, 1]))
            else:
                out[name] = None
        except ValueError:  # e.g. only one class present among the validation rows
            out[name] = None
    return out
