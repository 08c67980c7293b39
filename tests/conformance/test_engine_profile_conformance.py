"""Reference profiles computed where the data is (:meth:`Engine.profile`): on every engine, the profile
:func:`keel.profiles.build_profile` gives for the same rows in memory — the same counts, missing values,
histograms and categories, quantiles and moments to the last few bits."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from _engines import ENGINES, write

from keel.engines import Engine
from keel.errors import ValidationError
from keel.profiles import ColumnProfile, build_profile
from keel.profiles._profile import HISTOGRAM_BINS, MAX_CATEGORIES, OTHER, QUANTILE_GRID, column_from_summary


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Engine:
    built: Engine = request.getfixturevalue(f"{request.param}_engine")
    return built


def profile(engine: Engine, data: object, kinds: dict[str, str]) -> dict[str, ColumnProfile]:
    """The engine's summaries, as the profile a reference at rest gets."""
    found = engine.profile(data, kinds, grid=QUANTILE_GRID.tolist(), bins=HISTOGRAM_BINS)  # type: ignore[arg-type]
    return {name: column_from_summary(summary) for name, summary in found.items()}


def frame(n: int = 500, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.lognormal(size=n)
    x[rng.random(n) < 0.05] = np.nan
    x[:3] = [np.inf, -np.inf, np.nan]  # missing, as in memory
    plan = rng.choice(["basic", "pro", "team", None], size=n, p=[0.5, 0.3, 0.15, 0.05])
    return pd.DataFrame(
        {
            "x": x,
            "age": pd.array(rng.integers(18, 90, size=n), dtype="Int64"),
            "plan": pd.array(plan, dtype="string"),
            "code": rng.integers(0, 4, size=n),  # integers taken as categories
            "constant": np.full(n, 2.5),
            "empty": np.full(n, np.nan),
        }
    )


KINDS = {
    "x": "numeric",
    "age": "numeric",
    "plan": "categorical",
    "code": "categorical",
    "constant": "numeric",
    "empty": "numeric",
}


def assert_same(got: ColumnProfile, expected: ColumnProfile) -> None:
    assert (got.name, got.kind) == (expected.name, expected.kind)
    assert (got.count, got.missing) == (expected.count, expected.missing)
    assert got.frequencies == expected.frequencies
    np.testing.assert_array_equal(got.bin_edges, expected.bin_edges)
    np.testing.assert_array_equal(got.bin_counts, expected.bin_counts)
    np.testing.assert_allclose(got.quantiles, expected.quantiles, rtol=1e-12, atol=0)
    for a, b in ((got.minimum, expected.minimum), (got.maximum, expected.maximum)):
        assert a == b
    for a, b in ((got.mean, expected.mean), (got.std, expected.std)):
        assert (a is None and b is None) or math.isclose(a, b, rel_tol=1e-12)  # type: ignore[arg-type]


@pytest.mark.parametrize("form", ["table", "files"])
def test_the_profile_of_data_at_rest_is_the_profile_of_the_same_rows_in_memory(
    engine: Engine, tmp_path: Path, form: str
) -> None:
    rows = frame()
    expected = build_profile(rows, kinds=KINDS)
    table = pa.Table.from_pandas(rows, preserve_index=False)
    if form == "files":
        from keel.engines import Files

        half = len(rows) // 2
        first = write(tmp_path / "a.parquet", {c: table.column(c).slice(0, half) for c in table.column_names})
        second = write(tmp_path / "b.parquet", {c: table.column(c).slice(half) for c in table.column_names})
        data: object = Files((first, second))
    else:
        data = table

    got = profile(engine, data, KINDS)

    assert list(got) == list(KINDS)
    for name in KINDS:
        assert_same(got[name], expected.columns[name])


def test_categories_beyond_the_limit_go_to_the_other_bucket(engine: Engine) -> None:
    values = [f"c{i:05d}" for i in range(MAX_CATEGORIES + 50)] + ["c00007"] * 3
    rows = pd.DataFrame({"s": pd.array(values, dtype="string")})

    got = profile(engine, pa.Table.from_pandas(rows, preserve_index=False), {"s": "categorical"})["s"]

    assert got.frequencies == build_profile(rows, kinds={"s": "categorical"}).columns["s"].frequencies
    assert got.frequencies[OTHER] == 50
    assert next(iter(got.frequencies)) == "c00007"


def test_a_column_the_data_lacks_or_an_unknown_kind_is_refused_by_name(engine: Engine) -> None:
    table = pa.table({"x": [1.0, 2.0]})

    with pytest.raises(ValidationError, match="'y'"):
        profile(engine, table, {"x": "numeric", "y": "numeric"})
    with pytest.raises(ValidationError, match="ordinal"):
        profile(engine, table, {"x": "ordinal"})
