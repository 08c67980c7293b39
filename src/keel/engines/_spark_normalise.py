"""The :class:`~keel.engines.Normalisation` rules compiled to Spark SQL, with the local engine's checks and messages.

The rules are the local engine's (:mod:`keel.engines._normalise`: keys ``int64`` or ``string``, UTC microsecond
timestamps, features cast to their declared dtype, NaN made null), and so are the checks, their order and their
messages: the columns are judged in stored order (keys, event time, created time, features) and, inside a
column, in the order the local engine judges them; the first failure is reported with its row counted in source
order; keys of another kind than the version being extended stores are refused last.

Spark cannot stop at the first bad row, so every check is a condition evaluated on every row (:meth:`Plan.flags`),
and aggregates take, per check, the smallest sequence number where it holds (:meth:`Plan.aggregates`, one pass
of their own, run only once the write found a failing row or when the schema already fails); the driver then
walks the checks in order and reports the first one that found a row (:meth:`Plan.first_error`). Problems seen in the
schema alone (a key of floats) need no pass and stop the walk where they stand.

Every conversion uses Spark's ``try_`` forms, which give null instead of failing (Spark 4 runs in ANSI mode), and
a value counts as convertible only when pyarrow would convert it too: Spark reads ``' 12'`` as 12 and ``'yes'``
as true, pyarrow refuses both, so the accepted text is spelled out by regular expressions. The message of a
failed cast quotes pyarrow's own error for the offending value, computed on the driver for that one value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from keel.engines._base import Normalisation
from keel.engines._normalise import EARLIEST, ISO_8601, LATEST
from keel.errors import ValidationError

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import Column
    from pyspark.sql.types import DataType, StructType

#: What pyarrow parses as an integer (it also reads hexadecimal ``0x…``).
INTEGER_TEXT = r"^-?[0-9]+$"
HEX_TEXT = r"^0[xX][0-9a-fA-F]{1,15}$"
#: What pyarrow parses as a float.
FLOAT_TEXT = r"^[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|(?i:nan|inf|infinity))$"
#: The largest integer a float64 holds exactly; pyarrow refuses to convert larger ones.
EXACT_FLOAT_INT = 2**53

_KIND = {"int64": "integers", "string": "strings"}


@dataclass(frozen=True)
class Check:
    """A condition that is true on the rows that fail, with the message naming the first of them.

    Attributes:
        bad: the condition, on the source's columns.
        message: ``(row, value) -> message``, ``value`` being the source column's value in that row.
        column: the source column (its value is fetched only when ``wants_value``).
        wants_value: whether the message quotes the value.
    """

    bad: Column
    message: Callable[[int, Any], str]
    column: str
    wants_value: bool = False


@dataclass(frozen=True)
class Problem:
    """A failure seen in the schema: no row needed."""

    message: str
    column: str


@dataclass
class ColumnRule:
    """One stored column: its normalised value, and the checks it must pass, in order."""

    name: str
    value: Column | None
    steps: list[Check | Problem] = field(default_factory=list)
    naive: Column | None = None  #: true on values read without a time zone (text timestamps)
    naive_type: bool = False  #: the column's type has no time zone (``TIMESTAMP_NTZ``)
    key_type: str | None = None


@dataclass
class Plan:
    """The compiled rules of one source: every stored column's value and checks."""

    rules: Normalisation
    columns: list[ColumnRule]

    def checks(self) -> list[Check]:
        """The checks that can matter: those before the first problem seen in the schema."""
        out: list[Check] = []
        for column in self.columns:
            for step in column.steps:
                if isinstance(step, Problem):
                    return out
                out.append(step)
        return out

    @property
    def valid(self) -> bool:
        """Whether no problem was seen in the schema (the values can then be computed)."""
        return all(not isinstance(s, Problem) for c in self.columns for s in c.steps)

    @property
    def key_problem(self) -> Problem | None:
        """Keys of another kind than the version being extended stores: judged once every value passed."""
        kinds = self.key_types()
        for key, required in self.rules.key_types:
            if kinds.get(key, required) != required:
                message = (
                    f"feature view {self.rules.view!r}, join key {key!r}: {self.rules.source} holds "
                    f"{_KIND[kinds[key]]} but the version it extends stores {_KIND.get(required, required)}; "
                    "convert the column"
                )
                return Problem(message, key)
        return None

    @property
    def writable(self) -> bool:
        """Whether the rows can be written once their values pass (nothing in the schema stands in the way)."""
        return self.valid and self.key_problem is None

    def flags(self) -> dict[str, Column]:
        """Per row: :meth:`check_flags` and :meth:`naive_flags`, columns to compute once, next to the values, for
        :meth:`aggregates`."""
        return {**self.check_flags(), **self.naive_flags()}

    def check_flags(self) -> dict[str, Column]:
        """Per row, each check's condition (``__keel_bad<i>``): true where the row fails it."""
        return {f"__keel_bad{i}": check.bad for i, check in enumerate(self.checks())}

    def naive_flags(self) -> dict[str, Column]:
        """Per row and text timestamp column, whether the value was naive (``__keel_naive<i>``)."""
        return {f"__keel_naive{i}": rule.naive for i, rule in enumerate(self.columns) if rule.naive is not None}

    def aggregates(self, seq: Column) -> list[Column]:
        """Over the columns of :meth:`flags`: per check, the smallest sequence number of a failing row
        (``__keel_check<i>``), then :meth:`naive_aggregates`."""
        from pyspark.sql import functions as F

        out = [F.min(F.when(F.col(f"__keel_bad{i}"), seq)).alias(f"__keel_check{i}") for i in range(len(self.checks()))]
        return out + self.naive_aggregates()

    def naive_aggregates(self) -> list[Column]:
        """Over the columns of :meth:`naive_flags`: whether any value was naive (``__keel_naive<i>``)."""
        from pyspark.sql import functions as F

        return [F.max(F.col(name).cast("int")).alias(name) for name in self.naive_flags()]

    def first_error(
        self, found: dict[str, Any], first_sequence: int, value_at: Callable[[str, int], Any]
    ) -> ValidationError | None:
        """The error of the first failing check (in the order :mod:`keel.offline._validate` checks), if any.

        Args:
            found: the results of :meth:`aggregates`.
            first_sequence: the sequence number of the source's first row (row numbers count from it).
            value_at: ``(source column, sequence number) -> value`` (one row read back).
        """
        checks = iter(range(len(self.checks())))
        for column in self.columns:
            for step in column.steps:
                if isinstance(step, Problem):
                    return ValidationError(step.message, field=step.column)
                seq = found[f"__keel_check{next(checks)}"]
                if seq is None:
                    continue
                row = int(seq) - first_sequence
                value = value_at(step.column, int(seq)) if step.wants_value else None
                return ValidationError(step.message(row, value), field=column.name, row=row)
        problem = self.key_problem
        return None if problem is None else ValidationError(problem.message, field=problem.column)

    def warnings(self, found: dict[str, Any]) -> list[str]:
        """The naive-timestamp warnings, in column order."""
        out = []
        for i, rule in enumerate(self.columns):
            naive = rule.naive_type or (rule.naive is not None and bool(found.get(f"__keel_naive{i}")))
            if naive:
                out.append(
                    f"feature view {self.rules.view!r}: column {rule.name!r} has timestamps without a time zone; "
                    "they were taken as UTC"
                )
        return out

    def key_types(self) -> dict[str, str]:
        """Each key's stored type."""
        return {c.name: c.key_type for c in self.columns if c.key_type is not None}

    def values(self) -> list[Column]:
        """The normalised columns, in stored order, named as stored."""
        return [rule.value.alias(rule.name) for rule in self.columns if rule.value is not None]


def compile_rules(rules: Normalisation, schema: StructType, nanoseconds: dict[str, bool] | None = None) -> Plan:
    """Compile ``rules`` for a source of ``schema`` (which holds every declared column: check that first).

    Args:
        rules: the declared rules.
        schema: the source's Spark schema.
        nanoseconds: the columns that are Parquet nanosecond timestamps, which Spark reads as counts of
            nanoseconds (``spark.sql.legacy.parquet.nanosAsLong``), each with whether it has a time zone.
    """
    nanos = nanoseconds or {}
    types = {f.name: f.dataType for f in schema.fields}
    view = rules.view
    columns: list[ColumnRule] = []
    for key in rules.join_keys:
        columns.append(_key(view, key, types[key]))
    for name, nullable, event_time in (
        (rules.timestamp, False, True),
        *([(rules.created_timestamp, True, False)] if rules.created_timestamp else []),
    ):
        if name in nanos:
            rule = _nanosecond_timestamp(view, name, zoned=nanos[name], nullable=nullable, event_time=event_time)
        else:
            rule = _timestamp(view, name, types[name], nullable=nullable, event_time=event_time)
        columns.append(rule)
    seen = {c.name for c in columns}
    for name, dtype in rules.features:
        if name in seen:
            problem = Problem(f"feature view {view!r}: feature {name!r} is also a join key or timestamp column", name)
            columns.append(ColumnRule(name, None, [problem]))
            continue
        seen.add(name)
        if dtype == "timestamp" and name in nanos:
            columns.append(_nanosecond_timestamp(view, name, zoned=nanos[name], nullable=True, event_time=False))
        else:
            columns.append(_feature(view, name, dtype, types[name]))
    return Plan(rules, columns)


def _nanosecond_timestamp(view: str, name: str, *, zoned: bool, nullable: bool, event_time: bool) -> ColumnRule:
    """A column of nanoseconds since the epoch as UTC microseconds, as pyarrow converts them: event times
    rounded up (``ceil_temporal``), others truncated towards zero (a cast). Integer arithmetic: a double would
    round counts this large."""
    from pyspark.sql import functions as F

    x = _col(name)
    micros = F.expr(f"div({_quoted(name)}, 1000)")  # towards zero
    if event_time:
        micros = micros + F.when((x > 0) & (F.pmod(x, F.lit(1000)) > 0), 1).otherwise(0)
    rule = ColumnRule(name, F.timestamp_micros(micros), naive_type=not zoned)
    if not nullable:
        where = f"feature view {view!r}, column {name!r}"
        rule.steps.append(
            Check(x.isNull(), lambda row, _: f"{where}: row {row} has no timestamp; every row needs one", name)
        )
    return rule


def _quoted(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def arrow_name(dtype: DataType) -> str:
    """How pyarrow names the type it reads a column of Spark type ``dtype`` as (for messages)."""
    from pyspark.sql.pandas.types import to_arrow_type

    try:
        return str(to_arrow_type(dtype, timezone="UTC"))
    except Exception:  # a type pyarrow has no name for
        return dtype.simpleString()


def _arrow_type(dtype: DataType) -> pa.DataType | None:
    from pyspark.sql.pandas.types import to_arrow_type

    try:
        return to_arrow_type(dtype, timezone="UTC")
    except Exception:
        return None


def _col(name: str) -> Column:
    from pyspark.sql import functions as F

    return F.col("`" + name.replace("`", "``") + "`")


def _is_integral(dtype: DataType) -> bool:
    from pyspark.sql.types import ByteType, IntegerType, LongType, ShortType

    return isinstance(dtype, ByteType | ShortType | IntegerType | LongType)


def _is_unsigned_64(dtype: DataType) -> bool:
    """Spark reads Parquet ``UINT_64`` as ``DECIMAL(20, 0)``: pyarrow's ``uint64``, an integer type."""
    from pyspark.sql.types import DecimalType

    return isinstance(dtype, DecimalType) and dtype.precision == 20 and dtype.scale == 0


def _key(view: str, name: str, dtype: DataType) -> ColumnRule:
    from pyspark.sql.types import StringType

    x = _col(name)
    where = f"feature view {view!r}, join key {name!r}"
    steps: list[Check | Problem] = [
        Check(x.isNull(), lambda row, _: f"{where}: row {row} is null; every row needs its entity key", name)
    ]
    value: Column | None
    if _is_integral(dtype):
        kind, value = "int64", x.cast("bigint")
    elif _is_unsigned_64(dtype):
        kind, value = "int64", x.try_cast("bigint")
        steps.append(
            Check(x.isNotNull() & value.isNull(), lambda row, _: f"{where}: row {row} does not fit in int64", name)
        )
    elif isinstance(dtype, StringType):
        kind, value = "string", x
    else:
        problem = f"{where}: keys must be integers or strings, the source holds {arrow_name(dtype)}"
        return ColumnRule(name, None, [*steps, Problem(problem, name)])
    return ColumnRule(name, value, steps, key_type=kind)


def _timestamp(view: str, name: str, dtype: DataType, *, nullable: bool, event_time: bool = False) -> ColumnRule:
    """UTC microsecond timestamps; naive ones taken as UTC; finer event times rounded up (``_timestamps``)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import DateType, NullType, StringType, TimestampNTZType, TimestampType

    x = _col(name)
    where = f"feature view {view!r}, column {name!r}"
    rule = ColumnRule(name, None)
    if isinstance(dtype, TimestampType):
        rule.value = x
    elif isinstance(dtype, TimestampNTZType):
        rule.naive_type = True
        rule.value = x.cast("timestamp")  # wall-clock time read in the session's zone, UTC
    elif isinstance(dtype, DateType):
        rule.value = x.cast("timestamp")
    elif isinstance(dtype, StringType):
        parsed = F.when(x.rlike(ISO_8601), x.try_cast("timestamp"))
        if event_time:  # Spark keeps microseconds and drops the rest: an event is never placed before it happened
            finer = F.regexp_extract(x, r"\.\d{6}(\d+)", 1).rlike("[1-9]")
            parsed = F.when(finer, F.timestamp_micros(F.unix_micros(parsed) + 1)).otherwise(parsed)
        rule.value = parsed
        rule.naive = parsed.isNotNull() & (F.regexp_extract(x, ISO_8601, 1) == "")
        rule.steps.append(
            Check(
                x.isNotNull() & parsed.isNull(),
                lambda row, v: f"{where}: row {row} has {v!r}, which is not an ISO 8601 timestamp",
                name,
                wants_value=True,
            )
        )
    elif isinstance(dtype, NullType) and nullable:
        rule.value = F.lit(None).cast("timestamp")
    else:
        rule.steps.append(Problem(f"{where}: expected timestamps, the source holds {arrow_name(dtype)}", name))
        return rule
    text = isinstance(dtype, StringType)
    rule.steps.append(
        Check(
            (rule.value < F.lit(EARLIEST)) | (rule.value > F.lit(LATEST)),
            lambda row, v: (
                f"{where}: row {row} has {repr(v) if text else 'a timestamp'}, outside the years 1 to "
                "9999 (UTC) that a timestamp can hold"
            ),
            name,
            wants_value=text,
        )
    )
    if not nullable:
        rule.steps.append(
            Check(rule.value.isNull(), lambda row, _: f"{where}: row {row} has no timestamp; every row needs one", name)
        )
    return rule


def _feature(view: str, name: str, dtype: str, source: DataType) -> ColumnRule:
    from pyspark.sql import functions as F
    from pyspark.sql.types import BooleanType, DoubleType, FloatType, TimestampNTZType, TimestampType

    x = _col(name)
    if dtype == "string" and isinstance(
        source, FloatType | DoubleType | BooleanType | TimestampType | TimestampNTZType
    ):
        problem = (
            f"feature view {view!r}, column {name!r}: declared string but the source holds {arrow_name(source)}; "
            "declare the matching dtype or convert the column in the source"
        )
        return ColumnRule(name, None, [Problem(problem, name)])
    if dtype == "timestamp":
        return _timestamp(view, name, source, nullable=True)
    if dtype == "float64" and isinstance(source, FloatType | DoubleType):
        return ColumnRule(name, F.when(~F.isnan(x), x.cast("double")))
    value, bad = _cast(x, source, dtype)
    if dtype == "float64":  # text such as 'nan' reads as NaN: null, as for float sources
        value = F.when(~F.isnan(value), value)
    rule = ColumnRule(name, value)
    if bad is not None:
        target = _target(dtype)

        def message(row: int, value: Any) -> str:
            return (
                f"feature view {view!r}, column {name!r}: row {row} has value {value!r}, which is not a valid "
                f"{dtype} ({_arrow_error(value, _arrow_type(source), target)})"
            )

        rule.steps.append(Check(bad, message, name, wants_value=True))
    return rule


def _cast(x: Column, source: DataType, dtype: str) -> tuple[Column, Column | None]:
    """``x`` (of Spark type ``source``) as ``dtype``, and the condition on the rows pyarrow would refuse to cast
    (``None``: none)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import (
        ArrayType,
        BinaryType,
        BooleanType,
        DateType,
        DecimalType,
        DoubleType,
        FloatType,
        LongType,
        StringType,
        TimestampNTZType,
        TimestampType,
    )

    null = F.lit(None)
    present = x.isNotNull()
    if dtype == "int64":
        if _is_integral(source) or isinstance(source, BooleanType):
            return x.cast("bigint"), None
        if isinstance(source, DecimalType):
            value = x.try_cast("bigint")
            return value, present & (value.isNull() | (x % 1 != 0))
        if isinstance(source, FloatType | DoubleType):
            value = x.try_cast("bigint")
            return value, present & (F.isnan(x) | value.isNull() | (x != F.floor(x)))
        if isinstance(source, StringType):
            hexadecimal = F.conv(F.substring(x, 3, 15), 16, 10).try_cast("bigint")
            value = F.when(x.rlike(INTEGER_TEXT), x.try_cast("bigint")).when(x.rlike(HEX_TEXT), hexadecimal)
            return value, present & value.isNull()
        if isinstance(source, TimestampType):
            return F.unix_micros(x), None  # pyarrow casts a timestamp to its count of units
        if isinstance(source, TimestampNTZType):
            return F.unix_micros(x.cast("timestamp")), None
    elif dtype == "float64":
        if isinstance(source, LongType):
            return x.cast("double"), (x > EXACT_FLOAT_INT) | (x < -EXACT_FLOAT_INT)
        if _is_integral(source) or isinstance(source, DecimalType | BooleanType):
            return x.cast("double"), None
        if isinstance(source, StringType):
            value = F.when(x.rlike(FLOAT_TEXT), x.try_cast("double"))
            return value, present & value.isNull()
    elif dtype == "bool":
        if isinstance(source, BooleanType):
            return x, None
        if _is_integral(source) or isinstance(source, FloatType | DoubleType):
            return x.cast("boolean"), None
        if isinstance(source, StringType):
            lower = F.lower(x)
            value = F.when(lower.isin("true", "1"), True).when(lower.isin("false", "0"), False)
            return value, present & value.isNull()
    elif dtype == "string":
        if isinstance(source, StringType):
            return x, None
        if _is_integral(source) or isinstance(source, DecimalType | DateType):
            return x.cast("string"), None
        if isinstance(source, BinaryType):
            return x.cast("string"), present & ~F.is_valid_utf8(x)
    elif dtype == "list[float64]" and isinstance(source, ArrayType):
        item = source.elementType
        if isinstance(item, DoubleType):
            return x, None
        if isinstance(item, FloatType) or _is_integral(item):
            value = F.transform(x, lambda v: v.cast("double"))
            if isinstance(item, LongType):
                return value, F.exists(x, lambda v: (v > EXACT_FLOAT_INT) | (v < -EXACT_FLOAT_INT))
            return value, None
    # pyarrow has no such cast: it fails on the first row, whatever its value
    return null.cast(_spark_type(dtype)), F.lit(True)


def _spark_type(dtype: str) -> str:
    return {
        "int64": "bigint",
        "float64": "double",
        "bool": "boolean",
        "string": "string",
        "timestamp": "timestamp",
        "list[float64]": "array<double>",
    }[dtype]


def _target(dtype: str) -> pa.DataType:
    import pyarrow as pa

    return {
        "int64": pa.int64(),
        "float64": pa.float64(),
        "bool": pa.bool_(),
        "string": pa.string(),
        "timestamp": pa.timestamp("us", tz="UTC"),
        "list[float64]": pa.list_(pa.float64()),
    }[dtype]


def _arrow_error(value: Any, source: pa.DataType | None, target: pa.DataType) -> str:
    """pyarrow's own error for casting ``value`` (of type ``source``) to ``target``, as ``_validate`` quotes it."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        array = pa.array([value], type=source) if source is not None else pa.array([value])
        pc.cast(array, target, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        return f"{exc.__class__.__name__}: {str(exc).splitlines()[0]}"
    except Exception as exc:  # the value itself does not fit its type: say so rather than fail here
        return f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else 'invalid value'}"
    return f"ArrowInvalid: cannot convert {value!r} to {target}"
