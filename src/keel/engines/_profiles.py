"""Reference profiles of data at rest, assembled from what an engine aggregates (see :meth:`Engine.profile
<keel.engines.Engine.profile>`).

A profile (:mod:`keel.profiles`) keeps, per numeric column, its quantile function on a 1001-point grid, bounds,
moments and a histogram, and per categorical column its value counts. An engine computes those as aggregates
where the data is (never the rows on the driver); this module turns them into the same
:class:`~keel.profiles.ColumnProfile` that :func:`~keel.profiles.build_profile` gives for a frame in memory:

- numeric values are the finite ones (nulls, NaN and ±inf are missing, as in memory); the standard deviation is
  the population's (``ddof=0``); the histogram has :data:`~keel.profiles.HISTOGRAM_BINS` equal-width bins over
  ``[min, max]`` with the edges NumPy's ``linspace`` gives, counted ``[e_k, e_k+1)``, the last bin closed;
- categorical values are counted by their text (``str`` of the value), most frequent first, ties by text, the
  :data:`~keel.profiles.MAX_CATEGORIES` most frequent kept and the rest in ``__other__``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from keel.errors import ValidationError
from keel.profiles._profile import HISTOGRAM_BINS, ColumnProfile, cap_categories, check_kind

__all__ = ["categorical_profile", "check_kinds", "histogram_edges", "numeric_profile"]


def check_kinds(kinds: dict[str, str], columns: list[str]) -> dict[str, str]:
    """``kinds`` checked: every kind known, every column present in ``columns``.

    Raises:
        ValidationError: an unknown kind, or a column the data lacks (named, with the columns it has).
    """
    for name, kind in kinds.items():
        check_kind(kind, name)
    missing = [name for name in kinds if name not in columns]
    if missing:
        raise ValidationError(
            f"cannot profile column(s) {', '.join(map(repr, missing))}: the data has {', '.join(columns)}",
            field=missing[0],
        )
    if not kinds:
        raise ValidationError("a profile needs at least one column")
    return kinds


def histogram_edges(minimum: float | None, maximum: float | None) -> list[float]:
    """The histogram's edges over ``[minimum, maximum]`` (two equal edges for a constant, none without values)."""
    if minimum is None or maximum is None:
        return []
    if maximum > minimum:
        return [float(e) for e in np.linspace(minimum, maximum, HISTOGRAM_BINS + 1)]
    return [float(minimum), float(maximum)]


def numeric_profile(
    name: str,
    rows: int,
    aggregates: dict[str, Any],
    quantiles: list[float] | np.ndarray | None,
    bins: list[int],
) -> ColumnProfile:
    """A numeric column's profile from its ``count``, ``min``, ``max``, ``mean``, ``std`` (population), its
    quantiles at the grid and its histogram counts (over :func:`histogram_edges`)."""
    count = int(aggregates["count"] or 0)
    if count == 0:
        return ColumnProfile(name, "numeric", 0, rows)
    lo, hi = float(aggregates["min"]), float(aggregates["max"])
    edges = np.asarray(histogram_edges(lo, hi), dtype=np.float64)
    counts = np.asarray(bins, dtype=np.int64) if edges.size >= 2 else np.empty(0, dtype=np.int64)
    return ColumnProfile(
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
        bin_counts=counts,
    )


def categorical_profile(name: str, rows: int, pairs: list[tuple[Any, int]]) -> ColumnProfile:
    """A categorical column's profile from its (value, count) pairs, nulls left out."""
    merged: dict[str, int] = {}
    for value, n in pairs:
        text = str(value)
        merged[text] = merged.get(text, 0) + int(n)
    ordered = dict(sorted(merged.items(), key=lambda kv: (-kv[1], kv[0])))
    count = sum(ordered.values())
    return ColumnProfile(name, "categorical", count, rows - count, frequencies=cap_categories(ordered))
