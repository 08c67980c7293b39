"""Expectations on a feature view's data, checked in one pass over it by the project's engine.

An expectation says what every version of a view should look like: no missing values (or at most a share), values
in a range or a set, text matching a pattern or of bounded length, unique (keys, event time), fresh event times,
a row count within bounds. Each is declarative (a JSON-able :meth:`~Expectation.spec`, so that it can be written
to a reviewable file and stored with the results) and compiles to row conditions
(:mod:`keel.engines._conditions`), which the engine counts for all the expectations at once
(:meth:`Engine.count_where <keel.engines.Engine.count_where>`): one pass over the data, however many expectations.
The uniqueness of (keys, event time) is the engine's duplicate count.

Every result gives the failing rows, their share, and the sequence number of the first one (its row in the
version), so the message can point at it.

Example:
    >>> from keel.engines import LocalEngine
    >>> import pyarrow as pa
    >>> rows = pa.table({"spend": [1.0, -2.0, None], "plan": ["basic", "gold", "pro"]})
    >>> report = validate(
    ...     LocalEngine(),
    ...     rows,
    ...     [NotNull("spend"), InRange("spend", min=0), OneOf("plan", ["basic", "pro"])],
    ... )
    >>> [(r.expectation.describe(), r.failed) for r in report.failures]
    [('spend is not null', 1), ('spend >= 0', 1), ("plan is one of 'basic', 'pro'", 1)]
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from keel.engines._conditions import And, Compare, Condition, IsIn, IsNull, Length, Matches, Not, Or, Predicate
from keel.errors import ValidationError

if TYPE_CHECKING:
    import pandas as pd

    from keel.engines import Data, Engine

__all__ = [
    "Custom",
    "Expectation",
    "ExpectationResult",
    "Fresh",
    "InRange",
    "LengthBetween",
    "MatchesPattern",
    "NotNull",
    "OneOf",
    "RowCount",
    "UniqueKeys",
    "ValidationReport",
    "expectation_from_spec",
    "validate",
]

Severity = Literal["error", "warning"]
_SEVERITIES = ("error", "warning")


@dataclass(frozen=True, kw_only=True)
class Expectation(ABC):
    """What a view's data should satisfy.

    Attributes:
        severity: ``error`` (a strict ingest refuses the data; ``keel validate`` exits non-zero) or ``warning``.
    """

    kind: ClassVar[str]
    severity: Severity = "error"

    def __post_init__(self) -> None:
        if self.severity not in _SEVERITIES:
            raise ValidationError(f"severity must be 'error' or 'warning', not {self.severity!r}", field="severity")

    @abstractmethod
    def describe(self) -> str:
        """The expectation in a few words (``spend >= 0``)."""

    def condition(self) -> Condition | None:
        """The condition of the rows that fail it (``None``: not judged row by row)."""
        return None

    def allowed(self, rows: int) -> int:
        """How many failing rows are tolerated among ``rows``."""
        return 0

    def spec(self) -> dict[str, Any]:
        """A JSON-able description; :func:`expectation_from_spec` rebuilds the expectation from it."""
        values = {k: v for k, v in self.__dict__.items() if v is not None and k != "severity"}
        if self.severity != "error":
            values["severity"] = self.severity  # last: what is checked reads first
        return {"expect": self.kind, **{k: _jsonable(v) for k, v in values.items()}}


def _jsonable(value: Any) -> Any:
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, tuple):
        return list(value)
    return value


@dataclass(frozen=True)
class NotNull(Expectation):
    """The feature has no missing value, or at most ``max_rate`` of its rows missing."""

    kind: ClassVar[str] = "not_null"
    feature: str
    max_rate: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.max_rate <= 1.0:
            raise ValidationError(f"max_rate must be within [0, 1], got {self.max_rate}", field=self.feature)

    def describe(self) -> str:
        rate = f" in at least {1 - self.max_rate:.1%} of rows" if self.max_rate else ""
        return f"{self.feature} is not null{rate}"

    def condition(self) -> Condition:
        return IsNull(self.feature)

    def allowed(self, rows: int) -> int:
        return int(self.max_rate * rows)

    def spec(self) -> dict[str, Any]:
        out = super().spec()
        if not self.max_rate:
            out.pop("max_rate", None)
        return out


@dataclass(frozen=True)
class InRange(Expectation):
    """Every present value is within ``[min, max]`` (either bound may be left open)."""

    kind: ClassVar[str] = "in_range"
    feature: str
    min: float | int | datetime | None = None
    max: float | int | datetime | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.min is None and self.max is None:
            raise ValidationError(f"in_range of {self.feature!r} needs min, max or both", field=self.feature)

    def describe(self) -> str:
        if self.min is not None and self.max is not None:
            return f"{self.min} <= {self.feature} <= {self.max}"
        return f"{self.feature} >= {self.min}" if self.min is not None else f"{self.feature} <= {self.max}"

    def condition(self) -> Condition:
        parts: list[Condition] = []
        if self.min is not None:
            parts.append(Compare(self.feature, "<", self.min))
        if self.max is not None:
            parts.append(Compare(self.feature, ">", self.max))
        return Or(tuple(parts))


@dataclass(frozen=True)
class OneOf(Expectation):
    """Every present value is one of ``values`` (a category never seen is a failure)."""

    kind: ClassVar[str] = "one_of"
    feature: str
    values: Sequence[str | int | bool] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "values", tuple(self.values))
        if not self.values:
            raise ValidationError(f"one_of of {self.feature!r} needs at least one value", field=self.feature)

    def describe(self) -> str:
        shown = ", ".join(repr(v) for v in list(self.values)[:8])
        return f"{self.feature} is one of {shown}{', …' if len(self.values) > 8 else ''}"

    def condition(self) -> Condition:
        return And((Not(IsNull(self.feature)), Not(IsIn(self.feature, tuple(self.values)))))


@dataclass(frozen=True)
class MatchesPattern(Expectation):
    """Every present text matches ``pattern`` as a whole."""

    kind: ClassVar[str] = "matches"
    feature: str
    pattern: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        Matches(self.feature, self.pattern)  # refuses a pattern every engine cannot read alike

    def describe(self) -> str:
        return f"{self.feature} matches {self.pattern!r}"

    def condition(self) -> Condition:
        return And((Not(IsNull(self.feature)), Not(Matches(self.feature, self.pattern))))


@dataclass(frozen=True)
class LengthBetween(Expectation):
    """Every present text has between ``min`` and ``max`` characters."""

    kind: ClassVar[str] = "length_between"
    feature: str
    min: int | None = None
    max: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.min is None and self.max is None:
            raise ValidationError(f"length_between of {self.feature!r} needs min, max or both", field=self.feature)

    def describe(self) -> str:
        return f"{self.min if self.min is not None else 0} <= len({self.feature}) <= {self.max or '∞'}"

    def condition(self) -> Condition:
        parts: list[Condition] = []
        if self.min is not None:
            parts.append(Length(self.feature, "<", self.min))
        if self.max is not None:
            parts.append(Length(self.feature, ">", self.max))
        return Or(tuple(parts))


@dataclass(frozen=True)
class UniqueKeys(Expectation):
    """No two rows share their keys and event time."""

    kind: ClassVar[str] = "unique_keys"

    def describe(self) -> str:
        return "(keys, event time) are unique"


@dataclass(frozen=True)
class Fresh(Expectation):
    """The latest event time is at most ``max_age`` before the check."""

    kind: ClassVar[str] = "fresh"
    max_age: timedelta = timedelta(days=1)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.max_age, timedelta):
            raise ValidationError(f"max_age must be a timedelta, not {self.max_age!r}", field="max_age")
        if self.max_age <= timedelta(0):
            raise ValidationError(f"max_age must be positive, got {self.max_age}", field="max_age")

    def describe(self) -> str:
        return f"the latest event is at most {self.max_age} old"


@dataclass(frozen=True)
class RowCount(Expectation):
    """The data has between ``min`` and ``max`` rows."""

    kind: ClassVar[str] = "row_count"
    min: int | None = None
    max: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.min is None and self.max is None:
            raise ValidationError("row_count needs min, max or both", field="row_count")

    def describe(self) -> str:
        if self.min is not None and self.max is not None:
            return f"{self.min:,} <= rows <= {self.max:,}"
        return f"rows >= {self.min:,}" if self.min is not None else f"rows <= {self.max:,}"


@dataclass(frozen=True, eq=False)
class Custom(Expectation):
    """A vectorised check in Python: ``check`` receives a pandas DataFrame of ``columns`` (a batch of rows; missing
    values as NaN or None) and returns, per row, whether the row is valid (a Series or array of booleans; a missing
    result counts as invalid). The engine runs it batch by batch in the same pass as every other expectation.

    Its source code is part of the view's definition: changing the function is a new definition at the next
    ``keel apply``, as for an on-demand view. It is declared on a view in Python; an expectations file cannot hold
    it (a file never names code to run).

    Example:
        >>> Custom("basket_matches_spend", ["spend", "orders", "avg_basket"],
        ...        lambda df: (df.avg_basket * df.orders - df.spend).abs() <= 0.01 * df.spend.abs() + 0.01)
        ... # doctest: +SKIP
    """

    kind: ClassVar[str] = "custom"
    name: str = ""
    columns: Sequence[str] = ()
    check: Callable[[pd.DataFrame], Any] | None = None
    description: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "columns", tuple(self.columns))
        if not self.name or not isinstance(self.name, str):
            raise ValidationError("a custom check needs a name", field="name")
        if not self.columns or not all(isinstance(c, str) for c in self.columns):
            raise ValidationError(f"custom check {self.name!r} needs the columns it reads", field=self.name)
        if not callable(self.check):
            raise ValidationError(
                f"custom check {self.name!r}: check must be a function of a DataFrame, got {self.check!r}",
                field=self.name,
            )

    def describe(self) -> str:
        return self.description or f"{self.name} holds"

    def condition(self) -> Condition:
        check = self.check
        assert check is not None

        def invalid(frame: pd.DataFrame) -> Any:
            return ~Predicate(tuple(self.columns), check, self.name).evaluate(frame)

        return Predicate(tuple(self.columns), invalid, self.name)

    def spec(self) -> dict[str, Any]:
        from keel._code import function_source

        assert self.check is not None
        out: dict[str, Any] = {
            "expect": self.kind,
            "name": self.name,
            "columns": list(self.columns),
            "source": function_source(self.check, f"custom check {self.name!r}"),
        }
        if self.description:
            out["description"] = self.description
        if self.severity != "error":
            out["severity"] = self.severity
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Custom) and self.spec() == other.spec()

    def __hash__(self) -> int:
        return hash((self.kind, self.name))


_KINDS: dict[str, type[Expectation]] = {
    k.kind: k for k in (NotNull, InRange, OneOf, MatchesPattern, LengthBetween, UniqueKeys, Fresh, RowCount)
}


def expectation_from_spec(spec: dict[str, Any]) -> Expectation:
    """The expectation :meth:`Expectation.spec` described.

    Raises:
        ValidationError: an unknown kind or argument (named).
    """
    values = dict(spec)
    kind = values.pop("expect", None)
    cls = _KINDS.get(str(kind))
    if kind == Custom.kind:
        raise ValidationError(
            f"custom check {values.get('name')!r} is a Python function: declare it on the feature view in Python "
            "(FeatureView(expectations=[Custom(...)])); a file or a stored spec cannot hold code to run",
            field=str(values.get("name") or "custom"),
        )
    if cls is None:
        raise ValidationError(f"unknown expectation {kind!r}; known: {', '.join(sorted(_KINDS))}", field="expect")
    if cls is Fresh and "max_age" in values:
        values["max_age"] = timedelta(seconds=float(values["max_age"]))
    try:
        return cls(**values)
    except TypeError as exc:
        raise ValidationError(f"expectation {kind!r}: {exc}", field=str(kind)) from exc


@dataclass(frozen=True)
class ExpectationResult:
    """How one expectation fared.

    Attributes:
        expectation: the expectation.
        passed: whether it holds.
        failed: the failing rows (for a whole-table expectation: 1 when it fails).
        rows: the rows checked.
        first: the sequence number of the first failing row, when known.
        detail: what was found (``latest event 2024-01-01T00:00:00+00:00``), for whole-table expectations.
    """

    expectation: Expectation
    passed: bool
    failed: int
    rows: int
    first: int | None = None
    detail: str = ""

    @property
    def share(self) -> float:
        """The share of rows that fail."""
        return self.failed / self.rows if self.rows else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "expectation": self.expectation.spec(),
            "describe": self.expectation.describe(),
            "severity": self.expectation.severity,
            "passed": self.passed,
            "failed": self.failed,
            "rows": self.rows,
            "share": self.share,
            "first": self.first,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class ValidationReport:
    """The results of checking some data against expectations."""

    rows: int
    results: tuple[ExpectationResult, ...] = field(default_factory=tuple)

    @property
    def failures(self) -> list[ExpectationResult]:
        """The expectations that do not hold."""
        return [r for r in self.results if not r.passed]

    @property
    def errors(self) -> list[ExpectationResult]:
        """The error-level expectations that do not hold."""
        return [r for r in self.failures if r.expectation.severity == "error"]

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "results": [r.to_dict() for r in self.results]}


def validate(
    engine: Engine,
    data: Data,
    expectations: Sequence[Expectation],
    *,
    keys: Sequence[str] = (),
    timestamp: str | None = None,
    now: datetime | None = None,
) -> ValidationReport:
    """Check ``data`` against ``expectations`` in one pass (plus the duplicate count for :class:`UniqueKeys`).

    Args:
        engine: the engine that reads the data.
        data: what the engine reads: files, an Arrow table, an engine frame.
        expectations: what to check.
        keys, timestamp: the view's join keys and event time column (for :class:`UniqueKeys` and :class:`Fresh`).
        now: the time :class:`Fresh` is judged at (default: now).

    Raises:
        ValidationError: a column an expectation names is missing; :class:`UniqueKeys` or :class:`Fresh`
            without the columns they need.
    """
    now = now or datetime.now(UTC)
    conditions: dict[str, Condition] = {}
    for i, expectation in enumerate(expectations):
        condition = expectation.condition()
        if condition is not None:
            conditions[f"e{i}"] = condition
        elif isinstance(expectation, Fresh):
            if timestamp is None:
                raise ValidationError("a freshness expectation needs the view's event time column", field="fresh")
            conditions[f"e{i}"] = Compare(timestamp, ">=", now - expectation.max_age)
    counted = engine.count_where(data, conditions or {"rows": And(())})
    rows = next(iter(counted.values())).rows
    results = []
    for i, expectation in enumerate(expectations):
        found = counted.get(f"e{i}")
        if isinstance(expectation, Fresh):
            assert found is not None
            fresh = found.matched > 0
            detail = "" if fresh else f"no event since {(now - expectation.max_age).isoformat()}"
            results.append(ExpectationResult(expectation, fresh, 0 if fresh else 1, rows, detail=detail))
        elif found is not None:
            ok = found.matched <= expectation.allowed(rows)
            results.append(ExpectationResult(expectation, ok, found.matched, rows, first=found.first))
        elif isinstance(expectation, UniqueKeys):
            if not keys or timestamp is None:
                raise ValidationError("unique_keys needs the view's join keys and event time", field="unique_keys")
            duplicates = engine.count_duplicates(data, list(keys), timestamp)
            results.append(ExpectationResult(expectation, duplicates == 0, duplicates, rows))
        elif isinstance(expectation, RowCount):
            ok = (expectation.min is None or rows >= expectation.min) and (
                expectation.max is None or rows <= expectation.max
            )
            results.append(ExpectationResult(expectation, ok, 0 if ok else 1, rows, detail=f"{rows:,} rows"))
    return ValidationReport(rows, tuple(results))
