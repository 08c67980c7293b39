"""Column summaries of data at rest, assembled from what an engine aggregates (see :meth:`Engine.profile
<keel.engines.Engine.profile>`): what a reference profile (:mod:`keel.profiles`) is made of.

Per numeric column: the quantile function at a grid of probabilities, bounds, moments and a histogram; per
categorical column, the count of each value. An engine computes those as aggregates where the data is (never the
rows on the driver); the definitions are :func:`keel.profiles.build_profile`'s for a frame in memory:

- numeric values are the finite ones (nulls, NaN and ±inf are missing); the standard deviation is the
  population's (``ddof=0``); the histogram has ``bins`` equal-width bins over ``[min, max]`` with the edges
  NumPy's ``linspace`` gives, counted ``[e_k, e_k+1)``, the last bin closed (one bin for a constant);
- categorical values are counted by their text (``str`` of the value), most frequent first, ties by text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from keel.errors import ValidationError

__all__ = ["KINDS", "ColumnSummary", "categorical_summary", "check_kinds", "histogram_edges", "numeric_summary"]

KINDS = ("numeric", "categorical")


@dataclass(frozen=True, eq=False)
class ColumnSummary:
    """What an engine found of one column (see the module docstring); ``frequencies`` are all the values'."""

    name: str
    kind: Literal["numeric", "categorical"]
    count: int
    missing: int
    minimum: float | None = None
    maximum: float | None = None
    mean: float | None = None
    std: float | None = None
    quantiles: np.ndarray = field(default_factory=lambda: np.empty(0))
    bin_edges: np.ndarray = field(default_factory=lambda: np.empty(0))
    bin_counts: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    frequencies: dict[str, int] = field(default_factory=dict)


def check_kinds(kinds: dict[str, str], columns: list[str]) -> dict[str, str]:
    """``kinds`` checked: every kind known, every column present in ``columns``.

    Raises:
        ValidationError: an unknown kind, or a column the data lacks (named, with the columns it has).
    """
    for name, kind in kinds.items():
        if kind not in KINDS:
            raise ValidationError(
                f"kind of column {name!r} must be 'numeric' or 'categorical', not {kind!r}", field=name
            )
    missing = [name for name in kinds if name not in columns]
    if missing:
        raise ValidationError(
            f"cannot profile column(s) {', '.join(map(repr, missing))}: the data has {', '.join(columns)}",
            field=missing[0],
        )
    if not kinds:
        raise ValidationError("a profile needs at least one column")
    return kinds


def histogram_edges(minimum: float | None, maximum: float | None, bins: int) -> list[float]:
    """The histogram's edges over ``[minimum, maximum]`` (two equal edges for a constant, none without values)."""
    if minimum is None or maximum is None:
        return []
    if maximum > minimum:
        return [float(e) for e in np.linspace(minimum, maximum, bins + 1)]
    return [float(minimum), float(maximum)]


def numeric_summary(
    name: str,
    rows: int,
    aggregates: dict[str, Any],
    quantiles: list[float] | np.ndarray | None,
    counts: list[int],
    bins: int,
) -> ColumnSummary:
    """A numeric column's summary from its ``count``, ``min``, ``max``, ``mean``, ``std`` (population), its
    quantiles at the grid and its histogram counts (over :func:`histogram_edges`)."""
    count = int(aggregates["count"] or 0)
    if count == 0:
        return ColumnSummary(name, "numeric", 0, rows)
    lo, hi = float(aggregates["min"]), float(aggregates["max"])
    edges = np.asarray(histogram_edges(lo, hi, bins), dtype=np.float64)
    return ColumnSummary(
        name,
        "numeric",
        count,
        rows - count,
        minimum=lo,
        maximum=hi,
        mean=float(aggregates["mean"]),
        std=float(aggregates["std"] or 0.0),
        quantiles=np.asarray(quantiles, dtype=np.float64),
        bin_edges=edges,
        bin_counts=np.asarray(counts, dtype=np.int64) if edges.size >= 2 else np.empty(0, dtype=np.int64),
    )


def categorical_summary(name: str, rows: int, pairs: list[tuple[Any, int]]) -> ColumnSummary:
    """A categorical column's summary from its (value, count) pairs, nulls left out."""
    merged: dict[str, int] = {}
    for value, n in pairs:
        text = str(value)
        merged[text] = merged.get(text, 0) + int(n)
    ordered = dict(sorted(merged.items(), key=lambda kv: (-kv[1], kv[0])))
    count = sum(ordered.values())
    return ColumnSummary(name, "categorical", count, rows - count, frequencies=ordered)
