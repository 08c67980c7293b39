"""Stable feature selection: which features a fitted model needs, judged across methods and resamples of the
held-out data, against a noise probe — without retraining.

One ranking on one holdout is fragile: a few hundred rows more or less, or another seed, reorder the features
in the middle and promote a noise feature now and then. So the selection repeats the measurement on ``B``
bootstrap resamples of the holdout (stratified by class for classification) and keeps what holds up, in the
spirit of stability selection (Meinshausen & Bühlmann 2010):

1. **Permutation importance** (the primary method) on each resample, by
   :func:`~keel.analysis._importance.permutation_importance` with few repeats (3 by default instead of 5: the
   ``B`` resamples supply the averaging). A resample has as many rows as the holdout, up to ``max_rows``
   (20,000 by default) beyond which it is an "m out of n" bootstrap, so that the cost stays bounded: about
   ``B x 3/5`` times one importance run on ``max_rows`` rows.
2. **A noise probe** in each resample, Boruta-style (Kursa & Rudnicki 2010): a *shadow* of every feature. For
   a fitted model a shuffled copy of a feature cannot be added as a new input, but its importance can be
   measured all the same: the rows of a shuffled copy are another permutation, so the shadow's importance is
   the score difference between two independent permutations of the feature — one permuted copy plays the
   "original", the mean of the others the "permuted" (with ``R`` repeats: ``mean(values[1:]) - values[0]``).
   It needs no extra prediction. For a feature unrelated to the target the unpermuted rows are just one more
   permutation, so its real importance has exactly this distribution. As in Boruta, the probe of a resample is
   the **largest shadow importance** over all features (and never below 0); a feature *beats the noise* in a
   resample when its importance is strictly above the probe.
3. **Mutual information** on each resample (its distinct rows — duplicated rows bias the nearest-neighbour
   estimator — capped at ``mi_max_rows``), and **SHAP** (mean absolute SHAP value) when ``shap`` is installed:
   SHAP values are computed once for a seeded sample of ``shap_rows`` holdout rows and the sample's rows are
   resampled, since the mean is over rows. A group's mutual information is its best member's (a lower bound);
   its SHAP value per row is the sum of its members' (SHAP values add up).

The result gives, per feature (or group), its **mean rank per method** (1 = most important, ties averaged), its
**selection frequency** (the share of resamples in which it beats the probe by permutation importance), and
proposes the subset of features whose frequency reaches ``threshold`` (default 0.8, inside the 0.6–0.9 range
Meinshausen & Bühlmann recommend). Its **stability** is Nogueira, Sechidis & Brown's (2018, JMLR 18:174)
estimator over the per-resample selected sets: ``1 - mean_f s_f² / (k̄/d · (1 - k̄/d))`` with ``s_f²`` the
unbiased variance of feature ``f``'s selection indicator, ``k̄`` the mean size of the selected sets and ``d`` the
number of features — 1 when every resample selects the same set, about 0 for sets drawn at random, corrected for
the set size (which plain Jaccard similarity is not); the mean pairwise Jaccard similarity is given beside it.
Training the proposed subset is left to the caller (the same training spec on fewer columns).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from keel.analysis._importance import (
    Predict,
    Score,
    ShapNotInstalledError,
    Task,
    check_frame,
    check_int,
    check_target,
    check_task,
    import_shap,
    importance_units,
    mutual_information,
    permutation_importance,
    shap_values,
)
from keel.errors import ValidationError

__all__ = ["METHODS", "FeatureSelection", "SelectionResult", "nogueira_stability", "stable_selection"]

METHODS = ("permutation", "mutual_information", "shap")
"""The ranking methods, the primary (which decides the selection) first."""

PRIMARY = "permutation"


@dataclass(frozen=True)
class FeatureSelection:
    """How one feature (or group of features) fared across the resamples.

    Attributes:
        name: the feature or group.
        columns: its columns (``(name,)`` for a single feature).
        frequency: the share of resamples in which its permutation importance beat the noise probe.
        selected: ``frequency >= threshold``.
        mean_rank: per method, its rank averaged over the resamples (1 = most important).
        mean_importance: per method, its importance averaged over the resamples (permutation: score drop;
            mutual information: nats; SHAP: mean absolute SHAP value).
    """

    name: str
    columns: tuple[str, ...]
    frequency: float
    selected: bool
    mean_rank: dict[str, float]
    mean_importance: dict[str, float]

    @property
    def consensus_rank(self) -> float:
        """The mean of its per-method mean ranks."""
        return float(np.mean(list(self.mean_rank.values())))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict."""
        return {
            "name": self.name,
            "columns": list(self.columns),
            "frequency": self.frequency,
            "selected": self.selected,
            "mean_rank": dict(self.mean_rank),
            "mean_importance": dict(self.mean_importance),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSelection:
        """The inverse of :meth:`to_dict`."""
        return cls(
            name=str(data["name"]),
            columns=tuple(str(c) for c in data["columns"]),
            frequency=float(data["frequency"]),
            selected=bool(data["selected"]),
            mean_rank={str(k): float(v) for k, v in data["mean_rank"].items()},
            mean_importance={str(k): float(v) for k, v in data["mean_importance"].items()},
        )


@dataclass(frozen=True)
class SelectionResult:
    """The proposed feature subset, with the evidence.

    Attributes:
        features: every feature and group, by decreasing selection frequency, then by permutation mean rank.
        selected: the names of the proposed features and groups (frequency at least ``threshold``).
        selected_columns: their columns, groups expanded, in the holdout's column order.
        stability: Nogueira et al.'s stability of the per-resample selected sets (see the module docstring);
            ``None`` when undefined (every resample selected nothing, or everything).
        mean_jaccard: the mean Jaccard similarity of the per-resample selected sets over all pairs of resamples
            (two empty sets count as identical).
        threshold: the selection frequency a feature needs.
        n_resamples: bootstrap resamples of the holdout.
        n_repeats: permutations per feature in each resample.
        methods: the methods ranked (``"permutation"`` first).
        probe: per resample, the noise probe (the largest shadow importance, at least 0).
        rows: rows of the holdout.
        resample_rows: rows of each resample (the holdout's, or about ``max_rows`` when it is larger).
        seed: the seed everything was drawn from.
        notes: what was left out and why (e.g. SHAP without the ``shap`` package).
    """

    features: tuple[FeatureSelection, ...]
    selected: tuple[str, ...]
    selected_columns: tuple[str, ...]
    stability: float | None
    mean_jaccard: float
    threshold: float
    n_resamples: int
    n_repeats: int
    methods: tuple[str, ...]
    probe: tuple[float, ...]
    rows: int
    resample_rows: int
    seed: int
    notes: tuple[str, ...] = ()

    def __getitem__(self, name: str) -> FeatureSelection:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)

    def to_frame(self) -> pd.DataFrame:
        """One row per feature or group: name, columns, frequency, selected, and ``rank_<method>`` and
        ``importance_<method>`` per method."""
        rows = []
        for f in self.features:
            row: dict[str, Any] = {
                "name": f.name,
                "columns": "+".join(f.columns),
                "frequency": f.frequency,
                "selected": f.selected,
            }
            row.update({f"rank_{m}": f.mean_rank[m] for m in self.methods})
            row.update({f"importance_{m}": f.mean_importance[m] for m in self.methods})
            rows.append(row)
        return pd.DataFrame(rows)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict."""
        return {
            "method": "stable_selection",
            "features": [f.to_dict() for f in self.features],
            "selected": list(self.selected),
            "selected_columns": list(self.selected_columns),
            "stability": self.stability,
            "mean_jaccard": self.mean_jaccard,
            "threshold": self.threshold,
            "n_resamples": self.n_resamples,
            "n_repeats": self.n_repeats,
            "methods": list(self.methods),
            "probe": list(self.probe),
            "rows": self.rows,
            "resample_rows": self.resample_rows,
            "seed": self.seed,
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SelectionResult:
        """The inverse of :meth:`to_dict`."""
        return cls(
            features=tuple(FeatureSelection.from_dict(f) for f in data["features"]),
            selected=tuple(str(s) for s in data["selected"]),
            selected_columns=tuple(str(s) for s in data["selected_columns"]),
            stability=None if data["stability"] is None else float(data["stability"]),
            mean_jaccard=float(data["mean_jaccard"]),
            threshold=float(data["threshold"]),
            n_resamples=int(data["n_resamples"]),
            n_repeats=int(data["n_repeats"]),
            methods=tuple(str(m) for m in data["methods"]),
            probe=tuple(float(p) for p in data["probe"]),
            rows=int(data["rows"]),
            resample_rows=int(data["resample_rows"]),
            seed=int(data["seed"]),
            notes=tuple(str(n) for n in data.get("notes", [])),
        )


def stable_selection(
    predict: Predict,
    X: pd.DataFrame,
    y: Any,
    *,
    score: Score,
    task: Task,
    greater_is_better: bool = True,
    methods: Sequence[str] = METHODS,
    groups: Mapping[str, Sequence[str]] | None = None,
    n_resamples: int = 20,
    n_repeats: int = 3,
    threshold: float = 0.8,
    seed: int = 0,
    shap_model: Any = None,
    shap_rows: int = 200,
    background_rows: int = 100,
    max_rows: int | None = 20_000,
    mi_max_rows: int = 5_000,
    max_rows_per_call: int = 2_000_000,
) -> SelectionResult:
    """Rank features across methods and bootstrap resamples of held-out data and propose a stable subset.

    See the module docstring for the method. Nothing is retrained: ``predict`` is the fitted model.

    Args:
        predict: the model, as for :func:`~keel.analysis._importance.permutation_importance`.
        X: held-out rows (not the training rows: there a memorised identifier looks important).
        y: their target values.
        score: ``score(y_true, y_pred) -> float`` matching ``predict``'s output.
        task: ``"classification"`` or ``"regression"`` (mutual information's estimator; classification
            resamples are stratified by class, so every resample has every class).
        greater_is_better: whether a higher score is better.
        methods: the methods to rank by; ``"permutation"`` must be among them (it decides the selection).
            ``"shap"`` is skipped, with a note, when the ``shap`` package is not installed.
        groups: ``{name: [columns]}`` judged as one (e.g. from
            :func:`~keel.analysis._importance.correlated_groups`); the other columns are judged alone.
        n_resamples: bootstrap resamples ``B`` (at least 2).
        n_repeats: permutations per feature in each resample (at least 2: the noise probe needs two).
        threshold: the selection frequency a feature needs to be proposed, in (0, 1].
        seed: the seed of the resamples, the permutations, and the SHAP and mutual information estimates.
        shap_model: what SHAP explains: a fitted tree model (exact and fast, for all-numeric X), another
            estimator, or a function; default ``predict`` (model-agnostic, the slowest path).
        shap_rows: holdout rows SHAP values are computed for (a seeded sample).
        background_rows: background rows of the model-agnostic SHAP explainer.
        max_rows: each resample draws this many rows (with replacement, split across the classes in their
            proportions) when the holdout is larger — an "m out of n" bootstrap, whose spread is that of a
            holdout of ``max_rows`` rows, so it errs on the cautious side; ``None``: as many as the holdout has.
            It bounds the cost: about ``n_resamples x (1 + features) x n_repeats x max_rows`` predicted rows.
        mi_max_rows: the most rows mutual information is estimated on per resample.
        max_rows_per_call: see :func:`~keel.analysis._importance.permutation_importance`.

    Returns:
        The per-feature evidence, the proposed subset and its stability.

    Raises:
        ValidationError: bad X or y, fewer than 2 resamples or repeats, a threshold outside (0, 1], an unknown
            method, methods without ``"permutation"``, or an unknown column in a group.
    """
    X = check_frame(X)
    target = check_target(y, len(X))
    task = check_task(task)
    n_resamples = check_int("n_resamples", n_resamples, minimum=2)
    n_repeats = check_int("n_repeats", n_repeats, minimum=2)
    seed = check_int("seed", seed, minimum=0)
    shap_rows = check_int("shap_rows", shap_rows, minimum=1)
    mi_max_rows = check_int("mi_max_rows", mi_max_rows, minimum=10)
    if max_rows is not None:
        max_rows = check_int("max_rows", max_rows, minimum=10)
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 < threshold <= 1:
        raise ValidationError(f"threshold must be in (0, 1], got {threshold!r}", field="threshold")
    chosen = _check_methods(methods)
    units = importance_units(X, groups)
    names = [u[0] for u in units]
    notes: list[str] = []

    shap_abs: _ShapSample | None = None
    if "shap" in chosen:
        try:
            shap = import_shap()
        except ShapNotInstalledError:
            chosen = tuple(m for m in chosen if m != "shap")
            notes.append("SHAP left out: the 'shap' package is not installed (pip install 'keel[shap]')")
        else:
            shap_abs = _ShapSample.compute(
                shap, predict if shap_model is None else shap_model, X, units, shap_rows, background_rows, seed
            )
            notes.extend(shap_abs.notes)

    strata = _strata(target) if task == "classification" else [np.arange(len(X))]
    share = 1.0 if max_rows is None or len(X) <= max_rows else max_rows / len(X)
    draws = [max(1, round(s.size * share)) for s in strata]
    values = {m: np.empty((n_resamples, len(units))) for m in chosen}
    beats = np.zeros((n_resamples, len(units)), dtype=bool)
    probe = np.empty(n_resamples)
    for b in range(n_resamples):
        rng = np.random.default_rng([seed, 5, b])
        rows = np.concatenate([rng.choice(s, k, replace=True) for s, k in zip(strata, draws, strict=True)])
        resample, resample_y = X.iloc[rows].reset_index(drop=True), target[rows]
        sub_seed = int(rng.integers(2**31))
        result = permutation_importance(
            predict,
            resample,
            resample_y,
            score=score,
            greater_is_better=greater_is_better,
            n_repeats=n_repeats,
            seed=sub_seed,
            groups=groups,
            max_rows_per_call=max_rows_per_call,
        )
        importance = np.array([result[name].mean for name in names])
        shadows = np.array([np.mean(result[name].values[1:]) - result[name].values[0] for name in names])
        probe[b] = max(0.0, float(shadows.max()))
        beats[b] = importance > probe[b]
        values[PRIMARY][b] = importance
        if "mutual_information" in values:
            distinct = np.unique(rows)
            if distinct.size > mi_max_rows:
                distinct = np.sort(rng.choice(distinct, mi_max_rows, replace=False))
            mi = mutual_information(X.iloc[distinct], target[distinct], task=task, seed=sub_seed, max_rows=None)
            values["mutual_information"][b] = [max(mi[c] for c in columns) for _, columns in units]
        if shap_abs is not None and "shap" in values:
            values["shap"][b] = shap_abs.resampled(rng)

    frequency = beats.mean(axis=0)
    ranks = {m: np.vstack([stats.rankdata(-row, method="average") for row in v]) for m, v in values.items()}
    features = [
        FeatureSelection(
            name=name,
            columns=columns,
            frequency=float(frequency[j]),
            selected=bool(frequency[j] >= threshold),
            mean_rank={m: float(ranks[m][:, j].mean()) for m in chosen},
            mean_importance={m: float(values[m][:, j].mean()) for m in chosen},
        )
        for j, (name, columns) in enumerate(units)
    ]
    features.sort(key=lambda f: (-f.frequency, f.mean_rank[PRIMARY]))
    selected = [f for f in features if f.selected]
    picked = {c for f in selected for c in f.columns}
    return SelectionResult(
        features=tuple(features),
        selected=tuple(f.name for f in selected),
        selected_columns=tuple(str(c) for c in X.columns if c in picked),
        stability=nogueira_stability(beats),
        mean_jaccard=_mean_jaccard(beats),
        threshold=float(threshold),
        n_resamples=n_resamples,
        n_repeats=n_repeats,
        methods=chosen,
        probe=tuple(float(p) for p in probe),
        rows=len(X),
        resample_rows=int(sum(draws)),
        seed=seed,
        notes=tuple(notes),
    )


def _check_methods(methods: Sequence[str]) -> tuple[str, ...]:
    if isinstance(methods, str):
        methods = [methods]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValidationError(f"unknown method(s) {unknown}; choose from {list(METHODS)}", field="methods")
    if PRIMARY not in methods:
        raise ValidationError(
            "methods must include 'permutation': it decides which features beat the noise probe", field="methods"
        )
    return tuple(m for m in METHODS if m in methods)


def _strata(target: np.ndarray) -> list[np.ndarray]:
    if target.ndim != 1:
        raise ValidationError(f"y must be one-dimensional for classification, got shape {target.shape}", field="y")
    codes, _ = pd.factorize(pd.Series(target))
    if (codes < 0).any():
        raise ValidationError("y has missing values; drop those rows first", field="y")
    return [np.flatnonzero(codes == c) for c in range(int(codes.max()) + 1)]


class _ShapSample:
    """Per-row absolute SHAP values of each unit on a sample of the holdout, resampled per bootstrap."""

    def __init__(self, per_row: np.ndarray, notes: tuple[str, ...]) -> None:
        self.per_row = per_row
        self.notes = notes

    @classmethod
    def compute(
        cls,
        shap: Any,
        model: Any,
        X: pd.DataFrame,
        units: Sequence[tuple[str, tuple[str, ...]]],
        rows: int,
        background_rows: int,
        seed: int,
    ) -> _ShapSample:
        rng = np.random.default_rng([seed, 6])
        positions = np.arange(len(X)) if len(X) <= rows else np.sort(rng.choice(len(X), rows, replace=False))
        computed = shap_values(
            shap, model, X, positions, background_rows=background_rows, seed=seed, output=None, max_evals=None
        )
        where = {str(c): j for j, c in enumerate(X.columns)}
        per_row = np.column_stack(
            [np.abs(computed.values[:, [where[c] for c in columns]].sum(axis=1)) for _, columns in units]
        )
        return cls(per_row, computed.notes)

    def resampled(self, rng: np.random.Generator) -> np.ndarray:
        rows = rng.integers(0, self.per_row.shape[0], self.per_row.shape[0])
        return np.asarray(self.per_row[rows].mean(axis=0))


def nogueira_stability(selections: np.ndarray) -> float | None:
    """Nogueira, Sechidis & Brown's (2018) stability of ``M`` selected sets (an ``M x d`` boolean matrix).

    ``1 - mean_f s_f² / (k̄/d · (1 - k̄/d))``, ``s_f² = M/(M-1) · p_f (1 - p_f)`` the unbiased variance of feature
    ``f``'s selection indicator and ``k̄`` the mean number selected. 1 for identical sets; ``None`` when undefined
    (fewer than 2 sets, or every set empty or full).
    """
    z = np.asarray(selections, dtype=np.float64)
    m, d = z.shape
    if m < 2 or d == 0:
        return None
    k_bar = z.sum(axis=1).mean()
    if k_bar <= 0 or k_bar >= d:
        return None
    p = z.mean(axis=0)
    variance = m / (m - 1) * p * (1 - p)
    return float(1 - variance.mean() / ((k_bar / d) * (1 - k_bar / d)))


def _mean_jaccard(selections: np.ndarray) -> float:
    sets = [frozenset(np.flatnonzero(row).tolist()) for row in selections]
    scores = [len(a & b) / len(a | b) if a | b else 1.0 for a, b in itertools.combinations(sets, 2)]
    return float(np.mean(scores)) if scores else math.nan
