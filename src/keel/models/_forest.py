"""The level-wise walk of a histogram gradient boosting model's trees: a speed path beside the package.

For small batches every tree is walked at once with NumPy; the result is kept only when it reproduces
scikit-learn's own raw predictions bit for bit on a probe (see :class:`_Forest`).
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def _is_hgb_classifier(estimator: Any) -> bool:
    try:
        from sklearn.ensemble import HistGradientBoostingClassifier
    except ImportError:  # pragma: no cover - scikit-learn is a dependency
        return False
    return (
        type(estimator) is HistGradientBoostingClassifier
        and hasattr(estimator, "_raw_predict")
        and hasattr(estimator, "_loss")
    )


#: Up to this many rows, a histogram gradient boosting model's trees are walked all at once with NumPy (one
#: step per tree level for every tree together) instead of tree by tree: scikit-learn's per-tree call costs
#: a few microseconds each (hundreds per row), which is most of a one-record request.
SMALL_BATCH_ROWS = 64
_FORESTS: weakref.WeakKeyDictionary[Any, _Forest | None] = weakref.WeakKeyDictionary()


class _Forest:
    """Every tree of a fitted histogram gradient boosting model in one node table, walked level by level.

    The raw predictions are summed in scikit-learn's order (zero, plus the baseline, plus each iteration's
    tree in turn), so they are the same floats; :meth:`of` keeps a forest only when it reproduces the
    estimator's ``_raw_predict`` bit for bit on a probe, and never for categorical splits.
    """

    def __init__(self, estimator: Any) -> None:
        per_class: list[list[np.ndarray]] = [[] for _ in range(estimator.n_trees_per_iteration_)]
        for iteration in estimator._predictors:
            for k, predictor in enumerate(iteration):
                per_class[k].append(predictor.nodes)
        self.baseline = np.asarray(estimator._baseline_prediction, dtype=np.float64).ravel()
        self.n_features = int(estimator.n_features_in_)
        self.classes: list[tuple[np.ndarray, ...]] = []
        for trees in per_class:
            sizes = np.array([len(t) for t in trees])
            offsets = np.r_[0, np.cumsum(sizes)[:-1]]
            nodes = np.concatenate(trees)
            shift = np.repeat(offsets, sizes)
            self.classes.append(
                (
                    offsets.astype(np.intp),  # the roots
                    nodes["feature_idx"].astype(np.intp),
                    nodes["num_threshold"].astype(np.float64),
                    nodes["missing_go_to_left"].astype(bool),
                    (nodes["left"].astype(np.intp) + shift),
                    (nodes["right"].astype(np.intp) + shift),
                    nodes["is_leaf"].astype(bool),
                    nodes["value"].astype(np.float64),
                )
            )
        self.categorical = any(bool(t["is_categorical"].any()) for trees in per_class for t in trees)

    def raw(self, x: np.ndarray) -> np.ndarray:
        """``estimator._raw_predict(x)`` for float64 rows ``x``."""
        n = x.shape[0]
        out = np.empty((n, len(self.classes)), dtype=np.float64, order="F")
        for k, (roots, feature, threshold, nan_left, left, right, leaf, value) in enumerate(self.classes):
            node = np.broadcast_to(roots, (n, roots.size)).copy()
            active = ~leaf[node]
            while active.any():
                at = node[active]
                cell = x[np.nonzero(active)[0], feature[at]]
                go_left = np.where(np.isnan(cell), nan_left[at], cell <= threshold[at])
                node[active] = np.where(go_left, left[at], right[at])
                active = ~leaf[node]
            # 0, the baseline, then each tree's leaf in iteration order, added one at a time (accumulate is
            # sequential, unlike sum): the very additions scikit-learn makes, so the same floats.
            terms = np.empty((n, node.shape[1] + 2), dtype=np.float64)
            terms[:, 0] = 0.0
            terms[:, 1] = self.baseline[k]
            terms[:, 2:] = value[node]
            out[:, k] = np.add.accumulate(terms, axis=1)[:, -1]
        return out

    @classmethod
    def of(cls, estimator: Any) -> _Forest | None:
        """The estimator's forest, compiled once and kept only if it reproduces ``_raw_predict`` exactly."""
        try:
            return _FORESTS[estimator]
        except KeyError:
            pass
        forest: _Forest | None
        try:
            forest = cls(estimator)
            if forest.categorical:
                forest = None
            else:
                probe = _forest_probe(forest)
                if not np.array_equal(forest.raw(probe), estimator._raw_predict(probe)):
                    forest = None
        except Exception:  # an estimator this does not understand: scikit-learn's own walk
            log.debug("no NumPy forest walk for %r", type(estimator).__name__, exc_info=True)
            forest = None
        _FORESTS[estimator] = forest
        return forest


def _forest_probe(forest: _Forest) -> np.ndarray:
    """Rows that take every split's both ways at its threshold, plus missing values and random ones."""
    rng = np.random.default_rng(0)
    thresholds = np.concatenate([c[2][~c[6]] for c in forest.classes])
    features = np.concatenate([c[1][~c[6]] for c in forest.classes])
    rows = [np.full(forest.n_features, np.nan)]
    for f in range(forest.n_features):
        ts = np.unique(thresholds[features == f])
        picks = ts[rng.integers(0, ts.size, 24)] if ts.size else np.array([0.0])
        for t in picks:
            for v in (t, np.nextafter(t, np.inf), np.nextafter(t, -np.inf)):
                row = rng.standard_normal(forest.n_features)
                row[f] = v
                rows.append(row)
    probe = np.array(rows, dtype=np.float64)
    probe[rng.random(probe.shape) < 0.1] = np.nan
    return probe


def _joint_hgb(estimator: Any, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(predict(X), predict_proba(X))`` of a ``HistGradientBoostingClassifier`` from one walk of its trees,
    computed as its own ``predict`` and ``predict_proba`` compute them (checked against them when the plan is
    built). Small batches walk every tree at once (:class:`_Forest`)."""
    forest = _Forest.of(estimator) if matrix.shape[0] <= SMALL_BATCH_ROWS else None
    if forest is not None and matrix.shape[1] != forest.n_features:
        forest = None  # scikit-learn's own walk raises its own error
    raw = forest.raw(np.asarray(matrix, dtype=np.float64)) if forest is not None else estimator._raw_predict(matrix)
    # np.argmax([0.5, 0.5]) is 0, not 1: "> 0", as scikit-learn's predict
    encoded = (raw.ravel() > 0).astype(int) if raw.shape[1] == 1 else np.argmax(raw, axis=1)
    return np.asarray(estimator.classes_[encoded]), np.asarray(estimator._loss.predict_proba(raw))
