"""Drift benchmark: ``detect_drift`` against a stored profile versus scipy's tests on the raw data.

Data (seeded, generated in memory): a reference and a current frame of 1,000,000 rows x 50 features — 40
numeric of four shapes (normal, lognormal, uniform, bimodal; 1% missing in every fourth) and 10 categorical
with 5 to 50 categories of Zipf-like shares. Drift is injected into 13 features of the current frame: 9 numeric
ones get a mean shift of 0.25 to 0.5 reference standard deviations, 4 categorical ones get new shares at a
Jensen–Shannon distance of 0.12 to 0.2 from the reference's. ``--quick``: 50,000 rows on each side.

Workload ``drift.check`` (one JSON line):

- Keel: ``detect_drift(profile, current)`` with the default :class:`~keel.monitoring.DriftConfig` (the
  profile of the reference is built once beforehand, as at registration; its time is ``keel.profile_build_s``,
  not part of the ratio).
- Baseline: what one would write with scipy alone on the raw data: ``scipy.stats.ks_2samp`` for each numeric
  column and ``scipy.stats.chi2_contingency`` on the reference and current ``value_counts`` of each categorical
  one.

Target: Keel <= 1.0 x the baseline, 13 of 13 drifted features found, no false positive.
"""

from __future__ import annotations

import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common

SEED = 20240601
FULL = {"rows": 1_000_000}
QUICK = {"rows": 50_000}
N_NUMERIC = 40
CATEGORY_COUNTS = [5, 8, 10, 12, 15, 20, 25, 30, 40, 50]
SHAPES = ["normal", "lognormal", "uniform", "bimodal"]
# Drifted numeric columns and their mean shift in reference standard deviations (every shape is hit).
NUMERIC_SHIFTS = {2: 0.25, 5: 0.3, 9: 0.35, 14: 0.4, 19: 0.45, 23: 0.5, 28: 0.25, 32: 0.3, 39: 0.4}
# Drifted categorical columns and the Jensen-Shannon distance (base 2) of their new shares.
CATEGORICAL_JS = {1: 0.12, 4: 0.15, 6: 0.18, 9: 0.2}
TARGET = 1.0


def _numeric(rng: np.random.Generator, shape: str, n: int) -> np.ndarray:
    if shape == "normal":
        return rng.normal(50.0, 10.0, n)
    if shape == "lognormal":
        return rng.lognormal(3.0, 0.8, n)
    if shape == "uniform":
        return rng.uniform(-5.0, 5.0, n)
    return np.where(rng.random(n) < 0.4, rng.normal(-3.0, 1.0, n), rng.normal(4.0, 1.5, n))


def _js(p: np.ndarray, q: np.ndarray) -> float:
    from scipy.spatial.distance import jensenshannon

    return float(jensenshannon(p, q, base=2))


def _shifted_shares(p: np.ndarray, target: float, rng: np.random.Generator) -> np.ndarray:
    """New shares at Jensen-Shannon distance ``target`` from ``p``: tilt by a random direction, bisect its size."""
    z = rng.standard_normal(p.size)
    lo, hi = 0.0, 20.0
    for _ in range(100):
        mid = (lo + hi) / 2
        q = p * np.exp(mid * z)
        q /= q.sum()
        lo, hi = (mid, hi) if _js(p, q) < target else (lo, mid)
    q = p * np.exp(hi * z)
    return q / q.sum()


def make_data(rows: int) -> tuple[Any, Any, set[str], dict[str, float]]:
    """(reference, current, drifted feature names, injected effect per drifted feature)."""
    import pandas as pd

    rng = np.random.default_rng(SEED)
    ref: dict[str, Any] = {}
    cur: dict[str, Any] = {}
    truth: set[str] = set()
    injected: dict[str, float] = {}
    for i in range(N_NUMERIC):
        name, shape = f"num_{i:02d}_{SHAPES[i % 4]}", SHAPES[i % 4]
        r, c = _numeric(rng, shape, rows), _numeric(rng, shape, rows)
        if i in NUMERIC_SHIFTS:
            c += NUMERIC_SHIFTS[i] * r.std()
            truth.add(name)
            injected[name] = NUMERIC_SHIFTS[i]
        if i % 4 == 3:
            r[rng.random(rows) < 0.01] = np.nan
            c[rng.random(rows) < 0.01] = np.nan
        ref[name], cur[name] = r, c
    for j, k in enumerate(CATEGORY_COUNTS):
        name = f"cat_{j}_{k}"
        labels = np.array([f"{name}_v{v}" for v in range(k)], dtype=object)
        p = 1.0 / np.arange(1, k + 1) ** 0.8
        p /= p.sum()
        q = p
        if j in CATEGORICAL_JS:
            q = _shifted_shares(p, CATEGORICAL_JS[j], rng)
            truth.add(name)
            injected[name] = round(_js(p, q), 4)
        ref[name] = pd.Series(labels[rng.choice(k, rows, p=p)], dtype="str")
        cur[name] = pd.Series(labels[rng.choice(k, rows, p=q)], dtype="str")
    return pd.DataFrame(ref), pd.DataFrame(cur), truth, injected


def baseline_check(reference: Any, current: Any) -> dict[str, float]:
    """scipy on the raw data: KS per numeric column, chi-squared on the two value counts per categorical one."""
    import pandas as pd
    from scipy import stats

    p_values: dict[str, float] = {}
    for name in reference.columns:
        r, c = reference[name], current[name]
        if pd.api.types.is_numeric_dtype(r.dtype):
            p_values[name] = float(stats.ks_2samp(r.dropna().to_numpy(), c.dropna().to_numpy()).pvalue)
        else:
            table = pd.concat([r.value_counts(), c.value_counts()], axis=1).fillna(0).to_numpy().T
            p_values[name] = float(stats.chi2_contingency(table).pvalue)
    return p_values


def peak_traced_mb(fn: Any) -> float:
    """Peak of the memory allocated through Python and NumPy while ``fn`` runs (tracemalloc), in MiB."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def main(argv: list[str] | None = None) -> int:
    from keel.monitoring import build_profile, detect_drift

    args = common.parse_args(common.parser(__doc__.splitlines()[0], runs=5), argv)
    if not common.selected(args, "drift.check"):
        return 0
    rows = (QUICK if args.quick else FULL)["rows"]
    started = time.perf_counter()
    reference, current, truth, injected = make_data(rows)
    common.log(f"generated 2 x {rows:,} rows x {reference.shape[1]} features in {time.perf_counter() - started:.1f}s")

    started = time.perf_counter()
    profile = build_profile(reference)
    build_s = time.perf_counter() - started
    common.log(f"build_profile: {build_s:.2f}s ({len(profile.to_bytes()) / 2**10:.0f} KiB stored)")

    timings = common.interleaved(
        {"keel": lambda: detect_drift(profile, current), "baseline": lambda: baseline_check(reference, current)},
        runs=args.runs,
        warmup=args.warmup,
    )
    for side, t in timings.items():
        common.log(f"drift.check {side}: median {t.median_s:.3f}s runs {[round(r, 3) for r in t.runs]}")
    keel_peak = peak_traced_mb(lambda: detect_drift(profile, current))
    base_peak = peak_traced_mb(lambda: baseline_check(reference, current))

    result = timings["keel"].last
    found = sorted(set(result.drifted_features) & truth)
    false_positives = sorted(set(result.drifted_features) - truth)
    base_p = timings["baseline"].last
    statistics = {f.name: round(f.statistic, 4) for f in result.features}
    line = common.result(
        "drift.check",
        params={
            "reference_rows": rows,
            "current_rows": rows,
            "numeric": N_NUMERIC,
            "categorical": len(CATEGORY_COUNTS),
            "drifted": len(truth),
            "injected": injected,
            "quick": args.quick,
            "seed": SEED,
        },
        keel={
            **timings["keel"].as_json(),
            "peak_traced_mb": round(keel_peak, 1),
            "profile_build_s": round(build_s, 3),
            "profile_kib": round(len(profile.to_bytes()) / 2**10, 1),
        },
        baseline_name="scipy ks_2samp (numeric) + chi2_contingency (categorical) on the raw data",
        baseline={**timings["baseline"].as_json(), "peak_traced_mb": round(base_peak, 1)},
        ratio_max=TARGET,
        checks={
            "found": len(found),
            "all_found": len(found) == len(truth),
            "false_positives": len(false_positives),
            "no_false_positive": not false_positives,
            "false_positive_names": false_positives,
            "methods": sorted({f.method for f in result.features}),
            "statistics_of_drifted": {n: statistics[n] for n in sorted(truth)},
            "largest_undrifted_statistic": max(v for n, v in statistics.items() if n not in truth),
            "baseline_rejections_at_0.05": sum(p < 0.05 for p in base_p.values()),
            "baseline_false_rejections_at_0.05": sum(p < 0.05 for n, p in base_p.items() if n not in truth),
        },
    )
    common.emit(line, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
