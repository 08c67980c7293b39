"""Stability over time: a planted change in one window (a shifted mean, a category's share, values arriving empty)
is found at that window and nowhere else; clean data is stable, and the false-alarm rate over repeated seeds is
measured and reported."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from _training_fixtures import activity_frame, build_project, write_activity
from keel.cli import app
from keel.engines import Engine, LocalEngine
from keel.engines._windows import Window
from keel.errors import ValidationError
from keel.validation import ShiftThresholds, StabilityReport, stability
from keel.validation._distances import decide, jensenshannon_distance, linf, psi

WEEK0 = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday: weekly windows start here
DTYPES = {"x": "float64", "n": "int64", "plan": "string", "flag": "bool"}


@pytest.fixture(scope="module")
def engine() -> Engine:
    return LocalEngine()


def weeks(
    seed: int,
    *,
    per_week: int = 2000,
    n_weeks: int = 8,
    shift_week: int | None = None,
    plan_week: int | None = None,
    empty_week: int | None = None,
) -> pa.Table:
    """``n_weeks`` weeks of rows: a normal ``x``, a Poisson ``n``, a three-valued ``plan``, a boolean ``flag``.
    Planted: ``x`` moves by one standard deviation in ``shift_week``; ``plan``'s shares change from ``plan_week`` on;
    ``x`` is missing in 40% of ``empty_week``'s rows."""
    rng = np.random.default_rng(seed)
    parts = []
    for w in range(n_weeks):
        seconds = rng.integers(0, 7 * 86_400, per_week)
        times = [WEEK0 + timedelta(weeks=w, seconds=int(s)) for s in seconds]
        x = rng.normal(1.0 if w == shift_week else 0.0, 1.0, per_week)
        if w == empty_week:
            x[rng.random(per_week) < 0.4] = np.nan
        shares = [0.2, 0.5, 0.3] if plan_week is not None and w >= plan_week else [0.5, 0.3, 0.2]
        parts.append(
            pa.table(
                {
                    "t": pa.array(times, pa.timestamp("us", tz="UTC")),
                    "x": pa.array(x, pa.float64(), from_pandas=True),
                    "n": pa.array(rng.poisson(4, per_week), pa.int64()),
                    "plan": pa.array(rng.choice(["basic", "pro", "team"], per_week, p=shares)),
                    "flag": pa.array(rng.random(per_week) < 0.3),
                }
            )
        )
    return pa.concat_tables(parts)


def measure(engine: Engine, table: pa.Table, window: str = "7d", **kwargs: object) -> StabilityReport:
    statistics = engine.column_statistics(table, {"t": "timestamp", **DTYPES})
    return stability(
        engine,
        table,
        features=DTYPES,
        statistics=statistics,
        timestamp="t",
        window=Window.parse(window),
        **kwargs,  # type: ignore[arg-type]
    )


def verdicts(report: StabilityReport) -> dict[str, list[int]]:
    return {f.name: f.shifted_at for f in report.features}


def test_clean_weeks_are_stable(engine: Engine) -> None:
    report = measure(engine, weeks(1))

    assert len(report.starts) == 8 and report.starts[0] == WEEK0 and report.rows == [2000] * 8
    assert report.shifted == [] and not report.failed
    assert all(f.verdict == "stable" and len(f.shifts) == 7 for f in report.features)
    assert all(s.method in ("psi", "linf") for f in report.features for s in f.shifts)  # large windows


def test_a_shifted_window_is_found_there_and_when_it_ends(engine: Engine) -> None:
    report = measure(engine, weeks(2, shift_week=4))

    assert verdicts(report) == {"x": [4, 5], "n": [], "plan": [], "flag": []}
    x = report.features[0]
    assert x.largest is not None and x.largest.method == "psi" and x.largest.statistic > 0.2
    assert report.failed and report.shifted == ["x"]


def test_a_category_whose_share_moves_is_found_once(engine: Engine) -> None:
    report = measure(engine, weeks(3, plan_week=6))

    assert verdicts(report) == {"x": [], "n": [], "plan": [6], "flag": []}
    shift = report.features[2].shifts[5]
    assert shift.method == "linf" and shift.statistic == pytest.approx(0.3, abs=0.05)


def test_values_arriving_empty_shift_the_feature(engine: Engine) -> None:
    report = measure(engine, weeks(4, empty_week=3))

    assert verdicts(report)["x"] == [3, 4]
    missing_share = report.to_dict()["features"][0]["shares"][3][0]
    assert missing_share == pytest.approx(0.4, abs=0.05)


def test_small_windows_are_tested_and_still_find_a_planted_shift(engine: Engine) -> None:
    report = measure(engine, weeks(5, per_week=300, shift_week=2))

    assert verdicts(report)["x"] == [2, 3]
    assert all(s.method == "chi2" and s.p_value is not None for s in report.features[0].shifts)
    assert sum(len(f.shifted_at) for f in report.features) == 2


def test_gaps_and_a_warning_severity_are_reported(engine: Engine) -> None:
    table = weeks(6, shift_week=5)
    t = table.column("t")
    kept = pa.compute.or_(
        pa.compute.less(t, pa.scalar(WEEK0 + timedelta(weeks=3), t.type)),
        pa.compute.greater_equal(t, pa.scalar(WEEK0 + timedelta(weeks=4), t.type)),
    )
    report = measure(engine, table.filter(kept), severity="warning")

    assert report.gaps == [(WEEK0 + timedelta(weeks=3), WEEK0 + timedelta(weeks=4))]
    assert report.shifted == ["x"] and not report.failed


def test_monthly_and_daily_windows(engine: Engine) -> None:
    table = weeks(7, per_week=700, n_weeks=9)

    assert [s.month for s in measure(engine, table, "monthly").starts] == [1, 2, 3]
    assert len(measure(engine, table, "1d").starts) == 63


def test_false_alarm_rate_over_seeds_is_low(engine: Engine, record_property: object) -> None:
    """Clean data, 8 weekly windows, 4 features: 28 comparisons per seed, each a chance of a false alarm."""
    seeds = range(100, 120)
    alarms = 0
    small_alarms = 0
    for seed in seeds:
        alarms += len(measure(engine, weeks(seed)).shifted)
        small_alarms += len(measure(engine, weeks(seed, per_week=250)).shifted)
    features = len(seeds) * len(DTYPES)
    rate, small_rate = alarms / features, small_alarms / features
    print(f"stability false alarms over {len(seeds)} seeds: {rate:.1%} (2,000 rows a week), {small_rate:.1%} (250)")
    record_property("false_alarm_rate", rate)  # type: ignore[operator]
    assert rate <= 0.05 and small_rate <= 0.10


def test_unknown_severity_and_nothing_to_measure_are_refused(engine: Engine) -> None:
    table = weeks(8, n_weeks=2)
    with pytest.raises(ValidationError, match="severity"):
        measure(engine, table, severity="fatal")
    with pytest.raises(ValidationError, match="no feature to measure"):
        stability(engine, table, features={"t": "timestamp"}, statistics={}, timestamp="t", window=Window.parse("1d"))


def test_distances_on_known_shares() -> None:
    p, q = np.array([0.5, 0.5]), np.array([0.9, 0.1])
    assert psi(p, p) == 0 and psi(p, q) == pytest.approx(0.4 * np.log(0.9 / 0.5) - 0.4 * np.log(0.1 / 0.5))
    assert linf(p, q) == pytest.approx(0.4)
    assert jensenshannon_distance(p, p) == 0 and 0 < jensenshannon_distance(p, q) < 1
    [big, small] = decide(
        [("numeric", np.array([5000, 5000]), np.array([9000, 1000])), ("categorical", p * 10, q * 10)]
    )
    assert big.shifted and big.method == "psi" and small.method == "chi2" and small.p_value is not None
    with pytest.raises(ValidationError, match="psi"):
        ShiftThresholds(psi=0)


# -- the command ------------------------------------------------------------------------------------------------
runner = CliRunner()


def test_validate_stability_prints_writes_and_gates(tmp_path: Path) -> None:
    project, _ = build_project(tmp_path / "p", n=6000)
    project.close()
    root = tmp_path / "p"
    steady = ("-f", "plan", "-f", "orders", "-f", "active")
    code, out = _invoke("validate", "stability", "activity", "-w", "7d", "-p", str(root), *steady)
    assert code == 0, out
    assert "stable" in out and "SHIFTED" not in out
    code, out = _invoke("validate", "stability", "activity", "-p", str(root), "-f", "spend")
    assert code == 1 and "SHIFTED" in out  # spend grows by 21 a week (its noise: 15): a trend, found

    frame = activity_frame(6000)
    late = frame["event_time"] >= frame["event_time"].min() + timedelta(days=35)
    frame.loc[late, "plan"] = "team"  # from the sixth week on, every customer is on one plan
    write_activity(root, frame)
    assert _invoke("ingest", "activity", "-p", str(root))[0] == 0
    code, out = _invoke(
        "validate", "stability", "activity", "-p", str(root), *steady, "--json", str(tmp_path / "s.json"),
        "--html", str(tmp_path / "s.html"),
    )  # fmt: skip

    assert code == 1, out
    assert "SHIFTED" in out and "plan" in out
    import json

    document = json.loads((tmp_path / "s.json").read_text())
    assert document["version"] == 2 and document["shifted"] == ["plan"]
    page = (tmp_path / "s.html").read_text()
    assert page.count("<svg") >= 2 and "plan" in page and "<script" not in page
    assert _invoke("validate", "stability", "activity", "-p", str(root), *steady, "--severity", "warning")[0] == 0
    result = runner.invoke(app, ["validate", "stability", "activity", "-p", str(root), "-w", "fortnight"])
    assert isinstance(result.exception, ValidationError) and "not a duration" in str(result.exception)


def _invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


@pytest.mark.spark
def test_the_spark_engine_gives_the_same_report(spark_engine: Engine, engine: Engine) -> None:
    table = weeks(9, shift_week=3, plan_week=5, per_week=600)

    local = measure(engine, table).to_dict()
    spark = measure(spark_engine, table).to_dict()

    assert spark == local and local["shifted"] == ["x", "plan"]
