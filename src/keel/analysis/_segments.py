"""Performance by segment: segments parsed safely from user text, metrics with bootstrap intervals, weak segments.

**Segments.** A segment is a named boolean mask over the scored rows, made from one line of user text (a *spec*):

==========================  ==================================================================================
spec                        segments
==========================  ==================================================================================
``plan``                    one per value of the column (text, categories, booleans, or a numeric column with
                            at most :data:`VALUE_SEGMENTS_MAX` distinct values), e.g. ``plan == "basic"``; a
                            numeric column with more values gets :data:`DEFAULT_BINS` quantile bins
``age:4``                   4 quantile bins of a numeric column: ``age < 31``, ``31 <= age < 45``, ...,
                            ``age >= 58`` (edges rounded to 4 significant digits, integers for an integer
                            column, duplicates merged; the outer bins are open-ended)
``age[0, 30, 60]``          bins at explicit edges, lower edge included, outer bins open-ended:
                            ``age < 0``, ``0 <= age < 30``, ``30 <= age < 60``, ``age >= 60``
``age >= 60 and plan ==     one segment: the rows where a boolean expression holds
"basic"``
==========================  ==================================================================================

Column specs add a ``col is None`` segment when the column has missing values. A column whose name is not a
Python identifier is written in backticks inside expressions: ```monthly spend` > 100``.

Expressions are parsed with :mod:`ast` and evaluated by walking a whitelisted tree, vectorised on the frame's
columns — never with ``eval``, ``exec`` or ``DataFrame.eval``. Allowed: column names, constants (numbers, text,
``True``/``False``/``None``), comparisons ``== != < <= > >=`` (chained too: ``30 <= age < 60``), ``in`` /
``not in`` with a literal list or tuple, ``is None`` / ``is not None``, and ``and`` / ``or`` / ``not``. Anything
else (calls, attributes, indexing, arithmetic, lambdas, names starting with ``__``) is refused with a
:class:`~keel.errors.ValidationError` that quotes the offending piece. Missing values follow SQL's three-valued
logic: a comparison with a missing value is *unknown*, ``not unknown`` is unknown, ``unknown and false`` is false,
``unknown or true`` is true, and a row is in the segment only when the expression is *true* — so a missing value
never satisfies a comparison, nor its negation. The name of every segment is a canonical expression that parses
back to the same rows.

**Metrics by segment with bootstrap intervals.** Per segment (and overall): rows, classification accuracy,
balanced accuracy, F1 (binary: the positive class, ``classes[1]``; multiclass: macro over the classes present),
ROC AUC (binary; one-vs-rest macro for multiclass) and log loss when probabilities are given; regression MAE, RMSE
and R². Intervals are percentile bootstrap intervals (Efron & Tibshirani, *An Introduction to the Bootstrap*,
1993, ch. 13): the segment's rows are resampled with replacement, ``n_boot`` times.

Resampling a million rows a thousand times is a billion draws, far too slow. Every metric here is a function of a
small *cell table* instead: each row falls in one cell of (true label, predicted label, probability bin) for
classification, (absolute error bin, target bin) for regression, with :data:`SCORE_BINS` quantile bins of the
scores over all rows. Drawing ``n`` rows with replacement from a segment is exactly drawing its cell counts from a
multinomial distribution with the segment's cell shares, so each resample is one multinomial draw over a few
hundred cells (``numpy.random.Generator.multinomial``), for all resamples at once:

- accuracy, balanced accuracy and F1 depend on the (label, prediction) counts only: their bootstrap is **exact**;
- ROC AUC counts the positive–negative pairs in order. Pairs in different bins are ordered by their bins, so they
  are counted exactly from the resampled counts. Pairs inside one bin count with the share of them in order on the
  observed rows (ties one half) — the expectation of the resampled within-bin count given the cell counts — plus
  Gaussian noise with its exact conditional variance, from Hoeffding's (1948) decomposition of a two-sample
  U-statistic (:class:`_WithinBins`). The point estimate is exact (equal to ``sklearn.metrics.roc_auc_score``) and
  the replicates' first two moments are those of resampling rows; only the shape of the within-bin part is
  approximated, on a share of all pairs of about ``1 / SCORE_BINS``, reported as
  :attr:`SegmentReport.within_bin_pair_share`;
- sums of per-row values (log loss; absolute and squared errors, and the centred target for R²) are the resampled
  cell counts times the cells' mean values, plus Gaussian noise with the exact conditional covariance
  ``Σ_c N*_c Cov_c`` of the within-cell resampling, so the replicates' first two moments are exact and the cells
  carry the skew.

Each segment draws from its own generator seeded by ``(seed, name)``, so adding a segment changes no other
segment's interval, and the same seed gives the same report.

**Weak segments** (:func:`find_weak_segments`) are found the way deepchecks' and Giskard's scans do: candidate
segments from every column (values of categorical columns, quantile bins of numeric ones, then pairs of the worst
single-column candidates), each tested against the rest of the rows for being *worse* on one metric with a
one-sided test, the p-values of all candidates corrected together with Benjamini–Hochberg (Benjamini & Hochberg,
1995). The tests:

- accuracy: the two-proportion z-test (pooled variance) on the rows' correctness;
- log loss, MAE: Welch's t-test on the per-row losses / absolute errors; RMSE: Welch's t-test on squared errors;
- balanced accuracy, F1, ROC AUC, R² (not averages of rows): a z-test with the standard error of the difference
  estimated by the cell-table bootstrap of both sides.

Pairs are built from the :data:`PAIR_POOL` single candidates with the smallest p-values. Because the data chose
them, the correction counts every pair the search could have built (those not tested count with p = 1), the
usual way to pay for a data-driven search; and a pair is only reported when it is also worse than the rest of each
of its two parents (Bonferroni over the pairs tested), so that ``region == "x" and age < 30`` does not repeat
``region == "x"``. On clean data the share of scans flagging anything stays near ``alpha`` (measured in the tests).
"""

from __future__ import annotations

import ast
import json
import keyword
import math
import operator
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations, pairwise
from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd
from scipy import sparse, stats

from keel.errors import ValidationError

__all__ = [
    "DEFAULT_BINS",
    "METRICS",
    "Estimate",
    "Segment",
    "SegmentMetrics",
    "SegmentReport",
    "WeakSegment",
    "WeakSegmentReport",
    "default_metric",
    "find_weak_segments",
    "higher_is_better",
    "segment_metrics",
    "segments_of",
]

Task = Literal["classification", "regression"]

VALUE_SEGMENTS_MAX = 10
"""A numeric column named alone with at most this many distinct values gets one segment per value; with more, it
gets :data:`DEFAULT_BINS` quantile bins."""

DEFAULT_BINS = 4
"""Quantile bins of a numeric column named alone (quartiles)."""

MAX_BINS = 100
"""The most bins a spec may ask for."""

CATEGORY_SEGMENTS_MAX = 50
"""A non-numeric column named alone may have at most this many distinct values (one segment each); beyond that a
segment per value is noise, and an expression should name the values of interest."""

MAX_EXPRESSION_CHARS = 2000
"""The longest expression accepted (a guard against pathological input to the parser)."""

SCORE_BINS = 64
"""Quantile bins of a binary classifier's score in the cell table of one model (fewer below 1,024 rows: a table as
large as the data only costs time). 64 bins keep a resample to about 130 cells while leaving about 1/64 of the
positive–negative pairs inside a bin."""

ERROR_BINS = 32
"""Quantile bins of a regressor's absolute error in the cell table of one model (8 below 4,096 rows)."""

TARGET_BINS = 16
"""Quantile bins of the regression target in the cell table (4 below 4,096 rows); it carries R²'s total sum of
squares."""

CELL_BUDGET = 1024
"""The largest number of joint probability bins per model for multiclass scores (``bins per class ** classes``)."""

MIN_ROWS = 50
"""Default: a segment with fewer rows is marked unreliable (its interval is too wide to act on)."""

MIN_CLASS_ROWS = 10
"""Default: a classification segment with fewer rows of some class is marked unreliable (the usual "ten events"
rule of thumb for a proportion or a rank statistic)."""

CLASSIFICATION_METRICS = ("accuracy", "balanced_accuracy", "f1", "roc_auc", "log_loss")
REGRESSION_METRICS = ("mae", "rmse", "r2")
PROBA_METRICS = frozenset({"roc_auc", "log_loss"})
METRICS: dict[str, bool] = {
    "accuracy": True,
    "balanced_accuracy": True,
    "f1": True,
    "roc_auc": True,
    "log_loss": False,
    "mae": False,
    "rmse": False,
    "r2": True,
}
"""Every metric's name and whether higher is better."""

PAIR_POOL = 5
"""Pairs are formed from this many worst single-column candidates (by p-value, of different columns)."""

_TASKS = ("classification", "regression")
_Z95 = float(stats.norm.ppf(0.975))
_MAX_BOOT = 100_000


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of ``metric`` is better (accuracy) or worse (MAE)."""
    if metric not in METRICS:
        raise ValidationError(f"unknown metric {metric!r}; known metrics: {', '.join(METRICS)}", field="metric")
    return METRICS[metric]


def default_metric(task: str) -> str:
    """The primary metric of a task when none is named: accuracy for classification, MAE for regression."""
    _check_task(task)
    return "accuracy" if task == "classification" else "mae"


# -- segments ------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Segment:
    """A named set of rows.

    Attributes:
        name: a canonical expression selecting the rows, e.g. ``plan == "basic"`` or ``30 <= age < 60``; it
            parses back (through :func:`segments_of`) to the same rows.
        spec: the user text the segment came from (``plan``, ``age:4``, ``age >= 60 and plan == "basic"``).
        mask: one boolean per row of the frame, read-only.
    """

    name: str
    spec: str
    mask: np.ndarray = field(repr=False)

    @property
    def rows(self) -> int:
        """The number of rows in the segment."""
        return int(np.count_nonzero(self.mask))

    def to_dict(self) -> dict[str, Any]:
        """Name, spec and rows (the mask is not serialised)."""
        return {"name": self.name, "spec": self.spec, "rows": self.rows}


def segments_of(frame: pd.DataFrame, specs: Sequence[str]) -> list[Segment]:
    """The segments that ``specs`` define on ``frame``, in order (see the module docstring for the syntax).

    A segment produced twice (``plan`` and ``plan == "basic"``) is kept once, at its first place.

    Example:
        >>> frame = pd.DataFrame({"age": [25, 40, 70, None], "plan": ["basic", "pro", "basic", "pro"]})
        >>> [(s.name, s.rows) for s in segments_of(frame, ["plan", "age[30, 60]", "age >= 60 and plan == 'basic'"])]
        [('plan == "basic"', 2), ('plan == "pro"', 2), ('age < 30', 1), ('30 <= age < 60', 1), ('age >= 60', 1),
         ('age is None', 1), ('age >= 60 and plan == "basic"', 1)]

    Raises:
        ValidationError: ``frame`` is not a DataFrame, a spec is not text, names an unknown column, uses
            anything outside the expression whitelist, compares values of incompatible types, or asks for a
            segment per value of a column with too many values.
    """
    if not isinstance(frame, pd.DataFrame):
        raise ValidationError(f"segments are defined on a pandas DataFrame, got {type(frame).__name__}")
    if isinstance(specs, str) or not isinstance(specs, Sequence):
        raise ValidationError("specs must be a list of segment specs (strings), e.g. ['plan', 'age:4']", field="specs")
    columns = _Columns(frame)
    out: list[Segment] = []
    seen: set[str] = set()
    for i, spec in enumerate(specs):
        if not isinstance(spec, str) or not spec.strip():
            raise ValidationError(f"segment spec #{i} must be non-empty text, got {spec!r}", field="specs")
        for segment in _parse_spec(columns, spec):
            if segment.name not in seen:
                seen.add(segment.name)
                out.append(segment)
    return out


def _segment(name: str, spec: str, mask: np.ndarray) -> Segment:
    mask = np.ascontiguousarray(mask, dtype=bool)
    mask.setflags(write=False)
    return Segment(name, spec, mask)


class _Column(NamedTuple):
    """One column, converted once for comparisons."""

    name: str
    kind: str  # numeric | bool | string | datetime | other | empty
    values: Any  # ndarray (numeric, bool, string with missing filled, other) or Series (datetime)
    missing: np.ndarray
    integer: bool  # an integer column (bin edges are rounded up to integers)
    categories: tuple[Any, ...] | None  # declared categories of a categorical column


class _Columns:
    """The frame's columns, converted on first use."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame
        self.rows = len(frame)
        self.names = [str(c) for c in frame.columns]
        if len(set(self.names)) != len(self.names):
            twice = sorted({n for n in self.names if self.names.count(n) > 1})
            raise ValidationError(f"the frame has duplicate column names {twice}; segments need unique names")
        self._by_name = {str(c): c for c in frame.columns}
        self._cache: dict[str, _Column] = {}

    def has(self, name: str) -> bool:
        return name in self._by_name

    def listing(self) -> str:
        shown = ", ".join(repr(n) for n in self.names[:50])
        return shown + (f" ... ({len(self.names)} in all)" if len(self.names) > 50 else "")

    def unknown(self, name: str, where: str) -> ValidationError:
        return ValidationError(
            f"unknown column {name!r} in segment {where!r}; the columns are: {self.listing()}", field=name
        )

    def get(self, name: str) -> _Column:
        if name not in self._cache:
            self._cache[name] = _convert(name, self.frame[self._by_name[name]])
        return self._cache[name]


def _convert(name: str, series: pd.Series) -> _Column:
    missing = series.isna().to_numpy(dtype=bool)
    dtype = series.dtype
    categories: tuple[Any, ...] | None = None
    if isinstance(dtype, pd.CategoricalDtype):
        categories = tuple(dtype.categories.tolist())
        series = series.astype(object)
        dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return _Column(name, "bool", series.to_numpy(dtype=bool, na_value=False), missing, False, categories)
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return _Column(name, "datetime", series, missing, False, categories)
    if pd.api.types.is_numeric_dtype(dtype):
        integer = pd.api.types.is_integer_dtype(dtype)
        if integer and not missing.any():
            return _Column(name, "numeric", series.to_numpy(), missing, True, categories)
        return _Column(
            name, "numeric", series.to_numpy(dtype=np.float64, na_value=np.nan), missing, integer, categories
        )
    inferred = pd.api.types.infer_dtype(series, skipna=True)
    if inferred == "empty":
        return _Column(name, "empty", np.full(len(series), None, dtype=object), missing, False, categories)
    if inferred == "string":
        values = _objects(series)
        values[missing] = ""  # a filler so that ordering comparisons never meet None; missing rows are unknown
        return _Column(name, "string", values, missing, False, categories)
    if inferred == "boolean":
        return _Column(name, "bool", series.fillna(False).to_numpy(dtype=bool), missing, False, categories)
    if inferred in ("integer", "floating", "mixed-integer-float", "decimal"):
        numeric = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        return _Column(name, "numeric", numeric, missing, inferred == "integer", categories)
    return _Column(name, "other", _objects(series), missing, False, categories)


def _objects(series: pd.Series) -> np.ndarray:
    """The values as Python objects, None where missing."""
    values = np.array(series.to_numpy(dtype=object), dtype=object)  # a writable copy
    values[series.isna().to_numpy(dtype=bool)] = None
    return values


def _column_ref(name: str) -> str:
    """How a column is written in an expression: bare when it is an identifier, else in backticks."""
    if name.isidentifier() and not keyword.iskeyword(name) and not name.startswith("__"):
        return name
    return f"`{name}`"


def _literal_text(value: Any) -> str:
    """A constant as expression text that parses back to the same value."""
    if isinstance(value, bool | np.bool_):
        return "True" if value else "False"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        v = float(value)
        if v.is_integer() and abs(v) < 1e15:
            return str(int(v))
        return repr(v)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if value is None:
        return "None"
    return json.dumps(str(value), ensure_ascii=False)


def _parse_spec(columns: _Columns, spec: str) -> list[Segment]:
    text = spec.strip()
    bare = _backticked(text)
    if columns.has(text) or (bare is not None and columns.has(bare)):
        return _column_segments(columns, columns.get(text if columns.has(text) else str(bare)), spec)
    if text.endswith("]") and "[" in text:
        head, _, tail = text[:-1].partition("[")
        name = _spec_column(columns, head.strip(), spec)
        if name is not None:
            return _column_segments(columns, columns.get(name), spec, edges=_parse_edges(tail, spec))
    if ":" in text:
        head, _, tail = text.rpartition(":")
        name = _spec_column(columns, head.strip(), spec)
        if name is not None:
            return _column_segments(columns, columns.get(name), spec, bins=_parse_bin_count(tail.strip(), spec))
    return [_expression_segment(columns, spec)]


def _backticked(text: str) -> str | None:
    if len(text) >= 2 and text[0] == "`" and text[-1] == "`" and "`" not in text[1:-1]:
        return text[1:-1]
    return None


def _spec_column(columns: _Columns, head: str, spec: str) -> str | None:
    """The column a binning spec names, None when ``head`` is not a column reference (then it is an expression)."""
    bare = _backticked(head)
    if bare is not None:
        if not columns.has(bare):
            raise columns.unknown(bare, spec)
        return bare
    if columns.has(head):
        return head
    if head.isidentifier():
        raise columns.unknown(head, spec)
    return None


def _parse_edges(text: str, spec: str) -> list[float]:
    parts = [p.strip() for p in text.split(",")]
    if not parts or any(not p for p in parts):
        raise ValidationError(f"bin edges in {spec!r} must be numbers separated by commas, e.g. age[0, 30, 60]")
    edges: list[float] = []
    for p in parts:
        try:
            value = float(p)
        except ValueError:
            raise ValidationError(f"bin edge {p!r} in {spec!r} is not a number") from None
        if not math.isfinite(value):
            raise ValidationError(f"bin edge {p!r} in {spec!r} must be finite (the outer bins are open-ended)")
        edges.append(value)
    if any(b <= a for a, b in pairwise(edges)):
        raise ValidationError(f"bin edges in {spec!r} must be strictly increasing, got {edges}")
    if len(edges) + 1 > MAX_BINS:
        raise ValidationError(f"{spec!r} asks for {len(edges) + 1} bins; at most {MAX_BINS} are allowed")
    return edges


def _parse_bin_count(text: str, spec: str) -> int:
    if not text.isdigit() or not 2 <= int(text) <= MAX_BINS:
        raise ValidationError(f"the bin count in {spec!r} must be an integer from 2 to {MAX_BINS}, got {text!r}")
    return int(text)


def _round_edge(value: float, integer: bool) -> float:
    if integer:
        return float(math.ceil(value))
    return float(f"{value:.4g}")


def _quantile_edges(present: np.ndarray, bins: int, integer: bool) -> list[float]:
    """Inner edges of ``bins`` quantile bins, rounded for readable names, without empty outer bins."""
    if present.size == 0:
        return []
    qs = np.quantile(present.astype(np.float64), np.linspace(0.0, 1.0, bins + 1)[1:-1])
    lo, hi = float(present.min()), float(present.max())
    edges = sorted({_round_edge(float(q), integer) for q in qs})
    return [e for e in edges if lo < e <= hi]


def _column_segments(
    columns: _Columns, col: _Column, spec: str, *, bins: int | None = None, edges: list[float] | None = None
) -> list[Segment]:
    ref = _column_ref(col.name)
    binned = bins is not None or edges is not None
    if col.kind == "datetime":
        raise ValidationError(
            f'column {col.name!r} holds dates; segment it with an expression such as {ref} >= "2024-01-01"',
            field=col.name,
        )
    if binned and col.kind != "numeric":
        raise ValidationError(
            f"{spec!r} bins column {col.name!r}, which is not numeric ({col.kind}); name the column alone to get a "
            "segment per value",
            field=col.name,
        )
    out: list[Segment] = []
    present_mask = ~col.missing
    if col.kind == "numeric":
        values = np.asarray(col.values)
        present = values[present_mask]
        if not binned:
            uniques = np.unique(present)
            if uniques.size <= VALUE_SEGMENTS_MAX:
                out = [_segment(f"{ref} == {_literal_text(v)}", spec, (values == v) & present_mask) for v in uniques]
            else:
                bins = DEFAULT_BINS
        if bins is not None:
            integral = col.integer or bool(np.all(np.mod(present, 1) == 0))  # e.g. ages stored as floats
            edges = _quantile_edges(present, bins, integral)
        if edges is not None:
            out = _bin_segments(ref, spec, values, present_mask, edges)
    elif col.kind == "bool":
        values = np.asarray(col.values)
        for v in (False, True):
            mask = (values == v) & present_mask
            if mask.any():
                out.append(_segment(f"{ref} == {_literal_text(v)}", spec, mask))
    elif col.kind != "empty":
        codes, labels = _factorize(np.asarray(col.values), present_mask)
        if col.categories is not None:  # every declared category, in declared order (an empty one is kept)
            labels = list(col.categories)
            codes = _recode(np.asarray(col.values), present_mask, labels)
        if len(labels) > CATEGORY_SEGMENTS_MAX:
            raise ValidationError(
                f"column {col.name!r} has {len(labels):,} distinct values; a segment per value is made for at most "
                f"{CATEGORY_SEGMENTS_MAX}. Name the values of interest in an expression, e.g. "
                f"{ref} in [{_literal_text(labels[0])}, {_literal_text(labels[1])}]",
                field=col.name,
            )
        for i, v in enumerate(labels):
            out.append(_segment(f"{ref} == {_literal_text(v)}", spec, codes == i))
    if col.missing.any():
        out.append(_segment(f"{ref} is None", spec, col.missing.copy()))
    return out


def _factorize(values: np.ndarray, present: np.ndarray) -> tuple[np.ndarray, list[Any]]:
    """Codes (-1 for missing) and the distinct present values, sorted when they can be."""
    codes, uniques = pd.factorize(values[present], sort=False)
    listed = list(uniques.tolist() if hasattr(uniques, "tolist") else uniques)
    try:
        order = sorted(range(len(listed)), key=lambda i: listed[i])
    except TypeError:
        order = list(range(len(listed)))
    rank = np.empty(len(listed), dtype=np.int64)
    rank[order] = np.arange(len(listed))
    full = np.full(values.shape[0], -1, dtype=np.int64)
    full[present] = rank[codes] if len(listed) else codes
    return full, [listed[i] for i in order]


def _recode(values: np.ndarray, present: np.ndarray, labels: list[Any]) -> np.ndarray:
    """Codes of ``values`` in the order of ``labels`` (declared categories), -1 for missing."""
    index = pd.Index(labels, dtype=object)
    full = np.full(values.shape[0], -1, dtype=np.int64)
    full[present] = index.get_indexer(values[present])
    return full


def _bin_segments(ref: str, spec: str, values: np.ndarray, present: np.ndarray, edges: list[float]) -> list[Segment]:
    if not edges:
        return [_segment(f"{ref} is not None", spec, present.copy())]
    with np.errstate(invalid="ignore"):
        out = [_segment(f"{ref} < {_literal_text(edges[0])}", spec, (values < edges[0]) & present)]
        for lo, hi in pairwise(edges):
            name = f"{_literal_text(lo)} <= {ref} < {_literal_text(hi)}"
            out.append(_segment(name, spec, (values >= lo) & (values < hi) & present))
        out.append(_segment(f"{ref} >= {_literal_text(edges[-1])}", spec, (values >= edges[-1]) & present))
    return out


# -- expressions ---------------------------------------------------------------------------------------------
class _Truth(NamedTuple):
    """A three-valued condition: ``true`` where it holds, ``known`` where it is not unknown."""

    true: np.ndarray
    known: np.ndarray


class _Literal(NamedTuple):
    value: Any
    kind: str  # numeric | bool | string | none


_COMPARE: dict[type[ast.cmpop], tuple[str, Callable[[Any, Any], Any]]] = {
    ast.Eq: ("==", operator.eq),
    ast.NotEq: ("!=", operator.ne),
    ast.Lt: ("<", operator.lt),
    ast.LtE: ("<=", operator.le),
    ast.Gt: (">", operator.gt),
    ast.GtE: (">=", operator.ge),
}
_OTHER_OPS: dict[type[ast.cmpop], str] = {ast.In: "in", ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not"}

_REFUSED: dict[type[ast.AST], str] = {
    ast.Call: "function calls",
    ast.Attribute: "attribute access",
    ast.Subscript: "indexing",
    ast.Lambda: "lambdas",
    ast.BinOp: "arithmetic",
    ast.IfExp: "conditional expressions",
    ast.ListComp: "comprehensions",
    ast.SetComp: "comprehensions",
    ast.DictComp: "comprehensions",
    ast.GeneratorExp: "comprehensions",
    ast.Dict: "dicts",
    ast.NamedExpr: "assignments",
    ast.Starred: "unpacking",
    ast.JoinedStr: "f-strings",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
    ast.Slice: "slices",
}

_ALLOWED_TEXT = (
    "allowed are column names, constants, comparisons (== != < <= > >=, chained), `in` / `not in` a list of "
    "constants, `is None` / `is not None`, and `and` / `or` / `not`"
)


def _numericish(kind: str) -> bool:
    return kind in ("numeric", "bool")


class _Expression:
    """One expression: parsed, checked against the whitelist and evaluated on the frame's columns."""

    def __init__(self, columns: _Columns, spec: str) -> None:
        self.columns = columns
        self.spec = spec.strip()
        if len(self.spec) > MAX_EXPRESSION_CHARS:
            raise ValidationError(
                f"segment expression is {len(self.spec):,} characters long; "
                f"at most {MAX_EXPRESSION_CHARS:,} are allowed"
            )
        self.text, self.placeholders = _replace_backticks(self.spec)
        try:
            self.tree = ast.parse(self.text, mode="eval")
        except SyntaxError as exc:
            raise ValidationError(
                f"segment {self.spec!r} is not a valid expression: {exc.msg}; {_ALLOWED_TEXT}"
            ) from None
        except (RecursionError, MemoryError, ValueError):
            raise ValidationError(f"segment {self.spec!r} is too deeply nested to parse") from None

    # -- text -------------------------------------------------------------------------------------------------
    def piece(self, node: ast.AST) -> str:
        segment = ast.get_source_segment(self.text, node) or type(node).__name__
        for placeholder, name in self.placeholders.items():
            segment = segment.replace(placeholder, f"`{name}`")
        return segment

    def refuse(self, node: ast.AST, what: str | None = None) -> ValidationError:
        label = what or _REFUSED.get(type(node), f"{type(node).__name__} nodes")
        return ValidationError(
            f"{label} are not allowed in a segment expression: `{self.piece(node)}` in {self.spec!r}; {_ALLOWED_TEXT}"
        )

    def render(self, node: ast.AST, parent: int = 0) -> str:
        if isinstance(node, ast.BoolOp):
            own = 1 if isinstance(node.op, ast.Or) else 2
            text = (" or " if own == 1 else " and ").join(self.render(v, own) for v in node.values)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            own = 3
            inner = self.render(node.operand, own)
            text = f"not ({inner})" if isinstance(node.operand, ast.Compare) else f"not {inner}"  # readability
        elif isinstance(node, ast.Compare):
            own = 4
            parts = [self.render(node.left, 5)]
            for op, right in zip(node.ops, node.comparators, strict=True):
                symbol = _COMPARE[type(op)][0] if type(op) in _COMPARE else _OTHER_OPS[type(op)]
                parts += [symbol, self.render(right, 5)]
            text = " ".join(parts)
        elif isinstance(node, ast.Name):
            return _column_ref(self.column_name(node))
        elif isinstance(node, ast.List | ast.Tuple | ast.Set):
            return "[" + ", ".join(self.render(e, 5) for e in node.elts) + "]"
        else:
            return _literal_text(self.literal(node).value)
        return f"({text})" if own < parent else text

    # -- evaluation -------------------------------------------------------------------------------------------
    def column_name(self, node: ast.Name) -> str:
        name = self.placeholders.get(node.id, node.id)
        if node.id not in self.placeholders and node.id.startswith("__"):
            raise ValidationError(
                f"names starting with '__' are not allowed in a segment expression: `{node.id}` in {self.spec!r}"
            )
        if not self.columns.has(name):
            raise self.columns.unknown(name, self.spec)
        return name

    def literal(self, node: ast.AST) -> _Literal:
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            inner = self.literal(node.operand)
            if inner.kind != "numeric":
                raise self.refuse(node, "signs on non-numbers")
            return _Literal(-inner.value if isinstance(node.op, ast.USub) else inner.value, "numeric")
        if isinstance(node, ast.Constant):
            value = node.value
            if value is None:
                return _Literal(None, "none")
            if isinstance(value, bool):
                return _Literal(value, "bool")
            if isinstance(value, int | float) and not isinstance(value, complex):
                if isinstance(value, float) and not math.isfinite(value):
                    raise self.refuse(node, "non-finite numbers")
                return _Literal(value, "numeric")
            if isinstance(value, str):
                return _Literal(value, "string")
            raise self.refuse(node, f"{type(value).__name__} constants")
        raise self.refuse(node)

    def operand(self, node: ast.AST) -> _Column | _Literal:
        if isinstance(node, ast.Name):
            return self.columns.get(self.column_name(node))
        if isinstance(node, ast.List | ast.Tuple | ast.Set):
            raise self.refuse(node, "lists outside `in` / `not in`")
        return self.literal(node)

    def evaluate(self) -> np.ndarray:
        truth = self.condition(self.tree.body)
        return np.asarray(truth.true & truth.known, dtype=bool)

    def condition(self, node: ast.AST) -> _Truth:
        if isinstance(node, ast.BoolOp):
            parts = [self.condition(v) for v in node.values]
            out = parts[0]
            for p in parts[1:]:
                out = _and(out, p) if isinstance(node.op, ast.And) else _or(out, p)
            return out
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            inner = self.condition(node.operand)
            return _Truth(~inner.true & inner.known, inner.known)
        if isinstance(node, ast.Compare):
            parts = []
            left = node.left
            for op, right in zip(node.ops, node.comparators, strict=True):
                parts.append(self.compare(op, left, right, node))
                left = right
            out = parts[0]
            for p in parts[1:]:
                out = _and(out, p)
            return out
        if isinstance(node, ast.Name):
            col = self.columns.get(self.column_name(node))
            if col.kind != "bool":
                raise ValidationError(
                    f"column {col.name!r} is {col.kind}, not boolean; compare it in {self.spec!r}, e.g. "
                    f"{_column_ref(col.name)} == ...",
                    field=col.name,
                )
            return _Truth(np.asarray(col.values, dtype=bool) & ~col.missing, ~col.missing)
        if isinstance(node, ast.Constant | ast.UnaryOp):
            raise ValidationError(f"`{self.piece(node)}` in {self.spec!r} is a constant, not a condition on columns")
        raise self.refuse(node)

    def compare(self, op: ast.cmpop, left_node: ast.AST, right_node: ast.AST, node: ast.Compare) -> _Truth:
        n = self.columns.rows
        if isinstance(op, ast.In | ast.NotIn):
            left = self.operand(left_node)
            if not isinstance(left, _Column):
                raise ValidationError(f"the left side of `{self.piece(node)}` in {self.spec!r} must be a column")
            if not isinstance(right_node, ast.List | ast.Tuple | ast.Set):
                raise ValidationError(
                    f"the right side of `{self.piece(node)}` in {self.spec!r} must be a list of constants, e.g. "
                    '["a", "b"]'
                )
            items = [self.literal(e) for e in right_node.elts]
            for item in items:
                if item.kind == "none":
                    raise ValidationError(
                        f"None inside a list in {self.spec!r}: missing values are matched with `is None`, e.g. "
                        f"({_column_ref(left.name)} in [...] or {_column_ref(left.name)} is None)"
                    )
                self.check_kinds(left, item, node)
            found = self.isin(left, [item.value for item in items])
            known = ~left.missing
            if isinstance(op, ast.NotIn):
                found = ~found
            return _Truth(found & known, known)
        left, right = self.operand(left_node), self.operand(right_node)
        if isinstance(op, ast.Is | ast.IsNot):
            col, other = (left, right) if isinstance(left, _Column) else (right, left)
            if not isinstance(col, _Column) or not isinstance(other, _Literal) or other.kind != "none":
                raise ValidationError(
                    f"`is` / `is not` compare a column with None only: `{self.piece(node)}` in {self.spec!r}; "
                    "use == or != for values"
                )
            missing = col.missing.copy()
            return _Truth(missing if isinstance(op, ast.Is) else ~missing, np.ones(n, dtype=bool))
        if type(op) not in _COMPARE:
            raise self.refuse(node, f"the operator {type(op).__name__}")
        symbol, fn = _COMPARE[type(op)]
        for side in (left, right):
            if isinstance(side, _Literal) and side.kind == "none":
                raise ValidationError(
                    f"`{self.piece(node)}` in {self.spec!r} compares with None; write `is None` or `is not None`"
                )
        if isinstance(left, _Literal) and isinstance(right, _Literal):
            raise ValidationError(f"`{self.piece(node)}` in {self.spec!r} compares two constants, not a column")
        known = np.ones(n, dtype=bool)
        for side in (left, right):
            if isinstance(side, _Column):
                known &= ~side.missing
        self.check_kinds(left, right, node)
        a, b = self.comparable(left, right), self.comparable(right, left)
        try:
            with np.errstate(invalid="ignore"):
                result = fn(a, b)
        except TypeError as exc:
            raise ValidationError(
                f"cannot compare the values in `{self.piece(node)}` in {self.spec!r} with {symbol}: {exc}"
            ) from None
        true = np.asarray(result, dtype=bool)
        return _Truth(true & known, known)

    def comparable(self, side: _Column | _Literal, other: _Column | _Literal) -> Any:
        if isinstance(side, _Column):
            return side.values
        if isinstance(other, _Column) and other.kind == "datetime":
            return self.timestamp(side.value, other)
        return side.value

    def timestamp(self, value: Any, col: _Column) -> pd.Timestamp:
        try:
            stamp = pd.Timestamp(value)
        except (TypeError, ValueError):
            raise ValidationError(
                f"{value!r} in {self.spec!r} is not a date, and column {col.name!r} holds dates", field=col.name
            ) from None
        tz = getattr(col.values.dtype, "tz", None)
        if tz is not None and stamp.tzinfo is None:
            stamp = stamp.tz_localize(tz)
        return stamp

    def check_kinds(self, left: _Column | _Literal, right: _Column | _Literal, node: ast.AST) -> None:
        kinds = {left.kind, right.kind}
        if "other" in kinds or "empty" in kinds or len(kinds) == 1 or all(_numericish(k) for k in kinds):
            return
        if kinds == {"datetime", "string"} and isinstance(left if left.kind == "string" else right, _Literal):
            return
        raise ValidationError(
            f"`{self.piece(node)}` in {self.spec!r} compares {_describe(left)} with {_describe(right)}",
            field=next((s.name for s in (left, right) if isinstance(s, _Column)), None),
        )

    def isin(self, col: _Column, items: list[Any]) -> np.ndarray:
        if col.kind == "datetime":
            stamps = [self.timestamp(v, col) for v in items]
            return np.asarray(col.values.isin(stamps).to_numpy(), dtype=bool)
        if not items:
            return np.zeros(self.columns.rows, dtype=bool)
        return np.asarray(pd.Series(col.values, copy=False).isin(items).to_numpy(), dtype=bool)


def _describe(side: _Column | _Literal) -> str:
    if isinstance(side, _Column):
        return f"column {side.name!r} ({side.kind})"
    return f"{side.value!r} ({'text' if side.kind == 'string' else side.kind})"


def _and(a: _Truth, b: _Truth) -> _Truth:
    return _Truth(a.true & b.true, (a.known & b.known) | (a.known & ~a.true) | (b.known & ~b.true))


def _or(a: _Truth, b: _Truth) -> _Truth:
    return _Truth(a.true | b.true, (a.known & b.known) | a.true | b.true)


def _replace_backticks(text: str) -> tuple[str, dict[str, str]]:
    """Replace each `quoted column` outside string literals by a placeholder identifier."""
    base = "_keel_column_"
    while base in text:
        base = "_" + base
    out: list[str] = []
    names: dict[str, str] = {}
    i, quote = 0, ""
    while i < len(text):
        ch = text[i]
        if quote:
            out.append(ch)
            if ch == "\\" and i + 1 < len(text):
                out.append(text[i + 1])
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
            out.append(ch)
        elif ch == "`":
            end = text.find("`", i + 1)
            if end < 0:
                raise ValidationError(f"unclosed backtick in segment {text!r}")
            placeholder = f"{base}{len(names)}"
            names[placeholder] = text[i + 1 : end]
            out.append(placeholder)
            i = end
        else:
            out.append(ch)
        i += 1
    return "".join(out), names


def _expression_segment(columns: _Columns, spec: str) -> Segment:
    expression = _Expression(columns, spec)
    mask = expression.evaluate()
    return _segment(expression.render(expression.tree.body), spec, mask)


# -- validated inputs ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Inputs:
    """Validated, encoded inputs of one or two models scored on the same rows."""

    task: str
    rows: int
    y: np.ndarray  # class codes (classification) or float64 targets
    preds: tuple[np.ndarray, ...]  # class codes or float64 predictions, one per model
    probas: tuple[np.ndarray | None, ...]  # (rows, k) probabilities, one per model
    classes: tuple[Any, ...]  # empty for regression

    @property
    def k(self) -> int:
        return len(self.classes)


def _check_task(task: Any) -> None:
    if task not in _TASKS:
        raise ValidationError(f"task must be 'classification' or 'regression', not {task!r}", field="task")


def _vector(values: Any, name: str, rows: int | None = None) -> np.ndarray:
    if isinstance(values, pd.DataFrame):
        if values.shape[1] != 1:
            raise ValidationError(f"{name} must be one column, got a frame of {values.shape[1]} columns", field=name)
        values = values.iloc[:, 0]
    array = values.to_numpy() if isinstance(values, pd.Series | pd.Index) else np.asarray(values)
    if array.ndim != 1:
        raise ValidationError(f"{name} must be one-dimensional, got shape {array.shape}", field=name)
    if rows is not None and array.shape[0] != rows:
        raise ValidationError(f"{name} has {array.shape[0]:,} rows but y_true has {rows:,}", field=name)
    return array


def _show(value: Any) -> Any:
    """A value as Python shows it (``1``, not ``np.int64(1)``), for messages."""
    return value.item() if isinstance(value, np.generic) else value


def _first_true(flags: np.ndarray) -> int:
    return int(np.flatnonzero(flags)[0])


def _floats(array: np.ndarray, name: str) -> np.ndarray:
    if array.dtype.kind in "biuf":
        out = array.astype(np.float64, copy=False)
    else:
        out = pd.to_numeric(pd.Series(array), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(out)
    if bad.any():
        row = _first_true(bad)
        raise ValidationError(
            f"{name} must hold finite numbers; row {row} is {_show(array[row])!r}", field=name, row=row
        )
    return out


def _labels(array: np.ndarray, name: str) -> np.ndarray:
    missing = pd.isna(array)
    if np.any(missing):
        row = _first_true(np.asarray(missing))
        raise ValidationError(f"{name} has a missing label at row {row}", field=name, row=row)
    return array


def _inputs(
    task: Any,
    y_true: Any,
    preds: Sequence[tuple[str, Any]],
    probas: Sequence[tuple[str, Any]],
    classes: Sequence[Any] | None,
) -> _Inputs:
    _check_task(task)
    y = _vector(y_true, "y_true")
    rows = y.shape[0]
    if rows == 0:
        raise ValidationError("y_true is empty: there are no scored rows to analyse", field="y_true")
    raw = [(name, _vector(p, name, rows)) for name, p in preds]
    if task == "regression":
        for name, proba in probas:
            if proba is not None:
                raise ValidationError(f"{name} is for classifiers; a regression has no probabilities", field=name)
        return _Inputs(task, rows, _floats(y, "y_true"), tuple(_floats(p, n) for n, p in raw), (None,) * len(raw), ())
    y = _labels(y, "y_true")
    raw = [(name, _labels(p, name)) for name, p in raw]
    ordered = _classes(classes, [y, *(p for _, p in raw)])
    index = pd.Index(ordered, dtype=object)
    codes = []
    for name, array in [("y_true", y), *raw]:
        found = index.get_indexer(pd.Index(array, dtype=object))
        if (found < 0).any():
            row = _first_true(found < 0)
            raise ValidationError(
                f"{name} has label {_show(array[row])!r} at row {row}, which is not one of the classes {list(ordered)}",
                field=name,
                row=row,
            )
        codes.append(found.astype(np.int64))
    checked = tuple(_proba(name, proba, rows, ordered) for name, proba in probas)
    return _Inputs(task, rows, codes[0], tuple(codes[1:]), checked, tuple(ordered))


def _classes(classes: Sequence[Any] | None, arrays: Iterable[np.ndarray]) -> list[Any]:
    if classes is not None:
        if isinstance(classes, str) or not isinstance(classes, Sequence | np.ndarray):
            raise ValidationError(f"classes must be a list of labels, got {classes!r}", field="classes")
        ordered = [c.item() if isinstance(c, np.generic) else c for c in classes]
        if len(set(ordered)) != len(ordered):
            raise ValidationError(f"classes has duplicates: {ordered}", field="classes")
    else:
        found: set[Any] = set()
        for array in arrays:
            found.update(pd.unique(pd.Series(array, copy=False)).tolist())
        try:
            ordered = sorted(found)
        except TypeError:
            raise ValidationError(
                f"labels of different types cannot be ordered ({sorted(map(repr, found))}); pass classes= in the "
                "column order of predict_proba",
                field="classes",
            ) from None
    if len(ordered) < 2:
        raise ValidationError(
            f"classification needs at least two classes, found {ordered}; pass classes=[...] with every class the "
            "model knows",
            field="classes",
        )
    return ordered


def _proba(name: str, proba: Any, rows: int, classes: list[Any]) -> np.ndarray | None:
    if proba is None:
        return None
    array = proba.to_numpy() if isinstance(proba, pd.DataFrame | pd.Series) else np.asarray(proba)
    try:
        array = array.astype(np.float64, copy=False)
    except (TypeError, ValueError):
        raise ValidationError(f"{name} must hold probabilities (numbers)", field=name) from None
    k = len(classes)
    if array.ndim == 1:
        if k != 2:
            raise ValidationError(
                f"{name} is one column, which only fits a binary classifier; there are {k} classes {classes}",
                field=name,
            )
        array = np.column_stack([1.0 - array, array])
    if array.ndim != 2 or array.shape[0] != rows:
        raise ValidationError(f"{name} must have shape ({rows}, {k}), got {array.shape}", field=name)
    if array.shape[1] != k:
        raise ValidationError(
            f"{name} has {array.shape[1]} columns but there are {k} classes {classes}; pass classes= in the column "
            "order of predict_proba",
            field=name,
        )
    bad = ~np.isfinite(array).all(axis=1) | (array < 0).any(axis=1) | (array > 1).any(axis=1)
    if bad.any():
        row = _first_true(bad)
        raise ValidationError(
            f"{name} must hold probabilities in [0, 1]; row {row} is {array[row].tolist()}", field=name, row=row
        )
    off = np.abs(array.sum(axis=1) - 1.0) > 1e-4
    if off.any():
        row = _first_true(off)
        raise ValidationError(
            f"{name} rows must sum to 1; row {row} sums to {array[row].sum():.6g}", field=name, row=row
        )
    return array


def _metric_names(task: str, metrics: Sequence[str] | None, has_proba: bool) -> tuple[str, ...]:
    known = CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS
    if metrics is None:
        return tuple(m for m in known if has_proba or m not in PROBA_METRICS)
    if isinstance(metrics, str):
        metrics = [metrics]
    out: list[str] = []
    for m in metrics:
        _check_metric(task, m, has_proba)
        if m not in out:
            out.append(m)
    if not out:
        raise ValidationError("metrics is empty; name at least one metric or pass None for the defaults")
    return tuple(out)


def _check_metric(task: str, metric: Any, has_proba: bool) -> None:
    known = CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS
    if metric not in known:
        raise ValidationError(f"unknown {task} metric {metric!r}; known: {', '.join(known)}", field="metric")
    if metric in PROBA_METRICS and not has_proba:
        raise ValidationError(f"metric {metric!r} needs predicted probabilities (proba=...)", field="metric")


def _check_int(value: Any, name: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low or (high and value > high):
        bound = f"from {low} to {high:,}" if high else f"at least {low}"
        raise ValidationError(f"{name} must be an integer {bound}, got {value!r}", field=name)
    return int(value)


def _check_fraction(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise ValidationError(f"{name} must be a number strictly between 0 and 1, got {value!r}", field=name)
    return float(value)


def _check_segments(segments: Any, rows: int) -> list[Segment]:
    if isinstance(segments, Segment) or not isinstance(segments, Sequence):
        raise ValidationError("segments must be a list of Segment (from segments_of)", field="segments")
    out = list(segments)
    names: set[str] = set()
    for s in out:
        if not isinstance(s, Segment):
            raise ValidationError(f"segments must hold Segment objects, got {type(s).__name__}", field="segments")
        if s.mask.shape != (rows,):
            raise ValidationError(
                f"segment {s.name!r} has a mask of {s.mask.shape[0]:,} rows but there are {rows:,} scored rows",
                field="segments",
            )
        if s.name in names or s.name == "overall":
            raise ValidationError(f"segment name {s.name!r} appears twice (or is reserved)", field="segments")
        names.add(s.name)
    return out


# -- cell tables ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _ScoreBins:
    """One score ranked for ROC AUC: a model's probability of one class, in quantile bins over all rows."""

    model: int
    cls: int
    n_bins: int
    order: np.ndarray  # argsort of the score
    positive: np.ndarray  # in score order: y == cls
    bins: np.ndarray  # in score order: the bin of each row (non-decreasing)
    ties: np.ndarray  # in score order: the tie group of each row (non-decreasing; equal scores share one)
    cell_bin: np.ndarray  # (cells,) bin of each cell
    cell_positive: np.ndarray  # (cells,) bool


@dataclass(frozen=True)
class _Layout:
    """The cells of every row, shared by all segments of one analysis."""

    inputs: _Inputs
    cell: np.ndarray  # (rows,) cell of each row
    n_cells: int
    cell_y: np.ndarray  # (cells,) class code (classification)
    cell_pred: tuple[np.ndarray, ...]  # (cells,) predicted class code per model (classification)
    values: tuple[np.ndarray, ...]  # d columns of per-row values, summed with moment correction
    columns: dict[str, int]  # value name ("loss0", "abs1", "sq0", "y", "y2") -> column of `values`
    scores: tuple[_ScoreBins, ...]


def _quantile_codes(x: np.ndarray, bins: int) -> tuple[np.ndarray, int]:
    """Quantile bin of each value (ties share a bin) and the number of bins."""
    if bins <= 1 or x.size == 0:
        return np.zeros(x.size, dtype=np.int64), 1
    sample = x
    if x.size > 200_000:  # edges from an evenly spaced subsample: still valid bins, a bit less even
        sample = x[:: x.size // 100_000]
    edges = np.unique(np.quantile(sample, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
    return np.searchsorted(edges, x, side="right").astype(np.int64), edges.size + 1


def _layout(inputs: _Inputs, metrics: Iterable[str]) -> _Layout:
    names = set(metrics)
    models = len(inputs.preds)
    rows = inputs.rows
    parts: list[tuple[np.ndarray, int]] = []
    values: list[np.ndarray] = []
    columns: dict[str, int] = {}
    score_parts: list[tuple[int, int, np.ndarray, np.ndarray, np.ndarray, int]] = []
    if inputs.task == "classification":
        k = inputs.k
        parts.append((inputs.y, k))
        parts += [(p, k) for p in inputs.preds]
        if names & PROBA_METRICS:
            scored = [1] if k == 2 else list(range(k))
            # fewer bins for few rows: a table about as large as the data would only cost time
            per_model = min(SCORE_BINS, max(8, rows // 16)) if k == 2 else max(2, int(CELL_BUDGET ** (1 / k)))
            if models > 1:
                per_model = 16 if k == 2 else 2
            for m, proba in enumerate(inputs.probas):
                assert proba is not None
                for c in scored:
                    codes, n_bins = _quantile_codes(proba[:, c], per_model)
                    parts.append((codes, n_bins))
                    score_parts.append((m, c, proba[:, c], inputs.y == c, codes, n_bins))
                if "log_loss" in names:
                    eps = np.finfo(np.float64).eps
                    p_true = np.clip(proba[np.arange(rows), inputs.y], eps, 1 - eps)
                    columns[f"loss{m}"] = len(values)
                    values.append(-np.log(p_true))
    else:
        small = rows < 4096  # a table about as large as the data would only cost time
        error_bins = (8 if small else ERROR_BINS) if models == 1 else (4 if small else 12)
        for m, pred in enumerate(inputs.preds):
            error = inputs.y - pred
            absolute = np.abs(error)
            parts.append(_quantile_codes(absolute, error_bins))
            if "mae" in names:
                columns[f"abs{m}"] = len(values)
                values.append(absolute)
            if names & {"rmse", "r2"}:
                columns[f"sq{m}"] = len(values)
                values.append(error * error)
        if "r2" in names:
            centred = inputs.y - inputs.y.mean()  # R² is shift invariant; centring avoids cancellation
            parts.append(
                _quantile_codes(inputs.y, (4 if small else TARGET_BINS) if models == 1 else (3 if small else 6))
            )
            columns["y"], columns["y2"] = len(values), len(values) + 1
            values += [centred, centred * centred]
    cell, n_cells = _combine(parts, rows)
    cell_y = np.zeros(n_cells, dtype=np.int64)
    cell_pred: list[np.ndarray] = []
    if inputs.task == "classification":
        cell_y[cell] = inputs.y
        for p in inputs.preds:
            attr = np.zeros(n_cells, dtype=np.int64)
            attr[cell] = p
            cell_pred.append(attr)
    scores = []
    for m, c, score, positive, codes, n_bins in score_parts:
        cell_bin = np.zeros(n_cells, dtype=np.int64)
        cell_bin[cell] = codes
        cell_positive = np.zeros(n_cells, dtype=bool)
        cell_positive[cell] = positive
        order = np.argsort(score)
        ranked = score[order]
        ties = np.concatenate([np.zeros(1, np.int32), np.cumsum(ranked[1:] != ranked[:-1], dtype=np.int32)])
        # compact dtypes: each segment compresses these three, and the copies are memory-bound
        bins_ranked = codes[order].astype(np.int16)
        scores.append(_ScoreBins(m, c, n_bins, order, positive[order], bins_ranked, ties, cell_bin, cell_positive))
    return _Layout(inputs, cell, n_cells, cell_y, tuple(cell_pred), tuple(values), columns, tuple(scores))


def _combine(parts: list[tuple[np.ndarray, int]], rows: int) -> tuple[np.ndarray, int]:
    """Dense cell ids of the rows' combinations of codes."""
    key = np.zeros(rows, dtype=np.int64)
    space = 1
    for codes, size in parts:
        if space * size > 2**40:
            key, space = _dense(key, space)
        key = key * size + codes
        space *= size
    return _dense(key, space)


def _dense(key: np.ndarray, space: int) -> tuple[np.ndarray, int]:
    if space <= 4 * key.size + 1024:
        occupied = np.bincount(key, minlength=space) > 0
        lookup = (np.cumsum(occupied) - 1).astype(np.int32)
        return lookup[key], int(occupied.sum())
    uniques, inverse = np.unique(key, return_inverse=True)
    return inverse.astype(np.int32), int(uniques.size)


@dataclass(frozen=True)
class _Table:
    """The cell table of one segment."""

    rows: int
    cells: np.ndarray  # (J,) the occupied cells (global ids)
    counts: np.ndarray  # (J,) rows per cell
    mean: np.ndarray | None  # (J, d) mean of each value per cell
    cov: np.ndarray | None  # (J, d * d) within-cell covariance of the values
    concordance: tuple[_WithinBins, ...]  # per score of the layout: its within-bin pairs
    within_share: float  # the largest share of positive–negative pairs inside one bin, over the scores


def _table(layout: _Layout, mask: np.ndarray | None) -> _Table:
    # positions then take(): one scan of the mask instead of one per array (several times faster)
    where = None if mask is None else np.flatnonzero(mask)
    cell = layout.cell if where is None else layout.cell.take(where)
    rows = int(cell.size)
    full = np.bincount(cell, minlength=layout.n_cells)
    cells = np.flatnonzero(full)
    counts = full[cells]
    mean = cov = None
    if layout.values:
        local = (np.cumsum(full > 0) - 1)[cell]
        d = len(layout.values)
        mean = np.empty((cells.size, d))
        centred = []
        for j, column in enumerate(layout.values):
            v = column if where is None else column.take(where)
            mean[:, j] = np.bincount(local, weights=v, minlength=cells.size) / counts
            centred.append(v - mean[local, j])  # two passes: no cancellation in the within-cell variance
        cov = np.empty((cells.size, d * d))
        for a in range(d):
            for b in range(a, d):
                c = np.bincount(local, weights=centred[a] * centred[b], minlength=cells.size)
                cov[:, a * d + b] = cov[:, b * d + a] = c / counts
    concordance: list[_WithinBins] = []
    share = 0.0
    for sb in layout.scores:
        if mask is None:
            positive, bins, ties = sb.positive, sb.bins, sb.ties
        else:
            ranked = np.flatnonzero(mask[sb.order])
            positive, bins, ties = sb.positive.take(ranked), sb.bins.take(ranked), sb.ties.take(ranked)
        within = _within_bin_concordance(positive, bins, ties, sb.n_bins)
        concordance.append(within)
        share = max(share, within.share)
    return _Table(rows, cells, counts, mean, cov, tuple(concordance), share)


class _WithinBins(NamedTuple):
    """The positive–negative pairs inside each bin of one score on one segment.

    ``w`` is the share of a bin's pairs in order (ties one half): the mean of the pair kernel ``h``. The other three
    are the variance components of the two-sample U-statistic ``S = Σ_a Σ_c h(X_a, Y_c)`` over ``m`` positives and
    ``n`` negatives drawn from the bin: ``Var S = m n ((n - 1) ζ10 + (m - 1) ζ01 + ζ11)`` (Hoeffding, 1948), where
    ``ζ10`` is the variance over the positives of their share of the bin's negatives below them, ``ζ01`` the same
    over the negatives, ``ζ11`` the variance of ``h`` over all pairs.
    """

    w: np.ndarray
    z10: np.ndarray
    z01: np.ndarray
    z11: np.ndarray
    share: float  # the share of all positive–negative pairs that lie inside one bin


def _within_bin_concordance(positive: np.ndarray, bins: np.ndarray, ties: np.ndarray, n_bins: int) -> _WithinBins:
    """The within-bin pairs of one segment's rows, given in score order: ``bins`` and ``ties`` (tie groups) are
    non-decreasing."""
    rows = positive.size
    if rows == 0:
        zero = np.zeros(n_bins)
        return _WithinBins(zero, zero, zero, zero, 0.0)
    starts = np.flatnonzero(np.concatenate([[True], ties[1:] != ties[:-1]]))
    group_neg = np.add.reduceat(~positive, starts, dtype=np.int64)
    group_pos = np.diff(np.append(starts, rows)) - group_neg
    group_bin = bins[starts]
    neg_before = np.cumsum(group_neg) - group_neg  # negatives ranked strictly below each tie group
    pos_before = np.cumsum(group_pos) - group_pos
    first = np.searchsorted(group_bin, np.arange(n_bins), side="left")  # the first group of each bin
    bin_neg_before = np.append(neg_before, neg_before[-1] + group_neg[-1])[first][group_bin]
    bin_pos_before = np.append(pos_before, pos_before[-1] + group_pos[-1])[first][group_bin]
    pos = np.bincount(group_bin, weights=group_pos, minlength=n_bins)
    neg = np.bincount(group_bin, weights=group_neg, minlength=n_bins)
    below = neg_before - bin_neg_before  # per group: the bin's negatives below it
    above = pos[group_bin] - (pos_before - bin_pos_before) - group_pos  # the bin's positives above it
    strict = np.bincount(group_bin, weights=group_pos * below, minlength=n_bins)
    tied = np.bincount(group_bin, weights=group_pos * group_neg, minlength=n_bins)
    pairs = pos * neg
    filled = pairs > 0
    w = np.zeros(n_bins)
    np.divide(strict + 0.5 * tied, pairs, out=w, where=filled)
    placed_pos = np.divide(below + 0.5 * group_neg, neg[group_bin], out=np.zeros(starts.size), where=neg[group_bin] > 0)
    placed_neg = np.divide(above + 0.5 * group_pos, pos[group_bin], out=np.zeros(starts.size), where=pos[group_bin] > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        second_pos = np.bincount(group_bin, weights=group_pos * placed_pos**2, minlength=n_bins) / pos
        second_neg = np.bincount(group_bin, weights=group_neg * placed_neg**2, minlength=n_bins) / neg
        second_h = (strict + 0.25 * tied) / pairs
    z10 = np.where(filled, np.maximum(second_pos - w**2, 0.0), 0.0)
    z01 = np.where(filled, np.maximum(second_neg - w**2, 0.0), 0.0)
    z11 = np.where(filled, np.maximum(second_h - w**2, 0.0), 0.0)
    total = pos.sum() * neg.sum()
    return _WithinBins(w, z10, z01, z11, float(pairs.sum() / total) if total > 0 else 0.0)


class _Draws:
    """Cell counts (and value sums) of R resamples of one table; R = 1 for the observed rows."""

    def __init__(
        self,
        layout: _Layout,
        table: _Table,
        counts: np.ndarray,
        noise: np.ndarray | None,
        pair_noise: np.ndarray | None = None,
    ) -> None:
        self.layout = layout
        self.table = table
        self.counts = counts  # (R, J) float64
        self.pair_noise = pair_noise  # (R, scores) standard normal draws for the within-bin pairs, None if observed
        self.n = counts.sum(axis=1)
        self.sums: np.ndarray | None = None
        if table.mean is not None and table.cov is not None:
            sums = counts @ table.mean
            if noise is not None:
                sums = sums + _correlated_noise(counts @ table.cov, noise)
            self.sums = sums
        self._cache: dict[tuple[str, int], np.ndarray] = {}

    def group(self, key: str, model: int, groups: np.ndarray, size: int) -> np.ndarray:
        """The counts summed by a per-cell group (e.g. confusion cell), cached per key."""
        if (key, model) not in self._cache:
            self._cache[(key, model)] = _group_sum(self.counts, groups, size)
        return self._cache[(key, model)]


def _correlated_noise(cov_flat: np.ndarray, z: np.ndarray) -> np.ndarray:
    d = z.shape[1]
    if d == 1:
        return np.asarray(np.sqrt(np.maximum(cov_flat, 0.0)) * z)
    cov = cov_flat.reshape(-1, d, d)
    eigval, eigvec = np.linalg.eigh(cov)
    root = eigvec * np.sqrt(np.maximum(eigval, 0.0))[:, None, :]
    return np.asarray(np.einsum("rij,rj->ri", root, z))


def _group_sum(counts: np.ndarray, groups: np.ndarray, size: int) -> np.ndarray:
    j = groups.size
    indicator = sparse.csr_matrix((np.ones(j), (np.arange(j), groups)), shape=(j, size))
    return np.asarray(indicator.T @ counts.T).T


def _observed(layout: _Layout, table: _Table) -> _Draws:
    return _Draws(layout, table, table.counts[None, :].astype(np.float64), None)


def _resampled(layout: _Layout, table: _Table, n_boot: int, rng: np.random.Generator) -> _Draws:
    counts = rng.multinomial(table.rows, table.counts / table.rows, size=n_boot).astype(np.float64)
    noise = rng.standard_normal((n_boot, table.mean.shape[1])) if table.mean is not None else None
    pair_noise = rng.standard_normal((n_boot, len(layout.scores))) if layout.scores else None
    return _Draws(layout, table, counts, noise, pair_noise)


def _rng(seed: int, name: str | None) -> np.random.Generator:
    return np.random.default_rng([seed, 2**32 if name is None else zlib.crc32(name.encode())])


# -- metrics from cell counts --------------------------------------------------------------------------------
def _confusion(draws: _Draws, model: int) -> np.ndarray:
    k = draws.layout.inputs.k
    cells = draws.table.cells
    groups = draws.layout.cell_y[cells] * k + draws.layout.cell_pred[model][cells]
    return draws.group("confusion", model, groups, k * k).reshape(-1, k, k)


def _ratio(num: np.ndarray, den: np.ndarray, empty: float = np.nan) -> np.ndarray:
    out = np.full(np.broadcast(num, den).shape, empty)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _row_mean(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Mean over the last axis of the valid entries, NaN where none is valid."""
    total = np.where(valid, values, 0.0).sum(axis=-1)
    return _ratio(total, valid.sum(axis=-1).astype(np.float64))


def _accuracy(draws: _Draws, model: int) -> np.ndarray:
    c = _confusion(draws, model)
    return _ratio(np.trace(c, axis1=1, axis2=2), c.sum(axis=(1, 2)))


def _balanced_accuracy(draws: _Draws, model: int) -> np.ndarray:
    c = _confusion(draws, model)
    support = c.sum(axis=2)
    recall = _ratio(np.diagonal(c, axis1=1, axis2=2), support)
    return _row_mean(recall, support > 0)


def _f1(draws: _Draws, model: int) -> np.ndarray:
    c = _confusion(draws, model)
    tp = np.diagonal(c, axis1=1, axis2=2)
    den = c.sum(axis=2) + c.sum(axis=1)  # 2 tp + fp + fn
    f1 = _ratio(2 * tp, den, empty=0.0)
    if c.shape[1] == 2:
        return f1[:, 1]
    return _row_mean(f1, den > 0)


def _roc_auc(draws: _Draws, model: int) -> np.ndarray:
    cells = draws.table.cells
    per_class = []
    for i, sb in enumerate(draws.layout.scores):
        if sb.model != model:
            continue
        nb = sb.n_bins
        groups = sb.cell_bin[cells] + nb * sb.cell_positive[cells]
        both = draws.group(f"auc{i}", model, groups, 2 * nb)
        neg, pos = both[:, :nb], both[:, nb:]
        below = np.cumsum(neg, axis=1) - neg
        within = draws.table.concordance[i]
        concordant = (pos * below).sum(axis=1) + (pos * neg * within.w).sum(axis=1)
        if draws.pair_noise is not None:
            # the within-bin pairs' own resampling variance given the counts (Hoeffding's decomposition)
            spread = (
                pos * neg * (np.maximum(neg - 1, 0) * within.z10 + np.maximum(pos - 1, 0) * within.z01 + within.z11)
            )
            concordant = concordant + np.sqrt(spread.sum(axis=1)) * draws.pair_noise[:, i]
        per_class.append(_ratio(concordant, pos.sum(axis=1) * neg.sum(axis=1)))
    stacked = np.column_stack(per_class)
    return _row_mean(stacked, np.isfinite(stacked))


def _sum_of(draws: _Draws, name: str) -> np.ndarray:
    assert draws.sums is not None
    return draws.sums[:, draws.layout.columns[name]]


def _log_loss(draws: _Draws, model: int) -> np.ndarray:
    return _ratio(_sum_of(draws, f"loss{model}"), draws.n)


def _mae(draws: _Draws, model: int) -> np.ndarray:
    return _ratio(_sum_of(draws, f"abs{model}"), draws.n)


def _rmse(draws: _Draws, model: int) -> np.ndarray:
    return np.asarray(np.sqrt(np.maximum(_ratio(_sum_of(draws, f"sq{model}"), draws.n), 0.0)))


def _r2(draws: _Draws, model: int) -> np.ndarray:
    sse = np.maximum(_sum_of(draws, f"sq{model}"), 0.0)
    sy, sy2 = _sum_of(draws, "y"), _sum_of(draws, "y2")
    sst = np.maximum(sy2 - _ratio(sy * sy, draws.n, empty=0.0), 0.0)
    # scikit-learn's convention for a constant target: 1 for a perfect fit, else 0
    return np.where(sst > 1e-12 * np.maximum(sy2, 1.0), 1.0 - _ratio(sse, sst), np.where(sse <= 0, 1.0, 0.0))


_METRIC_FUNCTIONS: dict[str, Callable[[_Draws, int], np.ndarray]] = {
    "accuracy": _accuracy,
    "balanced_accuracy": _balanced_accuracy,
    "f1": _f1,
    "roc_auc": _roc_auc,
    "log_loss": _log_loss,
    "mae": _mae,
    "rmse": _rmse,
    "r2": _r2,
}


def _metric(draws: _Draws, name: str, model: int = 0) -> np.ndarray:
    return _METRIC_FUNCTIONS[name](draws, model)


def _percentiles(replicates: np.ndarray, confidence: float) -> tuple[float, float]:
    finite = replicates[np.isfinite(replicates)]
    if finite.size == 0:
        return math.nan, math.nan
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def _class_counts(layout: _Layout, table: _Table) -> np.ndarray:
    """Rows of each class in a classification table."""
    return np.bincount(layout.cell_y[table.cells], weights=table.counts, minlength=layout.inputs.k).astype(np.int64)


def _reliability(
    layout: _Layout, table: _Table, present: np.ndarray, min_rows: int, min_class_rows: int
) -> tuple[bool, str | None, dict[str, int] | None]:
    """Whether a segment is big enough to judge, why not, and its rows per class. ``present``: the classes
    found in all rows (a class absent everywhere does not make a segment unreliable)."""
    inputs, rows = layout.inputs, table.rows
    reasons = []
    counts: dict[str, int] | None = None
    if rows == 0:
        reasons.append("no rows")
    elif rows < min_rows:
        reasons.append(f"{rows} rows, fewer than min_rows={min_rows}")
    if inputs.task == "classification":
        per_class = _class_counts(layout, table)
        counts = {str(c): int(n) for c, n in zip(inputs.classes, per_class, strict=True)}
        if rows > 0 and present.any():
            smallest = int(np.argmin(np.where(present, per_class, np.iinfo(np.int64).max)))
            if per_class[smallest] < min_class_rows:
                reasons.append(
                    f"{per_class[smallest]} rows of class {inputs.classes[smallest]!r}, fewer than "
                    f"min_class_rows={min_class_rows}"
                )
    return not reasons, "; ".join(reasons) or None, counts


# -- segment metrics -----------------------------------------------------------------------------------------
def _json_float(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


@dataclass(frozen=True)
class Estimate:
    """A metric on one segment with its percentile bootstrap interval.

    Attributes:
        value: the metric on the segment's rows (NaN when undefined, e.g. ROC AUC of a segment with one class).
        low: the interval's lower bound (NaN when not computed: no rows, ``n_boot=0``, or undefined throughout).
        high: the interval's upper bound.
    """

    value: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float | None]:
        """JSON-safe: NaN becomes null."""
        return {"value": _json_float(self.value), "low": _json_float(self.low), "high": _json_float(self.high)}


@dataclass(frozen=True)
class SegmentMetrics:
    """The metrics of one segment (or of all rows, named ``overall``).

    Attributes:
        name: the segment's name (``overall`` for all rows).
        spec: the spec it came from (empty for ``overall``).
        rows: rows in the segment.
        metrics: metric name -> :class:`Estimate`, in the report's metric order.
        reliable: False when the segment is too small for a meaningful estimate; it is kept and marked.
        reason: why it is not reliable (fewer than ``min_rows`` rows, fewer than ``min_class_rows`` of a class).
        class_counts: classification: rows of each class (label as text -> count); None for regression.
    """

    name: str
    spec: str
    rows: int
    metrics: Mapping[str, Estimate]
    reliable: bool
    reason: str | None
    class_counts: Mapping[str, int] | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict."""
        return {
            "name": self.name,
            "spec": self.spec,
            "rows": self.rows,
            "metrics": {k: v.to_dict() for k, v in self.metrics.items()},
            "reliable": self.reliable,
            "reason": self.reason,
            "class_counts": None if self.class_counts is None else dict(self.class_counts),
        }


@dataclass(frozen=True)
class SegmentReport:
    """Metrics by segment, with percentile bootstrap intervals.

    Attributes:
        task: ``classification`` or ``regression``.
        metrics: the metric names, in order.
        classes: the class labels in code order (the positive class of a binary task is ``classes[1]``); empty
            for regression.
        overall: the metrics of all rows.
        segments: one entry per segment, in the order given; small ones are marked, never dropped.
        n_boot: bootstrap resamples per segment.
        confidence: the intervals' coverage (0.95: 2.5th to 97.5th percentile of the resampled metric).
        seed: the seed the resamples were drawn from.
        min_rows: segments with fewer rows are marked unreliable.
        min_class_rows: classification segments with fewer rows of a class are marked unreliable.
        within_bin_pair_share: ROC AUC only: the largest share, over segments, of positive–negative pairs that
            fall inside one probability bin, whose resampling is approximated by a normal draw of the right mean
            and variance (see the module docstring); None without ROC AUC.
    """

    task: str
    metrics: tuple[str, ...]
    classes: tuple[Any, ...]
    overall: SegmentMetrics
    segments: tuple[SegmentMetrics, ...]
    n_boot: int
    confidence: float
    seed: int
    min_rows: int
    min_class_rows: int
    within_bin_pair_share: float | None

    def segment(self, name: str) -> SegmentMetrics:
        """The entry of a segment by name (``overall`` for all rows)."""
        if name == "overall":
            return self.overall
        for s in self.segments:
            if s.name == name:
                return s
        raise ValidationError(f"no segment named {name!r}; segments: {[s.name for s in self.segments]}")

    def to_frame(self) -> pd.DataFrame:
        """One row per (segment, metric): segment, rows, reliable, metric, value, low, high — for printing."""
        records = []
        for s in (self.overall, *self.segments):
            for metric, e in s.metrics.items():
                records.append(
                    {
                        "segment": s.name,
                        "rows": s.rows,
                        "reliable": s.reliable,
                        "metric": metric,
                        "value": e.value,
                        "low": e.low,
                        "high": e.high,
                    }
                )
        return pd.DataFrame.from_records(
            records, columns=["segment", "rows", "reliable", "metric", "value", "low", "high"]
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict."""
        return {
            "task": self.task,
            "metrics": list(self.metrics),
            "classes": [c if isinstance(c, str | int | float | bool) else str(c) for c in self.classes],
            "overall": self.overall.to_dict(),
            "segments": [s.to_dict() for s in self.segments],
            "n_boot": self.n_boot,
            "confidence": self.confidence,
            "seed": self.seed,
            "min_rows": self.min_rows,
            "min_class_rows": self.min_class_rows,
            "within_bin_pair_share": self.within_bin_pair_share,
        }


def segment_metrics(
    y_true: Any,
    y_pred: Any,
    *,
    proba: Any = None,
    task: Task,
    segments: Sequence[Segment],
    metrics: Sequence[str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    min_rows: int = MIN_ROWS,
    min_class_rows: int = MIN_CLASS_ROWS,
    confidence: float = 0.95,
    classes: Sequence[Any] | None = None,
) -> SegmentReport:
    """Metrics of every segment and of all rows, with percentile bootstrap intervals from cell tables.

    Args:
        y_true: the true labels (classification) or targets (regression), one per scored row.
        y_pred: the predicted labels or values.
        proba: classification only: predicted probabilities, ``(rows, classes)`` in the order of ``classes``
            (a binary task also accepts the positive class's probability alone). Enables ROC AUC and log loss.
        task: ``classification`` or ``regression``.
        segments: from :func:`segments_of` on a frame aligned with the rows.
        metrics: metric names (default: every metric of the task the inputs allow; see :data:`METRICS`).
        n_boot: bootstrap resamples per segment (0: point estimates only).
        seed: seeds the resamples (each segment draws from ``(seed, its name)``).
        min_rows: segments with fewer rows are marked unreliable.
        min_class_rows: classification segments with fewer rows of some class are marked unreliable.
        confidence: coverage of the intervals.
        classes: the class labels in the column order of ``proba`` (default: the sorted labels found, as
            scikit-learn orders ``classes_``).

    Example:
        >>> frame = pd.DataFrame({"plan": ["a", "b"] * 50})
        >>> y = np.tile([0, 1, 1, 0], 25)
        >>> report = segment_metrics(y, y, task="classification", segments=segments_of(frame, ["plan"]), n_boot=100)
        >>> report.segment('plan == "a"').metrics["accuracy"].value
        1.0

    Raises:
        ValidationError: on any bad input, naming the argument (and row).
    """
    inputs = _inputs(task, y_true, [("y_pred", y_pred)], [("proba", proba)], classes)
    names = _metric_names(inputs.task, metrics, inputs.probas[0] is not None)
    n_boot = _check_int(n_boot, "n_boot", 0, _MAX_BOOT)
    seed = _check_int(seed, "seed", 0)
    min_rows = _check_int(min_rows, "min_rows", 1)
    min_class_rows = _check_int(min_class_rows, "min_class_rows", 0)
    confidence = _check_fraction(confidence, "confidence")
    checked = _check_segments(segments, inputs.rows)
    layout = _layout(inputs, names)
    overall_table = _table(layout, None)
    present = _class_counts(layout, overall_table) > 0 if inputs.task == "classification" else np.zeros(0, bool)
    settings = (present, names, n_boot, seed, min_rows, min_class_rows, confidence)
    overall, share = _segment_entry(layout, "overall", "", None, *settings, table=overall_table)
    entries = []
    for s in checked:
        entry, s_share = _segment_entry(layout, s.name, s.spec, s.mask, *settings)
        entries.append(entry)
        share = max(share, s_share)
    return SegmentReport(
        task=inputs.task,
        metrics=names,
        classes=inputs.classes,
        overall=overall,
        segments=tuple(entries),
        n_boot=n_boot,
        confidence=confidence,
        seed=seed,
        min_rows=min_rows,
        min_class_rows=min_class_rows,
        within_bin_pair_share=share if layout.scores else None,
    )


def _segment_entry(
    layout: _Layout,
    name: str,
    spec: str,
    mask: np.ndarray | None,
    present: np.ndarray,
    names: tuple[str, ...],
    n_boot: int,
    seed: int,
    min_rows: int,
    min_class_rows: int,
    confidence: float,
    table: _Table | None = None,
) -> tuple[SegmentMetrics, float]:
    table = _table(layout, mask) if table is None else table
    reliable, reason, class_counts = _reliability(layout, table, present, min_rows, min_class_rows)
    estimates: dict[str, Estimate] = {}
    if table.rows == 0:
        estimates = {m: Estimate(math.nan, math.nan, math.nan) for m in names}
    else:
        observed = _observed(layout, table)
        resampled = _resampled(layout, table, n_boot, _rng(seed, None if mask is None else name)) if n_boot else None
        for m in names:
            value = float(_metric(observed, m)[0])
            low, high = _percentiles(_metric(resampled, m), confidence) if resampled is not None else (math.nan,) * 2
            estimates[m] = Estimate(value, low, high)
    return SegmentMetrics(name, spec, table.rows, estimates, reliable, reason, class_counts), table.within_share


# -- weak segments -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WeakSegment:
    """One candidate segment tested against the rest of the rows.

    Attributes:
        name: the candidate's expression, e.g. ``region == "x"`` or ``region == "x" and age < 30``.
        columns: the column(s) it was built from.
        rows: rows in the candidate.
        rest_rows: rows it was compared with (the rest of the data).
        metric: the metric tested.
        value: the metric on the candidate.
        rest: the metric on the rest.
        difference: ``value - rest``.
        effect: how much worse the candidate is, in the metric's units (positive: worse; ``rest - value`` when
            higher is better, ``value - rest`` when lower is better).
        low: lower bound of the 95% interval of ``difference`` (normal approximation with the test's standard
            error).
        high: upper bound of that interval.
        p_value: the one-sided p-value of "the candidate is worse".
        p_adjusted: the Benjamini–Hochberg adjusted p-value across all candidates (counting every pair the search
            could have built, see the module docstring).
        test: the test used (see the module docstring).
        significant: ``p_adjusted <= alpha`` and, for a pair, also worse than the rest of each parent.
    """

    name: str
    columns: tuple[str, ...]
    rows: int
    rest_rows: int
    metric: str
    value: float
    rest: float
    difference: float
    effect: float
    low: float
    high: float
    p_value: float
    p_adjusted: float
    test: str
    significant: bool

    @property
    def reason(self) -> str:
        """One line of evidence, e.g. for a report."""
        return (
            f"{self.metric} {self.value:.4g} on {self.name} ({self.rows:,} rows) vs {self.rest:.4g} on the other "
            f"{self.rest_rows:,} rows: worse by {self.effect:.4g} (95% CI of the difference {self.low:.4g} to "
            f"{self.high:.4g}; {self.test}, BH-adjusted p = {self.p_adjusted:.3g})"
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict."""
        out: dict[str, Any] = {
            "name": self.name,
            "columns": list(self.columns),
            "rows": self.rows,
            "rest_rows": self.rest_rows,
            "metric": self.metric,
            "test": self.test,
            "significant": self.significant,
        }
        for key in ("value", "rest", "difference", "effect", "low", "high", "p_value", "p_adjusted"):
            out[key] = _json_float(getattr(self, key))
        return out


@dataclass(frozen=True)
class WeakSegmentReport:
    """Segments significantly worse than the rest of the data.

    Attributes:
        metric: the metric tested.
        higher_is_better: its direction.
        overall: the metric on all rows.
        rows: all rows.
        alpha: the false-discovery rate of the Benjamini–Hochberg correction.
        segments: the significant ones, most worse first (by ``effect``), at most ``max_segments``.
        tested: every candidate tested, by ascending p-value (the evidence for what was not flagged).
    """

    metric: str
    higher_is_better: bool
    overall: float
    rows: int
    alpha: float
    segments: tuple[WeakSegment, ...]
    tested: tuple[WeakSegment, ...]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict."""
        return {
            "metric": self.metric,
            "higher_is_better": self.higher_is_better,
            "overall": _json_float(self.overall),
            "rows": self.rows,
            "alpha": self.alpha,
            "segments": [s.to_dict() for s in self.segments],
            "tested": [s.to_dict() for s in self.tested],
        }


class _Test(NamedTuple):
    value: float
    rest: float
    se: float  # standard error of the difference, for the interval
    p_value: float
    test: str


class _Tester:
    """One-sided "group a is worse than group b" tests on one metric."""

    def __init__(self, inputs: _Inputs, metric: str, n_boot: int, seed: int) -> None:
        self.inputs = inputs
        self.metric = metric
        self.higher = METRICS[metric]
        self.n_boot = n_boot
        self.seed = seed
        self.row_values: np.ndarray | None = None
        self.layout: _Layout | None = None
        if metric == "accuracy":
            self.row_values = (inputs.y == inputs.preds[0]).astype(np.float64)
        elif metric in ("log_loss", "mae", "rmse"):
            if metric == "log_loss":
                proba = inputs.probas[0]
                assert proba is not None
                eps = np.finfo(np.float64).eps
                self.row_values = -np.log(np.clip(proba[np.arange(inputs.rows), inputs.y], eps, 1 - eps))
            else:
                error = inputs.y - inputs.preds[0]
                self.row_values = np.abs(error) if metric == "mae" else error * error
        else:
            self.layout = _layout(inputs, [metric])

    def overall(self) -> float:
        if self.row_values is not None:
            mean = float(self.row_values.mean())
            return math.sqrt(mean) if self.metric == "rmse" else mean
        assert self.layout is not None
        return float(_metric(_observed(self.layout, _table(self.layout, None)), self.metric)[0])

    def __call__(self, a: np.ndarray, b: np.ndarray, name: str) -> _Test:
        if self.row_values is not None:
            return self._analytic(self.row_values[a], self.row_values[b])
        return self._bootstrap(a, b, name)

    def _analytic(self, va: np.ndarray, vb: np.ndarray) -> _Test:
        na, nb = va.size, vb.size
        ma, mb = float(va.mean()), float(vb.mean())
        if self.metric == "accuracy":
            pooled = (ma * na + mb * nb) / (na + nb)
            se0 = math.sqrt(pooled * (1 - pooled) * (1 / na + 1 / nb))
            p = float(stats.norm.sf((mb - ma) / se0)) if se0 > 0 else (0.0 if ma < mb else 1.0)
            se = math.sqrt(ma * (1 - ma) / na + mb * (1 - mb) / nb)
            return _Test(ma, mb, se, p, "two-proportion z-test")
        qa, qb = float(va.var(ddof=1)) / na, float(vb.var(ddof=1)) / nb
        se_mean = math.sqrt(qa + qb)
        if se_mean > 0:
            df = (qa + qb) ** 2 / (qa**2 / (na - 1) + qb**2 / (nb - 1))
            p = float(stats.t.sf((ma - mb) / se_mean, df))
        else:
            p = 0.0 if ma > mb else 1.0
        if self.metric == "rmse":  # tested on squared errors; the interval is on the RMSE scale (delta method)
            ra, rb = math.sqrt(ma), math.sqrt(mb)
            se = math.sqrt((qa / (4 * ma) if ma > 0 else 0.0) + (qb / (4 * mb) if mb > 0 else 0.0))
            return _Test(ra, rb, se, p, "Welch t-test on squared errors")
        return _Test(ma, mb, se_mean, p, "Welch t-test")

    def _bootstrap(self, a: np.ndarray, b: np.ndarray, name: str) -> _Test:
        assert self.layout is not None
        values, spreads = [], []
        for label, mask in (("a", a), ("b", b)):
            table = _table(self.layout, mask)
            values.append(float(_metric(_observed(self.layout, table), self.metric)[0]))
            replicates = _metric(
                _resampled(self.layout, table, self.n_boot, _rng(self.seed, name + label)), self.metric
            )
            finite = replicates[np.isfinite(replicates)]
            spreads.append(float(finite.var(ddof=1)) if finite.size > 1 else math.nan)
        worse = values[1] - values[0] if self.higher else values[0] - values[1]
        se = math.sqrt(spreads[0] + spreads[1])
        if not math.isfinite(worse) or not math.isfinite(se):
            p = 1.0
        elif se > 0:
            p = float(stats.norm.sf(worse / se))
        else:
            p = 0.0 if worse > 0 else 1.0
        return _Test(values[0], values[1], se, p, "bootstrap z-test")


def _candidates(frame: pd.DataFrame, columns: Sequence[str], bins: int, max_values: int) -> list[tuple[str, Segment]]:
    """Single-column candidates: values of non-numeric columns (the ``max_values`` most frequent), values or
    quantile bins of numeric ones, and a missing-value segment; identifier-like and date columns are skipped."""
    table = _Columns(frame)
    out: list[tuple[str, Segment]] = []
    for name in columns:
        col = table.get(name)
        if col.kind in ("datetime", "empty"):
            continue
        if col.kind == "numeric":
            present = np.asarray(col.values)[~col.missing]
            many = np.unique(present).size > VALUE_SEGMENTS_MAX
            segs = _column_segments(table, col, name, bins=bins if many else None)
        elif col.kind == "bool":
            segs = _column_segments(table, col, name)
        else:
            codes, labels = _factorize(np.asarray(col.values), ~col.missing)
            counts = np.bincount(codes[codes >= 0], minlength=len(labels))
            if len(labels) > max_values and counts.max(initial=0) <= 1:
                continue  # an identifier: every value once
            ref = _column_ref(name)
            top = np.argsort(-counts, kind="stable")[:max_values]
            segs = [_segment(f"{ref} == {_literal_text(labels[i])}", name, codes == i) for i in top]
            if col.missing.any():
                segs.append(_segment(f"{ref} is None", name, col.missing.copy()))
        out += [(name, s) for s in segs]
    return out


def find_weak_segments(
    frame: pd.DataFrame,
    y_true: Any,
    y_pred: Any,
    proba: Any = None,
    *,
    task: Task,
    metric: str | None = None,
    max_segments: int = 10,
    min_rows: int = MIN_ROWS,
    alpha: float = 0.05,
    seed: int = 0,
    columns: Sequence[str] | None = None,
    bins: int = 5,
    max_values: int = 20,
    pairs: bool = True,
    n_boot: int = 200,
    classes: Sequence[Any] | None = None,
) -> WeakSegmentReport:
    """Segments on which the model is significantly worse than on the rest of the data.

    Candidates are built from every column of ``frame`` (see the module docstring), each with at least
    ``min_rows`` rows and leaving at least ``min_rows`` outside it; each is tested one-sided against the rest; the
    p-values of all candidates are adjusted together (Benjamini–Hochberg) and those at or under ``alpha`` are
    returned, most worse first.

    Args:
        frame: the features (or any columns to segment by), one row per scored row.
        y_true: the true labels or targets.
        y_pred: the predictions.
        proba: classification probabilities (needed for ``roc_auc`` and ``log_loss``).
        task: ``classification`` or ``regression``.
        metric: the metric tested (default :func:`default_metric`: accuracy / MAE).
        max_segments: the most segments returned.
        min_rows: the smallest candidate (and rest) tested.
        alpha: the false-discovery rate.
        seed: seeds the bootstrap of the metrics tested by bootstrap.
        columns: the columns to build candidates from (default: all).
        bins: quantile bins of numeric columns with more than :data:`VALUE_SEGMENTS_MAX` values.
        max_values: the most frequent values of a non-numeric column made into candidates.
        pairs: also test pairs of the five worst single-column candidates of different columns.
        n_boot: resamples per side for the bootstrap-tested metrics.
        classes: the class labels in the column order of ``proba``.

    Raises:
        ValidationError: on any bad input.
    """
    if not isinstance(frame, pd.DataFrame):
        raise ValidationError(f"frame must be a pandas DataFrame, got {type(frame).__name__}", field="frame")
    inputs = _inputs(task, y_true, [("y_pred", y_pred)], [("proba", proba)], classes)
    if len(frame) != inputs.rows:
        raise ValidationError(f"frame has {len(frame):,} rows but y_true has {inputs.rows:,}", field="frame")
    metric = default_metric(inputs.task) if metric is None else metric
    _check_metric(inputs.task, metric, inputs.probas[0] is not None)
    max_segments = _check_int(max_segments, "max_segments", 1)
    min_rows = _check_int(min_rows, "min_rows", 2)
    alpha = _check_fraction(alpha, "alpha")
    seed = _check_int(seed, "seed", 0)
    bins = _check_int(bins, "bins", 2, MAX_BINS)
    max_values = _check_int(max_values, "max_values", 1)
    n_boot = _check_int(n_boot, "n_boot", 20, _MAX_BOOT)
    frame = frame.set_axis([str(c) for c in frame.columns], axis=1)
    known = list(frame.columns)
    names = known if columns is None else list(columns)
    for name in names:
        if name not in known:
            raise ValidationError(f"unknown column {name!r}; the columns are {known}", field="columns")

    tester = _Tester(inputs, metric, n_boot, seed)
    rows = inputs.rows

    def fits(mask: np.ndarray) -> bool:
        n = int(mask.sum())
        return n >= min_rows and rows - n >= min_rows

    tested: list[tuple[tuple[str, ...], Segment, _Test, tuple[Segment, ...]]] = []
    singles = [(col, s) for col, s in _candidates(frame, names, bins, max_values) if fits(s.mask)]
    for col, s in singles:
        tested.append(((col,), s, tester(s.mask, ~s.mask, s.name), ()))
    family = len(tested)
    if pairs:
        # The pairs tested are chosen by looking at the data, so the correction counts every pair the search
        # could have tested (those not tested count with p = 1): what it picked is the best of all of them.
        per_column = {col: sum(1 for c, _ in singles if c == col) for col, _ in singles}
        family += sum(a * b for a, b in combinations(per_column.values(), 2))
        worse = sorted((t for t in tested if _worse_by(t[2], tester.higher) > 0), key=lambda t: t[2].p_value)
        pool = worse[:PAIR_POOL]
        for (c1, s1, _, _), (c2, s2, _, _) in combinations(pool, 2):
            if c1 == c2:
                continue
            mask = s1.mask & s2.mask
            if fits(mask):
                pair = _segment(f"{s1.name} and {s2.name}", f"{c1[0]}, {c2[0]}", mask)
                tested.append(((c1[0], c2[0]), pair, tester(mask, ~mask, pair.name), (s1, s2)))
    if not tested:
        return WeakSegmentReport(metric, tester.higher, tester.overall(), rows, alpha, (), ())
    p_values = np.ones(max(family, len(tested)))
    p_values[: len(tested)] = [t[2].p_value for t in tested]
    adjusted = stats.false_discovery_control(p_values, method="bh")[: len(tested)]
    n_pairs = len(tested) - len(singles)
    found: list[WeakSegment] = []
    for (cols, segment, test, parents), p_adj in zip(tested, adjusted, strict=True):
        significant = bool(p_adj <= alpha) and _worse_by(test, tester.higher) > 0
        for parent in parents if significant else ():
            # a pair must add to each parent: worse than the parent's other rows (Bonferroni over the pairs)
            rest_of_parent = parent.mask & ~segment.mask
            if int(rest_of_parent.sum()) < min_rows:
                significant = False  # the pair is (nearly) all of its parent: nothing beyond the parent
                break
            within = tester(segment.mask, rest_of_parent, segment.name + " | " + parent.name)
            if within.p_value > alpha / n_pairs:
                significant = False
                break
        difference = test.value - test.rest
        found.append(
            WeakSegment(
                name=segment.name,
                columns=cols,
                rows=segment.rows,
                rest_rows=rows - segment.rows,
                metric=metric,
                value=test.value,
                rest=test.rest,
                difference=difference,
                effect=_worse_by(test, tester.higher),
                low=difference - _Z95 * test.se,
                high=difference + _Z95 * test.se,
                p_value=test.p_value,
                p_adjusted=float(p_adj),
                test=test.test,
                significant=significant,
            )
        )
    flagged = sorted((w for w in found if w.significant), key=lambda w: (-w.effect, w.p_value))[:max_segments]
    ordered = sorted(found, key=lambda w: (w.p_value, -w.effect))
    return WeakSegmentReport(metric, tester.higher, tester.overall(), rows, alpha, tuple(flagged), tuple(ordered))


def _worse_by(test: _Test, higher: bool) -> float:
    return test.rest - test.value if higher else test.value - test.rest
