"""Data quality of a current window: missing values, out-of-range values, new categories, schema changes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from keel.errors import ValidationError
from keel.monitoring import QualityResult, build_profile, check_quality


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "age": rng.uniform(18, 90, n),
            "plan": pd.Series(rng.choice(["free", "pro", "team"], n)),
            "code": rng.integers(0, 3, n),
        }
    )


@pytest.fixture(scope="module")
def profile():  # type: ignore[no-untyped-def]
    return build_profile(_frame(20_000, 1), kinds={"code": "categorical"})


def test_clean_window_has_no_issues(profile) -> None:  # type: ignore[no-untyped-def]
    result = check_quality(profile, _frame(5000, 2))
    assert result.issues == [] and not result.failed and not result.schema_changed
    age = result.columns[0]
    assert age.out_of_range_share is not None and age.out_of_range_share < 0.01
    assert result.columns[2].new_categories == []  # integer codes declared categorical stay categorical


def test_new_category_is_listed_with_its_share(profile) -> None:  # type: ignore[no-untyped-def]
    current = _frame(1000, 2)
    current.loc[:99, "plan"] = "enterprise"
    result = check_quality(profile, current)
    plan = next(c for c in result.columns if c.name == "plan")
    assert plan.new_categories == [("enterprise", pytest.approx(0.1))]
    assert plan.new_category_share == pytest.approx(0.1)
    assert result.failed and "'enterprise'" in result.issues[0]


def test_missing_rate_increase_is_an_issue(profile) -> None:  # type: ignore[no-untyped-def]
    current = _frame(1000, 2)
    current.loc[:149, "age"] = np.nan
    result = check_quality(profile, current)
    assert result.columns[0].current_missing_rate == pytest.approx(0.15)
    assert result.issues == ["Column 'age': 15.0% missing, up from 0.0% in the reference (more than +10% points)."]
    below = check_quality(profile, current, missing_rate_increase=0.2)
    assert not below.failed


def test_out_of_range_values_are_an_issue(profile) -> None:  # type: ignore[no-untyped-def]
    current = _frame(1000, 2)
    current.loc[:79, "age"] = 150.0
    result = check_quality(profile, current)
    assert result.columns[0].out_of_range_share == pytest.approx(0.08, abs=0.003)  # + chance, about 2/20,001
    assert result.failed and "outside the reference's range" in result.issues[0]


def test_schema_changes_are_detected(profile) -> None:  # type: ignore[no-untyped-def]
    current = (
        _frame(500, 2)
        .drop(columns=["code"])
        .assign(plan=lambda d: np.arange(len(d)) % 3, age=lambda d: d["age"].round().astype(str) + " years", extra=1.0)
    )
    result = check_quality(profile, current)
    assert result.missing_columns == ["code"]
    assert result.new_columns == ["extra"]
    assert [(k.column, k.reference, k.current) for k in result.kind_changes] == [
        ("age", "numeric", "categorical"),
        ("plan", "categorical", "numeric"),
    ]
    assert result.schema_changed and result.failed
    assert result.columns == []
    assert len(result.issues) == 4


def test_result_round_trips_through_json(profile) -> None:  # type: ignore[no-untyped-def]
    current = _frame(1000, 2).assign(extra=1)
    current.loc[:99, "plan"] = None
    result = check_quality(profile, current)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["failed"] is True
    assert QualityResult.from_dict(data) == result


def test_bad_inputs_are_validation_errors(profile) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationError, match="no rows"):
        check_quality(profile, _frame(10, 2).iloc[:0])
    with pytest.raises(ValidationError, match="out_of_range_share must be a number in"):
        check_quality(profile, _frame(10, 2), out_of_range_share=5)
