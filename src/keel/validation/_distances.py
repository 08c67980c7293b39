"""How far apart two distributions of one feature are, over the same buckets: what stability and skew are judged by.

Both sides are counts over the same buckets (a numeric feature's value ranges, a categorical one's values, and one
bucket for missing values, so that a feature that starts arriving empty shifts too). The distances are the ones
TensorFlow Data Validation and credit scoring use:

- **PSI**, the Population Stability Index ``Σ (q - p) ln(q / p)`` (empty buckets floored at ``1e-4``, Evidently's
  choice), the default for numeric features: under 0.1 no change, 0.1–0.2 moderate, above 0.2 significant
  (Siddiqi, *Credit Risk Scorecards*, 2006);
- **Jensen–Shannon distance** (base 2, in [0, 1]), TFDV's for numeric features;
- **L-infinity**, the largest difference of one bucket's share, TFDV's for categorical features and the default
  there: "the share of ``plan = pro`` moved by 12 points" is what it says.

As in drift monitoring (:mod:`keel.monitoring._drift`), a distance measured on a few hundred rows is mostly noise:
when either side has fewer than ``small_sample`` rows, a chi-squared test of homogeneity of the two count vectors
decides instead, and the p-values of all such comparisons of one report are corrected together
(Benjamini–Hochberg), so that checking fifty stable features over twenty windows does not cry wolf.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from scipy import stats
from scipy.spatial.distance import jensenshannon

from keel.errors import ValidationError

__all__ = ["Shift", "ShiftThresholds", "decide", "distances", "jensenshannon_distance", "linf", "psi"]

PSI_FLOOR = 1e-4


def psi(p: np.ndarray, q: np.ndarray) -> float:
    """PSI of shares ``q`` against shares ``p`` (zero shares floored at :data:`PSI_FLOOR`)."""
    a = np.where(p == 0, PSI_FLOOR, p)
    b = np.where(q == 0, PSI_FLOOR, q)
    return float(np.sum((b - a) * np.log(b / a)))


def jensenshannon_distance(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen–Shannon distance, base 2, between two share vectors."""
    value = float(jensenshannon(p, q, base=2))
    return 0.0 if math.isnan(value) else value


def linf(p: np.ndarray, q: np.ndarray) -> float:
    """The largest absolute difference of one bucket's share."""
    return float(np.max(np.abs(p - q))) if p.size else 0.0


@dataclass(frozen=True)
class ShiftThresholds:
    """When a feature's distribution counts as shifted. The defaults are published, standard choices.

    Attributes:
        numeric_method: what decides for numeric features on large samples: ``"psi"`` (default) or
            ``"jensenshannon"``.
        categorical_method: the same for categorical features: ``"linf"`` (default, TFDV's) or ``"jensenshannon"``.
        psi: PSI at or above which a numeric feature shifted. Default 0.2 ("significant").
        jensenshannon: Jensen–Shannon distance at or above which a feature shifted. Default 0.1 (Evidently's).
        linf: L-infinity distance at or above which a categorical feature shifted. Default 0.1: a category's share
            moved by ten points.
        small_sample: below this many rows on either side, a chi-squared test decides. Default 1,000, as for drift.
        alpha: the false-discovery rate of those tests (Benjamini–Hochberg). Default 0.05.
    """

    numeric_method: Literal["psi", "jensenshannon"] = "psi"
    categorical_method: Literal["linf", "jensenshannon"] = "linf"
    psi: float = 0.2
    jensenshannon: float = 0.1
    linf: float = 0.1
    small_sample: int = 1000
    alpha: float = 0.05

    def __post_init__(self) -> None:
        if self.numeric_method not in ("psi", "jensenshannon"):
            raise ValidationError(
                f"numeric_method must be 'psi' or 'jensenshannon', not {self.numeric_method!r}", field="numeric_method"
            )
        if self.categorical_method not in ("linf", "jensenshannon"):
            raise ValidationError(
                f"categorical_method must be 'linf' or 'jensenshannon', not {self.categorical_method!r}",
                field="categorical_method",
            )
        for name in ("psi", "jensenshannon", "linf"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
                raise ValidationError(f"threshold {name} must be a positive number, got {value!r}", field=name)
        if not isinstance(self.alpha, int | float) or isinstance(self.alpha, bool) or not 0 < self.alpha < 1:
            raise ValidationError(f"alpha must be in (0, 1), got {self.alpha!r}", field="alpha")
        if isinstance(self.small_sample, bool) or not isinstance(self.small_sample, int) or self.small_sample < 0:
            raise ValidationError(
                f"small_sample must be a non-negative integer, got {self.small_sample!r}", field="small_sample"
            )

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-safe dict."""
        return asdict(self)

    def method(self, kind: str) -> str:
        """The deciding distance of a ``numeric`` or ``categorical`` feature on large samples."""
        return self.numeric_method if kind == "numeric" else self.categorical_method

    def threshold(self, method: str) -> float:
        """The threshold of a distance."""
        return float(getattr(self, method))


def distances(kind: str, a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Every distance of ``kind`` between two count vectors over the same buckets (shares taken here)."""
    p = a / a.sum() if a.sum() else a.astype(np.float64)
    q = b / b.sum() if b.sum() else b.astype(np.float64)
    found = {"jensenshannon": jensenshannon_distance(p, q)}
    if kind == "numeric":
        found["psi"] = psi(p, q)
    else:
        found["linf"] = linf(p, q)
    return found


@dataclass(frozen=True)
class Shift:
    """One comparison of two distributions of a feature.

    Attributes:
        kind: ``numeric`` or ``categorical``.
        rows: the rows on each side.
        distances: every distance of the kind (see the module docstring).
        method: what decided: a distance's name, or ``"chi2"`` on small samples.
        statistic: that distance, or the chi-squared statistic.
        p_value: the chi-squared test's p-value, Benjamini–Hochberg-adjusted across the report (else ``None``).
        threshold: what ``statistic`` (at or above it) or ``p_value`` (below it) was compared with.
        shifted: the verdict.
    """

    kind: str
    rows: tuple[int, int]
    distances: dict[str, float]
    method: str
    statistic: float
    p_value: float | None
    threshold: float
    shifted: bool

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict."""
        return {
            "kind": self.kind,
            "rows": list(self.rows),
            "distances": {k: float(v) for k, v in self.distances.items()},
            "method": self.method,
            "statistic": float(self.statistic),
            "p_value": None if self.p_value is None else float(self.p_value),
            "threshold": float(self.threshold),
            "shifted": bool(self.shifted),
        }


def _chi2(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    keep = (a + b) > 0
    table = np.vstack([a[keep], b[keep]])
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 0.0, 1.0
    found = stats.chi2_contingency(table)
    return float(found.statistic), float(found.pvalue)


def decide(
    pairs: list[tuple[str, np.ndarray, np.ndarray]], thresholds: ShiftThresholds = ShiftThresholds()
) -> list[Shift]:
    """The verdict on each ``(kind, counts a, counts b)``; small samples' p-values are corrected together."""
    pending: list[tuple[str, tuple[int, int], dict[str, float], str, float, float | None, float]] = []
    for kind, a, b in pairs:
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        rows = (int(a.sum()), int(b.sum()))
        found = distances(kind, a, b)
        if min(rows) < thresholds.small_sample:
            statistic, p_value = _chi2(a, b)
            pending.append((kind, rows, found, "chi2", statistic, p_value, thresholds.alpha))
        else:
            method = thresholds.method(kind)
            pending.append((kind, rows, found, method, found[method], None, thresholds.threshold(method)))
    small = [i for i, item in enumerate(pending) if item[5] is not None]
    adjusted: dict[int, float] = {}
    if small:
        ps = np.array([pending[i][5] for i in small], dtype=np.float64)
        adjusted = dict(zip(small, (float(v) for v in stats.false_discovery_control(ps, method="bh")), strict=True))
    out = []
    for i, (kind, rows, found, method, statistic, _, threshold) in enumerate(pending):
        adjusted_p = adjusted.get(i)
        shifted = adjusted_p < threshold if adjusted_p is not None else statistic >= threshold
        out.append(Shift(kind, rows, found, method, statistic, adjusted_p, threshold, bool(shifted)))
    return out
