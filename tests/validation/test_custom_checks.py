"""Custom vectorised checks: a Python function of some columns, run by the engine in the same pass as every other
expectation, declared on a view beside its fields, checked at ingest (strict refuses, warn records), found again by
a fresh process from the project's modules, and never read from a file."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from keel.engines import LocalEngine
from keel.errors import ValidationError
from keel.validation import Custom, InRange, expectation_from_spec, validate
from keel.validation._infer import load


def basket_matches(df: pd.DataFrame) -> pd.Series:
    """Valid rows: the average basket times the orders is the spend (to a cent)."""
    return (df["avg_basket"] * df["orders"] - df["spend"]).abs() <= 0.01


def frame(n: int = 500) -> pa.Table:
    rng = np.random.default_rng(0)
    orders = rng.integers(1, 9, n)
    basket = np.round(rng.gamma(2.0, 20.0, n), 2)
    spend = basket * orders
    spend[[4, 90, 91]] += 5.0  # three rows that do not add up
    basket[17] = np.nan  # a missing input: the check's result is missing, so the row is invalid
    return pa.table({"orders": orders, "avg_basket": basket, "spend": spend, "__keel_seq": np.arange(100, 100 + n)})


def test_a_custom_check_counts_its_invalid_rows_and_the_first_in_the_same_pass() -> None:
    check = Custom("basket_matches", ["spend", "orders", "avg_basket"], basket_matches)

    report = validate(LocalEngine(), frame(), [check, InRange("orders", min=1)])

    [custom, in_range] = report.results
    assert (custom.failed, custom.first, custom.passed) == (4, 104, False)
    assert in_range.passed
    assert custom.expectation.describe() == "basket_matches holds"


def test_a_check_that_raises_or_returns_the_wrong_length_is_named() -> None:
    raising = Custom("raises", ["orders"], lambda df: df["nope"])
    short = Custom("short", ["orders"], lambda df: np.ones(3, dtype=bool))
    with pytest.raises(Exception, match="'raises' raised KeyError"):
        validate(LocalEngine(), frame(), [raising])
    with pytest.raises(Exception, match="one truth value per row"):
        validate(LocalEngine(), frame(), [short])
    with pytest.raises(ValidationError, match="needs the columns"):
        Custom("x", [], basket_matches)
    with pytest.raises(ValidationError, match="must be a function"):
        Custom("x", ["orders"], "df.orders > 0")  # type: ignore[arg-type]


def test_the_spec_carries_the_functions_source_and_no_file_can_hold_one() -> None:
    spec = Custom("basket_matches", ["spend"], basket_matches, severity="warning").spec()

    assert spec["expect"] == "custom" and spec["severity"] == "warning"
    assert "def basket_matches" in spec["source"]
    with pytest.raises(ValidationError, match="is a Python function"):
        expectation_from_spec(spec)
    with pytest.raises(ValidationError, match="is a Python function"):
        load("view: activity\nexpectations:\n- expect: custom\n  name: x\n  columns: [spend]\n")


PROJECT = textwrap.dedent(
    """
    from datetime import timedelta

    from keel import Entity, FeatureView, Field, ParquetSource
    from keel.validation import Custom


    def basket_matches(df):
        return (df["avg_basket"] * df["orders"] - df["spend"]).abs() <= 0.01


    customer = Entity("customer", join_keys=["customer_id"])
    orders = FeatureView(
        "orders",
        entities=[customer],
        source=ParquetSource("data/orders.parquet", timestamp="event_time"),
        schema=[Field("orders", "int64"), Field("avg_basket", "float64"), Field("spend", "float64")],
        expectations=[Custom("basket_matches", ["spend", "orders", "avg_basket"], basket_matches)],
        validation="{policy}",
    )
    """
)


def write_project(root: Path, policy: str, bad: bool) -> None:
    table = frame(200).drop_columns(["__keel_seq"]).to_pandas()
    if not bad:
        table["spend"] = table["avg_basket"].fillna(0) * table["orders"]
        table["avg_basket"] = table["avg_basket"].fillna(0)
    table["customer_id"] = np.arange(len(table))
    table["event_time"] = pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(np.arange(len(table)), unit="h")
    (root / "data").mkdir(parents=True, exist_ok=True)
    table.to_parquet(root / "data" / "orders.parquet", index=False)
    (root / "features.py").write_text(PROJECT.replace("{policy}", policy))


def keel(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The command line in a fresh process: the views' functions are found in the project's modules."""
    command = str(Path(sys.executable).parent / "keel")
    return subprocess.run([command, *args, "-p", str(root)], capture_output=True, text=True, timeout=300)


def test_strict_ingest_refuses_and_warn_records_from_a_fresh_process(tmp_path: Path) -> None:
    root = tmp_path / "p"
    root.mkdir()
    write_project(root, "strict", bad=True)
    assert keel(root, "apply").returncode == 0

    refused = keel(root, "ingest", "orders")
    assert refused.returncode != 0
    assert "basket_matches holds: 4 of 200 rows (2.00%), first at row 4" in refused.stderr + refused.stdout

    write_project(root, "warn", bad=True)
    assert keel(root, "apply").returncode == 0
    assert keel(root, "ingest", "orders").returncode == 0
    shown = keel(root, "features", "show", "orders", "--json")
    assert shown.returncode == 0, shown.stderr
    version = json.loads(shown.stdout)
    assert version["version"] == 1 and version["validation"]["failures"][0]["describe"] == "basket_matches holds"
    table = keel(root, "views", "show", "orders")  # `keel views` is `keel features`
    assert "basket_matches holds" in table.stdout and "FAIL" in table.stdout
