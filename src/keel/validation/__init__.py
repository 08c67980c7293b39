"""Feature validation: expectations on a view's data, checked in one pass by the project's engine."""

from keel.validation._expectations import (
    Expectation,
    ExpectationResult,
    Fresh,
    InRange,
    LengthBetween,
    MatchesPattern,
    NotNull,
    OneOf,
    RowCount,
    UniqueKeys,
    ValidationReport,
    expectation_from_spec,
    validate,
)

__all__ = [
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
