"""Row conditions every engine counts in one pass: what feature expectations are checked with.

An expectation ("``spend`` is never negative", "``plan`` is one of …") fails on the rows where a condition holds.
A condition is a small tree of the nodes below, compiled to DuckDB SQL by :func:`duckdb_sql` and to a Spark
column by :func:`spark_column`, and evaluated row by row in plain Python by :func:`holds` (the conformance
suite's oracle). :meth:`Engine.count_where <keel.engines.Engine.count_where>` counts, for many conditions at
once and in one pass over the data, the rows where each holds and the first of them.

Nulls: a comparison with a null value is false, not unknown (SQL's three-valued logic is closed here), so
``Compare("x", "<", 0)`` never counts a null ``x``; :class:`IsNull` is how nulls are counted. NaN is null in a
float column, as everywhere in Keel. Text patterns are regular expressions that must match the whole value,
written in the syntax Python, RE2 (DuckDB) and Java (Spark) share: classes, groups, alternation, quantifiers,
anchors; no look-around or back-references.

Example:
    >>> bad = Or((IsNull("plan"), Not(IsIn("plan", ("basic", "pro")))))
    >>> holds(bad, {"plan": "team"}), holds(bad, {"plan": "pro"})
    (True, False)
    >>> duckdb_sql(Compare("spend", "<", 0))
    '(coalesce(("spend" < 0), false))'
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from keel.errors import ValidationError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from pyspark.sql import Column

__all__ = [
    "And",
    "Compare",
    "Condition",
    "Counted",
    "IsIn",
    "IsNull",
    "Length",
    "Matches",
    "Not",
    "Or",
    "Predicate",
    "check_columns",
    "columns_of",
    "duckdb_sql",
    "duckdb_sql_or_null",
    "holds",
    "predicates_of",
    "spark_column",
]

Op = Literal["<", "<=", ">", ">=", "=", "!="]
Value = int | float | str | bool | datetime
_OPS = ("<", "<=", ">", ">=", "=", "!=")


@dataclass(frozen=True)
class IsNull:
    """The value is missing (null; NaN in a float column)."""

    column: str


@dataclass(frozen=True)
class Compare:
    """The value compares with ``value`` by ``op``; false for a missing value."""

    column: str
    op: Op
    value: Value

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise ValidationError(f"unknown comparison {self.op!r}; use one of {', '.join(_OPS)}", field=self.column)
        if isinstance(self.value, float) and math.isnan(self.value):
            raise ValidationError("a comparison with NaN holds for no value; use IsNull", field=self.column)


@dataclass(frozen=True)
class IsIn:
    """The value is one of ``values``; false for a missing value."""

    column: str
    values: tuple[Value, ...]


@dataclass(frozen=True)
class Matches:
    """The text matches ``pattern`` as a whole; false for a missing value."""

    column: str
    pattern: str

    def __post_init__(self) -> None:
        try:
            re.compile(self.pattern)
        except re.error as exc:
            raise ValidationError(f"not a regular expression: {self.pattern!r} ({exc})", field=self.column) from exc
        if re.search(r"\(\?[=!<]|\\[1-9]", self.pattern):
            raise ValidationError(
                f"pattern {self.pattern!r} uses look-around or a back-reference, which not every engine has",
                field=self.column,
            )


@dataclass(frozen=True)
class Length:
    """The text's length in characters compares with ``value`` by ``op``; false for a missing value."""

    column: str
    op: Op
    value: int


@dataclass(frozen=True, eq=False)
class Predicate:
    """A vectorised Python function holds: called with a pandas DataFrame of ``columns`` (a batch of rows, missing
    values as NaN/None), it returns one truth value per row. Engines run it where the data is (a DuckDB Arrow
    function, a Spark pandas UDF), batch by batch, in the same pass as the other conditions. ``name`` names it in
    messages."""

    columns: tuple[str, ...]
    function: Callable[[pd.DataFrame], Any]
    name: str

    def evaluate(self, frame: pd.DataFrame) -> np.ndarray:
        """The function on ``frame``, checked: one boolean per row (a missing result is false).

        Raises:
            ValidationError: the function raised, or returned something that is not one value per row.
        """
        import numpy as np
        import pandas as pd

        try:
            found = self.function(frame)
        except Exception as exc:
            raise ValidationError(f"check {self.name!r} raised {type(exc).__name__}: {exc}", field=self.name) from exc
        values = found.to_numpy() if isinstance(found, pd.Series | pd.Index) else np.asarray(found)
        if values.ndim == 0:
            values = np.full(len(frame), values.item())
        if values.shape != (len(frame),):
            raise ValidationError(
                f"check {self.name!r} must return one truth value per row ({len(frame)}), got shape {values.shape}",
                field=self.name,
            )
        if values.dtype == object:
            return np.array([bool(v) if v is not None and v is not pd.NA and v == v else False for v in values])
        if values.dtype.kind == "f":
            values = np.nan_to_num(values, nan=0.0)
        truth: np.ndarray = values.astype(bool)
        return truth


@dataclass(frozen=True)
class Not:
    """The condition does not hold (for a missing value: the inner condition is false, so this is true)."""

    inner: Condition


@dataclass(frozen=True)
class And:
    """Every condition holds."""

    parts: tuple[Condition, ...]


@dataclass(frozen=True)
class Or:
    """Some condition holds."""

    parts: tuple[Condition, ...]


Condition = IsNull | Compare | IsIn | Matches | Length | Predicate | Not | And | Or


@dataclass(frozen=True)
class Counted:
    """What :meth:`Engine.count_where <keel.engines.Engine.count_where>` found for one condition.

    Attributes:
        rows: the rows of the data.
        matched: the rows where the condition holds.
        first: the sequence number (or, without a sequence column, the position) of the first such row.
    """

    rows: int
    matched: int
    first: int | None


def columns_of(condition: Condition) -> list[str]:
    """The columns a condition reads, in order of first use."""
    if isinstance(condition, Not):
        return columns_of(condition.inner)
    if isinstance(condition, And | Or):
        return list(dict.fromkeys(c for part in condition.parts for c in columns_of(part)))
    if isinstance(condition, Predicate):
        return list(condition.columns)
    return [condition.column]


def check_columns(conditions: Mapping[str, Condition], present: list[str]) -> None:
    """Refuse conditions on a column the data lacks, naming it and the columns the data has."""
    wanted = dict.fromkeys(c for condition in conditions.values() for c in columns_of(condition))
    missing = [c for c in wanted if c not in present]
    if missing:
        raise ValidationError(
            f"column(s) {', '.join(map(repr, missing))} missing; the data has {', '.join(present)}", field=missing[0]
        )


# -- plain Python (the oracle) -------------------------------------------------------------------------------
def holds(condition: Condition, row: Mapping[str, Any]) -> bool:
    """Whether ``condition`` holds for ``row`` (column -> value)."""
    if isinstance(condition, Not):
        return not holds(condition.inner, row)
    if isinstance(condition, And):
        return all(holds(p, row) for p in condition.parts)
    if isinstance(condition, Or):
        return any(holds(p, row) for p in condition.parts)
    if isinstance(condition, Predicate):
        import pandas as pd

        return bool(condition.evaluate(pd.DataFrame({c: [row[c]] for c in condition.columns}))[0])
    value = row[condition.column]
    missing = value is None or (isinstance(value, float) and math.isnan(value))
    if isinstance(condition, IsNull):
        return missing
    if missing:
        return False
    if isinstance(condition, Compare):
        return _compare(value, condition.op, condition.value)
    if isinstance(condition, IsIn):
        return value in condition.values
    if isinstance(condition, Matches):
        return re.fullmatch(condition.pattern, str(value)) is not None
    return _compare(len(str(value)), condition.op, condition.value)


def _compare(a: Any, op: str, b: Any) -> bool:
    a, b = _utc(a), _utc(b)
    if op == "<":
        return bool(a < b)
    if op == "<=":
        return bool(a <= b)
    if op == ">":
        return bool(a > b)
    if op == ">=":
        return bool(a >= b)
    return bool(a == b) if op == "=" else bool(a != b)


def _utc(value: Any) -> Any:
    """A naive datetime as UTC, as Keel takes it; anything else as it is."""
    return value.replace(tzinfo=UTC) if isinstance(value, datetime) and value.tzinfo is None else value


# -- DuckDB ---------------------------------------------------------------------------------------------------
def duckdb_sql(condition: Condition, floats: frozenset[str] = frozenset()) -> str:
    """``condition`` as a DuckDB boolean expression, never null (``floats``: the float columns, whose NaN is
    null)."""
    return f"(coalesce({duckdb_sql_or_null(condition, floats)}, false))"


def duckdb_sql_or_null(condition: Condition, floats: frozenset[str] = frozenset()) -> str:
    """``condition`` as a DuckDB boolean expression that is null where the condition does not hold because of a
    missing value: what ``count_if`` and ``CASE WHEN`` take as false, without the cost of closing it. (``AND``
    and ``OR`` keep a null among false parts null or false, never true; only ``NOT`` needs its part closed.)"""
    return _duck(condition, floats)


def predicates_of(condition: Condition) -> list[Predicate]:
    """The Python functions a condition calls, in order of first use."""
    if isinstance(condition, Not):
        return predicates_of(condition.inner)
    if isinstance(condition, And | Or):
        return list(dict.fromkeys(p for part in condition.parts for p in predicates_of(part)))
    return [condition] if isinstance(condition, Predicate) else []


def duckdb_function_name(predicate: Predicate) -> str:
    """The name a DuckDB connection knows ``predicate``'s function by (see :func:`duckdb_register`)."""
    return f"__keel_check_{id(predicate):x}"


def duckdb_register(connection: Any, conditions: Iterable[Condition], types: Mapping[str, str]) -> None:
    """Register every :class:`Predicate` of ``conditions`` on a DuckDB connection as an Arrow function of its
    columns (``types``: DuckDB type per column), called batch by batch, nulls included."""
    import duckdb
    import pyarrow as pa

    def arrow_function(predicate: Predicate) -> Callable[..., Any]:
        def call(*arrays: Any) -> Any:
            frame = pa.table(list(arrays), names=list(predicate.columns)).to_pandas()
            return pa.array(predicate.evaluate(frame), pa.bool_())

        # DuckDB counts a function's parameters from its signature: one per column.
        parameter = inspect.Parameter.POSITIONAL_ONLY
        call.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [inspect.Parameter(f"c{i}", parameter) for i in range(len(predicate.columns))]
        )
        return call

    for predicate in dict.fromkeys(p for c in conditions for p in predicates_of(c)):
        connection.create_function(
            duckdb_function_name(predicate),
            arrow_function(predicate),
            [duckdb.sqltype(types[c]) for c in predicate.columns],
            duckdb.sqltype("BOOLEAN"),
            type="arrow",
            null_handling="special",
            side_effects=False,
        )


def _duck(condition: Condition, floats: frozenset[str]) -> str:
    if isinstance(condition, Predicate):
        columns = ", ".join('"' + c.replace('"', '""') + '"' for c in condition.columns)
        return f"{duckdb_function_name(condition)}({columns})"
    if isinstance(condition, Not):
        return f"(NOT {duckdb_sql(condition.inner, floats)})"
    if isinstance(condition, And | Or):
        if not condition.parts:
            return "true" if isinstance(condition, And) else "false"
        joiner = " AND " if isinstance(condition, And) else " OR "
        return "(" + joiner.join(_duck(p, floats) for p in condition.parts) + ")"
    c = '"' + condition.column.replace('"', '""') + '"'
    if isinstance(condition, IsNull):
        return f"({c} IS NULL OR isnan({c}))" if condition.column in floats else f"({c} IS NULL)"
    present = f"NOT isnan({c}) AND " if condition.column in floats else ""  # NaN sorts above every number
    if isinstance(condition, Compare):
        return f"({present}{c} {_sql_op(condition.op)} {_duck_literal(condition.value)})"
    if isinstance(condition, IsIn):
        if not condition.values:
            return "false"
        return f"({present}{c} IN ({', '.join(_duck_literal(v) for v in condition.values)}))"
    if isinstance(condition, Matches):
        return f"regexp_full_match({c}, {_duck_literal(condition.pattern)})"
    return f"(length({c}) {_sql_op(condition.op)} {int(condition.value)})"


def _sql_op(op: str) -> str:
    return "<>" if op == "!=" else op


def _duck_literal(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isinf(value):
            return "'inf'::DOUBLE" if value > 0 else "'-inf'::DOUBLE"
        return f"{value!r}::DOUBLE"
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)  # naive: UTC, as Keel takes it
        return f"'{aware.isoformat()}'::TIMESTAMPTZ"
    return "'" + str(value).replace("'", "''") + "'"


# -- Spark ----------------------------------------------------------------------------------------------------
def spark_column(condition: Condition, floats: frozenset[str] = frozenset()) -> Column:
    """``condition`` as a Spark boolean column, never null (``floats``: the float columns, whose NaN is null)."""
    from pyspark.sql import functions as F

    return F.coalesce(_spark(condition, floats), F.lit(False))


def _spark(condition: Condition, floats: frozenset[str]) -> Column:
    from functools import reduce

    from pyspark.sql import functions as F

    if isinstance(condition, Predicate):
        return _spark_predicate(condition)
    if isinstance(condition, Not):
        return ~spark_column(condition.inner, floats)
    if isinstance(condition, And | Or):
        if not condition.parts:
            return F.lit(isinstance(condition, And))
        parts = [spark_column(p, floats) for p in condition.parts]
        return reduce((lambda a, b: a & b) if isinstance(condition, And) else (lambda a, b: a | b), parts)
    c = F.col("`" + condition.column.replace("`", "``") + "`")
    if isinstance(condition, IsNull):
        return (c.isNull() | F.isnan(c)) if condition.column in floats else c.isNull()
    present = ~F.isnan(c) if condition.column in floats else F.lit(True)  # NaN sorts above every number
    if isinstance(condition, Compare):
        return present & _spark_compare(c, condition.op, F.lit(condition.value))
    if isinstance(condition, IsIn):
        return present & c.isin(list(condition.values)) if condition.values else F.lit(False)
    if isinstance(condition, Matches):
        return c.rlike(f"^(?:{condition.pattern})$")
    return _spark_compare(F.char_length(c), condition.op, F.lit(int(condition.value)))


def _spark_compare(a: Column, op: str, b: Column) -> Column:
    if op == "<":
        return a < b
    if op == "<=":
        return a <= b
    if op == ">":
        return a > b
    if op == ">=":
        return a >= b
    if op == "=":
        return a == b
    return a != b


def _spark_predicate(predicate: Predicate) -> Column:
    """A pandas UDF running ``predicate`` on each batch of its columns (the function travels to the workers
    pickled)."""
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.functions import pandas_udf

    from keel.engines._spark_score import pickle_by_value

    pickle_by_value(predicate.function)
    columns = list(predicate.columns)

    def call(*series):  # type: ignore[no-untyped-def]  # no hints: PySpark would read its kind from them
        import pandas as pd

        frame = pd.concat([s.rename(c) for s, c in zip(series, columns, strict=True)], axis=1)
        return pd.Series(predicate.evaluate(frame))

    udf: Any = pandas_udf(call, "boolean")  # type: ignore[call-overload]
    found: Column = udf(*[F.col("`" + c.replace("`", "``") + "`") for c in columns])
    return found
