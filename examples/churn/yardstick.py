"""Yardsticks for a churn model's validation metrics: what no skill scores, and what the simulation's own formula does.

A validation ROC AUC of 0.82 means little alone. Two scores on the same rows give it a scale:

- no skill: everyone gets the training months' churn rate as their probability and is predicted to stay;
- the formula: the log-odds ``generate.py`` drew each label from (``churn_logit``), which knows the true weights but
  not the part of churn no feature shows (each customer's unseen propensity); a model trained on these features can
  come close to it, not past it by much.

``keel demo`` prints both beside the trained model's metrics. Importing this module declares nothing and does no work.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from sklearn import metrics

from generate import PLANS, REGIONS, churn_logit  # the simulation beside this file

if TYPE_CHECKING:
    from keel import Project

__all__ = ["FORMULA_INPUTS", "formula_roc_auc", "no_skill_metrics"]

#: The inputs of the simulation's churn formula (``churn_logit`` in generate.py), by feature view.
FORMULA_INPUTS = {
    "customer_profile": ("plan", "region", "tenure_days"),
    "customer_activity": ("spend_30d", "sessions_7d", "support_tickets_30d", "days_since_last_order"),
}
#: The label column of the example's labels.
LABEL = "churned"


def no_skill_metrics(y: np.ndarray, rate: float, names: list[str]) -> dict[str, float | None]:
    """The metrics ``names`` of a model that gives every row the churn probability ``rate`` and predicts "stays".

    Scored as Keel validates a binary classifier (scikit-learn's metrics, an undefined precision counted as 0); a
    metric that cannot be computed on these rows (ROC AUC with one class) or is not a classification metric is
    ``None``.
    """
    proba = np.tile([1.0 - rate, rate], (len(y), 1))
    stays = np.zeros_like(y)
    scores = {
        "accuracy": lambda: metrics.accuracy_score(y, stays),
        "precision": lambda: metrics.precision_score(y, stays, zero_division=0),
        "recall": lambda: metrics.recall_score(y, stays, zero_division=0),
        "f1": lambda: metrics.f1_score(y, stays, zero_division=0),
        "roc_auc": lambda: metrics.roc_auc_score(y, proba[:, 1]),
        "log_loss": lambda: metrics.log_loss(y, proba, labels=[0, 1]),
        "brier": lambda: metrics.brier_score_loss(y, proba[:, 1]),
    }
    out: dict[str, float | None] = {}
    for name in names:
        try:
            out[name] = float(scores[name]()) if name in scores else None
        except ValueError:  # only one class among the rows
            out[name] = None
    return out


def formula_roc_auc(project: Project, rows: pd.DataFrame) -> float | None:
    """ROC AUC, on the label rows ``rows``, of the churn log-odds the generator drew their labels from.

    The features are read point in time, as the model's were; rows with a plan or region the formula does not know,
    or with an input missing, are left out. ``None`` when no rows remain or they hold one class.
    """
    if rows.empty:
        return None
    refs = [f"{view}:{feature}" for view, features in FORMULA_INPUTS.items() for feature in features]
    frame = project.historical_features(rows, refs)
    codes = {
        "plan": frame["plan"].map({p: i for i, p in enumerate(PLANS)}),
        "region": frame["region"].map({r: i for i, r in enumerate(REGIONS)}),
    }
    known = (codes["plan"].notna() & codes["region"].notna()).to_numpy()
    inputs = {f: _values(frame[f], known) for fs in FORMULA_INPUTS.values() for f in fs if f not in codes}
    inputs.update({name: _values(code, known).astype(np.int64) for name, code in codes.items()})
    logit = np.asarray(churn_logit(**inputs), dtype=np.float64)
    y = frame[LABEL].to_numpy()[known]
    finite = np.isfinite(logit)
    if len(np.unique(y[finite])) < 2:
        return None
    return float(metrics.roc_auc_score(y[finite], logit[finite]))


def _values(column: pd.Series, keep: np.ndarray) -> np.ndarray:
    """The rows ``keep`` of ``column`` as floats, a missing value as NaN."""
    return np.asarray(column.to_numpy(dtype=np.float64, na_value=np.nan)[keep])
