"""Stability over time: per feature, how far each event-time window's distribution is from the one before.

A feature whose distribution jumps from one week to the next (a source that changed units, a pipeline that started
writing a default, a category renamed upstream) is what TFDV calls *drift* between spans; Keel measures it within a
view's version, between consecutive windows of event time (:class:`~keel.engines._windows.Window`), in one pass of
the engine (:meth:`Engine.window_counts <keel.engines.Engine.window_counts>`) — the rows never leave it.

The buckets of each feature are fixed once for every window, so that every window is compared over the same ones:

- numeric features: the value ranges cut at the version's stored quantiles (p01, p05, p25, p50, p75, p95, p99:
  finer in the tails, where shifts start), plus a bucket of missing values (null, NaN, ±inf);
- categorical features (text, booleans): the version's most frequent values (up to 20), one bucket for all the
  others, and one for missing values.

Consecutive windows with rows are compared with :func:`~keel.validation._distances.decide` (PSI, Jensen–Shannon,
L-infinity; chi-squared on small windows). Windows without rows between two that have some are reported as gaps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from keel.engines._conditions import Compare, Condition, IsIn, IsNull, Or
from keel.errors import ValidationError
from keel.validation._distances import Shift, ShiftThresholds, decide

if TYPE_CHECKING:
    from keel.engines import Engine
    from keel.engines._base import Data
    from keel.engines._windows import Window

__all__ = ["FeatureStability", "StabilityReport", "feature_buckets", "stability"]

NUMERIC = ("int64", "int32", "float64", "float32")
CATEGORICAL = ("string", "bool")
MAX_BUCKET_CATEGORIES = 20
MISSING = "(missing)"
OTHER = "(other)"


@dataclass(frozen=True)
class Buckets:
    """A feature's buckets: the conditions an engine sorts rows by, and a label per bucket (the last: none met)."""

    kind: str
    conditions: tuple[Condition, ...]
    labels: tuple[str, ...]


def _number(value: float) -> str:
    return f"{value:.6g}"


def feature_buckets(name: str, dtype: str, statistics: dict[str, Any]) -> Buckets | str:
    """The buckets of one feature from its stored statistics, or why it is not measured."""
    if dtype in NUMERIC:
        missing: Condition = IsNull(name)
        if dtype.startswith("float"):
            missing = Or((IsNull(name), Compare(name, "=", math.inf), Compare(name, "=", -math.inf)))
        quantiles = (statistics.get("quantiles") or {}).values()
        edges = sorted({float(v) for v in quantiles if isinstance(v, int | float) and math.isfinite(v)})
        conditions = (missing, *(Compare(name, "<=", e) for e in edges))
        labels = [MISSING]
        for i, e in enumerate(edges):
            labels.append(f"≤ {_number(e)}" if i == 0 else f"({_number(edges[i - 1])}, {_number(e)}]")
        labels.append(f"> {_number(edges[-1])}" if edges else "present")
        return Buckets("numeric", conditions, tuple(labels))
    if dtype == "bool":
        return Buckets("categorical", (IsNull(name), Compare(name, "=", True)), (MISSING, "true", "false"))
    if dtype == "string":
        top = [str(v) for v, _ in (statistics.get("top") or [])][:MAX_BUCKET_CATEGORIES]
        conditions = (IsNull(name), *(IsIn(name, (v,)) for v in top))
        return Buckets("categorical", conditions, (MISSING, *top, OTHER))
    return f"{dtype} values have no distribution to compare"


@dataclass(frozen=True)
class FeatureStability:
    """One feature's windows and the comparison of each with the one before.

    Attributes:
        name: the feature.
        kind: ``numeric`` or ``categorical``.
        buckets: the buckets' labels.
        counts: per window (in the report's order), the rows per bucket.
        shifts: per consecutive pair of windows with rows, the comparison (``len(windows) - 1`` of them).
    """

    name: str
    kind: str
    buckets: tuple[str, ...]
    counts: np.ndarray
    shifts: list[Shift]

    @property
    def shifted_at(self) -> list[int]:
        """The positions ``i`` (window ``i - 1`` to window ``i``) where the feature shifted."""
        return [i + 1 for i, s in enumerate(self.shifts) if s.shifted]

    @property
    def verdict(self) -> str:
        """``"stable"``, ``"shifted"``, or ``"one window"`` (nothing to compare)."""
        if not self.shifts:
            return "one window"
        return "shifted" if self.shifted_at else "stable"

    @property
    def largest(self) -> Shift | None:
        """The comparison with the largest deciding statistic relative to its threshold (on large samples), or the
        smallest p-value (small ones)."""
        if not self.shifts:
            return None

        def severity(s: Shift) -> float:
            if s.p_value is not None:
                return s.threshold / max(s.p_value, 1e-300)
            return s.statistic / s.threshold

        return max(self.shifts, key=severity)


@dataclass(frozen=True)
class StabilityReport:
    """The stability of a view's features over consecutive windows of event time.

    Attributes:
        window: the windows.
        starts: each window with rows, by its start.
        rows: the rows of each window.
        features: one entry per measured feature, in the view's order.
        skipped: features not measured, with the reason.
        gaps: ``(after, before)`` pairs of window starts with no rows between them.
        thresholds: what decided.
        severity: ``"error"`` (a shifted feature fails the check) or ``"warning"``.
    """

    window: Window
    starts: list[Any]
    rows: list[int]
    features: list[FeatureStability]
    skipped: dict[str, str] = field(default_factory=dict)
    gaps: list[tuple[Any, Any]] = field(default_factory=list)
    thresholds: ShiftThresholds = field(default_factory=ShiftThresholds)
    severity: str = "error"

    @property
    def shifted(self) -> list[str]:
        """The features that shifted between some pair of windows."""
        return [f.name for f in self.features if f.verdict == "shifted"]

    @property
    def failed(self) -> bool:
        """Whether the check fails: a feature shifted and the severity is ``error``."""
        return bool(self.shifted) and self.severity == "error"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict: every window's shares per feature and every comparison."""
        starts = [s.isoformat() for s in self.starts]
        features = []
        for f in self.features:
            totals = f.counts.sum(axis=1, keepdims=True)
            shares = np.divide(f.counts, totals, out=np.zeros(f.counts.shape), where=totals > 0)
            features.append(
                {
                    "name": f.name,
                    "kind": f.kind,
                    "verdict": f.verdict,
                    "buckets": list(f.buckets),
                    "shares": [[float(v) for v in row] for row in shares],
                    "comparisons": [
                        {"from": starts[i], "to": starts[i + 1], **s.to_dict()} for i, s in enumerate(f.shifts)
                    ],
                    "shifted_at": [starts[i] for i in f.shifted_at],
                }
            )
        return {
            "window": self.window.label,
            "windows": [{"start": s, "rows": int(n)} for s, n in zip(starts, self.rows, strict=True)],
            "features": features,
            "shifted": self.shifted,
            "skipped": dict(self.skipped),
            "gaps": [{"after": a.isoformat(), "before": b.isoformat()} for a, b in self.gaps],
            "thresholds": self.thresholds.to_dict(),
            "severity": self.severity,
            "failed": self.failed,
        }


def stability(
    engine: Engine,
    data: Data,
    *,
    features: dict[str, str],
    statistics: dict[str, Any],
    timestamp: str,
    window: Window,
    thresholds: ShiftThresholds | None = None,
    severity: str = "error",
) -> StabilityReport:
    """Compare each window of ``data`` with the one before, per feature.

    Args:
        engine: the engine that reads ``data``.
        data: what the engine reads (a version's files).
        features: the features to measure and their Keel dtypes.
        statistics: the version's stored column statistics (quantiles and top values fix the buckets).
        timestamp: the event-time column.
        window: the windows (:meth:`Window.parse("7d") <keel.engines._windows.Window.parse>`).
        thresholds: when a feature counts as shifted (default: :class:`ShiftThresholds`' defaults).
        severity: ``"error"`` (default: a shifted feature fails the check) or ``"warning"``.

    Raises:
        ValidationError: no feature can be measured, or an unknown severity.
    """
    if severity not in ("error", "warning"):
        raise ValidationError(f"severity must be 'error' or 'warning', not {severity!r}", field="severity")
    measured: dict[str, Buckets] = {}
    skipped: dict[str, str] = {}
    for name, dtype in features.items():
        found = feature_buckets(name, dtype, statistics.get(name) or {})
        if isinstance(found, str):
            skipped[name] = found
        else:
            measured[name] = found
    if not measured:
        raise ValidationError(f"no feature to measure: {skipped or 'none given'}")
    counted = engine.window_counts(data, timestamp, window, {n: b.conditions for n, b in measured.items()})
    starts = counted.starts
    gaps = [
        (window.end(a), window.start(b))
        for a, b in zip(counted.indexes, counted.indexes[1:], strict=False)
        if b - a > 1
    ]
    pairs: list[tuple[str, np.ndarray, np.ndarray]] = []
    for name, b in measured.items():
        matrix = counted.counts[name]
        pairs.extend((b.kind, matrix[i - 1], matrix[i]) for i in range(1, matrix.shape[0]))
    thresholds = thresholds or ShiftThresholds()
    decided = iter(decide(pairs, thresholds))
    results = []
    for name, b in measured.items():
        matrix = counted.counts[name]
        shifts = [next(decided) for _ in range(1, matrix.shape[0])]
        results.append(FeatureStability(name, b.kind, b.labels, matrix, shifts))
    some = next(iter(counted.counts.values()), np.zeros((0, 1)))
    rows = [int(v) for v in some.sum(axis=1)] if counted.indexes else []
    return StabilityReport(window, starts, rows, results, skipped, gaps, thresholds, severity)
