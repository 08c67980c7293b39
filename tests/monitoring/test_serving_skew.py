"""Serving/training skew: the prediction log's features against the training profile. A feature served in other
units, a category renamed upstream or a default filled in for missing values is found; features served as trained
are not flagged, and the false-alarm rate over repeated seeds is measured and reported."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from _training_fixtures import Services, champion_services
from keel.errors import NotFoundError
from keel.monitoring import Monitor
from keel.validation import ShiftThresholds

INPUTS = ["spend", "orders", "plan"]
END = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def services() -> Services:
    return champion_services(4000, INPUTS)


class Log:
    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame
        self.calls: list[dict[str, Any]] = []

    def __call__(
        self, model: str, *, version: int | None = None, start: datetime | None = None, end: datetime | None = None
    ) -> pd.DataFrame:
        self.calls.append({"model": model, "version": version, "start": start, "end": end})
        return self.frame


def logged(services: Services, n: int, seed: int, **changes: Any) -> pd.DataFrame:
    """Logged rows: training-time feature rows drawn at random, then ``changes`` applied (column -> function)."""
    rows = services.features.sample(n=n, replace=True, random_state=seed).reset_index(drop=True)
    for name, change in changes.items():
        rows[name] = change(rows[name])
    return pd.DataFrame({f"feature.{name}": rows[name] for name in INPUTS})


def skew(services: Services, frame: pd.DataFrame, **kwargs: Any) -> Any:
    monitor = Monitor(services.registry, services.artifacts, services.catalog, Log(frame))
    return monitor.serving_skew("churn@champion", end=END, **kwargs)


def test_features_served_as_trained_are_not_skewed(services: Services) -> None:
    found = skew(services, logged(services, 3000, seed=1))

    assert found.model == "churn:1" and found.rows == 3000
    assert [f.name for f in found.features] == INPUTS and found.skewed == []
    assert found.window_start == END - timedelta(days=7) and found.window_end == END
    spend = found.features[0]
    assert (
        spend.shift.method == "psi" and spend.buckets[0] == "(missing)" and len(spend.buckets) == 11
    )  # missing + deciles
    assert sum(spend.training) == pytest.approx(1.0) and sum(spend.serving) == pytest.approx(1.0)


def test_a_feature_served_in_other_units_is_found(services: Services) -> None:
    found = skew(services, logged(services, 3000, seed=2, spend=lambda s: s * 100))  # cents, not dollars

    assert found.skewed == ["spend"]
    assert found.features[0].shift.statistic > 1.0


def test_a_renamed_category_and_a_default_for_missing_values_are_found(services: Services) -> None:
    renamed = skew(services, logged(services, 3000, seed=3, plan=lambda s: s.replace({"pro": "professional"})))
    filled = skew(services, logged(services, 3000, seed=4, spend=lambda s: s.fillna(0.0)))

    assert renamed.skewed == ["plan"]
    plan = renamed.features[2]
    assert "professional" in plan.buckets and plan.shift.method == "linf"
    assert plan.shift.statistic == pytest.approx(1 / 3, abs=0.05)  # pro's third of the rows moved
    assert filled.skewed == ["spend"]  # 10% missing in training, none served; 10% more zeros


def test_a_few_logged_rows_are_tested_not_measured(services: Services) -> None:
    clean = skew(services, logged(services, 300, seed=5))
    shifted = skew(services, logged(services, 300, seed=6, spend=lambda s: s + 40))

    assert all(f.shift.method == "chi2" for f in clean.features) and clean.skewed == []
    assert shifted.skewed == ["spend"]


def test_false_alarm_rate_over_seeds(services: Services) -> None:
    seeds = range(20)
    large = sum(len(skew(services, logged(services, 3000, seed=100 + s)).skewed) for s in seeds)
    small = sum(len(skew(services, logged(services, 300, seed=200 + s)).skewed) for s in seeds)
    features = len(seeds) * len(INPUTS)
    print(f"serving-skew false alarms over {len(seeds)} seeds: {large / features:.1%} (3,000 rows), "
          f"{small / features:.1%} (300 rows)")  # fmt: skip
    assert large / features <= 0.05 and small / features <= 0.10


def test_thresholds_are_the_callers_and_an_empty_log_is_reported(services: Services) -> None:
    strict = skew(
        services, logged(services, 3000, seed=7, spend=lambda s: s + 5), thresholds=ShiftThresholds(psi=0.001)
    )
    empty = skew(services, logged(services, 3000, seed=7).iloc[:0])

    assert "spend" in strict.skewed
    assert empty.rows == 0 and empty.features == [] and empty.skipped["spend"] == "no logged rows"
    with pytest.raises(NotFoundError):
        Monitor(services.registry, services.artifacts, services.catalog, Log(pd.DataFrame())).serving_skew("churn@nope")


def test_a_row_count_mismatch_between_sides_does_not_matter(services: Services) -> None:
    """Shares, not counts, are compared: a log of 1,000 rows and one of 10,000 drawn alike agree."""
    a = skew(services, logged(services, 1000, seed=9))
    b = skew(services, logged(services, 10000, seed=10))
    assert a.skewed == b.skewed == []
    np.testing.assert_allclose(a.features[1].training, b.features[1].training)
