"""Segment metrics: 1,000 bootstrap resamples over 1,000,000 scored rows and 20 segments, against scoring them once.

Workload ``analysis.segment_metrics`` (one JSON line):

- Keel: ``keel.analysis._segments.segment_metrics`` of a binary classifier's labels and probabilities with
  ``n_boot=1000`` — accuracy, balanced accuracy, F1, ROC AUC and log loss, each with a percentile bootstrap
  interval, for all rows and 20 segments (5 regions, 5 channels, 5 quantile bins of each of two features).
- Baseline: ``HistGradientBoostingClassifier.predict_proba`` of the same rows once (fitted beforehand on a
  20,000-row sample; the fit is not timed) — the time it took to produce the scores being analysed.

Target (issue #14): Keel under the time of scoring the rows once, ratio < 1.0.

Data (seeded, in memory): 20 standard-normal features, a label from a logistic model of eight of them, two
categorical columns to segment by. ``--quick``: 100,000 rows. Runs: 3 per side after one warm-up, interleaved.
Checks: the overall point estimates equal scikit-learn's metrics on the same rows, every interval holds its
estimate, and the 20 segments are all there.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common

SEED = 20250114
FULL = {"rows": 1_000_000}
QUICK = {"rows": 100_000}
FEATURES = 20
N_BOOT = 1000
FIT_ROWS = 20_000
TARGET = 1.0
SPECS = ["region", "channel", "x0:5", "x1:5"]


def make_data(rows: int) -> tuple[Any, Any, Any]:
    """(features as a float matrix, labels, frame of the segment columns)."""
    import pandas as pd

    rng = np.random.default_rng(SEED)
    x = rng.standard_normal((rows, FEATURES))
    logit = x[:, :8] @ np.linspace(1.2, 0.2, 8) - 0.8
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    frame = pd.DataFrame(
        {
            "region": rng.choice(["north", "south", "east", "west", "centre"], rows, p=[0.3, 0.25, 0.2, 0.15, 0.1]),
            "channel": rng.choice(["web", "app", "store", "phone", "partner"], rows, p=[0.4, 0.3, 0.15, 0.1, 0.05]),
            "x0": x[:, 0],
            "x1": x[:, 1],
        }
    )
    return x, y, frame


def run(quick: bool, runs: int = 3, warmup: int = 1) -> dict[str, Any]:
    """Time both sides and return the result line (house schema plus the issue's summary keys)."""
    from sklearn import metrics as skm
    from sklearn.ensemble import HistGradientBoostingClassifier

    from keel.analysis._segments import segment_metrics, segments_of

    rows = (QUICK if quick else FULL)["rows"]
    started = time.perf_counter()
    x, y, frame = make_data(rows)
    model = HistGradientBoostingClassifier(max_iter=100, random_state=0).fit(x[:FIT_ROWS], y[:FIT_ROWS])
    elapsed = time.perf_counter() - started
    common.log(f"generated {rows:,} rows x {FEATURES} features, fitted on {FIT_ROWS:,} rows in {elapsed:.1f}s")

    started = time.perf_counter()
    segments = segments_of(frame, SPECS)
    segments_s = time.perf_counter() - started
    proba = model.predict_proba(x)[:, 1]
    pred = (proba >= 0.5).astype(np.int64)

    def keel_side() -> Any:
        return segment_metrics(y, pred, proba=proba, task="classification", segments=segments, n_boot=N_BOOT)

    def baseline() -> Any:
        return model.predict_proba(x)

    timings = common.interleaved({"keel": keel_side, "baseline": baseline}, runs=runs, warmup=warmup)
    for side, t in timings.items():
        common.log(f"analysis.segment_metrics {side}: median {t.median_s:.3f}s runs {[round(r, 3) for r in t.runs]}")
    report = timings["keel"].last
    overall = report.overall.metrics
    expected = {
        "accuracy": skm.accuracy_score(y, pred),
        "balanced_accuracy": skm.balanced_accuracy_score(y, pred),
        "f1": skm.f1_score(y, pred),
        "roc_auc": skm.roc_auc_score(y, proba),
        "log_loss": skm.log_loss(y, proba),
    }
    differences = {name: abs(overall[name].value - value) for name, value in expected.items()}
    entries = [report.overall, *report.segments]
    holds = all(e.metrics[m].low <= e.metrics[m].value <= e.metrics[m].high for e in entries for m in report.metrics)
    keel_s, base_s = timings["keel"].median_s, timings["baseline"].median_s
    line = common.result(
        "analysis.segment_metrics",
        params={
            "rows": rows,
            "features": FEATURES,
            "segments": len(segments),
            "segment_specs": SPECS,
            "n_boot": N_BOOT,
            "metrics": list(report.metrics),
            "quick": quick,
            "seed": SEED,
        },
        keel={**timings["keel"].as_json(), "segments_of_s": round(segments_s, 3)},
        baseline_name="HistGradientBoostingClassifier.predict_proba of the same rows once",
        baseline=timings["baseline"],
        ratio_max=TARGET,
        checks={
            "segments": len(segments),
            "all_segments": len(segments) == 20 and len(report.segments) == 20,
            "max_abs_difference_from_sklearn": max(differences.values()),
            "equals_sklearn": max(differences.values()) < 1e-9,
            "intervals_hold_estimates": holds,
            "within_bin_pair_share": report.within_bin_pair_share,
        },
    )
    line.update(
        {
            "segment_metrics_s": round(keel_s, 4),
            "score_once_s": round(base_s, 4),
            "rows": rows,
            "segments": len(segments),
            "n_boot": N_BOOT,
        }
    )
    return line


def main(argv: list[str] | None = None) -> int:
    args = common.parse_args(common.parser(__doc__.splitlines()[0], runs=3), argv)
    if not common.selected(args, "analysis.segment_metrics"):
        return 0
    common.emit(run(quick=args.quick, runs=args.runs, warmup=args.warmup), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
