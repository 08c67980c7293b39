"""Rows per event-time window and bucket (:meth:`Engine.window_counts`): on every engine, the counts a plain-Python
oracle gives (:meth:`Window.index` per row, the first bucket condition that :func:`holds`), for fixed-width and
calendar windows, timestamps before 1970 and at window edges included."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from _engines import ENGINES, write

from keel.engines import Engine, Files
from keel.engines._conditions import Compare, Condition, IsIn, IsNull, holds
from keel.engines._windows import Window
from keel.errors import ValidationError

T0 = datetime(2024, 1, 29, tzinfo=UTC)


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Engine:
    built: Engine = request.getfixturevalue(f"{request.param}_engine")
    return built


def rows(n: int = 600, seed: int = 11) -> list[dict[str, object]]:
    rng = random.Random(seed)
    edges = [
        datetime(1969, 12, 31, 23, tzinfo=UTC),
        datetime(1970, 1, 5, tzinfo=UTC),
        T0,
        datetime(2024, 3, 1, tzinfo=UTC),
    ]
    out = []
    for _ in range(n):
        if rng.random() < 0.1:
            t = rng.choice(edges) + timedelta(microseconds=rng.choice([-1, 0, 1]))
        else:
            t = T0 + timedelta(seconds=rng.randrange(-40 * 86_400, 40 * 86_400))
        out.append(
            {
                "t": None if rng.random() < 0.02 else t,
                "x": rng.choice([None, float("nan"), rng.gauss(0, 1), float("inf")]),
                "s": rng.choice([None, "basic", "pro", "team", "other"]),
            }
        )
    return out


BUCKETS: dict[str, list[Condition]] = {
    "x": [IsNull("x"), Compare("x", "<=", -0.5), Compare("x", "<=", 0.0), Compare("x", "<=", 0.5)],
    "s": [IsNull("s"), IsIn("s", ("basic",)), IsIn("s", ("pro",))],
    "nothing": [],
}


def table(data: list[dict[str, object]]) -> pa.Table:
    return pa.table(
        {
            "t": pa.array([r["t"] for r in data], pa.timestamp("us", tz="UTC")),
            "x": pa.array([r["x"] for r in data], pa.float64()),
            "s": pa.array([r["s"] for r in data], pa.string()),
        }
    )


def oracle(data: list[dict[str, object]], window: Window) -> tuple[list[int], dict[str, np.ndarray]]:
    dated = [r for r in data if r["t"] is not None]
    indexes = sorted({window.index(r["t"]) for r in dated})  # type: ignore[arg-type]
    position = {w: i for i, w in enumerate(indexes)}
    counts = {name: np.zeros((len(indexes), len(cs) + 1), dtype=np.int64) for name, cs in BUCKETS.items()}
    for r in dated:
        for name, conditions in BUCKETS.items():
            bucket = next((k for k, c in enumerate(conditions) if holds(c, r)), len(conditions))
            counts[name][position[window.index(r["t"])], bucket] += 1  # type: ignore[arg-type]
    return indexes, counts


@pytest.mark.parametrize("spelled", ["1d", "7d", "12h", "monthly"])
@pytest.mark.parametrize("form", ["table", "files"])
def test_counts_per_window_and_bucket_are_the_oracles(engine: Engine, tmp_path: Path, spelled: str, form: str) -> None:
    data = rows()
    window = Window.parse(spelled)
    source = table(data)
    if form == "files":
        half = len(data) // 2
        a = write(tmp_path / "a.parquet", {c: source.column(c).slice(0, half) for c in source.column_names})
        b = write(tmp_path / "b.parquet", {c: source.column(c).slice(half) for c in source.column_names})
        got = engine.window_counts(Files((a, b)), "t", window, BUCKETS)
    else:
        got = engine.window_counts(source, "t", window, BUCKETS)

    indexes, counts = oracle(data, window)
    assert got.indexes == indexes
    assert got.starts[0] <= min(r["t"] for r in data if r["t"] is not None) < got.window.end(indexes[0])  # type: ignore[type-var,operator]
    for name in BUCKETS:
        np.testing.assert_array_equal(got.counts[name], counts[name], err_msg=name)
    assert got.counts["nothing"].sum() == sum(r["t"] is not None for r in data)
    assert (got.counts["x"][:, 0] > 0).any() and (got.counts["s"][:, -1] > 0).any()  # the data exercises buckets


def test_windows_are_named_and_aligned() -> None:
    assert Window.parse("weekly") == Window.parse("7d") == Window.parse("1w")
    week = Window.parse("7d")
    monday = datetime(2026, 12, 7, tzinfo=UTC)
    assert week.start(week.index(monday + timedelta(days=6, hours=23))) == monday
    assert week.start(week.index(monday - timedelta(microseconds=1))) == monday - timedelta(days=7)
    day = Window.parse("daily")
    assert day.start(day.index(datetime(1969, 12, 31, 12, tzinfo=UTC))) == datetime(1969, 12, 31, tzinfo=UTC)
    month = Window.parse("1mo")
    assert month.start(month.index(datetime(2024, 2, 29, 23, tzinfo=UTC))) == datetime(2024, 2, 1, tzinfo=UTC)
    assert month.end(month.index(datetime(2024, 12, 5, tzinfo=UTC))) == datetime(2025, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("bad", ["0d", "7", "fortnight", "-1d", ""])
def test_a_window_that_is_not_a_duration_is_refused(bad: str) -> None:
    with pytest.raises(ValidationError, match="not a duration"):
        Window.parse(bad)


def test_missing_columns_are_named(engine: Engine) -> None:
    source = table(rows(20))
    with pytest.raises(ValidationError, match="'when'"):
        engine.window_counts(source, "when", Window.parse("1d"), BUCKETS)
    with pytest.raises(ValidationError, match="'nope'"):
        engine.window_counts(source, "t", Window.parse("1d"), {"nope": [IsNull("nope")]})
