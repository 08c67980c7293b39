"""Drift tests between a stored reference profile and a current window of data, chosen by type and sample size.

The choice follows Evidently's well-tested defaults (``evidently.calculations.stattests``, the "data drift"
preset), which an ML engineer moving from Evidently will recognise:

============  =====================================  ========================================================
column kind   small current sample (< 1,000 values)  large current sample
============  =====================================  ========================================================
numeric       two-sample Kolmogorov–Smirnov test     normed Wasserstein-1 distance >= 0.1 (or PSI >= 0.2)
categorical   chi-squared test (2 x k contingency)   Jensen–Shannon distance (base 2) >= 0.1
============  =====================================  ========================================================

On small samples a hypothesis test is the only honest tool — an effect size measured on 300 rows is mostly
noise — and the p-values of all features are corrected together with Benjamini–Hochberg, so that monitoring
fifty null features does not raise two or three false alarms per window. On large samples every test rejects:
with a million rows KS finds a difference of 0.002 in a CDF "significant", which is not drift anyone should act
on. There an effect size with a threshold says whether the change is big enough to matter.

The reference side is only ever read from the :class:`~keel.monitoring.ReferenceProfile`; the current side is
computed in one vectorised pass: numeric columns are stacked into column blocks and sorted by one
``ndarray.sort`` call per block (NaN last, so a row's values are its first ``count`` entries), and every
statistic (quantiles, ECDF, bin counts) is read from the sorted rows by indexing; categorical columns are
counted once with ``value_counts``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial.distance import jensenshannon

from keel.errors import ValidationError
from keel.profiles._profile import (
    MAX_CATEGORIES,
    OTHER,
    ColumnProfile,
    ReferenceProfile,
    as_float,
    category_counts,
    column_blocks,
    histogram_sorted,
    quantiles_from_sorted,
    sorted_block,
)

__all__ = ["DriftConfig", "DriftResult", "FeatureDrift", "detect_drift"]

Method = Literal["ks", "chi2", "wasserstein", "psi", "jensenshannon"]

PSI_FLOOR = 1e-4
"""Bin shares of 0 are replaced by this before PSI's logarithm (Evidently's value), so an empty bin counts as a
large but finite change."""

PLOT_CATEGORIES = 20
"""Categories shown per categorical feature in the plot data (the largest by reference or current share);
the rest are summed into one ``__other__`` bar."""


@dataclass(frozen=True)
class DriftConfig:
    """How drift is decided. Every default is a standard, published choice; change them per model if needed.

    Attributes:
        small_sample: a feature whose CURRENT sample has fewer non-missing values than this is tested with a
            hypothesis test (KS / chi-squared), else judged by an effect size (Wasserstein / PSI /
            Jensen–Shannon). Default 1,000: Evidently's boundary between "small" and "large" data (it uses
            ``<= 1000``). Below it a hypothesis test has useful power for shifts of about 0.1–0.2 standard
            deviations and effect sizes are too noisy; above it hypothesis tests flag practically meaningless
            differences.
        alpha: the false-discovery rate of the Benjamini–Hochberg procedure applied across the small-sample
            features' p-values (Benjamini & Hochberg 1995); a feature drifts when its adjusted p-value is below
            it. Default 0.05, the conventional level (Evidently's default for its tests too).
        numeric_method: the large-sample statistic of numeric features: ``"wasserstein"`` (default, Evidently's
            default for numeric columns above 1,000 rows) or ``"psi"`` (the credit-scoring industry's
            Population Stability Index).
        wasserstein_threshold: Wasserstein-1 distance divided by the reference's standard deviation at which a
            numeric feature drifts. Default 0.1 (Evidently's default): a whole-distribution shift of a tenth of
            a standard deviation.
        psi_threshold: PSI at which a numeric feature drifts with ``numeric_method="psi"``. Default 0.2, the
            usual rule of thumb between "moderate" (0.1–0.2) and "significant" (> 0.2) population shifts in
            credit scoring (Siddiqi, *Credit Risk Scorecards*, 2006; Yurdakul 2018 discusses its statistics).
        jensenshannon_threshold: Jensen–Shannon distance (base 2, so in [0, 1]) between the reference and
            current category shares at which a categorical feature drifts. Default 0.1 (Evidently's default).
        drift_share: the dataset drifts when at least this share of the tested features drifts. Default 0.5
            (Evidently's ``DataDriftPreset`` default).
        psi_bins: PSI's bins: this many reference-quantile bins (deciles by default, the textbook choice), so
            each bin holds 1/psi_bins of the reference.
    """

    small_sample: int = 1000
    alpha: float = 0.05
    numeric_method: Literal["wasserstein", "psi"] = "wasserstein"
    wasserstein_threshold: float = 0.1
    psi_threshold: float = 0.2
    jensenshannon_threshold: float = 0.1
    drift_share: float = 0.5
    psi_bins: int = 10

    def __post_init__(self) -> None:
        if isinstance(self.small_sample, bool) or not isinstance(self.small_sample, int) or self.small_sample < 0:
            raise ValidationError(
                f"DriftConfig.small_sample must be a non-negative integer, got {self.small_sample!r}",
                field="small_sample",
            )
        if self.numeric_method not in ("wasserstein", "psi"):
            raise ValidationError(
                f"DriftConfig.numeric_method must be 'wasserstein' or 'psi', got {self.numeric_method!r}",
                field="numeric_method",
            )
        for name in ("alpha", "drift_share"):
            value = getattr(self, name)
            if not _is_number(value) or not 0 < value <= 1:
                raise ValidationError(f"DriftConfig.{name} must be in (0, 1], got {value!r}", field=name)
        for name in ("wasserstein_threshold", "psi_threshold", "jensenshannon_threshold"):
            value = getattr(self, name)
            if not _is_number(value) or not value > 0 or not math.isfinite(value):
                raise ValidationError(f"DriftConfig.{name} must be a positive number, got {value!r}", field=name)
        if isinstance(self.psi_bins, bool) or not isinstance(self.psi_bins, int) or self.psi_bins < 2:
            raise ValidationError(
                f"DriftConfig.psi_bins must be an integer of at least 2, got {self.psi_bins!r}", field="psi_bins"
            )

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-safe dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DriftConfig:
        """The inverse of :meth:`to_dict`; unknown keys are a :class:`~keel.errors.ValidationError`."""
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValidationError(f"unknown DriftConfig field(s): {sorted(unknown)}")
        return cls(**data)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class FeatureDrift:
    """The drift verdict on one feature (or on the predictions).

    Attributes:
        name: the feature.
        kind: ``"numeric"`` or ``"categorical"``.
        method: ``"ks"``, ``"chi2"``, ``"wasserstein"`` (normed by the reference std), ``"psi"`` or
            ``"jensenshannon"``.
        statistic: the test statistic or effect size.
        p_value: for ``ks``/``chi2``: the p-value, Benjamini–Hochberg-adjusted across the small-sample
            features (the prediction's is not adjusted: it is one test on its own); ``None`` for effect sizes.
        threshold: what the p-value (below it) or the statistic (at or above it) is compared to.
        drifted: the verdict.
        current_rows: non-missing current values tested.
        bins: plot bins: for a numeric feature the ``k + 1`` bin edges, for a categorical one the ``k``
            categories.
        reference: the reference's share of values per bin (``k`` numbers).
        current: the current sample's share of values per bin (``k`` numbers).
    """

    name: str
    kind: str
    method: str
    statistic: float
    p_value: float | None
    threshold: float
    drifted: bool
    current_rows: int
    bins: list[Any] = field(default_factory=list)
    reference: list[float] = field(default_factory=list)
    current: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict."""
        return {
            "name": self.name,
            "kind": self.kind,
            "method": self.method,
            "statistic": float(self.statistic),
            "p_value": None if self.p_value is None else float(self.p_value),
            "threshold": float(self.threshold),
            "drifted": bool(self.drifted),
            "current_rows": int(self.current_rows),
            "bins": list(self.bins),
            "reference": [float(v) for v in self.reference],
            "current": [float(v) for v in self.current],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureDrift:
        """The inverse of :meth:`to_dict`."""
        return cls(
            name=str(data["name"]),
            kind=str(data["kind"]),
            method=str(data["method"]),
            statistic=float(data["statistic"]),
            p_value=None if data["p_value"] is None else float(data["p_value"]),
            threshold=float(data["threshold"]),
            drifted=bool(data["drifted"]),
            current_rows=int(data["current_rows"]),
            bins=list(data.get("bins", [])),
            reference=[float(v) for v in data.get("reference", [])],
            current=[float(v) for v in data.get("current", [])],
        )


@dataclass(frozen=True)
class DriftResult:
    """The drift verdict on a current window.

    Attributes:
        features: one verdict per tested feature, in the reference's column order.
        prediction: the verdict on the predictions, or ``None`` when none were given.
        drifted_features: the names of the drifted features.
        share: drifted features over tested features (0 when none was tested).
        dataset_drifted: ``share >= config.drift_share`` (and at least one feature tested).
        config: the configuration used.
        skipped: features that could not be tested, with the reason (missing from the current data, no
            values, a changed kind — these are reported by the quality check).
    """

    features: list[FeatureDrift]
    prediction: FeatureDrift | None
    drifted_features: list[str]
    share: float
    dataset_drifted: bool
    config: DriftConfig
    skipped: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (the form stored with a monitoring report)."""
        return {
            "features": [f.to_dict() for f in self.features],
            "prediction": None if self.prediction is None else self.prediction.to_dict(),
            "drifted_features": list(self.drifted_features),
            "share": float(self.share),
            "dataset_drifted": bool(self.dataset_drifted),
            "config": self.config.to_dict(),
            "skipped": dict(self.skipped),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DriftResult:
        """The inverse of :meth:`to_dict`."""
        pred = data.get("prediction")
        return cls(
            features=[FeatureDrift.from_dict(f) for f in data["features"]],
            prediction=None if pred is None else FeatureDrift.from_dict(pred),
            drifted_features=[str(n) for n in data["drifted_features"]],
            share=float(data["share"]),
            dataset_drifted=bool(data["dataset_drifted"]),
            config=DriftConfig.from_dict(data["config"]),
            skipped={str(k): str(v) for k, v in data.get("skipped", {}).items()},
        )


# -- statistics on the stored reference ------------------------------------------------------------------------
def reference_cdf(quantiles: np.ndarray, x: np.ndarray, side: Literal["left", "right"] = "right") -> np.ndarray:
    """The reference CDF at ``x`` reconstructed from its quantile function on :data:`QUANTILE_GRID`.

    Linear between the stored quantiles; a value repeated over several grid points (a tie in the data) is a
    jump. ``side="right"`` gives ``F(x) = P(X <= x)``, ``side="left"`` the left limit ``P(X < x)``.
    """
    grid = np.linspace(0.0, 1.0, quantiles.size)
    k = np.searchsorted(quantiles, x, side=side)
    out = np.where(k >= quantiles.size, 1.0, 0.0)
    mid = (k > 0) & (k < quantiles.size)
    if mid.any():
        j = k[mid]
        i = j - 1
        q_i, q_j = quantiles[i], quantiles[j]
        out[mid] = grid[i] + (x[mid] - q_i) / (q_j - q_i) * (grid[j] - grid[i])
    return out


def ks_statistic(quantiles: np.ndarray, current_sorted: np.ndarray) -> float:
    """Two-sample KS statistic ``sup |F_cur - F_ref|`` between a sorted current sample and the reference.

    The supremum of a step function minus a non-decreasing one is reached at the current sample's points
    (their value or their left limit), so both sides are evaluated there only.
    """
    n = current_sorted.size
    f_right = np.searchsorted(current_sorted, current_sorted, side="right") / n
    f_left = np.searchsorted(current_sorted, current_sorted, side="left") / n
    d_plus = np.max(f_right - reference_cdf(quantiles, current_sorted, "right"))
    d_minus = np.max(reference_cdf(quantiles, current_sorted, "left") - f_left)
    return float(max(d_plus, d_minus, 0.0))


def ks_p_value(statistic: float, n_reference: int, n_current: int) -> float:
    """Asymptotic two-sided p-value of a two-sample KS statistic.

    The distribution of the one-sample KS statistic with the effective sample size ``n·m/(n+m)`` (rounded),
    :func:`scipy.stats.kstwo` — exactly what :func:`scipy.stats.ks_2samp` does in its ``"asymp"`` mode, which
    it uses itself whenever a sample exceeds 10,000 values (as the reference almost always does).
    """
    m, n = float(n_reference), float(n_current)
    en = max(1, round(m * n / (m + n)))
    return float(np.clip(stats.kstwo.sf(statistic, en), 0.0, 1.0))


def wasserstein_normed(ref_quantiles: np.ndarray, cur_quantiles: np.ndarray, ref: ColumnProfile) -> float:
    """Wasserstein-1 distance ``∫|Q_ref(u) - Q_cur(u)| du`` (trapezoid rule on the quantile grid), divided by
    the reference's standard deviation.

    A constant reference column has no spread to scale by: the distance is then divided by the constant's
    magnitude (or by 1 for a constant 0), so that a change of a tenth of the constant's value is drift.
    """
    distance = float(np.trapezoid(np.abs(ref_quantiles - cur_quantiles), np.linspace(0.0, 1.0, ref_quantiles.size)))
    scale = ref.std if ref.std else abs(ref.mean or 0.0) or 1.0
    return distance / scale


def psi_edges(ref_quantiles: np.ndarray, bins: int) -> np.ndarray:
    """PSI's interior cut points: the reference's ``1/bins, ..., (bins-1)/bins`` quantiles, duplicates (ties)
    removed. Bins are right-closed: ``(-inf, e1], (e1, e2], ..., (e_last, inf)``."""
    grid = np.linspace(0.0, 1.0, ref_quantiles.size)
    probs = np.arange(1, bins) / bins
    return np.unique(np.interp(probs, grid, ref_quantiles))


def psi(reference_shares: np.ndarray, current_shares: np.ndarray) -> float:
    """Population Stability Index ``Σ (cur - ref) · ln(cur / ref)``, zero shares floored at :data:`PSI_FLOOR`."""
    r = np.where(reference_shares == 0, PSI_FLOOR, reference_shares)
    c = np.where(current_shares == 0, PSI_FLOOR, current_shares)
    return float(np.sum((c - r) * np.log(c / r)))


def psi_from_quantiles(ref_quantiles: np.ndarray, current_sorted: np.ndarray, bins: int) -> float:
    """PSI of a sorted current sample on the reference's quantile bins (see :func:`psi_edges`)."""
    edges = psi_edges(ref_quantiles, bins)
    ref_cdf = np.concatenate([[0.0], reference_cdf(ref_quantiles, edges, "right"), [1.0]])
    cur_cdf = np.concatenate([[0], np.searchsorted(current_sorted, edges, side="right"), [current_sorted.size]]) / max(
        current_sorted.size, 1
    )
    return psi(np.diff(ref_cdf), np.diff(cur_cdf))


# -- categorical ----------------------------------------------------------------------------------------------
def align_categories(reference: dict[str, int], current: dict[str, int]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Reference and current counts over the union of categories.

    A current value the reference does not list goes to the reference's ``__other__`` bucket when it has one
    (it may be one of the rare values that were bucketed), else it is a new category (the
    :data:`~keel.profiles._profile.MAX_CATEGORIES` most frequent new ones by name, the rest in ``__other__``).
    """
    mapped: dict[str, int] = {}
    new: dict[str, int] = {}
    for key, n in current.items():
        if key in reference:
            mapped[key] = mapped.get(key, 0) + n
        elif OTHER in reference:
            mapped[OTHER] = mapped.get(OTHER, 0) + n
        else:
            new[key] = n
    for i, (key, n) in enumerate(sorted(new.items(), key=lambda kv: (-kv[1], kv[0]))):
        bucket = key if i < MAX_CATEGORIES else OTHER
        mapped[bucket] = mapped.get(bucket, 0) + n
    names = list(reference) + [k for k in mapped if k not in reference]
    ref = np.array([reference.get(k, 0) for k in names], dtype=np.float64)
    cur = np.array([mapped.get(k, 0) for k in names], dtype=np.float64)
    return names, ref, cur


def chi2_test(ref_counts: np.ndarray, cur_counts: np.ndarray) -> tuple[float, float]:
    """Chi-squared test of homogeneity on the 2 x k table of reference and current counts.

    A 2 x k contingency (not goodness of fit against the reference shares): the reference is a sample too, and
    a category the reference never saw gets a positive expected count instead of an infinite statistic.
    Yates' continuity correction applies to 2 x 2 tables (scipy's default). One category: (0, 1).
    """
    keep = (ref_counts + cur_counts) > 0
    table = np.vstack([ref_counts[keep], cur_counts[keep]])
    if table.shape[1] < 2:
        return 0.0, 1.0
    res = stats.chi2_contingency(table)
    return float(res.statistic), float(res.pvalue)


def js_distance(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    """Jensen–Shannon distance (base 2, in [0, 1]) between the category shares."""
    return float(jensenshannon(ref_counts / ref_counts.sum(), cur_counts / cur_counts.sum(), base=2))


# -- the check ------------------------------------------------------------------------------------------------
@dataclass
class _Pending:
    """A feature's figures before the Benjamini–Hochberg step decides small-sample verdicts."""

    name: str
    kind: str
    method: str
    statistic: float
    p_value: float | None
    threshold: float
    current_rows: int
    bins: list[Any]
    reference: list[float]
    current: list[float]

    def decide(self, p_value: float | None = None) -> FeatureDrift:
        p = self.p_value if p_value is None else p_value
        drifted = p < self.threshold if p is not None else self.statistic >= self.threshold
        return FeatureDrift(
            self.name,
            self.kind,
            self.method,
            self.statistic,
            p,
            self.threshold,
            bool(drifted),
            self.current_rows,
            self.bins,
            self.reference,
            self.current,
        )


def detect_drift(
    reference: ReferenceProfile,
    current: pd.DataFrame,
    *,
    predictions: pd.Series | np.ndarray | None = None,
    config: DriftConfig = DriftConfig(),  # frozen, hence a safe default
    columns: list[str] | None = None,
) -> DriftResult:
    """Test every reference column present in ``current`` (and the predictions) for drift.

    Args:
        reference: the stored profile of the reference data.
        current: the current window's rows (raw features, as served).
        predictions: the model's predictions on ``current`` (1-D), tested against the profile's predictions.
        config: thresholds and methods; see :class:`DriftConfig` for the defaults and their sources.
        columns: only these reference columns (default: all of them).

    Returns:
        The verdicts. Reference columns absent from ``current``, without values on either side, or whose
        values are no longer numbers are not tested but listed in ``skipped`` (they are schema or quality
        problems, reported by :func:`~keel.monitoring.check_quality`).

    Raises:
        ValidationError: ``current`` is not a DataFrame or has no rows, ``columns`` names a column the
            reference does not have, or predictions are given but the reference profile has none.

    Example:
        >>> result = detect_drift(profile, window_frame, predictions=window_scores)  # doctest: +SKIP
        >>> result.dataset_drifted, result.drifted_features  # doctest: +SKIP
        (False, ['spend_30d'])
    """
    if not isinstance(reference, ReferenceProfile):
        raise ValidationError(f"reference must be a ReferenceProfile, got {type(reference).__name__}")
    if not isinstance(config, DriftConfig):
        raise ValidationError(f"config must be a DriftConfig, got {type(config).__name__}")
    if not isinstance(current, pd.DataFrame):
        raise ValidationError(f"current must be a pandas DataFrame, got {type(current).__name__}")
    if len(current) == 0:
        raise ValidationError("the current data has no rows; drift needs at least one row in the window")
    if columns is None:
        names = list(reference.columns)
    else:
        unknown = [c for c in columns if c not in reference.columns]
        if unknown:
            raise ValidationError(
                f"columns {unknown} are not in the reference profile (it has: {', '.join(reference.columns)})",
                field=str(unknown[0]),
            )
        names = list(dict.fromkeys(columns))
    if predictions is not None and reference.prediction is None:
        raise ValidationError(
            "predictions were given but the reference profile has no prediction profile; build the profile "
            "with build_profile(..., predictions=...)",
            field="predictions",
        )

    skipped: dict[str, str] = {}
    numeric: list[tuple[str, np.ndarray]] = []
    pending: dict[str, _Pending] = {}
    for name in names:
        ref = reference.columns[name]
        if name not in current.columns:
            skipped[name] = "missing from the current data"
        elif ref.count == 0:
            skipped[name] = "no values in the reference"
        elif ref.kind == "numeric":
            values = as_float(current[name])
            if values is None:
                skipped[name] = f"numeric in the reference, {current[name].dtype} values that are not numbers now"
            else:
                numeric.append((name, values))
        else:
            item = _categorical(name, ref, current[name], config)
            if item is None:
                skipped[name] = "no values in the current data"
            else:
                pending[name] = item
    for name, item_or_none in _numeric_block(reference.columns, numeric, config):
        if item_or_none is None:
            skipped[name] = "no values in the current data"
        else:
            pending[name] = item_or_none

    small = [p for p in pending.values() if p.p_value is not None]
    adjusted: dict[str, float] = {}
    if small:
        ps = stats.false_discovery_control(np.array([p.p_value for p in small], dtype=np.float64), method="bh")
        adjusted = {p.name: float(v) for p, v in zip(small, ps, strict=True)}
    features = [pending[n].decide(adjusted.get(n)) for n in names if n in pending]

    prediction = None
    if predictions is not None and reference.prediction is not None:
        prediction = _test_values(reference.prediction, predictions, config)
        if prediction is None:
            skipped["prediction"] = "no values in the current predictions"

    drifted = [f.name for f in features if f.drifted]
    share = len(drifted) / len(features) if features else 0.0
    return DriftResult(
        features=features,
        prediction=prediction,
        drifted_features=drifted,
        share=share,
        dataset_drifted=bool(features) and share >= config.drift_share,
        config=config,
        skipped=skipped,
    )


def _test_values(ref: ColumnProfile, values: pd.Series | np.ndarray, config: DriftConfig) -> FeatureDrift | None:
    """Test one sequence (the predictions) against its profile; its p-value is not adjusted."""
    array = values if isinstance(values, pd.Series) else np.asarray(values)
    if isinstance(array, np.ndarray) and array.ndim != 1:
        raise ValidationError(f"predictions must be one-dimensional, got shape {array.shape}", field="predictions")
    series = array.reset_index(drop=True) if isinstance(array, pd.Series) else pd.Series(array)
    if len(series) == 0:
        raise ValidationError("predictions are empty; pass one prediction per current row", field="predictions")
    if ref.count == 0:
        return None
    if ref.kind == "categorical":
        item = _categorical(ref.name, ref, series, config)
    else:
        floats = as_float(series)
        if floats is None:
            raise ValidationError(
                f"the reference predictions are numeric but the current ones are {series.dtype} values that are "
                f"not numbers",
                field="predictions",
            )
        [(_, item)] = _numeric_block({ref.name: ref}, [(ref.name, floats)], config)
    return None if item is None else item.decide()


def _numeric_block(
    profiles: dict[str, ColumnProfile], numeric: list[tuple[str, np.ndarray]], config: DriftConfig
) -> list[tuple[str, _Pending | None]]:
    out: list[tuple[str, _Pending | None]] = []
    if not numeric:
        return out
    n_rows = numeric[0][1].shape[0]
    for block_range in column_blocks(n_rows, len(numeric)):
        block, counts = sorted_block([numeric[i][1] for i in block_range])
        cur_quantiles = quantiles_from_sorted(block, counts)
        for j, i in enumerate(block_range):
            name = numeric[i][0]
            count = int(counts[j])
            if count == 0:
                out.append((name, None))
                continue
            out.append((name, _numeric(profiles[name], block[j, :count], cur_quantiles[j], config)))
        del block
    return out


def _numeric(ref: ColumnProfile, values: np.ndarray, cur_quantiles: np.ndarray, config: DriftConfig) -> _Pending:
    n = values.size
    p_value: float | None = None
    if n < config.small_sample:
        method, statistic = "ks", ks_statistic(ref.quantiles, values)
        p_value, threshold = ks_p_value(statistic, ref.count, n), config.alpha
    elif config.numeric_method == "psi":
        method, statistic = "psi", psi_from_quantiles(ref.quantiles, values, config.psi_bins)
        threshold = config.psi_threshold
    else:
        method, statistic = "wasserstein", wasserstein_normed(ref.quantiles, cur_quantiles, ref)
        threshold = config.wasserstein_threshold
    bins, ref_shares, cur_shares = _numeric_plot(ref, values)
    return _Pending(ref.name, "numeric", method, statistic, p_value, threshold, n, bins, ref_shares, cur_shares)


def _numeric_plot(ref: ColumnProfile, values: np.ndarray) -> tuple[list[Any], list[float], list[float]]:
    """The reference histogram's bins, widened by one bin on each side where current values fall outside the
    reference's [min, max] (the reference has none there)."""
    n = values.size
    lo, hi = float(values[0]), float(values[-1])
    edges = [float(e) for e in ref.bin_edges]
    if len(edges) == 2 and edges[0] == edges[1]:  # a constant reference: below / at / above the constant
        c = edges[0]
        below = int(np.searchsorted(values, c, side="left"))
        above = n - int(np.searchsorted(values, c, side="right"))
        return [min(lo, c), c, c, max(hi, c)], [0.0, 1.0, 0.0], [below / n, (n - below - above) / n, above / n]
    ref_shares = (ref.bin_counts / max(ref.count, 1)).tolist()
    cur_shares = (histogram_sorted(values, ref.bin_edges) / n).tolist()
    below = int(np.searchsorted(values, edges[0], side="left"))
    above = n - int(np.searchsorted(values, edges[-1], side="right"))
    if below:
        edges, ref_shares, cur_shares = [lo, *edges], [0.0, *ref_shares], [below / n, *cur_shares]
    if above:
        edges, ref_shares, cur_shares = [*edges, hi], [*ref_shares, 0.0], [*cur_shares, above / n]
    return edges, ref_shares, cur_shares


def _categorical(name: str, ref: ColumnProfile, values: pd.Series, config: DriftConfig) -> _Pending | None:
    counts, _ = category_counts(values)
    n = sum(counts.values())
    if n == 0:
        return None
    categories, ref_counts, cur_counts = align_categories(ref.frequencies, counts)
    p_value: float | None = None
    if n < config.small_sample:
        method = "chi2"
        statistic, p_value = chi2_test(ref_counts, cur_counts)
        threshold = config.alpha
    else:
        method, statistic = "jensenshannon", js_distance(ref_counts, cur_counts)
        threshold = config.jensenshannon_threshold
    bins, ref_shares, cur_shares = _categorical_plot(categories, ref_counts, cur_counts)
    return _Pending(name, "categorical", method, statistic, p_value, threshold, n, bins, ref_shares, cur_shares)


def _categorical_plot(
    categories: list[str], ref_counts: np.ndarray, cur_counts: np.ndarray
) -> tuple[list[Any], list[float], list[float]]:
    ref_share = ref_counts / ref_counts.sum()
    cur_share = cur_counts / cur_counts.sum()
    order = sorted(range(len(categories)), key=lambda i: (-max(ref_share[i], cur_share[i]), categories[i]))
    shown = order[:PLOT_CATEGORIES]
    rest = order[PLOT_CATEGORIES:]
    bins: list[Any] = [categories[i] for i in shown]
    ref_out = [float(ref_share[i]) for i in shown]
    cur_out = [float(cur_share[i]) for i in shown]
    if rest:
        bins.append(OTHER if OTHER not in bins else f"{OTHER} (+{len(rest)})")
        ref_out.append(float(ref_share[rest].sum()))
        cur_out.append(float(cur_share[rest].sum()))
    return bins, ref_out, cur_out
