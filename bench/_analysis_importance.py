"""Permutation importance: Keel's batched ``permutation_importance`` against scikit-learn's, same model and rows.

Workload ``analysis.permutation_importance`` (one JSON line):

- Keel: ``keel.analysis._importance.permutation_importance(lambda df: model.predict_proba(df)[:, 1], X, y,
  score=roc_auc_score, n_repeats=5, seed=0)`` — the five permuted copies of X stacked into one frame per
  feature and predicted in one call (21 calls in all).
- Baseline: ``sklearn.inspection.permutation_importance(model, X, y, scoring="roc_auc", n_repeats=5,
  random_state=0, n_jobs=None)`` — one call per feature and repeat (101 calls).

Model and data (seeded, generated in memory): ``HistGradientBoostingClassifier(max_iter=100,
early_stopping=False)`` fitted on 20,000 rows; importance measured on 100,000 held-out rows x 20 float
features (8 informative, 12 noise; binary target through a logistic link). ``--quick``: 20,000 held-out rows.
Both sides see the same DataFrame; HistGradientBoosting predicts with OpenMP on every core on both sides.

**Target: Keel <= 1.1 x the baseline** (faster welcome). Checks: every feature's mean importance agrees with
scikit-learn's within 4 standard errors of the difference of two means of 5 repeats (the permutations differ,
so only the distributions can agree), the predict calls of each side, and the informative features ranking
above the noise ones on both sides.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common

SEED = 20241214
FULL = {"rows": 100_000}
QUICK = {"rows": 20_000}
FEATURES = 20
INFORMATIVE = 8
TRAIN_ROWS = 20_000
N_REPEATS = 5
TARGET = 1.1
RUNS = 3


def make_data(rows: int) -> tuple[Any, Any, Any, Any]:
    """(train X, train y, held-out X, held-out y): 20 float features, the first 8 informative."""
    import pandas as pd

    rng = np.random.default_rng(SEED)
    total = TRAIN_ROWS + rows
    values = rng.standard_normal((total, FEATURES))
    weights = np.zeros(FEATURES)
    weights[:INFORMATIVE] = np.linspace(1.5, 0.2, INFORMATIVE)
    logit = values @ weights + 0.5 * values[:, 0] * values[:, 1]
    y = (rng.random(total) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    frame = pd.DataFrame({f"x{j:02d}": values[:, j] for j in range(FEATURES)})
    held = frame.iloc[TRAIN_ROWS:].reset_index(drop=True)
    return frame.iloc[:TRAIN_ROWS], y[:TRAIN_ROWS], held, y[TRAIN_ROWS:]


def run(quick: bool, *, runs: int = RUNS, warmup: int = 1) -> dict[str, Any]:
    """Time both sides (interleaved, ``runs`` timed runs each after ``warmup``) and return the result line,
    with ``keel_s``, ``sklearn_s``, ``ratio``, ``rows`` and ``features`` on top."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.inspection import permutation_importance as sklearn_permutation_importance
    from sklearn.metrics import roc_auc_score

    from keel.analysis._importance import permutation_importance

    rows = (QUICK if quick else FULL)["rows"]
    X_train, y_train, X, y = make_data(rows)
    model = HistGradientBoostingClassifier(max_iter=100, early_stopping=False, random_state=0)
    model.fit(X_train, y_train)
    common.log(f"fitted on {TRAIN_ROWS:,} rows; measuring on {rows:,} rows x {FEATURES} features")

    def keel_side() -> Any:
        return permutation_importance(
            lambda df: model.predict_proba(df)[:, 1], X, y, score=roc_auc_score, n_repeats=N_REPEATS, seed=0
        )

    def sklearn_side() -> Any:
        return sklearn_permutation_importance(
            model, X, y, scoring="roc_auc", n_repeats=N_REPEATS, random_state=0, n_jobs=None
        )

    timings = common.interleaved({"keel": keel_side, "sklearn": sklearn_side}, runs=runs, warmup=warmup)
    for side, t in timings.items():
        common.log(f"{side}: median {t.median_s:.2f}s runs {[round(r, 2) for r in t.runs]}")
    ours, theirs = timings["keel"].last, timings["sklearn"].last
    names = list(X.columns)
    disagree = []
    for j, name in enumerate(names):
        mine = ours[name]
        se = math.sqrt((np.var(mine.values, ddof=1) + np.var(theirs.importances[j], ddof=1)) / N_REPEATS)
        if abs(mine.mean - float(theirs.importances_mean[j])) > 4 * se + 1e-12:
            disagree.append(name)
    informative = set(names[:INFORMATIVE])
    their_ranking = [names[j] for j in np.argsort(-theirs.importances_mean, kind="stable")]
    line = common.result(
        "analysis.permutation_importance",
        params={
            "rows": rows,
            "features": FEATURES,
            "informative": INFORMATIVE,
            "n_repeats": N_REPEATS,
            "train_rows": TRAIN_ROWS,
            "model": "HistGradientBoostingClassifier(max_iter=100, early_stopping=False)",
            "scorer": "roc_auc",
            "quick": quick,
            "seed": SEED,
        },
        keel={**timings["keel"].as_json(), "predict_calls": ours.predict_calls},
        baseline_name="sklearn.inspection.permutation_importance (n_jobs=None, same scorer and repeats)",
        baseline={**timings["sklearn"].as_json(), "predict_calls": 1 + FEATURES * N_REPEATS},
        ratio_max=TARGET,
        checks={
            "means_agree_within_4_se": not disagree,
            "features_disagreeing": disagree,
            "informative_first_keel": set(ours.ranking[:INFORMATIVE]) == informative,
            "informative_first_sklearn": set(their_ranking[:INFORMATIVE]) == informative,
        },
    )
    return {
        "keel_s": line["keel"]["median_s"],
        "sklearn_s": line["baseline"]["median_s"],
        "rows": rows,
        "features": FEATURES,
        **line,
    }


def main(argv: list[str] | None = None) -> int:
    args = common.parse_args(common.parser(__doc__.splitlines()[0], runs=RUNS), argv)
    if not common.selected(args, "analysis.permutation_importance"):
        return 0
    common.emit(run(args.quick, runs=args.runs, warmup=args.warmup), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
