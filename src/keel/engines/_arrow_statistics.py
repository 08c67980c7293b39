"""Column statistics of an Arrow table in memory, the local engine's: exact, one task per column.

They hold what every engine's statistics hold (:mod:`keel.engines._statistics`), computed with Arrow compute and
NumPy straight from the table's buffers, so that an ingest describes its rows while its files are being written
(each column is a task a thread pool runs; Arrow and NumPy release the GIL). Everything is exact: quantiles too,
and distinct counts (which the documented contract allows to be approximate).

Exact quantiles need only a few order statistics, not a sort: :func:`exact_quantiles` brackets each needed rank
between two values of a small strided sample, counts the values below the bracket and selects inside it (a few
linear passes over the column, two to four times cheaper than one multi-way partition of it). Should a bracket
miss its rank (a sample can be unlucky), that rank is selected from the whole column instead: the answer is exact
either way. Integers spanning a small range (keys numbered 0..n, counts) are simply counted value by value, which
gives their quantiles and distinct count at once.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from keel.engines._statistics import QUANTILES, TOP_CATEGORIES, json_bound, json_number, quantile_names

__all__ = ["column_tasks", "describe_column", "exact_quantiles", "order_statistics"]

F64 = npt.NDArray[np.float64]

#: Up to this many values, the order statistics come from one partition of all of them.
_DIRECT = 1 << 16
#: The strided sample the brackets are read from.
_SAMPLE = 1 << 14
#: A bracket's half-width, in standard deviations of a sample rank.
_MARGIN_SIGMAS = 5
#: Integers spanning fewer values than this (or than 4 per row) are counted value by value.
_DENSE_RANGE = 1 << 20
#: The most values so counted (8 bytes each).
_COUNTS_LIMIT = 1 << 23
#: Values compared with every bracket at a time (they stay in the CPU's cache).
_BLOCK = 1 << 16


def column_tasks(table: pa.Table, dtypes: dict[str, str]) -> dict[str, Callable[[], dict[str, Any]]]:
    """One task per column of ``dtypes`` computing its statistics, for a thread pool to run side by side."""
    return {name: functools.partial(describe_column, table.column(name), dtype) for name, dtype in dtypes.items()}


def describe_column(column: pa.ChunkedArray | pa.Array, dtype: str) -> dict[str, Any]:
    """One column's statistics (see :mod:`keel.engines._statistics`) as the catalog stores them."""
    rows = len(column)
    count = rows - column.null_count
    out: dict[str, Any] = {"dtype": dtype, "count": count, "nulls": rows - count}
    if dtype in ("int64", "float64"):
        out.update(_numbers(column, dtype))
    elif dtype == "bool":
        trues = pc.sum(column).as_py() if count else None
        out["mean"] = json_number(trues / count) if trues is not None else None
    elif dtype == "timestamp":
        bounds = pc.min_max(column) if count else None
        lo, hi = (bounds["min"].as_py(), bounds["max"].as_py()) if bounds is not None else (None, None)
        out.update(min=lo.isoformat() if lo else None, max=hi.isoformat() if hi else None)
    elif dtype == "string":
        out.update(_strings(column))
    elif dtype == "list[float64]":
        lengths = pc.list_value_length(column)
        out["mean_length"] = json_number(pc.mean(lengths).as_py()) if count else None
    return out


def _present(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """The column's non-null values as one array."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    return column.drop_null() if column.null_count else column


def _numbers(column: pa.ChunkedArray | pa.Array, dtype: str) -> dict[str, Any]:
    """Bounds, moments and quantiles of a number column (integers' bounds exact, and their distinct count).

    Arrow's kernels skip nulls without copying the column. Integers spanning a small range (keys numbered 0..n,
    counts) are counted value by value, which gives their distinct count and quantiles at once; other numbers'
    quantiles read one float copy of the column, in which a null is NaN, and leave NaN out.
    """
    names = quantile_names()
    if len(column) == column.null_count:
        out: dict[str, Any] = {"min": None, "max": None, "mean": None, "std": None, "quantiles": dict.fromkeys(names)}
        if dtype == "int64":
            out["distinct"] = 0
        return out
    # Moments of integers as floats (large ones rounded, as a float holds them).
    floats = column if dtype == "float64" else pc.cast(column, pa.float64(), safe=False)
    distinct: int | None = None
    if dtype == "int64":
        bounds = pc.min_max(column)  # integers stay exact integers
        low, high = bounds["min"].as_py(), bounds["max"].as_py()
        counts = _value_counts(column, low, high)
        if counts is not None:
            quantiles = _counted_quantiles(counts, low)
            distinct = int(np.count_nonzero(counts))
        else:
            quantiles = exact_quantiles(_numpy(floats), QUANTILES)
            distinct = int(pc.count_distinct(column).as_py())
    else:
        values = _numpy(floats)
        # NumPy's fmin and fmax pass NaN (a null here) by, many times faster than Arrow's min_max.
        low, high = float(np.fmin.reduce(values)), float(np.fmax.reduce(values))
        quantiles = exact_quantiles(values, QUANTILES)
    out = {
        "min": json_bound(low),
        "max": json_bound(high),
        "mean": json_number(pc.mean(floats).as_py()),
        "std": json_number(pc.stddev(floats, ddof=1).as_py()),  # null below two values
        "quantiles": dict(zip(names, [json_number(q) for q in quantiles], strict=True)),
    }
    if distinct is not None:
        out["distinct"] = distinct
    return out


def _value_counts(column: pa.ChunkedArray | pa.Array, low: int, high: int) -> npt.NDArray[np.int64] | None:
    """How many times each integer of ``low..high`` occurs, when that range is small (at most a few entries per
    value, and :data:`_COUNTS_LIMIT`); ``None`` otherwise."""
    present = len(column) - column.null_count
    if high - low >= min(max(4 * present, _DENSE_RANGE), _COUNTS_LIMIT):
        return None
    counts = np.zeros(high - low + 1, dtype=np.int64)
    for chunk in column.chunks if isinstance(column, pa.ChunkedArray) else [column]:
        values = (chunk.drop_null() if chunk.null_count else chunk).to_numpy()
        counts += np.bincount(values - low, minlength=counts.size)
    return counts


def _counted_quantiles(counts: npt.NDArray[np.int64], low: int) -> list[float | None]:
    """:func:`exact_quantiles` of integers given by their counts (``counts[i]`` times ``low + i``)."""
    ends = np.cumsum(counts)
    n = int(ends[-1])
    out: list[float | None] = []
    for p in QUANTILES:
        position = p * (n - 1)
        lo = math.floor(position)
        a = float(low + int(np.searchsorted(ends, lo, side="right")))
        b = float(low + int(np.searchsorted(ends, min(lo + 1, n - 1), side="right")))
        out.append(a if a == b else a + (b - a) * (position - lo))
    return out


def _numpy(column: pa.ChunkedArray | pa.Array) -> F64:
    """A float column as one NumPy array, nulls as NaN."""
    if isinstance(column, pa.Array):
        return column.to_numpy(zero_copy_only=False)  # type: ignore[no-any-return]
    if column.num_chunks == 1:
        return column.chunk(0).to_numpy(zero_copy_only=False)  # type: ignore[no-any-return]
    return column.to_numpy()  # type: ignore[no-any-return]


def _strings(column: pa.ChunkedArray | pa.Array) -> dict[str, Any]:
    """The distinct count and the most frequent values, most frequent first, ties by value (byte order)."""
    counted = pc.value_counts(_present(column))
    values, counts = counted.field("values"), counted.field("counts")
    if len(values) == 0:
        return {"distinct": 0, "top": []}
    order = pc.sort_indices(pa.table({"v": values, "k": counts}), sort_keys=[("k", "descending"), ("v", "ascending")])[
        :TOP_CATEGORIES
    ]
    top = [
        [str(v), int(k)] for v, k in zip(values.take(order).to_pylist(), counts.take(order).to_pylist(), strict=True)
    ]
    return {"distinct": len(values), "top": top}


def exact_quantiles(values: F64, grid: Sequence[float]) -> list[float | None]:
    """The quantiles of ``values`` at the probabilities ``grid``, interpolated linearly between the closest ranks:
    ``v[lo] + (v[hi] - v[lo]) * (p * (n - 1) - lo)`` over the sorted values (DuckDB's ``quantile_cont``), exactly,
    without sorting them. NaN is no value: it is left out.

    Example:
        >>> exact_quantiles(np.array([4.0, 1.0, np.nan, 3.0, 2.0]), [0.0, 0.25, 0.5, 1.0])
        [1.0, 1.75, 2.5, 4.0]
    """
    nan = int(np.count_nonzero(np.isnan(values)))
    n = int(values.size) - nan
    if n == 0:
        return [None] * len(grid)
    positions = [p * (n - 1) for p in grid]
    ranks = sorted({r for pos in positions for r in (math.floor(pos), min(math.floor(pos) + 1, n - 1))})
    found = order_statistics(values, ranks, nan=nan)
    out: list[float | None] = []
    for pos in positions:
        lo = math.floor(pos)
        low, high = found[lo], found[min(lo + 1, n - 1)]
        out.append(low if low == high else low + (high - low) * (pos - lo))
    return out


def order_statistics(values: F64, ranks: Sequence[int], *, nan: int = 0) -> dict[int, float]:
    """The values of rank ``ranks`` (0-based, ascending order) of ``values``, of which ``nan`` are NaN (ranked
    after every number, as NumPy sorts them)."""
    n = int(values.size)
    if n <= _DIRECT:
        chosen = np.partition(values, list(ranks))
        return {r: float(chosen[r]) for r in ranks}
    sample = np.sort(values[:: n // _SAMPLE])
    if nan:
        sample = sample[~np.isnan(sample)]
    m, valid = int(sample.size), n - nan
    brackets: list[tuple[list[int], float, float]] = []
    for group in _groups(ranks):
        # The sample rank of the value of rank r = p n is about p m, give or take sqrt(m p (1 - p)).
        p = group[0] / valid
        margin = _MARGIN_SIGMAS * math.sqrt(m * p * (1 - p)) + 2
        a, b = math.floor(group[0] * m / valid - margin), math.ceil(group[-1] * m / valid + margin)
        low = float(sample[a]) if 0 < a < m else -np.inf
        high = float(sample[b]) if 0 <= b < m - 1 else np.inf
        brackets.append((group, low, high))
    # NaN compares false: it is counted below every bracket here, and taken off after.
    below = [-nan] * len(brackets)
    equal = [0] * len(brackets)
    inside: list[list[F64]] = [[] for _ in brackets]
    for start in range(0, n, _BLOCK):  # block by block, each in the CPU's cache for every bracket
        block = values[start : start + _BLOCK]
        for k, (_, low, high) in enumerate(brackets):
            at_least = block >= low
            below[k] += int(block.size - np.count_nonzero(at_least))
            if low == high:  # one value repeated (ties): counting it is enough
                equal[k] += int(np.count_nonzero(block == low))
            else:
                inside[k].append(block[at_least & (block <= high)])
    found: dict[int, float] = {}
    missed: list[int] = []
    for k, (group, low, high) in enumerate(brackets):
        held = equal[k] if low == high else sum(part.size for part in inside[k])
        if group[0] < below[k] or group[-1] >= below[k] + held:  # the bracket missed: select among all values
            missed += group
        elif low == high:
            found.update(dict.fromkeys(group, low))
        else:
            chosen = np.partition(np.concatenate(inside[k]), [r - below[k] for r in group])
            found.update({r: float(chosen[r - below[k]]) for r in group})
    if missed:
        chosen = np.partition(values, missed)
        found.update({r: float(chosen[r]) for r in missed})
    return found


def _groups(ranks: Sequence[int]) -> list[list[int]]:
    """Ranks close enough to share a bracket (a quantile's two neighbouring ranks), in order."""
    groups: list[list[int]] = []
    for r in sorted(ranks):
        if groups and r - groups[-1][-1] <= 1:
            groups[-1].append(r)
        else:
            groups.append([r])
    return groups
