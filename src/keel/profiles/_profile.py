"""Reference profiles: the distribution of every column (and of the predictions), computed once and stored.

A model version's reference profile is computed when the version is registered, from the data it was validated
on, and stored next to it. Every later drift and quality check reads the reference side from the profile only,
so a check never needs the (possibly large, possibly gone) reference data again.

What a numeric column keeps is its quantile function on a fixed grid of :data:`QUANTILE_POINTS` probabilities
``0, 0.001, ..., 1`` (NumPy's default "linear" quantiles). KS, Wasserstein and PSI against a current sample are
computed from it; the accuracy this costs is bounded by the grid:

- the reference CDF reconstructed from the grid (linear between the stored quantiles) is within
  ``1 / (QUANTILE_POINTS - 1)`` (0.001) plus ``1 / n_reference`` of the empirical CDF everywhere, so a KS
  statistic differs from the raw-data one by at most about 0.001;
- a Wasserstein-1 distance computed on the grid is a Riemann sum of the exact integral of the quantile
  functions; for distributions with finite variance its error is well under 1% of the reference's standard
  deviation (tested against :func:`scipy.stats.wasserstein_distance` on raw data).

A categorical column keeps the counts of its :data:`MAX_CATEGORIES` most frequent values (as strings) and one
``__other__`` bucket for the rest. Missing values (``None``, ``NaN``, ``pd.NA``; for numeric columns also
``±inf``, which has no place on a distribution's scale) are counted apart, never as a category.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal

import numpy as np
import orjson
import pandas as pd

from keel.engines._profiles import ColumnSummary
from keel.errors import IntegrityError, ValidationError

__all__ = [
    "HISTOGRAM_BINS",
    "MAX_CATEGORIES",
    "OTHER",
    "PROFILE_VERSION",
    "QUANTILE_GRID",
    "QUANTILE_POINTS",
    "ColumnProfile",
    "ReferenceProfile",
    "build_profile",
]

Kind = Literal["numeric", "categorical"]
KINDS: tuple[str, ...] = ("numeric", "categorical")

PROFILE_VERSION = 1
"""Format version written by :meth:`ReferenceProfile.to_bytes`; :meth:`ReferenceProfile.from_bytes` refuses others."""

QUANTILE_POINTS = 1001
"""Quantiles stored per numeric column: probabilities ``0, 0.001, ..., 1``. A grid step of 0.001 bounds the KS
error at about 0.001 (see the module docstring) for 8 KB per column."""

QUANTILE_GRID: np.ndarray = np.linspace(0.0, 1.0, QUANTILE_POINTS)

HISTOGRAM_BINS = 20
"""Equal-width bins over the reference's [min, max] kept for plots (not used by any statistic)."""

MAX_CATEGORIES = 1000
"""Categories kept per categorical column (the most frequent; ties by value); the rest go to :data:`OTHER`."""

OTHER = "__other__"
"""Bucket of the categories beyond the :data:`MAX_CATEGORIES` most frequent ones."""

# Columns are sorted in blocks of at most this many values (64 MiB of float64): one vectorised sort per block,
# bounded memory whatever the number of columns.
BLOCK_VALUES = 1 << 23


@dataclass(frozen=True, eq=False)
class ColumnProfile(ColumnSummary):
    """The stored distribution of one column.

    Attributes:
        name: the column's name.
        kind: ``"numeric"`` or ``"categorical"``.
        count: non-missing values.
        missing: missing values (``None``/``NaN``/``pd.NA``; ``±inf`` for numeric columns).
        minimum, maximum, mean, std: of the non-missing values (numeric columns with values only; ``std`` is
            the population standard deviation, ``ddof=0``).
        quantiles: the quantile function at :data:`QUANTILE_GRID` (numeric columns with values; else empty).
        bin_edges, bin_counts: a :data:`HISTOGRAM_BINS`-bin equal-width histogram over [min, max], for plots.
        frequencies: value (as a string) -> count, the :data:`MAX_CATEGORIES` most frequent plus
            :data:`OTHER` when there were more (categorical columns).

    The fields are those of the engines' :class:`~keel.engines._profiles.ColumnSummary` (what an engine finds of
    a column where the data is); a profile adds their stored form, and categories capped.
    """

    @property
    def rows(self) -> int:
        """Rows of the reference, missing ones included."""
        return self.count + self.missing

    @property
    def missing_rate(self) -> float:
        """Share of the rows that are missing (0 for a profile of no rows)."""
        return self.missing / self.rows if self.rows else 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (arrays as lists of floats), the form stored by :meth:`ReferenceProfile.to_bytes`."""
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, "count": self.count, "missing": self.missing}
        if self.kind == "numeric":
            out.update(
                minimum=self.minimum,
                maximum=self.maximum,
                mean=self.mean,
                std=self.std,
                quantiles=[float(v) for v in self.quantiles],
                bin_edges=[float(v) for v in self.bin_edges],
                bin_counts=[int(v) for v in self.bin_counts],
            )
        else:
            out["frequencies"] = {str(k): int(v) for k, v in self.frequencies.items()}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ColumnProfile:
        """The inverse of :meth:`to_dict`; raises ``KeyError``/``TypeError``/``ValueError`` on a malformed dict."""
        kind = data["kind"]
        if kind not in KINDS:
            raise ValueError(f"unknown column kind {kind!r}")
        name, count, missing = str(data["name"]), _int(data["count"]), _int(data["missing"])
        if kind == "categorical":
            freqs = data["frequencies"]
            if not isinstance(freqs, dict):
                raise TypeError("frequencies must be a mapping")
            return cls(name, "categorical", count, missing, frequencies={str(k): _int(v) for k, v in freqs.items()})
        quantiles = np.asarray(data["quantiles"], dtype=np.float64)
        if quantiles.size not in (0, QUANTILE_POINTS) or (quantiles.size and np.any(np.diff(quantiles) < 0)):
            raise ValueError(f"column {name!r}: quantiles must be {QUANTILE_POINTS} non-decreasing numbers")
        if (quantiles.size == 0) != (count == 0):
            raise ValueError(f"column {name!r}: quantiles do not match the count")
        edges = np.asarray(data["bin_edges"], dtype=np.float64)
        counts = np.asarray(data["bin_counts"], dtype=np.int64)
        if edges.size and counts.size != edges.size - 1:
            raise ValueError(f"column {name!r}: histogram edges and counts do not match")
        return cls(
            name,
            "numeric",
            count,
            missing,
            minimum=_opt_float(data["minimum"]),
            maximum=_opt_float(data["maximum"]),
            mean=_opt_float(data["mean"]),
            std=_opt_float(data["std"]),
            quantiles=quantiles,
            bin_edges=edges,
            bin_counts=counts,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ColumnProfile):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, eq=False)
class ReferenceProfile:
    """The reference distribution of a model's inputs (and predictions), as stored with its version.

    Attributes:
        columns: column name -> profile, in the reference frame's column order.
        rows: rows of the reference frame.
        prediction: the profile of the reference predictions (numeric for regression scores or a positive-class
            probability, categorical for predicted classes), or ``None``.
        version: :data:`PROFILE_VERSION`.

    Example:
        >>> profile = build_profile(validation_frame, predictions=model.predict(validation_frame))  # doctest: +SKIP
        >>> ReferenceProfile.from_bytes(profile.to_bytes()) == profile  # doctest: +SKIP
        True
    """

    columns: dict[str, ColumnProfile]
    rows: int
    prediction: ColumnProfile | None = None
    version: int = PROFILE_VERSION

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict; columns as a list, so that their order survives key sorting."""
        return {
            "version": self.version,
            "rows": self.rows,
            "columns": [c.to_dict() for c in self.columns.values()],
            "prediction": None if self.prediction is None else self.prediction.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReferenceProfile:
        """The inverse of :meth:`to_dict`; a malformed dict raises :class:`~keel.errors.IntegrityError`."""
        try:
            if not isinstance(data, dict):
                raise TypeError("a reference profile must be a JSON object")
            version = data["version"]
            if version != PROFILE_VERSION:
                raise IntegrityError(
                    f"reference profile format version {version!r} is not supported (this Keel reads version "
                    f"{PROFILE_VERSION}); recompute the profile with this version of Keel"
                )
            columns = [ColumnProfile.from_dict(c) for c in data["columns"]]
            pred = data["prediction"]
            return cls(
                columns={c.name: c for c in columns},
                rows=_int(data["rows"]),
                prediction=None if pred is None else ColumnProfile.from_dict(pred),
            )
        except IntegrityError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise IntegrityError(f"malformed reference profile: {type(exc).__name__}: {exc}") from exc

    def to_bytes(self) -> bytes:
        """Deterministic JSON bytes (sorted keys, shortest round-trip floats): same profile, same bytes."""
        return orjson.dumps(self.to_dict(), option=orjson.OPT_SORT_KEYS)

    @classmethod
    def from_bytes(cls, data: bytes) -> ReferenceProfile:
        """Read :meth:`to_bytes`' output; anything else raises :class:`~keel.errors.IntegrityError`."""
        try:
            loaded = orjson.loads(data)
        except (orjson.JSONDecodeError, TypeError) as exc:
            raise IntegrityError(f"reference profile is not valid JSON: {exc}") from exc
        return cls.from_dict(loaded)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ReferenceProfile):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"expected a non-negative integer, got {value!r}")
    return value


def _opt_float(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number, got {value!r}")
    return float(value)


# -- kinds and conversions (shared with drift and quality) --------------------------------------------------
def infer_kind(series: pd.Series, name: str) -> Kind:
    """The kind of a column from its dtype: bool -> categorical, numbers -> numeric, strings/categories/objects
    -> categorical. Other dtypes (datetimes, intervals ...) raise :class:`~keel.errors.ValidationError`."""
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "categorical"
    if pd.api.types.is_numeric_dtype(dtype):
        return "numeric"
    if (
        pd.api.types.is_string_dtype(dtype)
        or isinstance(dtype, pd.CategoricalDtype)
        or pd.api.types.is_object_dtype(dtype)
    ):
        return "categorical"
    raise ValidationError(
        f"column {name!r} has dtype {dtype}, which is neither numeric nor categorical; pass "
        f"kinds={{{name!r}: 'categorical'}} to monitor its values as categories, or leave the column out",
        field=name,
    )


def check_kind(kind: object, name: str) -> Kind:
    """``kind`` if it is ``"numeric"`` or ``"categorical"``, else a :class:`~keel.errors.ValidationError`."""
    if kind == "numeric":
        return "numeric"
    if kind == "categorical":
        return "categorical"
    raise ValidationError(
        f"column {name!r} has unknown kind {kind!r}; use 'numeric' or 'categorical'",
        field=name,
    )


def as_float(series: pd.Series | np.ndarray) -> np.ndarray | None:
    """The values as a float64 array with missing and infinite values as NaN, or ``None`` when they are not
    numbers (strings that do not parse, dates ...). Booleans count as 0/1; numbers in an ``object`` column (as
    read from JSON) are accepted."""
    values: np.ndarray
    if isinstance(series, np.ndarray):
        series = pd.Series(series)
    dtype = series.dtype
    try:
        if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype):
            values = series.to_numpy(dtype=np.float64, na_value=np.nan)
        elif pd.api.types.is_object_dtype(dtype):
            nonnull = series.dropna()
            if not all(isinstance(v, int | float | np.number) for v in nonnull.head(1000)):
                return None
            values = pd.to_numeric(series, errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            return None
    except (TypeError, ValueError):
        return None
    infinite = np.isinf(values)
    if infinite.any():  # a copy: ``values`` may be a view of the caller's frame
        values = np.where(infinite, np.nan, values)
    return values


def sorted_block(arrays: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Stack equal-length float arrays into a (columns, rows) block, sort every row in one call (NaN last) and
    return it with the non-NaN count of each row."""
    n = arrays[0].shape[0] if arrays else 0
    block = np.empty((len(arrays), n), dtype=np.float64)
    counts = np.empty(len(arrays), dtype=np.int64)
    for i, values in enumerate(arrays):
        block[i] = values
        counts[i] = n - int(np.count_nonzero(np.isnan(values)))
    block.sort(axis=1)
    return block, counts


def quantiles_from_sorted(block: np.ndarray, counts: np.ndarray, grid: np.ndarray = QUANTILE_GRID) -> np.ndarray:
    """NumPy's "linear" quantiles at ``grid`` of each row of a sorted block, over its first ``counts[i]`` values.

    Equal to ``np.quantile(row[:count], grid)`` per row, without a second pass over the data. Rows with no
    values give NaN.
    """
    rows = block.shape[0]
    if rows == 0:
        return np.empty((0, grid.size))
    last = np.maximum(counts - 1, 0).astype(np.float64)[:, None]
    pos = grid[None, :] * last
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, np.maximum(counts - 1, 0)[:, None])
    frac = pos - lo
    low_v = np.take_along_axis(block, lo, axis=1)
    high_v = np.take_along_axis(block, hi, axis=1)
    # NumPy's _lerp: exact at both ends (a + (b - a) * t, or b - (b - a) * (1 - t) when t >= 0.5).
    diff = high_v - low_v
    out: np.ndarray = np.where(frac >= 0.5, high_v - diff * (1 - frac), low_v + diff * frac)
    out[counts == 0] = np.nan
    return out


def column_blocks(n_rows: int, n_columns: int) -> list[range]:
    """Ranges of column indices, each block at most :data:`BLOCK_VALUES` values (at least one column)."""
    per = max(1, BLOCK_VALUES // max(n_rows, 1))
    return [range(i, min(i + per, n_columns)) for i in range(0, n_columns, per)]


def category_counts(values: pd.Series | np.ndarray) -> tuple[dict[str, int], int]:
    """(value as string -> count, missing count) of a column, most frequent first (ties by value)."""
    series = values if isinstance(values, pd.Series) else pd.Series(values)
    counts = series.value_counts(dropna=True, sort=False)
    merged: dict[str, int] = {}
    for key, n in zip(counts.index.tolist(), counts.to_numpy().tolist(), strict=True):
        if n == 0:  # unused categories of a pandas Categorical
            continue
        text = str(key)
        merged[text] = merged.get(text, 0) + int(n)
    missing = len(series) - sum(merged.values())
    return dict(sorted(merged.items(), key=lambda kv: (-kv[1], kv[0]))), missing


def cap_categories(counts: dict[str, int], limit: int = MAX_CATEGORIES) -> dict[str, int]:
    """The ``limit`` most frequent of ``counts`` (already ordered by :func:`category_counts`) and :data:`OTHER`
    holding the rest, when there is a rest."""
    if len(counts) <= limit:
        return dict(counts)
    items = list(counts.items())
    kept = dict(items[:limit])
    kept[OTHER] = kept.get(OTHER, 0) + sum(n for _, n in items[limit:])
    return kept


# -- building ---------------------------------------------------------------------------------------------
def build_profile(
    frame: pd.DataFrame,
    *,
    kinds: dict[str, str] | None = None,
    predictions: pd.Series | np.ndarray | None = None,
    prediction_kind: str | None = None,
) -> ReferenceProfile:
    """Profile every column of ``frame`` (and ``predictions``) as the reference of later checks.

    Args:
        frame: the reference rows, typically the validation rows of a training run, raw features as served.
        kinds: column -> ``"numeric"``/``"categorical"`` for the columns whose kind should not be inferred from
            the dtype (bool -> categorical, numbers -> numeric, strings/categories/objects -> categorical), e.g.
            an integer-coded category.
        predictions: the model's predictions on those rows: regression scores, positive-class probabilities or
            predicted classes (1-D).
        prediction_kind: the kind of ``predictions``; inferred like a column's when omitted, so pass
            ``"categorical"`` for integer-coded predicted classes.

    Returns:
        The profile; computing it sorts each numeric column once (in column blocks) and counts each categorical
        column once (1–2 s for 1,000,000 rows x 50 columns on one core).

    Raises:
        ValidationError: ``frame`` is not a DataFrame, has no rows, a column name is not a string, a kind is
            unknown or names no column, a column declared numeric does not hold numbers, or ``predictions`` is
            not one-dimensional.
    """
    if not isinstance(frame, pd.DataFrame):
        raise ValidationError(f"build_profile needs a pandas DataFrame, got {type(frame).__name__}")
    if len(frame) == 0:
        raise ValidationError("the reference frame has no rows; a profile needs at least one row")
    if len(set(frame.columns)) != len(frame.columns):
        dupes = sorted({str(c) for c in frame.columns if list(frame.columns).count(c) > 1})
        raise ValidationError(f"the reference frame has duplicate column names: {dupes}")
    for col in frame.columns:
        if not isinstance(col, str):
            raise ValidationError(f"column names must be strings, got {col!r} ({type(col).__name__})")
    kinds = dict(kinds or {})
    for name, kind in kinds.items():
        if name not in frame.columns:
            raise ValidationError(
                f"kinds names column {name!r}, which is not in the reference frame (columns: "
                f"{', '.join(map(str, frame.columns))})",
                field=name,
            )
        check_kind(kind, name)
    resolved: dict[str, Kind] = {
        name: check_kind(kinds[name], name) if name in kinds else infer_kind(frame[name], name)
        for name in frame.columns
    }
    numeric = [n for n, k in resolved.items() if k == "numeric"]
    profiles = _profile_numeric(frame, numeric)
    for name, kind in resolved.items():
        if kind == "categorical":
            profiles[name] = _profile_categorical(name, frame[name])
    prediction = None
    if predictions is not None:
        prediction = profile_values("prediction", predictions, prediction_kind)
    return ReferenceProfile(
        columns={name: profiles[name] for name in frame.columns},
        rows=len(frame),
        prediction=prediction,
    )


def profile_values(name: str, values: pd.Series | np.ndarray, kind: str | None = None) -> ColumnProfile:
    """The profile of one 1-D sequence of values (the predictions, typically)."""
    series = _one_dimensional(values, name)
    resolved = check_kind(kind, name) if kind is not None else infer_kind(series, name)
    if resolved == "categorical":
        return _profile_categorical(name, series)
    return _profile_numeric(pd.DataFrame({name: series}), [name])[name]


def _one_dimensional(values: pd.Series | np.ndarray, name: str) -> pd.Series:
    if isinstance(values, pd.Series):
        return values.reset_index(drop=True)
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValidationError(
            f"{name} must be one-dimensional, got shape {array.shape}; pass the positive-class column of "
            f"probabilities or the predicted classes",
            field=name,
        )
    return pd.Series(array)


def _profile_numeric(frame: pd.DataFrame, names: list[str]) -> dict[str, ColumnProfile]:
    out: dict[str, ColumnProfile] = {}
    for block_range in column_blocks(len(frame), len(names)):
        arrays = []
        for i in block_range:
            values = as_float(frame[names[i]])
            if values is None:
                raise ValidationError(
                    f"column {names[i]!r} is declared numeric but holds {frame[names[i]].dtype} values that are "
                    f"not numbers; declare it 'categorical' or convert it",
                    field=names[i],
                )
            arrays.append(values)
        block, counts = sorted_block(arrays)
        del arrays
        quantiles = quantiles_from_sorted(block, counts)
        for j, i in enumerate(block_range):
            out[names[i]] = _numeric_column(names[i], block[j, : counts[j]], quantiles[j], len(frame))
        del block
    return out


def _numeric_column(name: str, values: np.ndarray, quantiles: np.ndarray, rows: int) -> ColumnProfile:
    count = int(values.size)
    if count == 0:
        return ColumnProfile(name, "numeric", 0, rows)
    lo, hi = float(values[0]), float(values[-1])
    edges = np.linspace(lo, hi, HISTOGRAM_BINS + 1) if hi > lo else np.array([lo, hi])
    return ColumnProfile(
        name,
        "numeric",
        count,
        rows - count,
        minimum=lo,
        maximum=hi,
        mean=float(values.mean()),
        std=float(values.std()),
        quantiles=quantiles.copy(),
        bin_edges=edges,
        bin_counts=histogram_sorted(values, edges),
    )


def histogram_sorted(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts of sorted ``values`` in bins ``[e0, e1), [e1, e2), ..., [e_{k-1}, e_k]`` (the last one closed,
    like :func:`numpy.histogram`); values outside [e0, e_k] are not counted."""
    if edges.size < 2:
        return np.empty(0, dtype=np.int64)
    cuts = np.searchsorted(values, edges, side="left")
    cuts[-1] = np.searchsorted(values, edges[-1], side="right")
    counts: np.ndarray = np.diff(cuts).astype(np.int64)
    return counts


def _profile_categorical(name: str, series: pd.Series) -> ColumnProfile:
    counts, missing = category_counts(series)
    capped = cap_categories(counts)
    return ColumnProfile(name, "categorical", sum(counts.values()), missing, frequencies=capped)


def column_from_summary(summary: ColumnSummary) -> ColumnProfile:
    """The profile of a column an engine summarised where the data is (:meth:`keel.engines.Engine.profile`,
    asked for :data:`QUANTILE_GRID` and :data:`HISTOGRAM_BINS`): categories capped at :data:`MAX_CATEGORIES`."""
    values = {f.name: getattr(summary, f.name) for f in fields(summary)}
    if summary.kind == "categorical":
        values["frequencies"] = cap_categories(summary.frequencies)
    return ColumnProfile(**values)
