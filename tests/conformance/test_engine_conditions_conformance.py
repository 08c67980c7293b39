"""Row conditions counted in one pass (:meth:`Engine.count_where`): on every engine, the counts and first rows
the plain-Python oracle (:func:`keel.engines._conditions.holds`) gives, nulls and NaN included."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from _engines import ENGINES, write

from keel.engines import SEQ, Engine, Files
from keel.engines._conditions import (
    And,
    Compare,
    Condition,
    IsIn,
    IsNull,
    Length,
    Matches,
    Not,
    Or,
    Predicate,
    duckdb_sql,
    holds,
)
from keel.errors import ValidationError

T0 = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Engine:
    built: Engine = request.getfixturevalue(f"{request.param}_engine")
    return built


def rows(n: int = 400, seed: int = 5) -> list[dict[str, object]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        out.append(
            {
                "x": rng.choice([None, float("nan"), rng.uniform(-5, 5), 0.0, -0.0, float("inf")]),
                "k": rng.choice([None, rng.randrange(-3, 10)]),
                "s": rng.choice([None, "", "basic", "pro", "team", "ßü", "A-17", "a-7"]),
                "t": rng.choice([None, T0 + timedelta(hours=rng.randrange(-48, 48))]),
                "b": rng.choice([None, True, False]),
            }
        )
    return out


CONDITIONS: dict[str, Condition] = {
    "x missing": IsNull("x"),
    "x negative": Compare("x", "<", 0),
    "x above 4": Compare("x", ">", 4.0),
    "x is zero": Compare("x", "=", 0.0),
    "k out of range": Or((Compare("k", "<", 0), Compare("k", ">", 7))),
    "k missing": IsNull("k"),
    "s unknown": And((Not(IsNull("s")), Not(IsIn("s", ("basic", "pro"))))),
    "s not a code": Not(Matches("s", r"[A-Z]-[0-9]+")),
    "s long": Length("s", ">", 3),
    "s empty": Length("s", "=", 0),
    "t before": Compare("t", "<", T0),
    "t at or after, naive": Compare("t", ">=", datetime(2024, 1, 2)),
    "b true": Compare("b", "=", True),
    "python: x positive": Predicate(("x",), lambda df: df["x"].astype(float) > 0, "x positive"),
    "python: k even and s set": Predicate(
        ("k", "s"), lambda df: (df["k"].astype(float) % 2 == 0) & df["s"].notna(), "k even and s set"
    ),
    "python: returns NaN and None": Predicate(("s",), lambda df: df["s"].map({"pro": True, "team": None}), "mapped"),
    "not python, or null": Or((Not(Predicate(("x",), lambda df: df["x"].astype(float) < 1, "x small")), IsNull("k"))),
    "nothing": Or(()),
    "everything": And(()),
}


def table(data: list[dict[str, object]]) -> pa.Table:
    return pa.table(
        {
            "x": pa.array([r["x"] for r in data], pa.float64()),
            "k": pa.array([r["k"] for r in data], pa.int64()),
            "s": pa.array([r["s"] for r in data], pa.string()),
            "t": pa.array([r["t"] for r in data], pa.timestamp("us", tz="UTC")),
            "b": pa.array([r["b"] for r in data], pa.bool_()),
            SEQ: pa.array(range(100, 100 + len(data)), pa.int64()),
        }
    )


@pytest.mark.parametrize("form", ["table", "files"])
def test_counts_and_first_rows_are_the_oracles(engine: Engine, tmp_path: Path, form: str) -> None:
    data = rows()
    source = table(data)
    if form == "files":
        half = len(data) // 2
        a = write(tmp_path / "a.parquet", {c: source.column(c).slice(0, half) for c in source.column_names})
        b = write(tmp_path / "b.parquet", {c: source.column(c).slice(half) for c in source.column_names})
        got = engine.count_where(Files((a, b)), CONDITIONS)
    else:
        got = engine.count_where(source, CONDITIONS)

    assert list(got) == list(CONDITIONS)
    for name, condition in CONDITIONS.items():
        matched = [i for i, row in enumerate(data) if holds(condition, row)]
        assert (got[name].rows, got[name].matched) == (len(data), len(matched)), name
        assert got[name].first == (100 + matched[0] if matched else None), name
    assert 0 < got["x missing"].matched < len(data)  # the data exercises the conditions
    assert got["everything"].matched == len(data) and got["nothing"].matched == 0


def test_without_a_sequence_column_the_first_row_is_not_known(engine: Engine) -> None:
    source = table(rows(50)).drop_columns([SEQ])

    got = engine.count_where(source, {"x missing": IsNull("x")})

    assert got["x missing"].matched > 0 and got["x missing"].first is None


def test_a_column_the_data_lacks_is_named(engine: Engine) -> None:
    with pytest.raises(ValidationError, match="'nope'"):
        engine.count_where(table(rows(5)), {"bad": Compare("nope", "<", 1)})


def test_conditions_refuse_what_no_engine_can_evaluate_alike() -> None:
    with pytest.raises(ValidationError, match="look-around"):
        Matches("s", r"(?=a)a")
    with pytest.raises(ValidationError, match="not a regular expression"):
        Matches("s", "(")
    with pytest.raises(ValidationError, match="NaN"):
        Compare("x", "<", float("nan"))
    with pytest.raises(ValidationError, match="unknown comparison"):
        Compare("x", "~", 1)  # type: ignore[arg-type]


def test_text_values_are_quoted_in_sql() -> None:
    sql = duckdb_sql(IsIn("s", ("it's", 'say "hi"')))

    assert "'it''s'" in sql and "'say \"hi\"'" in sql


def test_a_python_check_that_raises_or_returns_the_wrong_shape_is_named(engine: Engine) -> None:
    def broken(df: object) -> object:
        raise KeyError("nope")

    with pytest.raises(Exception, match="'boom'"):
        engine.count_where(table(rows(20)), {"bad": Predicate(("x",), broken, "boom")})
    with pytest.raises(Exception, match="one truth value per row"):
        engine.count_where(table(rows(20)), {"bad": Predicate(("x",), lambda df: [True, False, True], "short")})
