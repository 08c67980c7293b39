"""Champion against challenger, segment by segment, with paired bootstrap differences.

Two models scored on the same rows are compared on one metric, overall and on each declared segment, so that a
challenger better overall but worse on a segment is visible — and a promotion gate can refuse it with a reason.

**Paired bootstrap.** The difference ``challenger - champion`` is resampled by drawing the *same* rows for both
models (Efron & Tibshirani, *An Introduction to the Bootstrap*, 1993, ch. 13 and 16: the paired design removes
the rows' shared difficulty from the variance). As in :mod:`keel.analysis._segments`, a resample is a multinomial
draw of the counts of a cell table, here of the *joint* cells of both models:

- accuracy, balanced accuracy, F1: cells of (true label, champion's label, challenger's label) — the paired
  bootstrap is exact (only the rows where the two models disagree move the difference);
- ROC AUC: cells of (true label, champion's probability bin, challenger's probability bin) with 16 quantile bins
  per model; each model's pairs in different bins are counted exactly from the shared counts, pairs inside a bin
  by their observed share in order plus Gaussian noise of their exact conditional variance. The within-bin noise
  is drawn independently for the two models, which overstates the spread of the difference a little when the two
  rank alike inside a bin (the conservative side); the share of pairs inside a bin is reported;
- log loss, MAE, RMSE, R²: the same joint cells (probability bins, or absolute-error bins of both models and
  target bins), with the cells' mean per-row values plus Gaussian noise of the exact within-cell covariance of both
  models' values, so the pairing carries into the within-cell part too.

**Decision.** On each segment, the one-sided bootstrap p-value of "the challenger is worse" is the share of
replicates in which it is not (``(1 + #{not worse}) / (1 + n_boot)``, Davison & Hinkley, *Bootstrap Methods and
their Application*, 1997, §4.4). The p-values of the declared segments are corrected together — Holm's step-down
procedure by default (Holm, 1979), which bounds the chance of blaming *any* segment wrongly, the right guarantee for
a gate that blocks a promotion; Benjamini–Hochberg on request. A segment is significantly worse when its adjusted
p-value is at most ``alpha``: equivalently, when the one-sided percentile interval at the corrected level lies
entirely on the worse side. Segments too small to judge (see :func:`~keel.analysis._segments.segment_metrics`) are
reported but never block. The displayed interval is the two-sided ``1 - alpha`` percentile interval of the
difference.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
from scipy import stats

from keel.analysis._segments import (
    MIN_CLASS_ROWS,
    MIN_ROWS,
    PROBA_METRICS,
    Segment,
    Task,
    _check_fraction,
    _check_int,
    _check_metric,
    _check_segments,
    _class_counts,
    _inputs,
    _json_float,
    _Layout,
    _layout,
    _metric,
    _observed,
    _percentiles,
    _reliability,
    _resampled,
    _rng,
    _table,
    default_metric,
    higher_is_better,
)
from keel.errors import ValidationError

__all__ = ["Comparison", "SegmentDifference", "compare_models"]

Correction = Literal["holm", "bh"]
_CORRECTIONS = {"holm": "Holm", "bh": "Benjamini–Hochberg"}


@dataclass(frozen=True)
class SegmentDifference:
    """Champion (a) against challenger (b) on one segment (or on all rows, ``overall``).

    Attributes:
        name: the segment's name (``overall`` for all rows).
        spec: the spec it came from (empty for ``overall``).
        rows: rows in the segment.
        metric: the metric compared.
        champion: the metric of model a on the segment.
        challenger: the metric of model b.
        difference: ``challenger - champion``.
        low: lower bound of the two-sided ``1 - alpha`` percentile interval of the difference (paired bootstrap).
        high: upper bound of that interval.
        p_value: the one-sided bootstrap p-value of "the challenger is worse" (1 when it is never worse).
        p_adjusted: that p-value corrected across the declared segments (Holm or Benjamini–Hochberg); for
            ``overall`` it is the unadjusted p-value.
        worse: the challenger is significantly worse here (``p_adjusted <= alpha``, the segment reliable).
        reliable: False when the segment is too small to judge; it is reported but never blocks.
        unreliable_reason: why it is not reliable.
        higher_is_better: the metric's direction.
        n_boot: resamples behind the interval and the p-value.
        alpha: the significance level.
        correction: ``Holm`` or ``Benjamini–Hochberg``.
    """

    name: str
    spec: str
    rows: int
    metric: str
    champion: float
    challenger: float
    difference: float
    low: float
    high: float
    p_value: float
    p_adjusted: float
    worse: bool
    reliable: bool
    unreliable_reason: str | None
    higher_is_better: bool
    n_boot: int
    alpha: float
    correction: str

    @property
    def reason(self) -> str:
        """One sentence of evidence, fit for an audit record (e.g. a promotion gate's refusal)."""
        verdict = "significantly worse than" if self.worse else "not significantly worse than"
        if not self.reliable:
            verdict = "not judged against"
        level = round((1 - self.alpha) * 100, 2)
        adjusted = "" if self.name == "overall" else f"{self.correction}-adjusted "
        text = (
            f"challenger is {verdict} the champion on {self.name} ({self.rows:,} rows): {self.metric} "
            f"{self.challenger:.4g} vs {self.champion:.4g} (difference {self.difference:+.4g}, {level:g}% CI "
            f"{self.low:+.4g} to {self.high:+.4g}; paired bootstrap of {self.n_boot:,} resamples, "
            f"{adjusted}p = {self.p_adjusted:.3g}, alpha {self.alpha:g})"
        )
        if not self.reliable:
            text += f"; too small to judge: {self.unreliable_reason}"
        return text

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (with the ``reason`` text)."""
        out: dict[str, Any] = {
            "name": self.name,
            "spec": self.spec,
            "rows": self.rows,
            "metric": self.metric,
            "worse": self.worse,
            "reliable": self.reliable,
            "unreliable_reason": self.unreliable_reason,
            "reason": self.reason,
        }
        for key in ("champion", "challenger", "difference", "low", "high", "p_value", "p_adjusted"):
            out[key] = _json_float(getattr(self, key))
        return out


@dataclass(frozen=True)
class Comparison:
    """Champion (a) against challenger (b), overall and per segment.

    Attributes:
        task: ``classification`` or ``regression``.
        metric: the metric compared.
        higher_is_better: its direction.
        overall: the comparison on all rows.
        segments: one comparison per declared segment, in the order given.
        n_boot: paired bootstrap resamples.
        alpha: the significance level (family-wise with Holm, false-discovery rate with Benjamini–Hochberg).
        correction: ``holm`` or ``bh``.
        seed: the seed of the resamples.
        within_bin_pair_share: ROC AUC only: the largest share of positive–negative pairs inside one probability
            bin (their resampling is approximated by a normal draw of the right mean and variance); None otherwise.
    """

    task: str
    metric: str
    higher_is_better: bool
    overall: SegmentDifference
    segments: tuple[SegmentDifference, ...]
    n_boot: int
    alpha: float
    correction: str
    seed: int
    within_bin_pair_share: float | None

    def worse_segments(self) -> list[SegmentDifference]:
        """The segments on which the challenger is significantly worse (each with its ``reason`` text)."""
        return [s for s in self.segments if s.worse]

    def gate_reasons(self) -> list[str]:
        """The reasons a gate requiring "no declared segment significantly worse" refuses; empty when it passes."""
        return [s.reason for s in self.worse_segments()]

    @property
    def passes(self) -> bool:
        """True when no declared segment is significantly worse for the challenger."""
        return not self.worse_segments()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict."""
        return {
            "task": self.task,
            "metric": self.metric,
            "higher_is_better": self.higher_is_better,
            "overall": self.overall.to_dict(),
            "segments": [s.to_dict() for s in self.segments],
            "n_boot": self.n_boot,
            "alpha": self.alpha,
            "correction": self.correction,
            "seed": self.seed,
            "passes": self.passes,
            "gate_reasons": self.gate_reasons(),
            "within_bin_pair_share": self.within_bin_pair_share,
        }


def compare_models(
    y_true: Any,
    pred_a: Any,
    pred_b: Any,
    *,
    proba_a: Any = None,
    proba_b: Any = None,
    task: Task,
    segments: Sequence[Segment],
    metric: str | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    correction: Correction = "holm",
    min_rows: int = MIN_ROWS,
    min_class_rows: int = MIN_CLASS_ROWS,
    classes: Sequence[Any] | None = None,
) -> Comparison:
    """Compare a champion (``a``) with a challenger (``b``) scored on the same rows, overall and by segment.

    Args:
        y_true: the true labels or targets.
        pred_a: the champion's predictions.
        pred_b: the challenger's predictions.
        proba_a: the champion's probabilities (needed for ``roc_auc`` and ``log_loss``).
        proba_b: the challenger's probabilities.
        task: ``classification`` or ``regression``.
        segments: from :func:`~keel.analysis._segments.segments_of` on a frame aligned with the rows.
        metric: the metric compared (default: accuracy for classification, MAE for regression).
        n_boot: paired resamples; with ``m`` segments it must be at least ``m / alpha - 1``, or no segment could
            ever be found worse.
        seed: seeds the resamples (each segment draws from ``(seed, its name)``).
        alpha: the significance level.
        correction: ``holm`` (default; family-wise error) or ``bh`` (false-discovery rate) across segments.
        min_rows: segments with fewer rows are not judged.
        min_class_rows: classification segments with fewer rows of a class are not judged.
        classes: the class labels in the column order of the probabilities.

    Example:
        >>> import pandas as pd
        >>> from keel.analysis._segments import segments_of
        >>> frame = pd.DataFrame({"plan": ["a", "b"] * 500})
        >>> y = np.tile([0, 1, 1, 0], 250)
        >>> worse_on_b = np.where(frame["plan"].to_numpy() == "b", 1 - y, y)
        >>> result = compare_models(y, y, worse_on_b, task="classification",
        ...                         segments=segments_of(frame, ["plan"]), n_boot=200)
        >>> [s.name for s in result.worse_segments()], result.passes
        (['plan == "b"'], False)

    Raises:
        ValidationError: on any bad input, naming the argument.
    """
    inputs = _inputs(
        task, y_true, [("pred_a", pred_a), ("pred_b", pred_b)], [("proba_a", proba_a), ("proba_b", proba_b)], classes
    )
    metric = default_metric(inputs.task) if metric is None else metric
    if metric in PROBA_METRICS:
        for name, proba in (("proba_a", inputs.probas[0]), ("proba_b", inputs.probas[1])):
            if proba is None:
                raise ValidationError(
                    f"metric {metric!r} needs both models' probabilities; {name} is missing", field=name
                )
    _check_metric(inputs.task, metric, True)
    n_boot = _check_int(n_boot, "n_boot", 1, 100_000)
    seed = _check_int(seed, "seed", 0)
    alpha = _check_fraction(alpha, "alpha")
    if correction not in _CORRECTIONS:
        raise ValidationError(f"correction must be 'holm' or 'bh', not {correction!r}", field="correction")
    min_rows = _check_int(min_rows, "min_rows", 1)
    min_class_rows = _check_int(min_class_rows, "min_class_rows", 0)
    checked = _check_segments(segments, inputs.rows)
    if checked and (n_boot + 1) * alpha < len(checked):
        raise ValidationError(
            f"n_boot={n_boot} is too small to find any of {len(checked)} segments worse at alpha={alpha:g}: the "
            f"smallest bootstrap p-value is 1/(n_boot+1); use n_boot >= {math.ceil(len(checked) / alpha) - 1}",
            field="n_boot",
        )
    layout = _layout(inputs, [metric])
    higher = higher_is_better(metric)
    overall_table = _table(layout, None)
    present = _class_counts(layout, overall_table) > 0 if inputs.task == "classification" else np.zeros(0, bool)
    settings = _Settings(metric, higher, n_boot, seed, alpha, _CORRECTIONS[correction], min_rows, min_class_rows)
    overall, share = _difference(layout, settings, present, "overall", "", None)
    raw = [_difference(layout, settings, present, s.name, s.spec, s.mask) for s in checked]
    share = max([share, *(r[1] for r in raw)])
    adjusted = _adjust(np.array([r[0].p_value for r in raw]), correction) if raw else np.zeros(0)
    entries = []
    for (entry, _), p_adj in zip(raw, adjusted, strict=True):
        worse = entry.reliable and bool(p_adj <= alpha) and _worse_side(entry.difference, higher) > 0
        entries.append(replace(entry, p_adjusted=float(p_adj), worse=worse))
    overall = replace(
        overall, worse=overall.reliable and overall.p_value <= alpha and _worse_side(overall.difference, higher) > 0
    )
    return Comparison(
        task=inputs.task,
        metric=metric,
        higher_is_better=higher,
        overall=overall,
        segments=tuple(entries),
        n_boot=n_boot,
        alpha=alpha,
        correction=correction,
        seed=seed,
        within_bin_pair_share=share if layout.scores else None,
    )


@dataclass(frozen=True)
class _Settings:
    metric: str
    higher: bool
    n_boot: int
    seed: int
    alpha: float
    correction: str
    min_rows: int
    min_class_rows: int


def _worse_side(difference: float, higher: bool) -> float:
    """How much worse the challenger is (positive: worse)."""
    return -difference if higher else difference


def _difference(
    layout: _Layout,
    settings: _Settings,
    present: np.ndarray,
    name: str,
    spec: str,
    mask: np.ndarray | None,
) -> tuple[SegmentDifference, float]:
    table = _table(layout, mask)
    reliable, reason, _ = _reliability(layout, table, present, settings.min_rows, settings.min_class_rows)
    values = [math.nan, math.nan]
    low = high = math.nan
    p_value = 1.0
    if table.rows:
        observed = _observed(layout, table)
        values = [float(_metric(observed, settings.metric, m)[0]) for m in (0, 1)]
        draws = _resampled(layout, table, settings.n_boot, _rng(settings.seed, None if mask is None else name))
        replicates = _metric(draws, settings.metric, 1) - _metric(draws, settings.metric, 0)
        low, high = _percentiles(replicates, 1 - settings.alpha)
        finite = replicates[np.isfinite(replicates)]
        if finite.size:
            worse_by = -finite if settings.higher else finite
            not_worse = int(np.count_nonzero(worse_by <= 0))
            p_value = (1 + not_worse) / (1 + finite.size)
    entry = SegmentDifference(
        name=name,
        spec=spec,
        rows=table.rows,
        metric=settings.metric,
        champion=values[0],
        challenger=values[1],
        difference=values[1] - values[0],
        low=low,
        high=high,
        p_value=p_value,
        p_adjusted=p_value,
        worse=False,
        reliable=reliable,
        unreliable_reason=reason,
        higher_is_better=settings.higher,
        n_boot=settings.n_boot,
        alpha=settings.alpha,
        correction=settings.correction,
    )
    return entry, table.within_share


def _adjust(p_values: np.ndarray, correction: str) -> np.ndarray:
    """Holm's step-down adjusted p-values, or Benjamini–Hochberg's."""
    if correction == "bh":
        return np.asarray(stats.false_discovery_control(p_values, method="bh"))
    m = p_values.size
    order = np.argsort(p_values, kind="stable")
    stepped = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * p_values[order]))
    out = np.empty(m)
    out[order] = stepped
    return out
