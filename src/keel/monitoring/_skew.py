"""Serving/training skew: the features a model was served, as its prediction log holds them, against the features it
was trained on, as the reference profile stored with its run holds them — per feature, with the distances feature
stability uses (:mod:`keel.validation._distances`: PSI and Jensen–Shannon for numeric features, L-infinity and
Jensen–Shannon for categorical ones, a chi-squared test when the log holds few rows).

This is what catches a feature computed one way for training and another at serving time: an on-demand feature
whose online code path differs, a client sending cents where training saw dollars, a default filled in for a
missing value. Drift monitoring asks "has the world changed?"; this asks "are we feeding the model what it was
trained on?", bucket by bucket, missing values included.

Buckets: a numeric feature's deciles of the training values (their interior cut points, ties removed; bins
closed on the right) and a bucket of missing values; a categorical feature's training categories (the profile's
most frequent values and its ``__other__``), the values training never saw, and missing values.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from keel.monitoring._drift import align_categories, psi_edges, reference_cdf
from keel.profiles._profile import ColumnProfile, ReferenceProfile, as_float, category_counts
from keel.validation import ShiftThresholds
from keel.validation._distances import decide
from keel.validation._skew import FeatureSkew, ServingSkew

__all__ = ["serving_skew"]

DECILES = 10
MISSING = "(missing)"


def _numeric_counts(ref: ColumnProfile, values: np.ndarray) -> tuple[list[str], np.ndarray, np.ndarray]:
    edges = psi_edges(ref.quantiles, DECILES)
    ref_cdf = np.concatenate([[0.0], reference_cdf(ref.quantiles, edges, "right"), [1.0]])
    training = np.concatenate([[float(ref.missing)], np.diff(ref_cdf) * ref.count])
    present = np.sort(values[~np.isnan(values)])
    cut = np.concatenate([[0], np.searchsorted(present, edges, side="right"), [present.size]])
    serving = np.concatenate([[float(values.size - present.size)], np.diff(cut).astype(np.float64)])
    labels = [MISSING]
    for i in range(edges.size + 1):
        if i == 0:
            labels.append(f"≤ {edges[0]:.6g}" if edges.size else "present")
        elif i == edges.size:
            labels.append(f"> {edges[-1]:.6g}")
        else:
            labels.append(f"({edges[i - 1]:.6g}, {edges[i]:.6g}]")
    return labels, training, serving


def _categorical_counts(ref: ColumnProfile, values: pd.Series) -> tuple[list[str], np.ndarray, np.ndarray]:
    counts, missing = category_counts(values)
    names, training, serving = align_categories(ref.frequencies, counts)
    return (
        [MISSING, *names],
        np.concatenate([[float(ref.missing)], training]),
        np.concatenate([[float(missing)], serving]),
    )


def serving_skew(
    model: str,
    profile: ReferenceProfile,
    served: pd.DataFrame,
    *,
    thresholds: ShiftThresholds | None = None,
    window: tuple[datetime | None, datetime | None] = (None, None),
) -> ServingSkew:
    """Compare the served features (one column per feature, one row per logged prediction) with the training
    profile; see the module docstring."""
    thresholds = thresholds or ShiftThresholds()
    skipped: dict[str, str] = {}
    found: list[tuple[str, list[str], np.ndarray, np.ndarray, str]] = []
    for name, ref in profile.columns.items():
        if name not in served.columns:
            skipped[name] = "not in the prediction log"
            continue
        if ref.count == 0:
            skipped[name] = "no values in training"
            continue
        if ref.kind == "numeric":
            values = as_float(served[name])
            if values is None:
                skipped[name] = f"numeric in training, {served[name].dtype} values that are not numbers when served"
                continue
            labels, training, serving = _numeric_counts(ref, values)
        else:
            labels, training, serving = _categorical_counts(ref, served[name])
        found.append((name, labels, training, serving, ref.kind))
    if len(served) == 0:
        return ServingSkew(model, *window, 0, [], dict.fromkeys(profile.columns, "no logged rows"), thresholds)
    shifts = decide([(kind, training, serving) for _, _, training, serving, kind in found], thresholds)
    features = [
        FeatureSkew(name, labels, list(training / training.sum()), list(serving / serving.sum()), shift)
        for (name, labels, training, serving, _), shift in zip(found, shifts, strict=True)
    ]
    return ServingSkew(model, *window, len(served), features, skipped, thresholds)
