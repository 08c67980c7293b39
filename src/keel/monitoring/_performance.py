"""Model performance over time: metrics per time window, each with a bootstrap confidence interval.

Point estimates come from :func:`keel.training._metrics.compute_metrics`, the very function that computed the
model's validation metrics, so a window's figure and the validation figure are comparable. Intervals are
percentile bootstrap intervals (Efron & Tibshirani 1993, ch. 13): the window's rows are resampled with
replacement ``n_boot`` times, the metric is computed on each resample, and the interval is the
``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` percentiles of those values. A resample is one row of
multiplicities (how often each row was drawn); the common metrics are weighted sums of per-row terms, computed for
all resamples at once by one matrix product (accuracy, MAE, RMSE, R², Brier, log loss, binary precision, recall,
F1) or by a weighted rank formula (binary ROC AUC); the other metrics (macro-averaged multi-class ones) are
computed resample by resample with ``compute_metrics``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from keel.errors import ValidationError
from keel.training._metrics import compute_metrics
from keel.training._spec import CLASSIFICATION_METRICS, REGRESSION_METRICS

__all__ = ["MetricEstimate", "WindowMetrics", "overall", "performance_over_time"]

PROBA_METRICS = frozenset({"roc_auc", "log_loss", "brier"})
# Resamples are drawn in chunks of at most this many multiplicities (64 MiB as float64).
CHUNK_VALUES = 1 << 23


@dataclass(frozen=True)
class MetricEstimate:
    """A metric on a window: the point estimate and its bootstrap interval (``None`` where undefined, e.g.
    ROC AUC on rows of one class, or no interval with ``n_boot=0``)."""

    value: float | None
    low: float | None = None
    high: float | None = None

    def to_dict(self) -> dict[str, float | None]:
        return {"value": self.value, "low": self.low, "high": self.high}


@dataclass(frozen=True)
class WindowMetrics:
    """The metrics of the rows in ``[start, end)``.

    Attributes:
        start, end: the window's bounds (UTC timestamps); ``None`` for :func:`overall` without timestamps.
        rows: rows in the window.
        metrics: metric name -> estimate.
    """

    start: pd.Timestamp | None
    end: pd.Timestamp | None
    rows: int
    metrics: dict[str, MetricEstimate]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict: ISO timestamps, metrics as ``{name: {value, low, high}}``."""
        return {
            "start": None if self.start is None else self.start.isoformat(),
            "end": None if self.end is None else self.end.isoformat(),
            "rows": self.rows,
            "metrics": {k: v.to_dict() for k, v in self.metrics.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WindowMetrics:
        """The inverse of :meth:`to_dict`."""
        return cls(
            start=None if data.get("start") is None else pd.Timestamp(data["start"]),
            end=None if data.get("end") is None else pd.Timestamp(data["end"]),
            rows=int(data["rows"]),
            metrics={
                str(k): MetricEstimate(_opt(v.get("value")), _opt(v.get("low")), _opt(v.get("high")))
                for k, v in data["metrics"].items()
            },
        )


def _opt(value: Any) -> float | None:
    return None if value is None else float(value)


def performance_over_time(
    y_true: Sequence[Any] | np.ndarray | pd.Series,
    y_pred: Sequence[Any] | np.ndarray | pd.Series,
    *,
    timestamps: Sequence[Any] | np.ndarray | pd.Series,
    task: str,
    classes: list[Any] | None = None,
    proba: np.ndarray | None = None,
    window: str = "7D",
    metrics: list[str] | None = None,
    n_boot: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
) -> list[WindowMetrics]:
    """The metrics of each time window that has rows, oldest first.

    Args:
        y_true: the true labels or values.
        y_pred: the predicted classes or values.
        timestamps: when each prediction was made; naive timestamps are taken as UTC.
        task: ``"classification"`` or ``"regression"``.
        classes: the model's classes in the order of ``proba``'s columns; for a binary model the positive class
            is ``classes[1]``. Inferred (sorted labels and predictions) when omitted and ``proba`` is not given.
        proba: class probabilities, shape ``(rows, len(classes))``, for ROC AUC, log loss and Brier score.
        window: the window size, a pandas offset alias. A fixed size (``"7D"``, ``"1D"``, ``"6h"``) gives
            windows aligned to multiples of it since the Unix epoch (1970-01-01T00:00Z, a Thursday, so ``"7D"``
            windows run Thursday to Thursday); a calendar offset anchored at a start (``"W-MON"``, ``"MS"``,
            ``"QS"``) gives calendar windows starting at midnight UTC on the anchor. Default ``"7D"``: a week
            averages out weekday effects and holds enough labelled rows for a useful interval.
        metrics: the metric names (default: every metric of the task that the inputs allow; those needing
            ``proba`` are left out without it).
        n_boot: bootstrap resamples per window. Default 200: enough for stable 95% percentile bounds (Efron &
            Tibshirani, ch. 19, suggest 1,000 for percentile intervals where cost allows; 200 keeps a weekly
            check fast and its bounds within about 1–2% of the metric's range); 0 gives point estimates only.
        confidence: the interval's coverage. Default 0.95.
        seed: the bootstrap's seed; each window's resamples come from ``(seed, window start)``, so the same seed
            gives the same intervals, whatever other windows the data has.

    Returns:
        One :class:`WindowMetrics` per window with rows.

    Raises:
        ValidationError: inputs of different lengths or none, an unknown task, metric or window alias,
            missing timestamps, probabilities whose shape does not match the classes.
    """
    data = _Inputs.of(y_true, y_pred, task, classes, proba, metrics)
    ts = _utc(timestamps, data.n)
    starts, ends = _windows(ts, window)
    unique = np.unique(starts)
    out = []
    codes = np.searchsorted(unique, starts)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(unique.size + 1))
    for w in range(unique.size):
        rows = order[bounds[w] : bounds[w + 1]]
        start = pd.Timestamp(unique[w]).tz_localize("UTC")
        end = pd.Timestamp(ends[rows[0]]).tz_localize("UTC")
        out.append(
            WindowMetrics(start, end, int(rows.size), data.estimate(rows, n_boot, confidence, seed, start.value))
        )
    return out


def overall(
    y_true: Sequence[Any] | np.ndarray | pd.Series,
    y_pred: Sequence[Any] | np.ndarray | pd.Series,
    *,
    task: str,
    timestamps: Sequence[Any] | np.ndarray | pd.Series | None = None,
    classes: list[Any] | None = None,
    proba: np.ndarray | None = None,
    metrics: list[str] | None = None,
    n_boot: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
) -> WindowMetrics:
    """The metrics over all rows as one window (``start``/``end``: the first and last timestamp when given).

    The arguments are those of :func:`performance_over_time`.
    """
    data = _Inputs.of(y_true, y_pred, task, classes, proba, metrics)
    start = end = None
    if timestamps is not None:
        ts = _utc(timestamps, data.n)
        start, end = pd.Timestamp(ts.min()).tz_localize("UTC"), pd.Timestamp(ts.max()).tz_localize("UTC")
    key = 0 if start is None else start.value
    return WindowMetrics(start, end, data.n, data.estimate(np.arange(data.n), n_boot, confidence, seed, key))


# -- inputs ---------------------------------------------------------------------------------------------------
def _array(values: Any, name: str) -> np.ndarray:
    array = values.to_numpy() if isinstance(values, pd.Series) else np.asarray(values)
    if array.ndim != 1:
        raise ValidationError(f"{name} must be one-dimensional, got shape {array.shape}", field=name)
    return array


def _utc(timestamps: Any, n: int) -> np.ndarray:
    """Timestamps as UTC ``datetime64[ns]`` values (tz-naive, meaning UTC)."""
    try:
        ts = pd.to_datetime(pd.Series(_array(timestamps, "timestamps")), utc=True)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"timestamps could not be read as dates: {exc}", field="timestamps") from exc
    if len(ts) != n:
        raise ValidationError(f"timestamps has {len(ts)} values for {n} rows", field="timestamps")
    missing = np.flatnonzero(ts.isna().to_numpy())
    if missing.size:
        raise ValidationError(
            f"timestamps has {missing.size} missing value(s), the first at row {missing[0]}",
            field="timestamps",
            row=int(missing[0]),
        )
    values: np.ndarray = ts.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")
    return values


def _windows(ts: np.ndarray, window: str) -> tuple[np.ndarray, np.ndarray]:
    """Each timestamp's window start and end."""
    try:
        offset = pd.tseries.frequencies.to_offset(window)
    except (TypeError, ValueError) as exc:
        raise ValidationError(
            f"window {window!r} is not a pandas offset alias; use e.g. '7D', '1D', '6h', 'W-MON' or 'MS'",
            field="window",
        ) from exc
    series = pd.Series(ts)
    if isinstance(offset, pd.offsets.Tick | pd.offsets.Day):  # a fixed size (pandas 3's "D" is not a Tick)
        size = pd.Timedelta(offset)  # type: ignore[arg-type]  # a Day converts too (pandas 3)
        if size <= pd.Timedelta(0):
            raise ValidationError(f"window {window!r} must be positive", field="window")
        starts = series.dt.floor(size)
        return starts.to_numpy(dtype="datetime64[ns]"), (starts + size).to_numpy(dtype="datetime64[ns]")
    days = series.dt.normalize()
    anchors = {d: offset.rollback(d) for d in days.unique()}
    starts = days.map(anchors)
    ends = starts.map({s: s + offset for s in starts.unique()})
    return starts.to_numpy(dtype="datetime64[ns]"), ends.to_numpy(dtype="datetime64[ns]")


@dataclass
class _Inputs:
    task: str
    names: list[str]
    y_true: np.ndarray
    y_pred: np.ndarray
    proba: np.ndarray | None
    classes: list[Any] | None

    @property
    def n(self) -> int:
        return int(self.y_true.size)

    @classmethod
    def of(
        cls,
        y_true: Any,
        y_pred: Any,
        task: str,
        classes: list[Any] | None,
        proba: np.ndarray | None,
        metrics: list[str] | None,
    ) -> _Inputs:
        if task not in ("classification", "regression"):
            raise ValidationError(f"task must be 'classification' or 'regression', got {task!r}", field="task")
        yt, yp = _array(y_true, "y_true"), _array(y_pred, "y_pred")
        if yt.size == 0:
            raise ValidationError("no rows: performance needs at least one labelled prediction", field="y_true")
        if yp.size != yt.size:
            raise ValidationError(f"y_pred has {yp.size} values for {yt.size} labels", field="y_pred")
        known = CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS
        if metrics is None:
            names = [m for m in known if proba is not None or m not in PROBA_METRICS]
        else:
            unknown = [m for m in metrics if m not in known]
            if unknown:
                raise ValidationError(
                    f"unknown {task} metric(s) {unknown}; choose from {', '.join(known)}", field="metrics"
                )
            names = list(dict.fromkeys(metrics))
        p = None
        if task == "regression":
            try:
                yt, yp = yt.astype(np.float64), yp.astype(np.float64)
            except (TypeError, ValueError) as exc:
                raise ValidationError(f"regression labels and predictions must be numbers: {exc}") from exc
            classes = None
        else:
            if proba is not None:
                if classes is None:
                    raise ValidationError("proba needs classes: the class of each of its columns", field="classes")
                p = np.asarray(proba, dtype=np.float64)
                if p.ndim != 2 or p.shape != (yt.size, len(classes)):
                    raise ValidationError(
                        f"proba has shape {p.shape}; expected ({yt.size}, {len(classes)}): one column per class",
                        field="proba",
                    )
            if classes is None:
                labels = set(yt.tolist()) | set(yp.tolist())
                try:
                    classes = sorted(labels)
                except TypeError:
                    classes = sorted(labels, key=str)
        return cls(task, names, yt, yp, p, list(classes) if classes is not None else None)

    # -- estimation -------------------------------------------------------------------------------------------
    def estimate(
        self, rows: np.ndarray, n_boot: int, confidence: float, seed: int, key: int
    ) -> dict[str, MetricEstimate]:
        if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 0:
            raise ValidationError(f"n_boot must be a non-negative integer, got {n_boot!r}", field="n_boot")
        if not 0 < confidence < 1:
            raise ValidationError(f"confidence must be in (0, 1), got {confidence!r}", field="confidence")
        yt, yp = self.y_true[rows], self.y_pred[rows]
        proba = None if self.proba is None else self.proba[rows]
        point = _metrics(self.task, self.names, yt, yp, proba, self.classes)
        if n_boot == 0:
            return {m: MetricEstimate(point.get(m)) for m in self.names}
        samples = self._bootstrap(yt, yp, proba, n_boot, np.random.default_rng([seed & (2**63 - 1), key + 2**63]))
        lo_q, hi_q = 50 * (1 - confidence), 50 * (1 + confidence)
        out = {}
        for m in self.names:
            value = point.get(m)
            values = samples[m]
            values = values[np.isfinite(values)]
            if value is None or values.size == 0:
                out[m] = MetricEstimate(value)
            else:
                low, high = np.percentile(values, [lo_q, hi_q])
                out[m] = MetricEstimate(value, float(low), float(high))
        return out

    def _bootstrap(
        self, yt: np.ndarray, yp: np.ndarray, proba: np.ndarray | None, n_boot: int, rng: np.random.Generator
    ) -> dict[str, np.ndarray]:
        n = yt.size
        terms = self._terms(yt, yp, proba)
        fast = _vectorised_names(terms)
        looped = [m for m in self.names if m not in fast]
        auc = "roc_auc" in fast
        out = {m: np.empty(n_boot) for m in self.names}
        chunk = max(1, CHUNK_VALUES // n)
        done = 0
        while done < n_boot:
            c = min(chunk, n_boot - done)
            draws = rng.integers(0, n, size=(c, n))
            weights = np.bincount((draws + (np.arange(c) * n)[:, None]).ravel(), minlength=c * n).reshape(c, n)
            del draws
            w = weights.astype(np.float64)
            sums = {k: w @ v for k, v in terms.items() if not k.startswith("_")}
            self._vectorised(out, sums, w, terms, done, c, n)
            if auc and "_auc_score" in terms:
                out["roc_auc"][done : done + c] = _weighted_auc(w, terms["_auc_score"], terms["_auc_pos"])
            elif auc:
                k = sum(1 for key in terms if key.startswith("_ovr_score"))
                per_class = [_weighted_auc(w, terms[f"_ovr_score{i}"], terms[f"_ovr_pos{i}"]) for i in range(k)]
                out["roc_auc"][done : done + c] = np.mean(per_class, axis=0)  # NaN when any class is undefined
            for b in range(c):
                if not looped:
                    break
                idx = np.repeat(np.arange(n), weights[b])
                got = _metrics(self.task, looped, yt[idx], yp[idx], None if proba is None else proba[idx], self.classes)
                for m in looped:
                    v = got.get(m)
                    out[m][done + b] = np.nan if v is None else v
            done += c
        return out

    def _terms(self, yt: np.ndarray, yp: np.ndarray, proba: np.ndarray | None) -> dict[str, np.ndarray]:
        """Per-row terms whose weighted sums give the vectorised metrics (keys starting with ``_`` are inputs
        of the AUC, not sums)."""
        names = set(self.names)
        terms: dict[str, np.ndarray] = {}
        if self.task == "regression":
            err = yp - yt
            if "mae" in names:
                terms["mae"] = np.abs(err)
            if names & {"rmse", "r2"}:
                terms["sq"] = err * err
            if "r2" in names:
                terms["y"], terms["y2"] = yt, yt * yt
            return terms
        if "accuracy" in names:
            terms["accuracy"] = (yt == yp).astype(np.float64)
        classes = self.classes or []
        binary = len(classes) == 2
        if binary and names & {"precision", "recall", "f1"}:
            t, p = yt == classes[1], yp == classes[1]
            terms["tp"] = (t & p).astype(np.float64)
            terms["fp"] = (~t & p).astype(np.float64)
            terms["fn"] = (t & ~p).astype(np.float64)
        elif not binary and names & {"precision", "recall", "f1"}:
            # Macro averages over the labels a resample holds (those of its true or predicted rows), as
            # scikit-learn's: per label, the weighted counts of true positives, predictions and actual rows.
            labels = list(dict.fromkeys([*classes, *yt.tolist(), *yp.tolist()]))
            for i, label in enumerate(labels):
                t, p = yt == label, yp == label
                terms[f"mc_tp{i}"] = (t & p).astype(np.float64)
                terms[f"mc_pred{i}"] = p.astype(np.float64)
                terms[f"mc_act{i}"] = t.astype(np.float64)
        if proba is not None:
            if binary and ("brier" in names or "roc_auc" in names):
                pos = (yt == classes[1]).astype(np.float64)
                if "brier" in names:
                    terms["brier"] = (proba[:, 1] - pos) ** 2
                if "roc_auc" in names:
                    terms["_auc_score"], terms["_auc_pos"] = proba[:, 1], pos
            elif not binary and "roc_auc" in names and set(yt.tolist()) <= set(classes):
                # One-vs-rest, macro: each class's AUC against the rest (NaN, so undefined, when a resample
                # lacks a class, as scikit-learn).
                for i, c in enumerate(classes):
                    terms[f"_ovr_score{i}"], terms[f"_ovr_pos{i}"] = proba[:, i], (yt == c).astype(np.float64)
            if "log_loss" in names:
                index = {c: i for i, c in enumerate(classes)}
                col = np.array([index.get(v, -1) for v in yt.tolist()])
                if (col >= 0).all():
                    p = proba / proba.sum(axis=1, keepdims=True)
                    eps = np.finfo(p.dtype).eps
                    terms["log_loss"] = -np.log(np.clip(p[np.arange(yt.size), col], eps, 1 - eps))
        return terms

    def _vectorised(
        self,
        out: dict[str, np.ndarray],
        sums: dict[str, np.ndarray],
        w: np.ndarray,
        terms: dict[str, np.ndarray],
        done: int,
        c: int,
        n: int,
    ) -> None:
        part = slice(done, done + c)
        for m in ("accuracy", "mae", "brier", "log_loss"):
            if m in sums:
                out[m][part] = sums[m] / n
        if "rmse" in self.names and "sq" in sums:
            out["rmse"][part] = np.sqrt(sums["sq"] / n)
        if "r2" in self.names and "y" in sums:
            ss_tot = sums["y2"] - sums["y"] ** 2 / n
            with np.errstate(divide="ignore", invalid="ignore"):
                out["r2"][part] = np.where(ss_tot > 0, 1 - sums["sq"] / np.where(ss_tot > 0, ss_tot, 1), np.nan)
        if "tp" in sums:
            tp, fp, fn = sums["tp"], sums["fp"], sums["fn"]
            with np.errstate(divide="ignore", invalid="ignore"):  # zero_division=0, as compute_metrics
                if "precision" in self.names:
                    out["precision"][part] = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
                if "recall" in self.names:
                    out["recall"][part] = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
                if "f1" in self.names:
                    out["f1"][part] = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
        if "mc_tp0" in sums:
            k = sum(1 for key in sums if key.startswith("mc_tp"))
            tp = np.stack([sums[f"mc_tp{i}"] for i in range(k)])  # labels x resamples
            pred = np.stack([sums[f"mc_pred{i}"] for i in range(k)])
            act = np.stack([sums[f"mc_act{i}"] for i in range(k)])
            present = (pred + act) > 0
            held = present.sum(axis=0)
            with np.errstate(divide="ignore", invalid="ignore"):  # zero_division=0, as compute_metrics
                per_label = {
                    "precision": np.where(pred > 0, tp / pred, 0.0),
                    "recall": np.where(act > 0, tp / act, 0.0),
                    "f1": np.where(pred + act > 0, 2 * tp / (pred + act), 0.0),
                }
                for m, values in per_label.items():
                    if m in self.names:
                        out[m][part] = np.where(held > 0, (values * present).sum(axis=0) / held, np.nan)


def _metrics(
    task: str, names: list[str], yt: np.ndarray, yp: np.ndarray, proba: np.ndarray | None, classes: list[Any] | None
) -> dict[str, float | None]:
    """:func:`compute_metrics`, with an undefined metric (NaN from recent scikit-learn versions, which warn
    instead of raising) as ``None``."""
    from sklearn.exceptions import UndefinedMetricWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        got = compute_metrics(task, names, yt, yp, proba, classes)
    return {k: None if v is None or not math.isfinite(v) else v for k, v in got.items()}


def _weighted_auc(w: np.ndarray, score: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """ROC AUC of each row of multiplicities ``w``: the weighted Mann–Whitney statistic
    ``P(score_pos > score_neg) + P(tie) / 2``; NaN where a resample has only one class."""
    order = np.argsort(score, kind="stable")
    s = score[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])  # groups of tied scores
    wp = w[:, order] * positive[order]
    wn = w[:, order] - wp
    pos_g = np.add.reduceat(wp, starts, axis=1)
    neg_g = np.add.reduceat(wn, starts, axis=1)
    below = np.cumsum(neg_g, axis=1) - neg_g
    total_pos, total_neg = pos_g.sum(axis=1), neg_g.sum(axis=1)
    wins = (pos_g * (below + 0.5 * neg_g)).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        auc: np.ndarray = np.where((total_pos > 0) & (total_neg > 0), wins / (total_pos * total_neg), np.nan)
    return auc


def _vectorised_names(terms: dict[str, np.ndarray]) -> set[str]:
    """The metrics whose per-row terms :meth:`_Inputs._terms` prepared."""
    names: set[str] = {m for m in ("accuracy", "mae", "brier", "log_loss") if m in terms}
    if "sq" in terms:
        names.add("rmse")
    if "y" in terms:
        names.add("r2")
    if "tp" in terms or "mc_tp0" in terms:
        names |= {"precision", "recall", "f1"}
    if "_auc_score" in terms or "_ovr_score0" in terms:
        names.add("roc_auc")
    return names
