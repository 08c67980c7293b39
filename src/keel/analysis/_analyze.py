"""A model version's analysis on scored rows: metrics by segment with intervals, weak segments found, the curves of a
classifier or the residuals of a regressor, and, given a second model, the comparison by segment — as one result with
its JSON document, its figures and its HTML page.

The caller (``project.analyze``) brings the rows (a run's holdout rebuilt as trained, the prediction log joined with
labels, or a file), the labels and both models' answers; everything here is computed from those arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from keel.analysis import _plots
from keel.analysis._compare import Comparison, compare_models
from keel.analysis._curves import classification_curves, confusion_matrices, residual_report
from keel.analysis._page import Figure, Page, Section, Table
from keel.analysis._segments import (
    SegmentReport,
    Task,
    WeakSegmentReport,
    default_metric,
    find_weak_segments,
    higher_is_better,
    segment_metrics,
    segments_of,
)
from keel.errors import ValidationError

__all__ = ["Analysis", "Scored", "analyze"]


@dataclass(frozen=True)
class Scored:
    """A model's answers on the analysed rows: ``name`` (``churn:3``), predictions, and class probabilities (columns in
    the order of ``classes``) for a classifier that has them."""

    name: str
    predictions: np.ndarray
    probabilities: np.ndarray | None = None


@dataclass(frozen=True)
class Analysis:
    """What :func:`analyze` found.

    Attributes:
        model: the model analysed (``churn:3``).
        task: ``classification`` or ``regression``.
        data: where the rows came from (``holdout of run 1a2b3c4d``, a file ...).
        rows: the rows analysed.
        metric: the primary metric (weak segments and the comparison are judged on it).
        segments: metrics by declared segment, with bootstrap intervals.
        weak: segments found significantly worse than the rest (``None`` when not searched).
        curves: the classifier's curves or the regressor's residuals (their ``to_dict()``).
        comparison: the comparison with a second model on the same rows (``None`` without one).
        challenger: the second model's name (``None`` without one).
        figures: the report's figures.
    """

    model: str
    task: str
    data: str
    rows: int
    metric: str
    segments: SegmentReport
    weak: WeakSegmentReport | None
    curves: dict[str, Any]
    comparison: Comparison | None
    challenger: str | None = None
    figures: list[Figure] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The few numbers kept in the catalog beside the stored report."""
        overall = self.segments.overall.metrics
        return {
            "data": self.data,
            "rows": self.rows,
            "metric": self.metric,
            "overall": {m: _finite(e.value) for m, e in overall.items()},
            "segments": len(self.segments.segments),
            "unreliable_segments": [s.name for s in self.segments.segments if not s.reliable],
            "weak_segments": [w.name for w in self.weak.segments] if self.weak is not None else [],
            "compared_with": self.challenger,
            "worse_segments": [] if self.comparison is None else [d.name for d in self.comparison.worse_segments()],
        }

    def to_dict(self) -> dict[str, Any]:
        """The whole analysis as JSON-safe data."""
        return {
            "model": self.model,
            "task": self.task,
            "data": self.data,
            "rows": self.rows,
            "metric": self.metric,
            "segments": self.segments.to_dict(),
            "weak_segments": None if self.weak is None else self.weak.to_dict(),
            "curves": self.curves,
            "comparison": None if self.comparison is None else self.comparison.to_dict(),
            "challenger": self.challenger,
            "figures": [f.name for f in self.figures],
        }

    def page(self) -> Page:
        """The self-contained HTML page of the analysis."""
        return _page(self)


def _finite(value: float | None) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def analyze(
    frame: pd.DataFrame,
    y_true: np.ndarray,
    model: Scored,
    *,
    task: str,
    classes: Sequence[Any] | None,
    segments: Sequence[str] = (),
    challenger: Scored | None = None,
    metric: str | None = None,
    find_weak: bool = True,
    n_boot: int = 1000,
    seed: int = 0,
    data: str = "",
) -> Analysis:
    """Analyse ``model``'s answers on ``frame``'s rows (features, as the model read them) against ``y_true``.

    Args:
        frame: the rows' features (segments are expressions over its columns).
        y_true: the labels, one per row.
        model: the model's answers.
        task: ``classification`` or ``regression``.
        classes: a classifier's classes, in the order of its probability columns.
        segments: declared segments (``plan``, ``age:4``, ``age[30,60]``, ``age >= 60 and plan == "basic"``).
        challenger: a second model's answers on the same rows: compared segment by segment (paired bootstrap).
        metric: the primary metric (default: ROC AUC for a binary classifier with probabilities, else accuracy;
            MAE for a regressor).
        find_weak: search every column for significantly weak segments.
        n_boot: bootstrap resamples of the intervals and the comparison.
        seed: the resamples' seed.
        data: where the rows came from, for the report.

    Raises:
        ValidationError: no rows, lengths that differ, a bad segment or metric.
    """
    if len(frame) == 0:
        raise ValidationError("there are no rows to analyse", field="data")
    y = np.asarray(y_true)
    if len(y) != len(frame) or len(model.predictions) != len(frame):
        raise ValidationError(
            f"{len(frame)} rows, {len(y)} labels and {len(model.predictions)} predictions: they must match",
            field="data",
        )
    if task not in ("classification", "regression"):
        raise ValidationError(f"task must be 'classification' or 'regression', not {task!r}", field="task")
    kind: Task = "classification" if task == "classification" else "regression"
    binary = task == "classification" and classes is not None and len(classes) == 2
    proba = model.probabilities if task == "classification" else None
    chosen = metric or ("roc_auc" if binary and proba is not None else default_metric(task))
    declared = segments_of(frame, list(segments)) if segments else []
    class_list = list(classes) if classes is not None else None
    report = segment_metrics(
        y, model.predictions, proba=proba, task=kind, segments=declared, n_boot=n_boot, seed=seed, classes=class_list
    )
    weak = None
    if find_weak:
        weak_metric = chosen if chosen != "roc_auc" else "accuracy"  # a row-wise test needs a row-wise metric
        weak = find_weak_segments(
            frame, y, model.predictions, proba, task=kind, metric=weak_metric, seed=seed, classes=class_list
        )
    if task == "classification":
        if binary and proba is not None:
            curves = classification_curves(
                y, proba, y_pred=model.predictions, classes=class_list, segments=declared
            ).to_dict()
        else:
            curves = {
                "confusion": confusion_matrices(y, model.predictions, classes=class_list, segments=declared).to_dict()
            }
    else:
        curves = residual_report(y, model.predictions, frame).to_dict()
    comparison = None
    if challenger is not None:
        comparison = compare_models(
            y,
            model.predictions,
            challenger.predictions,
            proba_a=proba,
            proba_b=challenger.probabilities if task == "classification" else None,
            task=kind,
            segments=declared,
            metric=chosen,
            n_boot=n_boot,
            seed=seed,
            classes=class_list,
        )
    analysis = Analysis(
        model.name,
        task,
        data,
        len(frame),
        chosen,
        report,
        weak,
        curves,
        comparison,
        challenger=None if challenger is None else challenger.name,
    )
    return replace(analysis, figures=_figures(analysis))


# -- figures ----------------------------------------------------------------------------------------------------
def _figures(a: Analysis) -> list[Figure]:
    out: list[Figure] = []
    rows = a.segments.segments
    if rows:
        estimates = [s.metrics[a.metric] for s in rows]
        out.append(
            Figure(
                "segments.png",
                f"{a.metric} by segment (95% intervals; dashed: all rows)",
                _plots.bars_with_intervals(
                    [s.name for s in rows],
                    [e.value for e in estimates],
                    [e.low for e in estimates],
                    [e.high for e in estimates],
                    title=f"{a.model}: {a.metric} by segment",
                    xlabel=a.metric,
                    reference=a.segments.overall.metrics[a.metric].value,
                    muted=[not s.reliable for s in rows],
                    flagged=[_worse_than_overall(a, s.metrics[a.metric]) for s in rows],
                ),
            )
        )
    if a.weak is not None and a.weak.segments:
        weak = a.weak.segments[:15]
        out.append(
            Figure(
                "weak_segments.png",
                f"weakest segments found ({a.weak.metric}; dashed: all rows)",
                _plots.bars_with_intervals(
                    [w.name for w in weak],
                    [w.value for w in weak],
                    [None] * len(weak),
                    [None] * len(weak),
                    title="segments significantly worse than the rest",
                    xlabel=a.weak.metric,
                    reference=a.weak.overall,
                    flagged=[True] * len(weak),
                ),
            )
        )
    curves = a.curves
    if curves.get("roc"):
        roc = curves["roc"]
        out.append(
            Figure(
                "roc.png",
                f"ROC curve (AUC {roc.get('auc', float('nan')):.3f})",
                _plots.curve_plot(
                    [("", roc["fpr"], roc["tpr"])],
                    title="ROC",
                    xlabel="false positive rate",
                    ylabel="true positive rate",
                    diagonal=True,
                ),
            )
        )
    if curves.get("precision_recall"):
        pr = curves["precision_recall"]
        out.append(
            Figure(
                "precision_recall.png",
                f"precision–recall curve (average precision {pr.get('average_precision', float('nan')):.3f})",
                _plots.curve_plot(
                    [("", pr["recall"], pr["precision"])],
                    title="precision–recall",
                    xlabel="recall",
                    ylabel="precision",
                    baseline=pr.get("prevalence"),
                ),
            )
        )
    if curves.get("calibration"):
        cal = curves["calibration"]
        kept = [i for i, n in enumerate(cal.get("counts", [])) if n]
        out.append(
            Figure(
                "calibration.png",
                f"calibration (ECE {cal.get('ece', float('nan')):.3f})",
                _plots.calibration_plot(
                    [cal["mean_predicted"][i] for i in kept],
                    [cal["fraction_positive"][i] for i in kept],
                    [cal["counts"][i] for i in kept],
                    title="calibration",
                ),
            )
        )
    if curves.get("thresholds"):
        table = curves["thresholds"]["rows"]
        t = [r["threshold"] for r in table]
        out.append(
            Figure(
                "thresholds.png",
                "precision, recall and F1 by threshold",
                _plots.curve_plot(
                    [
                        ("precision", t, [r["precision"] for r in table]),
                        ("recall", t, [r["recall"] for r in table]),
                        ("F1", t, [r["f1"] for r in table]),
                    ],
                    title="by threshold",
                    xlabel="threshold",
                    ylabel="",
                ),
            )
        )
    confusion = curves.get("confusion")
    if confusion:
        out.append(
            Figure(
                "confusion.png",
                "confusion matrix (all rows)",
                _plots.confusion_plot(confusion["overall"]["counts"], confusion["classes"], title="confusion matrix"),
            )
        )
    if a.task == "regression":
        by_pred = curves.get("by_prediction")
        if by_pred:
            out.append(Figure("residuals_prediction.png", "residuals against the prediction", _residuals(by_pred)))
        for i, block in enumerate(curves.get("by_feature") or []):
            if i >= 12:
                break
            out.append(Figure(f"residuals_{i}.png", f"residuals against {block['variable']}", _residuals(block)))
    if a.comparison is not None and a.comparison.segments:
        diffs = [a.comparison.overall, *a.comparison.segments]
        out.append(
            Figure(
                "comparison.png",
                f"challenger − champion, {a.comparison.metric} (intervals: paired bootstrap)",
                _plots.bars_with_intervals(
                    [d.name for d in diffs],
                    [d.difference for d in diffs],
                    [d.low for d in diffs],
                    [d.high for d in diffs],
                    title=f"{a.comparison.metric}: challenger − champion",
                    xlabel="difference",
                    reference=0.0,
                    flagged=[d.worse for d in diffs],
                    muted=[not d.reliable for d in diffs],
                ),
            )
        )
    return out


def _residuals(block: dict[str, Any]) -> bytes:
    quantiles = block.get("quantiles") or {}
    low, high = quantiles.get("0.1"), quantiles.get("0.9")
    if block.get("kind") == "numeric":
        x: list[float] = list(block["centre"])
        return _plots.residual_plot(
            x, block["mean"], low, high, title=f"residuals by {block['variable']}", xlabel=str(block["variable"])
        )
    names = [str(label) for label in block["labels"]]
    means = [float(m) for m in block["mean"]]
    return _plots.bars_with_intervals(
        names,
        means,
        list(low or [None] * len(names)),
        list(high or [None] * len(names)),
        title=f"residuals by {block['variable']}",
        xlabel="mean residual",
        reference=0.0,
    )


def _worse_than_overall(a: Analysis, estimate: Any) -> bool:
    """The segment's interval lies entirely on the worse side of the whole data's value."""
    overall = a.segments.overall.metrics[a.metric].value
    if estimate.low is None or estimate.high is None or overall is None:
        return False
    return bool(estimate.high < overall) if higher_is_better(a.metric) else bool(estimate.low > overall)


# -- the page ---------------------------------------------------------------------------------------------------
def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "—"
    try:
        x = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{x:.{digits}g}" if np.isfinite(x) else str(x)


def _interval(e: Any) -> str:
    return f"{_num(e.value)} [{_num(e.low)}, {_num(e.high)}]"


def _page(a: Analysis) -> Page:
    figures = {f.name: f for f in a.figures}
    metrics = list(a.segments.overall.metrics)
    seg_rows = [a.segments.overall, *a.segments.segments]
    segment_table = Table(
        ["segment", "rows", *metrics, "note"],
        [[s.name, f"{s.rows:,}", *(_interval(s.metrics[m]) for m in metrics), s.reason or ""] for s in seg_rows],
        flags=[
            "",
            *(
                ("muted" if not s.reliable else "flag" if _worse_than_overall(a, s.metrics[a.metric]) else "")
                for s in a.segments.segments
            ),
        ],
        numeric=[1],
    )
    sections = [
        Section(
            "Metrics by segment",
            notes=[
                f"95% percentile bootstrap intervals ({a.segments.n_boot:,} resamples). Grey rows are too small for "
                "a meaningful estimate; red rows are worse than all rows beyond their interval."
            ],
            tables=[segment_table],
            figures=[figures[n] for n in ("segments.png",) if n in figures],
        )
    ]
    if a.weak is not None:
        weak_rows = [
            [w.name, f"{w.rows:,}", _num(w.value), _num(w.rest), _num(w.difference), _num(w.p_adjusted, 3), w.test]
            for w in a.weak.segments
        ]
        sections.append(
            Section(
                "Weak segments found",
                notes=[
                    f"Every column's values and quantile bins (and pairs of them) tested against the rest on "
                    f"{a.weak.metric}; p-values corrected for {len(a.weak.tested):,} candidates "
                    f"(Benjamini–Hochberg, alpha {a.weak.alpha})."
                    + ("" if a.weak.segments else " None is significantly worse.")
                ],
                tables=[
                    Table(
                        ["segment", "rows", a.weak.metric, "rest", "difference", "adjusted p", "test"],
                        weak_rows,
                        flags=["flag"] * len(weak_rows),
                        numeric=[1, 2, 3, 4, 5],
                    )
                ]
                if weak_rows
                else [],
                figures=[figures[n] for n in ("weak_segments.png",) if n in figures],
            )
        )
    curve_names = ("roc.png", "precision_recall.png", "calibration.png", "thresholds.png", "confusion.png")
    curve_figs = [figures[n] for n in curve_names if n in figures]
    if a.task == "classification":
        tables = []
        thresholds = a.curves.get("thresholds")
        if thresholds:
            tables.append(
                Table(
                    ["threshold", "precision", "recall", "F1", "share positive"],
                    [
                        [
                            _num(r["threshold"], 2),
                            _num(r["precision"], 3),
                            _num(r["recall"], 3),
                            _num(r["f1"], 3),
                            _num(r["share_positive"], 3),
                        ]
                        for r in thresholds["rows"]
                    ],
                    numeric=[0, 1, 2, 3, 4],
                )
            )
        sections.append(Section("Classifier", tables=tables, figures=curve_figs))
    else:
        errors = a.curves.get("errors") or {}
        residual_figs = [f for n, f in figures.items() if n.startswith("residuals")]
        error_table = Table(list(errors), [[_num(v) for v in errors.values()]])
        sections.append(Section("Errors and residuals", tables=[error_table], figures=residual_figs))
    if a.comparison is not None:
        c = a.comparison
        diffs = [c.overall, *c.segments]
        sections.append(
            Section(
                f"Against {a.challenger}",
                notes=[
                    f"Challenger − champion on {c.metric}, paired bootstrap ({c.n_boot:,} resamples); a segment is "
                    f"significantly worse at {c.alpha} after the {c.correction} correction.",
                    *c.gate_reasons(),
                ],
                tables=[
                    Table(
                        ["segment", "rows", "champion", "challenger", "difference", "interval", "worse"],
                        [
                            [
                                d.name,
                                f"{d.rows:,}",
                                _num(d.champion),
                                _num(d.challenger),
                                _num(d.difference),
                                f"[{_num(d.low)}, {_num(d.high)}]",
                                "yes" if d.worse else "",
                            ]
                            for d in diffs
                        ],
                        flags=["flag" if d.worse else "" for d in diffs],
                        numeric=[1, 2, 3, 4],
                    )
                ],
                figures=[figures[n] for n in ("comparison.png",) if n in figures],
            )
        )
    overall = a.segments.overall.metrics[a.metric]
    return Page(
        f"{a.model}: analysis",
        meta=[f"{a.rows:,} rows ({a.data}); {a.metric} {_interval(overall)}"],
        sections=sections,
    )
