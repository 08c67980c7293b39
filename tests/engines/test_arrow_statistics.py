"""The local engine's statistics of a table in memory: exact quantiles found without a sort, exact distinct counts,
and an ingest that counts duplicates the way the engine's query does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from keel.engines import LocalEngine, Normalisation
from keel.engines._arrow_statistics import describe_column, exact_quantiles
from keel.engines._statistics import QUANTILES

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def sorted_quantiles(values: np.ndarray, grid: tuple[float, ...]) -> list[float]:
    """The obvious definition: sort, then interpolate between the closest ranks."""
    ordered = np.sort(values[~np.isnan(values)])
    out = []
    for p in grid:
        position = p * (len(ordered) - 1)
        low = int(np.floor(position))
        high = min(low + 1, len(ordered) - 1)
        a, b = float(ordered[low]), float(ordered[high])
        out.append(a if a == b else a + (b - a) * (position - low))
    return out


def cases() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    n = 200_003  # above the size where one partition of every value is used
    with_nan = rng.standard_normal(n)
    with_nan[rng.random(n) < 0.2] = np.nan
    misleading = rng.standard_normal(n)
    misleading[:: n // 2**14] += 100.0  # every value of the strided sample is far from the others: brackets miss
    return {
        "normal": rng.standard_normal(n),
        "a sample unlike the rest (brackets miss)": misleading,
        "sorted": np.sort(rng.standard_normal(n)),
        "descending": -np.sort(rng.standard_normal(n)),
        "few values (ties)": rng.integers(0, 4, n).astype(float),
        "one value": np.full(n, 2.5),
        "periodic (a strided sample sees one value)": np.tile(np.arange(17.0), n // 17 + 1)[:n],
        "heavy tails": rng.standard_cauchy(n),
        "with NaN": with_nan,
        "with infinities": np.concatenate([rng.standard_normal(n - 4), [np.inf, np.inf, -np.inf, -np.inf]]),
        "small": rng.standard_normal(7),
    }


@pytest.mark.parametrize("name", list(cases()))
def test_exact_quantiles_equal_those_of_the_sorted_values(name: str) -> None:
    values = cases()[name]
    grid = (0.0, *QUANTILES, 1.0)

    assert exact_quantiles(values.copy(), grid) == sorted_quantiles(values, grid)


def test_quantiles_of_no_value_are_none() -> None:
    assert exact_quantiles(np.array([np.nan, np.nan]), QUANTILES) == [None] * len(QUANTILES)


@pytest.mark.parametrize("span", [300, 2**40])  # counted value by value / selected among the values
def test_integer_quantiles_and_bounds_are_exact_whatever_their_range(span: int) -> None:
    rng = np.random.default_rng(9)
    values = rng.integers(-span, span, 100_000)
    column = pa.chunked_array([pa.array(values[:60_000]), pa.array(values[60_000:], mask=values[60_000:] % 7 == 0)])
    present = np.array(column.drop_null().to_pylist())

    stats = describe_column(column, "int64")

    assert list(stats["quantiles"].values()) == sorted_quantiles(present.astype(float), QUANTILES)
    assert (stats["min"], stats["max"]) == (int(present.min()), int(present.max()))
    assert stats["distinct"] == len(set(present.tolist()))


def test_distinct_integers_are_counted_exactly_dense_or_sparse() -> None:
    rng = np.random.default_rng(5)
    dense = rng.integers(0, 50_000, 300_000)
    sparse = rng.integers(-(2**62), 2**62, 1_000) * 7
    column = pa.chunked_array([pa.array(dense[:100_000]), pa.array(dense[100_000:], mask=dense[100_000:] == 3)])

    assert describe_column(column, "int64")["distinct"] == len(set(column.drop_null().to_pylist()))
    assert describe_column(pa.array(sparse), "int64")["distinct"] == len(set(sparse.tolist()))


@pytest.mark.parametrize("order", ["event time", "shuffled"])
def test_an_ingest_counts_duplicates_as_the_engines_query_does(order: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    n = 5_000
    minutes = np.sort(rng.integers(0, 2_000, n))  # many rows share a minute; some share key and minute
    keys = rng.integers(0, 40, n)
    if order == "shuffled":
        shuffle = rng.permutation(n)
        minutes, keys = minutes[shuffle], keys[shuffle]
    times = [T0 + timedelta(minutes=int(m)) for m in minutes]
    table = pa.table({"k": keys, "t": pa.array(times, pa.timestamp("us", tz="UTC")), "x": rng.random(n)})
    engine = LocalEngine()

    got = engine.ingest(table, Normalisation("v", ("k",), "t", None, (("x", "float64"),)), str(tmp_path / "v"))

    expected = engine.count_duplicates(table, ["k"], "t")
    assert expected > 0
    assert got.duplicates == expected
