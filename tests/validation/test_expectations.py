"""Expectations checked in one pass by every engine: each planted anomaly is found, with its rows and the first
of them; clean data fails nothing."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from keel.engines import SEQ, Engine
from keel.errors import ValidationError
from keel.validation import (
    Expectation,
    Fresh,
    InRange,
    LengthBetween,
    MatchesPattern,
    NotNull,
    OneOf,
    RowCount,
    UniqueKeys,
    expectation_from_spec,
    validate,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "conformance"))
from _engines import ENGINES

NOW = datetime(2024, 3, 1, tzinfo=UTC)
N = 2_000


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Engine:
    built: Engine = request.getfixturevalue(f"{request.param}_engine")
    return built


def clean(seed: int = 0, n: int = N) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "customer_id": np.arange(n, dtype=np.int64),
        "event_time": np.datetime64("2024-02-29T00:00:00", "us") + rng.integers(0, 86_400_000_000, size=n),
        "spend": rng.gamma(2.0, 20.0, size=n),
        "plan": rng.choice(np.array(["basic", "pro", "team"], dtype=object), size=n),
        "code": np.array([f"C-{i:05d}" for i in range(n)], dtype=object),
    }


def as_table(columns: dict[str, np.ndarray]) -> pa.Table:
    n = len(columns["customer_id"])
    return pa.table(
        {
            "customer_id": pa.array(columns["customer_id"]),
            "event_time": pa.array(columns["event_time"]).cast(pa.timestamp("us", tz="UTC")),
            "spend": pa.array(columns["spend"], pa.float64(), from_pandas=True),
            "plan": pa.array(columns["plan"], pa.string()),
            "code": pa.array(columns["code"], pa.string()),
            SEQ: pa.array(range(n), pa.int64()),
        }
    )


EXPECTATIONS: list[Expectation] = [
    NotNull("spend"),
    NotNull("plan", max_rate=0.01),
    InRange("spend", min=0, max=10_000),
    OneOf("plan", ["basic", "pro", "team"]),
    MatchesPattern("code", r"C-[0-9]{5}"),
    LengthBetween("code", min=7, max=7),
    UniqueKeys(),
    Fresh(max_age=timedelta(days=2)),
    RowCount(min=1_000, max=1_000_000),
]


def check(engine: Engine, table: pa.Table) -> dict[str, tuple[bool, int, int | None]]:
    report = validate(engine, table, EXPECTATIONS, keys=["customer_id"], timestamp="event_time", now=NOW)
    assert report.rows == table.num_rows
    return {r.expectation.describe(): (r.passed, r.failed, r.first) for r in report.results}


def test_clean_data_fails_no_expectation_over_repeated_seeds(engine: Engine) -> None:
    for seed in range(5):  # the false-alarm rate of these expectations on clean data: 0 of 5 x 9
        report = validate(
            engine, as_table(clean(seed)), EXPECTATIONS, keys=["customer_id"], timestamp="event_time", now=NOW
        )
        assert report.failures == [], [r.to_dict() for r in report.failures]


@pytest.mark.parametrize(
    ("plant", "failing", "count", "first"),
    [
        ("nulls", "spend is not null", 3, 10),
        ("negative", "0 <= spend <= 10000", 2, 7),
        ("new category", "plan is one of 'basic', 'pro', 'team'", 1, 99),
        ("bad code", "code matches 'C-[0-9]{5}'", 1, 5),
        ("duplicated keys", "(keys, event time) are unique", 2, None),
        ("stale", "the latest event is at most 2 days, 0:00:00 old", 1, None),
        ("too few rows", "1,000 <= rows <= 1,000,000", 1, None),
    ],
)
def test_each_planted_anomaly_is_found_with_its_rows(
    engine: Engine, plant: str, failing: str, count: int, first: int | None
) -> None:
    columns = clean()
    if plant == "nulls":
        columns["spend"][[10, 20, 30]] = np.nan
    elif plant == "negative":
        columns["spend"][[7, 700]] = -1.0
    elif plant == "new category":
        columns["plan"][99] = "enterprise"
    elif plant == "bad code":
        columns["code"][5] = "C-1234x"
    elif plant == "duplicated keys":
        columns["customer_id"][[1, 2]] = 0
        columns["event_time"][[1, 2]] = columns["event_time"][0]
    elif plant == "stale":
        columns["event_time"] = columns["event_time"] - np.timedelta64(30, "D")
    elif plant == "too few rows":
        columns = {k: v[:500] for k, v in columns.items()}

    results = check(engine, as_table(columns))

    assert results[failing] == (False, count, first)
    assert [name for name, (passed, _, _) in results.items() if not passed] == [failing]


def test_a_tolerated_share_of_nulls_passes_and_more_fails(engine: Engine) -> None:
    columns = clean()
    columns["plan"][:20] = None  # 1% of 2,000: tolerated
    assert check(engine, as_table(columns))["plan is not null in at least 99.0% of rows"][0]
    columns["plan"][:21] = None
    assert check(engine, as_table(columns))["plan is not null in at least 99.0% of rows"] == (False, 21, 0)


def test_an_expectation_on_a_missing_column_names_it(engine: Engine) -> None:
    with pytest.raises(ValidationError, match="'age'"):
        validate(engine, as_table(clean()), [InRange("age", min=0)])


def test_specs_round_trip_and_refuse_what_they_do_not_know() -> None:
    for expectation in [*EXPECTATIONS, NotNull("x", severity="warning"), InRange("t", max=NOW)]:
        assert expectation_from_spec(expectation.spec()) == expectation
    assert NotNull("spend").spec() == {"expect": "not_null", "feature": "spend"}
    with pytest.raises(ValidationError, match="unknown expectation 'positive'"):
        expectation_from_spec({"expect": "positive", "feature": "x"})
    with pytest.raises(ValidationError, match="needs min, max or both"):
        InRange("x")
    with pytest.raises(ValidationError, match="severity"):
        NotNull("x", severity="fatal")  # type: ignore[arg-type]


def test_inferred_expectations_raise_no_error_on_clean_data_of_other_seeds(engine: Engine) -> None:
    """What `keel validate infer` proposes from one version, checked on twenty more drawn alike: the false-alarm
    rate of error-level expectations (the ones that block) is reported, and is zero here."""
    from keel.validation._infer import infer

    dtypes = {"spend": "float64", "plan": "string", "code": "string"}
    statistics = engine.column_statistics(as_table(clean(0)), dtypes)
    proposed = infer(statistics, rows=N, has_duplicates=False, features=list(dtypes))
    assert any(e.severity == "error" for e in proposed) and any(e.severity == "warning" for e in proposed)
    errors = warnings = 0
    seeds = range(1, 21)
    for seed in seeds:
        report = validate(engine, as_table(clean(seed)), proposed, keys=["customer_id"], timestamp="event_time")
        errors += len(report.errors)
        warnings += len(report.failures) - len(report.errors)
    checks = len(seeds) * len(proposed)
    print(f"inferred expectations on clean data: {errors / checks:.1%} error-level, {warnings / checks:.1%} warnings")
    assert errors == 0
