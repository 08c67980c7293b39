"""Feature importance of a fitted model: permutation importance on held-out data, mutual information, impurity
importance, SHAP values, and groups of correlated features.

**Permutation importance** (the default method; Breiman 2001, generalised as "model reliance" by Fisher, Rudin &
Dominici 2019) is the drop of a score when one feature's values are shuffled across the rows of held-out data,
which breaks the feature's link to the target while keeping its distribution. It needs only predictions, so it
works on any model, and on held-out data it measures what the model *generalises* from a feature, not what it
memorised: an identifier the model overfits scores about zero there. The semantics are exactly those of
:func:`sklearn.inspection.permutation_importance` — per repeat, the baseline score minus the permuted score (for a
score where lower is better, the permuted minus the baseline, so that a larger importance is always worse
without the feature); ``std`` is the population standard deviation over the repeats, as scikit-learn's
``importances_std``. The work differs: scikit-learn predicts once per feature and repeat; here the ``n_repeats``
permuted copies of the data are stacked into one frame (up to ``max_rows_per_call`` rows) and predicted in one
call, then the predictions are split and scored per repeat — one call per feature instead of ``n_repeats``, which
matters for models whose call has a fixed cost (input checks, preprocessing, a remote service). Columns are
taken with NumPy (or the pandas extension array's ``take`` for categorical, string and nullable columns, so every
dtype is kept) and assembled with ``pd.DataFrame`` from a dict without copying. A permuted row whose values tie
with its own (a flag keeps about half of its rows, a feature with ``k`` equally common values ``1/k``) *is* the
unpermuted row: it keeps its baseline prediction and is not predicted again. Both shortcuts assume what any
tabular model satisfies: a row's prediction depends on that row only, not on the others in the call. For a
model whose per-row cost dominates (a large tree ensemble on continuous features) the work, and the time, are
about scikit-learn's.

Each feature's interval is a Student t-interval over its repeats, ``mean ± t(1 - (1 - confidence)/2, R - 1) ·
s / √R`` with ``s`` the sample standard deviation (``ddof=1``). It describes the randomness of the permutations
only: it covers, at about its nominal rate, the importance averaged over all permutations *of this model on these
rows*. The uncertainty from the rows themselves (another holdout sample would give another value) is what the
bootstrap of :func:`keel.analysis._selection.stable_selection` adds.

**Groups.** Permuting one of two strongly correlated features leaves the other in place, so the model loses
little and both look unimportant although together they carry the signal (Strobl et al. 2008). A group's columns
are permuted jointly, with the same row permutation, which removes the group's information at once and keeps the
relation between its members. :func:`correlated_groups` proposes the groups.

**Mutual information** (Kraskov, Stögbauer & Grassberger 2004; Ross 2014; scikit-learn's
``mutual_info_classif``/``mutual_info_regression``) is model-free: how much knowing the feature reduces the
uncertainty about the target, in nats. **Impurity importance** (mean decrease in impurity) comes free with tree
ensembles but is measured on the training data and favours features with many distinct values (Strobl et al.
2007). **SHAP values** (Lundberg & Lee 2017; TreeSHAP, Lundberg et al. 2020) split each prediction among the
features; their mean absolute value is a global importance and one row's values explain that prediction.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

from keel.errors import MissingExtraError, ValidationError

__all__ = [
    "FeatureImportance",
    "ImportanceResult",
    "RowExplanation",
    "ShapNotInstalledError",
    "ShapResult",
    "correlated_groups",
    "feature_associations",
    "importance_units",
    "impurity_importance",
    "mutual_information",
    "permutation_importance",
    "shap_importance",
]

Task = Literal["classification", "regression"]
Predict = Callable[[pd.DataFrame], Any]
Score = Callable[[Any, Any], Any]

DEFAULT_MAX_ROWS_PER_CALL = 2_000_000
"""Rows of one stacked prediction call (all repeats of a feature when they fit). Two million rows of twenty
float features are 320 MB: large enough to batch the repeats of any usual holdout, small enough for a laptop."""

MI_MAX_ROWS = 20_000
"""Rows mutual information is estimated on by default (a seeded sample beyond). The nearest-neighbour estimator
costs ``O(n log n)`` per feature; 20,000 rows rank features as a million would, in a second or two."""

UNCHANGED_SHARE = 0.1
"""Rows whose permuted values equal their own are not predicted again when they are at least this share of a
stacked frame (below it, predicting every row costs about the same and reuses the shared copies)."""

ASSOCIATION_MAX_ROWS = 20_000
"""Rows :func:`feature_associations` uses by default (a seeded sample beyond): an association of 0.9 is
estimated to about ±0.003 there."""


# -- results --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FeatureImportance:
    """The permutation importance of one feature or group of features.

    Attributes:
        name: the feature, or the group's name.
        columns: the columns permuted together: ``(name,)`` for a single feature.
        mean: the importance averaged over the repeats (scikit-learn's ``importances_mean``).
        std: the population standard deviation of the repeats (``ddof=0``, scikit-learn's ``importances_std``).
        ci_low: lower end of the t-interval of the mean over the repeats (see the module docstring); ``None``
            with a single repeat.
        ci_high: upper end of that interval; ``None`` with a single repeat.
        values: the importance of each repeat, in order.
    """

    name: str
    columns: tuple[str, ...]
    mean: float
    std: float
    ci_low: float | None
    ci_high: float | None
    values: tuple[float, ...]

    @property
    def is_group(self) -> bool:
        """Whether this is a group of columns permuted jointly rather than one feature."""
        return self.columns != (self.name,)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict."""
        return {
            "name": self.name,
            "columns": list(self.columns),
            "mean": self.mean,
            "std": self.std,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "values": list(self.values),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureImportance:
        """The inverse of :meth:`to_dict`."""
        return cls(
            name=str(data["name"]),
            columns=tuple(str(c) for c in data["columns"]),
            mean=float(data["mean"]),
            std=float(data["std"]),
            ci_low=None if data["ci_low"] is None else float(data["ci_low"]),
            ci_high=None if data["ci_high"] is None else float(data["ci_high"]),
            values=tuple(float(v) for v in data["values"]),
        )


@dataclass(frozen=True)
class ImportanceResult:
    """Permutation importance of every feature (and group) of a model on some rows.

    Attributes:
        features: one entry per feature or group, most important first (ties keep the order of evaluation:
            single features in the columns' order, then groups in the order given).
        baseline_score: the score of the unpermuted rows.
        greater_is_better: whether a higher score is better (the importance is then baseline minus permuted).
        n_repeats: permutations per feature or group.
        seed: the seed the permutations were drawn from.
        rows: rows the importance was measured on.
        confidence: the level of the t-intervals (0.95 by default).
        predict_calls: how many times the model was called (the baseline included).
    """

    features: tuple[FeatureImportance, ...]
    baseline_score: float
    greater_is_better: bool
    n_repeats: int
    seed: int
    rows: int
    confidence: float
    predict_calls: int

    def __getitem__(self, name: str) -> FeatureImportance:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def ranking(self) -> list[str]:
        """The names, most important first."""
        return [f.name for f in self.features]

    def importances(self) -> pd.Series:
        """The mean importance per feature or group, most important first."""
        return pd.Series([f.mean for f in self.features], index=self.ranking, name="permutation_importance")

    def to_frame(self) -> pd.DataFrame:
        """One row per feature or group: name, columns (joined with ``+``), mean, std, ci_low, ci_high."""
        return pd.DataFrame(
            {
                "name": [f.name for f in self.features],
                "columns": ["+".join(f.columns) for f in self.features],
                "mean": [f.mean for f in self.features],
                "std": [f.std for f in self.features],
                "ci_low": [np.nan if f.ci_low is None else f.ci_low for f in self.features],
                "ci_high": [np.nan if f.ci_high is None else f.ci_high for f in self.features],
            }
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict."""
        return {
            "method": "permutation",
            "features": [f.to_dict() for f in self.features],
            "baseline_score": self.baseline_score,
            "greater_is_better": self.greater_is_better,
            "n_repeats": self.n_repeats,
            "seed": self.seed,
            "rows": self.rows,
            "confidence": self.confidence,
            "predict_calls": self.predict_calls,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ImportanceResult:
        """The inverse of :meth:`to_dict`."""
        return cls(
            features=tuple(FeatureImportance.from_dict(f) for f in data["features"]),
            baseline_score=float(data["baseline_score"]),
            greater_is_better=bool(data["greater_is_better"]),
            n_repeats=int(data["n_repeats"]),
            seed=int(data["seed"]),
            rows=int(data["rows"]),
            confidence=float(data["confidence"]),
            predict_calls=int(data["predict_calls"]),
        )


# -- input checks ---------------------------------------------------------------------------------------------
def check_frame(X: Any, what: str = "X") -> pd.DataFrame:
    """``X`` if it is a non-empty DataFrame with unique string column names, else a :class:`ValidationError`."""
    if not isinstance(X, pd.DataFrame):
        raise ValidationError(f"{what} must be a pandas DataFrame, got {type(X).__name__}", field=what)
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValidationError(
            f"{what} is empty ({X.shape[0]} rows x {X.shape[1]} columns); importance needs rows and feature columns",
            field=what,
        )
    bad = [c for c in X.columns if not isinstance(c, str)]
    if bad:
        raise ValidationError(f"{what} has column names that are not strings: {bad[:5]}", field=what)
    if not X.columns.is_unique:
        dupes = sorted({str(c) for c in X.columns[X.columns.duplicated()]})
        raise ValidationError(f"{what} has duplicate column names: {dupes}", field=what)
    return X


def check_target(y: Any, rows: int) -> np.ndarray:
    """``y`` as a NumPy array with one value (or one row) per row of X."""
    target = y.to_numpy() if isinstance(y, pd.Series | pd.DataFrame | pd.Index) else np.asarray(y)
    if target.ndim == 0 or target.shape[0] != rows:
        got = "a scalar" if target.ndim == 0 else f"{target.shape[0]} values"
        raise ValidationError(f"y has {got} but X has {rows} rows; give one target value per row", field="y")
    return target


def check_int(name: str, value: Any, *, minimum: int) -> int:
    """``value`` if it is an integer (not a bool) of at least ``minimum``, else a :class:`ValidationError`."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValidationError(f"{name} must be an integer of at least {minimum}, got {value!r}", field=name)
    return int(value)


def check_task(task: Any) -> Task:
    """``task`` if it is ``"classification"`` or ``"regression"``."""
    if task not in ("classification", "regression"):
        raise ValidationError(f"task must be 'classification' or 'regression', got {task!r}", field="task")
    return "classification" if task == "classification" else "regression"


def importance_units(
    X: pd.DataFrame, groups: Mapping[str, Sequence[str]] | None = None, features: Sequence[str] | None = None
) -> list[tuple[str, tuple[str, ...]]]:
    """What permutation importance measures: ``(name, columns permuted together)`` pairs.

    Single features come first, in the columns' order: ``features`` when given, else every column in no group;
    then each group, in the order given. Names must be unique across both.

    Raises:
        ValidationError: a group or feature names a column X does not have, a group is empty or repeats a
            column, or two units share a name.
    """
    groups = {} if groups is None else groups
    if not isinstance(groups, Mapping):
        raise ValidationError(
            f"groups must map a group name to its columns, got {type(groups).__name__}", field="groups"
        )
    known = set(X.columns)
    grouped: set[str] = set()
    group_units: list[tuple[str, tuple[str, ...]]] = []
    for name, members in groups.items():
        if not isinstance(name, str) or not name:
            raise ValidationError(f"group names must be non-empty strings, got {name!r}", field="groups")
        if isinstance(members, str) or not isinstance(members, Sequence) or not members:
            raise ValidationError(
                f"group {name!r} must be a non-empty list of column names, got {members!r}", field=name
            )
        cols = tuple(members)
        unknown = [c for c in cols if c not in known]
        if unknown:
            raise ValidationError(
                f"group {name!r} names column(s) {unknown} that X does not have; X has: {', '.join(X.columns)}",
                field=name,
            )
        if len(set(cols)) != len(cols):
            raise ValidationError(f"group {name!r} lists a column twice: {list(cols)}", field=name)
        grouped.update(cols)
        group_units.append((name, cols))
    if features is None:
        singles = [c for c in X.columns if c not in grouped]
    else:
        if isinstance(features, str):
            raise ValidationError(f"features must be a list of column names, got {features!r}", field="features")
        unknown = [c for c in features if c not in known]
        if unknown:
            raise ValidationError(
                f"features names column(s) {unknown} that X does not have; X has: {', '.join(X.columns)}",
                field="features",
            )
        wanted = set(features)
        singles = [c for c in X.columns if c in wanted]
    units = [(c, (c,)) for c in singles] + group_units
    names = [u[0] for u in units]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise ValidationError(
            f"name(s) {clashes} denote both a feature and a group (or two groups); rename the group", field="groups"
        )
    return units


# -- permutation importance -----------------------------------------------------------------------------------
def permutation_importance(
    predict: Predict,
    X: pd.DataFrame,
    y: Any,
    *,
    score: Score,
    greater_is_better: bool = True,
    n_repeats: int = 5,
    seed: int = 0,
    groups: Mapping[str, Sequence[str]] | None = None,
    features: Sequence[str] | None = None,
    max_rows_per_call: int = DEFAULT_MAX_ROWS_PER_CALL,
    confidence: float = 0.95,
) -> ImportanceResult:
    """Permutation importance of each feature (and group of features) of a model on held-out rows.

    Args:
        predict: maps a DataFrame with X's columns (same order and dtypes, a fresh ``RangeIndex``) to one
            prediction per row — labels, the positive class's probability, or a matrix of class probabilities,
            whatever ``score`` expects. Each row's prediction must depend on that row alone (true of fitted
            estimators and Keel model packages), and it must not modify its input.
        X: the rows (held-out data: on training data a model's overfitting looks like importance).
        y: the target, one value per row of X.
        score: ``score(y_true, y_pred) -> float``, e.g. :func:`sklearn.metrics.roc_auc_score` with a
            probability-of-the-positive-class ``predict``, or ``accuracy_score`` with labels.
        greater_is_better: whether a higher score is better. For a loss (``mean_squared_error``,
            ``log_loss``) pass ``False``: the importance is then permuted loss minus baseline loss.
        n_repeats: permutations per feature (at least 1; 2 or more for intervals).
        seed: the permutations of a feature are drawn from ``(seed, the feature's name)``, so a feature gets the
            same numbers whichever other features or groups are evaluated beside it.
        groups: ``{name: [columns]}``: each group's columns are permuted jointly, with one row permutation.
        features: the single features to evaluate (default: every column in no group). Listing grouped
            columns here measures them alone as well.
        max_rows_per_call: the most rows of one ``predict`` call: ``n_repeats`` copies of X when they fit,
            fewer repeats per call when not (and one copy per call when X alone is larger).
        confidence: the level of the t-intervals, in (0, 1).

    Returns:
        The importance of every feature and group, most important first.

    Raises:
        ValidationError: X is empty or not a DataFrame, y's length differs, ``n_repeats < 1``, a group names an
            unknown column, ``predict`` returns the wrong number of predictions, or a score is not a finite
            number.

    Example:
        >>> from sklearn.metrics import roc_auc_score  # doctest: +SKIP
        >>> result = permutation_importance(  # doctest: +SKIP
        ...     lambda df: model.predict_proba(df)[:, 1], holdout, labels, score=roc_auc_score,
        ...     groups={"income": ["income", "income_log"]})
        >>> result.ranking[:3], result["income"].ci_low  # doctest: +SKIP
    """
    X = check_frame(X)
    target = check_target(y, len(X))
    n_repeats = check_int("n_repeats", n_repeats, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    max_rows_per_call = check_int("max_rows_per_call", max_rows_per_call, minimum=1)
    if isinstance(confidence, bool) or not isinstance(confidence, int | float) or not 0 < confidence < 1:
        raise ValidationError(f"confidence must be in (0, 1), got {confidence!r}", field="confidence")
    units = importance_units(X, groups, features)

    n = len(X)
    baseline_predictions = _predictions(predict, X, n)
    baseline = _score(score, target, baseline_predictions, "the unpermuted rows")
    per_call = max(1, min(n_repeats, max_rows_per_call // n))
    stack = _Stack(X, baseline_predictions)
    sign = 1.0 if greater_is_better else -1.0
    calls = 1
    results: list[FeatureImportance] = []
    for name, columns in units:
        rng = _unit_rng(seed, name)
        scores = np.empty(n_repeats)
        for start in range(0, n_repeats, per_call):
            count = min(per_call, n_repeats - start)
            perms = [rng.permutation(n) for _ in range(count)]
            predictions, made = stack.predictions(predict, columns, perms)
            calls += made
            for i in range(count):
                scores[start + i] = _score(
                    score, target, predictions[i * n : (i + 1) * n], f"{name!r} permuted (repeat {start + i})"
                )
        results.append(_summary(name, columns, sign * (baseline - scores), confidence))
    results.sort(key=lambda f: -f.mean)  # stable: ties keep the evaluation order
    return ImportanceResult(
        features=tuple(results),
        baseline_score=baseline,
        greater_is_better=bool(greater_is_better),
        n_repeats=n_repeats,
        seed=seed,
        rows=n,
        confidence=float(confidence),
        predict_calls=calls,
    )


def _unit_rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])


def _summary(name: str, columns: tuple[str, ...], values: np.ndarray, confidence: float) -> FeatureImportance:
    mean = float(values.mean())
    low: float | None = None
    high: float | None = None
    if values.size >= 2:
        half = float(stats.t.ppf(0.5 + confidence / 2, values.size - 1)) * float(values.std(ddof=1))
        half /= math.sqrt(values.size)
        low, high = mean - half, mean + half
    return FeatureImportance(
        name=name,
        columns=columns,
        mean=mean,
        std=float(values.std()),
        ci_low=low,
        ci_high=high,
        values=tuple(float(v) for v in values),
    )


def _predictions(predict: Predict, frame: pd.DataFrame, rows: int) -> np.ndarray:
    out = np.asarray(predict(frame))
    if out.ndim == 0 or out.shape[0] != rows:
        got = "a scalar" if out.ndim == 0 else f"{out.shape[0]} predictions"
        raise ValidationError(
            f"predict returned {got} for {rows} rows; it must return one prediction (or one row of class "
            "probabilities) per input row",
            field="predict",
        )
    return out


def _score(score: Score, y: np.ndarray, predictions: np.ndarray, what: str) -> float:
    value = score(y, predictions)
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"score must return a number, got {value!r} for {what}", field="score") from exc
    if not math.isfinite(number):
        raise ValidationError(
            f"the score of {what} is {number}; permutation importance needs a finite score (is y a single class, "
            "or does the score expect other predictions?)",
            field="score",
        )
    return number


def _column_values(series: pd.Series) -> Any:
    """A column's values in a form whose ``take`` keeps its dtype: a read-only NumPy array, or the pandas
    extension array (categorical, string, nullable) itself."""
    if isinstance(series.dtype, np.dtype):
        values = series.to_numpy().view()
        values.flags.writeable = False  # the frames handed to predict share it
        return values
    return series.array


def _take(values: Any, index: np.ndarray) -> Any:
    if isinstance(values, np.ndarray):
        taken = values[index]
        taken.flags.writeable = False
        return taken
    return values.take(index)


class _Stack:
    """Predicts ``k`` stacked copies of X in which some columns are permuted, copy ``i`` by the ``i``-th
    permutation, in one call.

    A row whose permuted values equal its own (a tie: a flag, a category, a repeated number) is the unpermuted
    row, so its prediction is the baseline's and it is not predicted again; when such rows are at least
    :data:`UNCHANGED_SHARE` of the stack, only the others go to ``predict``. Equality is of the bits (floats) or
    of the factorized codes (other types), with missing equal to missing. Otherwise the whole stack is predicted,
    and the unpermuted columns' ``k``-fold copies, made once per ``k``, are shared by every frame.
    """

    def __init__(self, X: pd.DataFrame, baseline: np.ndarray) -> None:
        self._n = len(X)
        self._values = {str(c): _column_values(X[c]) for c in X.columns}
        self._keys: dict[str, np.ndarray] = {}
        self._baseline = baseline
        self._tiled: dict[tuple[str, int], Any] = {}

    def _tile(self, column: str, k: int) -> Any:
        if k == 1:
            return self._values[column]
        key = (column, k)
        if key not in self._tiled:
            self._tiled[key] = _take(self._values[column], np.tile(np.arange(self._n), k))
        return self._tiled[key]

    def _key(self, column: str) -> np.ndarray:
        if column not in self._keys:
            self._keys[column] = _equality_key(self._values[column])
        return self._keys[column]

    def predictions(self, predict: Predict, permuted: Sequence[str], perms: Sequence[np.ndarray]) -> tuple[Any, int]:
        """The predictions of the ``len(perms)`` stacked copies, and the number of ``predict`` calls made."""
        k, n = len(perms), self._n
        index = perms[0] if k == 1 else np.concatenate(perms)
        chosen = set(permuted)
        changed = np.zeros((k, n), dtype=bool)
        for c in chosen:
            key = self._key(c)
            changed |= key[index].reshape(k, n) != key
        rows = np.flatnonzero(changed.ravel())
        if rows.size >= (1 - UNCHANGED_SHARE) * k * n:
            data = {c: _take(v, index) if c in chosen else self._tile(c, k) for c, v in self._values.items()}
            return _predictions(predict, pd.DataFrame(data, index=pd.RangeIndex(n * k), copy=False), n * k), 1
        out = np.concatenate([self._baseline] * k) if k > 1 else self._baseline.copy()
        if rows.size == 0:
            return out, 0
        data = {c: _take(v, index[rows] if c in chosen else rows % n) for c, v in self._values.items()}
        some = _predictions(predict, pd.DataFrame(data, index=pd.RangeIndex(rows.size), copy=False), rows.size)
        if some.shape[1:] != out.shape[1:]:
            raise ValidationError(
                f"predict returned predictions of shape {some.shape[1:]} for some rows and {out.shape[1:]} for "
                "others; it must return the same kind of prediction for every call",
                field="predict",
            )
        out = out.astype(np.result_type(out, some), copy=False)
        out[rows] = some
        return out, 1


def _equality_key(values: Any) -> np.ndarray:
    """An array whose elements are equal exactly where the column's values are (missing equal to missing)."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiubmM" and values.dtype.itemsize in (1, 2, 4, 8):
        return values.view(f"u{values.dtype.itemsize}")
    if isinstance(values, pd.Categorical):
        return np.asarray(values.codes)
    codes, _ = pd.factorize(values, use_na_sentinel=True)
    return np.asarray(codes)


# -- mutual information ---------------------------------------------------------------------------------------
def mutual_information(
    X: pd.DataFrame,
    y: Any,
    *,
    task: Task,
    seed: int = 0,
    discrete: Sequence[str] = (),
    max_rows: int | None = MI_MAX_ROWS,
    n_neighbors: int = 3,
) -> pd.Series:
    """Mutual information between each feature and the target, in nats (scikit-learn's estimators).

    Strings, categoricals, booleans and the columns listed in ``discrete`` are discrete: encoded as ordinal codes
    and marked discrete, so their information is counted from a contingency table (classification) or by the
    mixed estimator of Ross (2014), not by distances between arbitrary codes. Numeric columns, dates and
    durations (as numbers) are continuous (Kraskov et al. 2004, ``n_neighbors`` neighbours). Missing values: in a
    discrete column they are one more category (a sentinel code), so "missing" can carry information; in a
    continuous column they are replaced by the column's median (0 when it has no value), which adds no
    information of its own.

    Like impurity importance, the plug-in estimate of a discrete column grows with its number of values: an
    identifier with a value per row scores the target's whole entropy. Judge high-cardinality columns by
    permutation importance on held-out data.

    Args:
        X: the features.
        y: the target, one value per row.
        task: ``"classification"`` (y is a class label) or ``"regression"`` (y is numeric).
        seed: the seed of scikit-learn's small noise on continuous features and of the row sample.
        discrete: numeric columns to treat as discrete too (an integer code, a count with few values).
        max_rows: estimate on a seeded sample of this many rows when X has more (``None``: all rows).
        n_neighbors: neighbours of the nearest-neighbour estimator (scikit-learn's default, 3).

    Returns:
        One value per column of X, in X's order (``name="mutual_information"``).

    Raises:
        ValidationError: bad X, y or task, a missing target value, a non-numeric regression target, or an
            unknown column in ``discrete``.
    """
    from sklearn.feature_selection import mutual_info_classif, mutual_info_regression

    X = check_frame(X)
    target = check_target(y, len(X))
    task = check_task(task)
    if target.ndim != 1:
        raise ValidationError(f"y must be one-dimensional for mutual information, got shape {target.shape}", field="y")
    seed = check_int("seed", seed, minimum=0)
    n_neighbors = check_int("n_neighbors", n_neighbors, minimum=1)
    unknown = [c for c in discrete if c not in X.columns]
    if isinstance(discrete, str) or unknown:
        raise ValidationError(f"discrete names unknown column(s) {unknown or [discrete]}", field="discrete")
    if max_rows is not None:
        max_rows = check_int("max_rows", max_rows, minimum=n_neighbors + 1)
        if len(X) > max_rows:
            rows = np.sort(np.random.default_rng([seed, 1]).choice(len(X), max_rows, replace=False))
            X, target = X.iloc[rows], target[rows]
    matrix, is_discrete = _mi_matrix(X, set(discrete))
    try:
        if task == "classification":
            labels, _ = pd.factorize(pd.Series(target))
            if (labels < 0).any():
                raise ValidationError("y has missing values; drop those rows first", field="y")
            values = mutual_info_classif(
                matrix, labels, discrete_features=is_discrete, n_neighbors=n_neighbors, random_state=seed
            )
        else:
            try:
                numeric = np.asarray(target, dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise ValidationError("a regression target must be numeric", field="y") from exc
            if not np.isfinite(numeric).all():
                raise ValidationError("y has missing or infinite values; drop those rows first", field="y")
            values = mutual_info_regression(
                matrix, numeric, discrete_features=is_discrete, n_neighbors=n_neighbors, random_state=seed
            )
    except ValueError as exc:
        if isinstance(exc, ValidationError):
            raise
        raise ValidationError(f"mutual information could not be estimated: {exc}") from exc
    return pd.Series(np.asarray(values, dtype=np.float64), index=list(X.columns), name="mutual_information")


def is_nominal(series: pd.Series) -> bool:
    """Whether a column is categorical in nature: boolean, or neither numeric nor a date, time or duration."""
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return True
    return not (pd.api.types.is_numeric_dtype(dtype) or _is_temporal(dtype))


def _is_temporal(dtype: Any) -> bool:
    return bool(pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype))


def numeric_values(series: pd.Series) -> np.ndarray:
    """A numeric, boolean, date-time or duration column as float64, missing values as NaN. Date-times become
    their distance from the column's earliest and durations a length (in seconds, or finer units for some
    storage types): their order and spacing are what count."""
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        series = series - series.min()
    if _is_temporal(series.dtype):
        series = series.dt.total_seconds()
    return np.asarray(series.to_numpy(dtype=np.float64, na_value=np.nan))


def category_codes(series: pd.Series) -> np.ndarray:
    """Integer codes of a column's values, missing values as one more code (``max + 1``)."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        codes = np.asarray(series.cat.codes, dtype=np.int64)
    else:
        try:
            raw, _ = pd.factorize(series, sort=True)
        except TypeError:  # values of mixed, unorderable types
            raw, _ = pd.factorize(series, sort=False)
        codes = np.asarray(raw, dtype=np.int64)
    missing = codes < 0
    if missing.any():
        codes = np.where(missing, codes.max(initial=-1) + 1, codes)
    return codes


def _mi_matrix(X: pd.DataFrame, discrete: set[str]) -> tuple[np.ndarray, np.ndarray]:
    matrix = np.empty(X.shape, dtype=np.float64)
    mask = np.zeros(X.shape[1], dtype=bool)
    for j, c in enumerate(X.columns):
        s = X[c]
        if c in discrete or is_nominal(s):
            matrix[:, j] = category_codes(s)
            mask[j] = True
        else:
            v = numeric_values(s)
            missing = ~np.isfinite(v)
            if missing.any():
                finite = v[~missing]
                v = np.where(missing, float(np.median(finite)) if finite.size else 0.0, v)
            matrix[:, j] = v
    return matrix, mask


# -- impurity importance --------------------------------------------------------------------------------------
def impurity_importance(estimator: Any, feature_names: Sequence[str]) -> pd.Series | None:
    """The estimator's own ``feature_importances_`` (mean decrease in impurity), when it has them.

    **Biased:** impurity importance is computed on the training data and favours features with many distinct
    values — a random identifier or a continuous noise column offers many split points, so a deep tree ensemble
    splits on it often and credits it with impurity decrease it found by chance (Strobl, Boulesteix, Zeileis &
    Hothorn 2007, "Bias in random forest variable importance measures", BMC Bioinformatics 8:25). Show it
    labelled as such, beside permutation importance on held-out data, never alone.

    Args:
        estimator: a fitted estimator, or a scikit-learn ``Pipeline`` (its last step is used).
        feature_names: the names of the columns the final estimator was fitted on, in order.

    Returns:
        The importances indexed by ``feature_names`` (``name="impurity_importance"``), or ``None`` when the
        estimator has no ``feature_importances_`` (a linear model, an unfitted one, gradient boosting of the
        histogram kind).

    Raises:
        ValidationError: the number of names differs from the number of importances (the pipeline's
            preprocessing changed the columns: pass the names it outputs).
    """
    final = estimator
    steps = getattr(estimator, "steps", None)
    if isinstance(steps, list) and steps:
        final = steps[-1][1]
    raw = getattr(final, "feature_importances_", None)  # NotFittedError is an AttributeError
    if raw is None:
        return None
    values = np.asarray(raw, dtype=np.float64).ravel()
    names = list(feature_names)
    if len(names) != values.size:
        raise ValidationError(
            f"the estimator has {values.size} feature importances but {len(names)} feature names were given; "
            "pass the names of the columns the final estimator was fitted on",
            field="feature_names",
        )
    return pd.Series(values, index=names, name="impurity_importance")


# -- correlated features --------------------------------------------------------------------------------------
def feature_associations(
    X: pd.DataFrame, *, max_rows: int | None = ASSOCIATION_MAX_ROWS, seed: int = 0
) -> pd.DataFrame:
    """Pairwise strength of association between features, in [0, 1] (1: one determines the other's order).

    Ordinal columns (numeric, boolean, dates and durations, ordered categorical by its codes) are compared by
    the absolute Spearman rank correlation (rows where either is missing are left out). Nominal columns
    (strings, unordered categoricals, anything else) are not ordered, so ordinal codes would give an arbitrary
    correlation; they are compared with each other by Cramér's V with the bias correction of Bergsma (2013),
    missing values as a category, and with an ordinal column by the square root of the adjusted correlation
    ratio ε² (Kelley 1935) of the ordinal column's ranks across the nominal column's categories. Both
    corrections subtract what chance alone gives, so that an identifier with a value per row is not "associated"
    with everything. Constant columns are associated with nothing (0).

    Args:
        X: the features.
        max_rows: measure on a seeded sample of this many rows when X has more (``None``: all rows).
        seed: the sample's seed.

    Returns:
        A symmetric frame indexed and labelled by X's columns, 1 on the diagonal.
    """
    X = check_frame(X)
    seed = check_int("seed", seed, minimum=0)
    if max_rows is not None:
        max_rows = check_int("max_rows", max_rows, minimum=2)
        if len(X) > max_rows:
            X = X.iloc[np.sort(np.random.default_rng([seed, 2]).choice(len(X), max_rows, replace=False))]
    names = [str(c) for c in X.columns]
    ordinal: dict[str, np.ndarray] = {}
    nominal: dict[str, np.ndarray] = {}
    for c in names:
        s = X[c]
        if isinstance(s.dtype, pd.CategoricalDtype) and s.cat.ordered:
            codes = np.asarray(s.cat.codes, dtype=np.float64)
            ordinal[c] = np.where(codes < 0, np.nan, codes)
        elif is_nominal(s) and not pd.api.types.is_bool_dtype(s.dtype):
            nominal[c] = category_codes(s)
        else:
            ordinal[c] = numeric_values(s)
    position = {c: i for i, c in enumerate(names)}
    matrix = np.eye(len(names))
    if ordinal:
        ranks = pd.DataFrame(ordinal).rank(method="average")
        rho = ranks.corr(method="pearson" if not ranks.isna().any().any() else "spearman").abs().fillna(0.0)
        at = [position[c] for c in rho.columns]
        matrix[np.ix_(at, at)] = rho.to_numpy()
    present = {o: ~np.isnan(v) for o, v in ordinal.items()}
    ranked = {o: stats.rankdata(v[present[o]]) for o, v in ordinal.items()}
    keys = list(nominal)
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            matrix[position[a], position[b]] = matrix[position[b], position[a]] = _cramers_v(nominal[a], nominal[b])
        for o in ordinal:
            ratio = _correlation_ratio(ranked[o], nominal[a][present[o]])
            matrix[position[a], position[o]] = matrix[position[o], position[a]] = ratio
    np.fill_diagonal(matrix, 1.0)
    return pd.DataFrame(np.clip(matrix, 0.0, 1.0), index=names, columns=names)


def _cramers_v(a: np.ndarray, b: np.ndarray) -> float:
    """Bias-corrected Cramér's V (Bergsma 2013) from two code vectors, counting only the occupied cells."""
    n = a.size
    if n < 2:
        return 0.0
    _, a_codes = np.unique(a, return_inverse=True)
    _, b_codes = np.unique(b, return_inverse=True)
    r, k = int(a_codes.max()) + 1, int(b_codes.max()) + 1
    if r < 2 or k < 2:
        return 0.0
    cells, counts = np.unique(a_codes.astype(np.int64) * k + b_codes, return_counts=True)
    row_tot = np.bincount(a_codes, minlength=r).astype(np.float64)
    col_tot = np.bincount(b_codes, minlength=k).astype(np.float64)
    phi2 = float(np.sum(counts.astype(np.float64) ** 2 / (row_tot[cells // k] * col_tot[cells % k]))) - 1.0
    phi2_corr = max(0.0, phi2 - (k - 1) * (r - 1) / (n - 1))
    r_corr = r - (r - 1) ** 2 / (n - 1)
    k_corr = k - (k - 1) ** 2 / (n - 1)
    denominator = min(r_corr - 1, k_corr - 1)
    return math.sqrt(min(1.0, phi2_corr / denominator)) if denominator > 0 else 0.0


def _correlation_ratio(values: np.ndarray, codes: np.ndarray) -> float:
    """Square root of the adjusted correlation ratio ε² of ``values`` across the categories ``codes``."""
    n = values.size
    if n < 3:
        return 0.0
    _, groups = np.unique(codes, return_inverse=True)
    k = int(groups.max()) + 1
    total = float(np.sum((values - values.mean()) ** 2))
    if k < 2 or total == 0.0 or n <= k:
        return 0.0
    sums = np.bincount(groups, weights=values, minlength=k)
    counts = np.bincount(groups, minlength=k).astype(np.float64)
    between = float(np.sum(sums**2 / counts) - values.sum() ** 2 / n)
    within = total - between
    epsilon2 = (between - (k - 1) * within / (n - k)) / total
    return math.sqrt(min(1.0, max(0.0, epsilon2)))


def correlated_groups(
    X: pd.DataFrame, *, threshold: float = 0.9, max_rows: int | None = ASSOCIATION_MAX_ROWS, seed: int = 0
) -> list[list[str]]:
    """Groups of features so strongly associated that their importance should be measured together.

    The association of two features is :func:`feature_associations`' (absolute Spearman correlation for
    ordinal columns, bias-corrected Cramér's V and the adjusted correlation ratio for nominal ones). Features are
    clustered hierarchically with **complete linkage** on the distance ``1 - association``
    (:func:`scipy.cluster.hierarchy.linkage`) and the tree is cut at ``1 - threshold``. Complete linkage makes
    the groups well defined: *every* pair inside a group reaches the threshold (single linkage would chain
    a–b–c into one group although a and c are unrelated), and the result does not depend on the column order.

    Args:
        X: the features.
        threshold: the association every pair of a group reaches, in (0, 1]. Default 0.9: one feature then
            explains at least 81% of the other's rank variance, so permuting one alone leaves most of its
            information in place.
        max_rows: see :func:`feature_associations`.
        seed: see :func:`feature_associations`.

    Returns:
        The groups of two or more features (features in no group are left out), each in X's column order,
        groups ordered by their first feature's position. Name them for :func:`permutation_importance`, e.g.
        ``{"+".join(g): g for g in groups}``.
    """
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 < threshold <= 1:
        raise ValidationError(f"threshold must be in (0, 1], got {threshold!r}", field="threshold")
    associations = feature_associations(X, max_rows=max_rows, seed=seed)
    names = list(associations.columns)
    if len(names) < 2:
        return []
    distance = np.clip(1.0 - associations.to_numpy(), 0.0, 1.0)
    np.fill_diagonal(distance, 0.0)
    tree = linkage(squareform(distance, checks=False), method="complete")
    labels = fcluster(tree, t=1.0 - threshold + 1e-12, criterion="distance")
    members: dict[int, list[str]] = {}
    for name, label in zip(names, labels, strict=True):
        members.setdefault(int(label), []).append(name)
    groups = [g for g in members.values() if len(g) >= 2]
    position = {name: i for i, name in enumerate(names)}
    return sorted(groups, key=lambda g: position[g[0]])


# -- SHAP -----------------------------------------------------------------------------------------------------
class ShapNotInstalledError(MissingExtraError, ValidationError):
    """SHAP was asked for but the ``shap`` package is missing: a :class:`~keel.errors.MissingExtraError` (it
    names ``pip install 'keel[shap]'``) that is also a :class:`~keel.errors.ValidationError`, so callers that
    treat bad requests alike catch it too."""


def import_shap() -> Any:
    """The ``shap`` module, or a :class:`ShapNotInstalledError` naming the extra to install."""
    try:
        import shap
    except ImportError as exc:
        raise ShapNotInstalledError("shap", "shap", "SHAP importance") from exc
    return shap


@dataclass(frozen=True)
class RowExplanation:
    """The SHAP explanation of one prediction: ``base_value + sum(values) == output``.

    Attributes:
        row: the row's position in X.
        base_value: the expected model output over the background (the prediction with no feature known).
        output: the model output explained (in the explainer's units, see :attr:`ShapResult.output`).
        values: each feature's SHAP value (its share of ``output - base_value``).
        data: the row's feature values (JSON-safe; missing values as ``None``).
    """

    row: int
    base_value: float
    output: float
    values: dict[str, float]
    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict."""
        return {
            "row": self.row,
            "base_value": self.base_value,
            "output": self.output,
            "values": dict(self.values),
            "data": dict(self.data),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RowExplanation:
        """The inverse of :meth:`to_dict`."""
        return cls(
            row=int(data["row"]),
            base_value=float(data["base_value"]),
            output=float(data["output"]),
            values={str(k): float(v) for k, v in data["values"].items()},
            data=dict(data["data"]),
        )


@dataclass(frozen=True)
class ShapResult:
    """Global SHAP importance and single-prediction explanations.

    Attributes:
        importance: mean absolute SHAP value per feature over the explained sample, most important first.
        explainer: ``"tree"`` (:class:`shap.TreeExplainer`, exact, path-dependent: no background needed) or
            ``"permutation"`` (:class:`shap.PermutationExplainer` on the prediction function, model-agnostic,
            features masked by background rows).
        output: what the values explain, e.g. ``"raw model output (log-odds for gradient boosting
            classifiers), output 1"`` or ``"predict_proba[:, 1]"``.
        rows: rows averaged into :attr:`importance`.
        background_rows: background rows of the permutation explainer (0 for the tree explainer).
        seed: the seed of the row sample, the background and the permutations.
        explanations: one per requested row, in the order requested.
        notes: why the tree explainer was not used, when it was tried.
    """

    importance: dict[str, float]
    explainer: str
    output: str
    rows: int
    background_rows: int
    seed: int
    explanations: tuple[RowExplanation, ...] = ()
    notes: tuple[str, ...] = ()

    def importances(self) -> pd.Series:
        """Mean absolute SHAP value per feature, most important first."""
        return pd.Series(self.importance, name="shap_importance", dtype=np.float64)

    @property
    def ranking(self) -> list[str]:
        """The feature names, most important first."""
        return list(self.importance)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict."""
        return {
            "method": "shap",
            "importance": dict(self.importance),
            "explainer": self.explainer,
            "output": self.output,
            "rows": self.rows,
            "background_rows": self.background_rows,
            "seed": self.seed,
            "explanations": [e.to_dict() for e in self.explanations],
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ShapResult:
        """The inverse of :meth:`to_dict`."""
        return cls(
            importance={str(k): float(v) for k, v in data["importance"].items()},
            explainer=str(data["explainer"]),
            output=str(data["output"]),
            rows=int(data["rows"]),
            background_rows=int(data["background_rows"]),
            seed=int(data["seed"]),
            explanations=tuple(RowExplanation.from_dict(e) for e in data.get("explanations", [])),
            notes=tuple(str(n) for n in data.get("notes", [])),
        )


@dataclass(frozen=True)
class ShapValues:
    """SHAP values of some rows (internal form shared by :func:`shap_importance` and the selection)."""

    values: np.ndarray
    base_values: np.ndarray
    explainer: str
    output: str
    background_rows: int
    notes: tuple[str, ...]


def shap_importance(
    model: Any,
    X: pd.DataFrame,
    *,
    rows: Sequence[int] = (),
    max_rows: int = 500,
    background_rows: int = 100,
    seed: int = 0,
    output: int | None = None,
    max_evals: int | None = None,
) -> ShapResult:
    """Global SHAP importance (mean absolute SHAP value per feature) and explanations of single predictions.

    A bare tree model (scikit-learn trees, forests, gradient boosting; XGBoost, LightGBM) on all-numeric X is
    explained exactly by :class:`shap.TreeExplainer` (TreeSHAP, path-dependent, in the model's raw output:
    log-odds for gradient-boosted classifiers, probabilities for forests). Anything else — a pipeline, a Keel
    model package, a function, a model with categorical or string inputs — is explained model-agnostically by
    :class:`shap.PermutationExplainer` on its prediction function (``predict_proba`` when it has one, else
    ``predict``; a function is called as is), with features masked by ``background_rows`` background rows; its
    cost is about ``rows x max_evals x background_rows`` predictions, so keep ``max_rows`` small for slow models.
    Non-numeric columns are handed to SHAP as ordinal codes and decoded back to their values and dtypes before
    each prediction.

    Args:
        model: a fitted estimator, or a function from a DataFrame (X's columns) to predictions.
        X: the rows to explain (held-out data is the usual choice) and the background's source.
        rows: positions in X of the predictions to explain one by one.
        max_rows: the global importance is averaged over a seeded sample of this many rows (all when fewer).
        background_rows: rows of the permutation explainer's background (a seeded sample of X).
        seed: the seed of the samples and of the explainer's permutations.
        output: for a model with several outputs (class probabilities), the output to explain; default the
            last (the positive class of a binary classifier).
        max_evals: model evaluations per row of the permutation explainer (default: SHAP's ``"auto"``, ten
            forward-and-backward permutations).

    Returns:
        The importances and one :class:`RowExplanation` per entry of ``rows``.

    Raises:
        ShapNotInstalledError: ``shap`` is not installed (a :class:`~keel.errors.ValidationError` naming
            ``pip install 'keel[shap]'``).
        ValidationError: bad X, a row position out of range, or a model that can neither be called nor predict.
    """
    shap = import_shap()
    X = check_frame(X)
    seed = check_int("seed", seed, minimum=0)
    max_rows = check_int("max_rows", max_rows, minimum=1)
    background_rows = check_int("background_rows", background_rows, minimum=1)
    n = len(X)
    wanted = [check_int("rows", r, minimum=0) for r in rows]
    outside = [r for r in wanted if r >= n]
    if outside:
        raise ValidationError(f"rows {outside} are out of range: X has {n} rows", field="rows")
    rng = np.random.default_rng([seed, 3])
    sample = np.arange(n) if n <= max_rows else np.sort(rng.choice(n, max_rows, replace=False))
    positions = np.concatenate([sample, np.asarray(wanted, dtype=np.int64)])
    computed = shap_values(
        shap, model, X, positions, background_rows=background_rows, seed=seed, output=output, max_evals=max_evals
    )
    mean_abs = np.abs(computed.values[: sample.size]).mean(axis=0)
    names = [str(c) for c in X.columns]
    order = sorted(range(len(names)), key=lambda j: -mean_abs[j])
    explanations = []
    for i, r in enumerate(wanted):
        v = computed.values[sample.size + i]
        base = float(computed.base_values[sample.size + i])
        explanations.append(
            RowExplanation(
                row=r,
                base_value=base,
                output=base + float(v.sum()),
                values={c: float(x) for c, x in zip(names, v, strict=True)},
                data={c: _json_value(X[c].iloc[r]) for c in names},
            )
        )
    return ShapResult(
        importance={names[j]: float(mean_abs[j]) for j in order},
        explainer=computed.explainer,
        output=computed.output,
        rows=int(sample.size),
        background_rows=computed.background_rows,
        seed=seed,
        explanations=tuple(explanations),
        notes=computed.notes,
    )


def shap_values(
    shap: Any,
    model: Any,
    X: pd.DataFrame,
    positions: np.ndarray,
    *,
    background_rows: int,
    seed: int,
    output: int | None,
    max_evals: int | None,
) -> ShapValues:
    """SHAP values (``len(positions) x columns``) and base values of the rows of X at ``positions``."""
    notes: list[str] = []
    if _tree_candidate(model, X):
        try:
            explainer = shap.TreeExplainer(model)
            explained = explainer(X.iloc[positions].astype(np.float64))
            values, base, index = _one_output(np.asarray(explained.values), np.asarray(explained.base_values), output)
            return ShapValues(
                values=values,
                base_values=base,
                explainer="tree",
                output="raw model output (log-odds for gradient boosting classifiers)"
                + ("" if index is None else f", output {index}"),
                background_rows=0,
                notes=(),
            )
        except Exception as exc:  # shap raises many types for models it cannot walk; the fallback is exact too
            notes.append(f"TreeExplainer could not explain {type(model).__name__} ({exc}); used the permutation one")
    fn, description = _output_function(model, output)
    codec = _Codec(X)
    data = codec.encode(X)
    rng = np.random.default_rng([seed, 4])
    background = np.sort(rng.choice(len(X), min(background_rows, len(X)), replace=False))
    masker = shap.maskers.Independent(data[background], max_samples=background.size)
    state = np.random.get_state()  # PermutationExplainer seeds NumPy's global generator
    try:
        explainer = shap.PermutationExplainer(lambda a: fn(codec.decode(a)), masker, seed=seed)
        explained = explainer(data[positions], max_evals="auto" if max_evals is None else max_evals, silent=True)
    finally:
        np.random.set_state(state)
    values, base, _ = _one_output(np.asarray(explained.values), np.asarray(explained.base_values), None)
    return ShapValues(
        values=values,
        base_values=base,
        explainer="permutation",
        output=description,
        background_rows=int(background.size),
        notes=tuple(notes),
    )


def _tree_candidate(model: Any, X: pd.DataFrame) -> bool:
    if callable(model) or hasattr(model, "steps"):
        return False
    if not all(pd.api.types.is_numeric_dtype(t) and not isinstance(t, pd.CategoricalDtype) for t in X.dtypes):
        return False
    categorical = getattr(model, "is_categorical_", None)  # HistGradientBoosting's native categorical splits
    if categorical is not None and bool(np.any(categorical)):
        return False
    module = type(model).__module__
    return module.startswith(("sklearn.ensemble", "sklearn.tree", "xgboost", "lightgbm", "catboost"))


def _one_output(values: np.ndarray, base: np.ndarray, output: int | None) -> tuple[np.ndarray, np.ndarray, int | None]:
    """Values ``(rows, features)`` and base values ``(rows,)`` of one output of a multi-output explanation."""
    if values.ndim == 3:
        index = values.shape[2] - 1 if output is None else output
        if not -values.shape[2] <= index < values.shape[2]:
            raise ValidationError(f"output {output} is out of range: the model has {values.shape[2]}", field="output")
        base_out = base[:, index] if base.ndim == 2 else np.broadcast_to(np.atleast_1d(base)[index], values.shape[:1])
        return values[:, :, index], np.asarray(base_out, dtype=np.float64), index % values.shape[2]
    flat = np.broadcast_to(np.asarray(base, dtype=np.float64).reshape(-1), values.shape[:1])
    return values, np.asarray(flat, dtype=np.float64), None


def _output_function(model: Any, output: int | None) -> tuple[Callable[[pd.DataFrame], np.ndarray], str]:
    if callable(model) and not hasattr(model, "predict"):
        fn, name = model, getattr(model, "__name__", "the prediction function")
    elif hasattr(model, "predict_proba") and getattr(model, "has_probabilities", True):
        fn, name = model.predict_proba, "predict_proba"
    elif hasattr(model, "predict"):
        fn, name = model.predict, "predict"
    else:
        raise ValidationError(
            f"cannot explain a {type(model).__name__}: give a fitted estimator or a function from a DataFrame to "
            "predictions",
            field="model",
        )

    def one_output(frame: pd.DataFrame) -> np.ndarray:
        out = np.asarray(fn(frame), dtype=np.float64)
        if out.ndim == 2 and out.shape[1] == 1:
            return out[:, 0]
        if out.ndim == 2:
            return out[:, out.shape[1] - 1 if output is None else output]
        return out

    description = name
    if output is not None:
        description += f"[:, {output}]"
    elif name == "predict_proba":
        description += "[:, -1] (the last class)"
    return one_output, description


class _Codec:
    """Turns a frame into a float matrix SHAP can mask (non-numeric columns as ordinal codes, missing as NaN) and
    masked matrices back into frames of the original values and dtypes."""

    def __init__(self, X: pd.DataFrame) -> None:
        self._columns = [str(c) for c in X.columns]
        self._dtypes = list(X.dtypes)
        self._uniques: dict[int, Any] = {}
        for j, c in enumerate(self._columns):
            s = X[c]
            if isinstance(s.dtype, pd.CategoricalDtype) or not pd.api.types.is_numeric_dtype(s.dtype):
                if not isinstance(s.dtype, pd.CategoricalDtype):
                    _, uniques = pd.factorize(s)
                    self._uniques[j] = uniques
                else:
                    self._uniques[j] = None

    def encode(self, X: pd.DataFrame) -> np.ndarray:
        out = np.empty(X.shape, dtype=np.float64)
        for j, c in enumerate(self._columns):
            s = X[c]
            if j not in self._uniques:
                out[:, j] = s.to_numpy(dtype=np.float64, na_value=np.nan)
                continue
            uniques = self._uniques[j]
            codes = np.asarray(s.cat.codes if uniques is None else uniques.get_indexer(s), dtype=np.float64)
            out[:, j] = np.where(codes < 0, np.nan, codes)
        return out

    def decode(self, matrix: np.ndarray) -> pd.DataFrame:
        data: dict[str, Any] = {}
        for j, c in enumerate(self._columns):
            col = matrix[:, j]
            dtype = self._dtypes[j]
            if j not in self._uniques:
                data[c] = _restore_numeric(col, dtype)
                continue
            codes = np.where(np.isnan(col), -1, np.rint(col)).astype(np.int64)
            uniques = self._uniques[j]
            if uniques is None:
                data[c] = pd.Categorical.from_codes(codes, dtype=dtype)
            else:
                data[c] = pd.Series(uniques.take(codes, allow_fill=True, fill_value=np.nan), dtype=dtype).array
        return pd.DataFrame(data, index=pd.RangeIndex(matrix.shape[0]))


def _restore_numeric(values: np.ndarray, dtype: Any) -> Any:
    if isinstance(dtype, np.dtype) and dtype.kind == "f":
        return values.astype(dtype, copy=False)
    missing = np.isnan(values)
    if pd.api.types.is_bool_dtype(dtype):
        if isinstance(dtype, np.dtype):
            return values > 0.5
        flags: list[bool | None] = [None if m else bool(v > 0.5) for v, m in zip(values, missing, strict=True)]
        return pd.array(flags, dtype=dtype)
    if isinstance(dtype, np.dtype):
        return values if missing.any() else values.astype(dtype)
    try:  # nullable extension dtypes (Int64, Float64) take missing values
        return pd.array([None if m else v for v, m in zip(values.tolist(), missing, strict=True)], dtype=dtype)
    except (TypeError, ValueError):
        return values


def _json_value(value: Any) -> Any:
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, bool | int | float | str):
        return value
    return str(value)
