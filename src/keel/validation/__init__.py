"""Feature validation: expectations on a view's data, checked in one pass by the project's engine."""

from keel.validation._distances import Shift, ShiftThresholds
from keel.validation._expectations import (
    Custom,
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
from keel.validation._stability import FeatureStability, StabilityReport, stability

__all__ = [
    "Custom",
    "Expectation",
    "ExpectationResult",
    "FeatureStability",
    "Fresh",
    "InRange",
    "LengthBetween",
    "MatchesPattern",
    "NotNull",
    "OneOf",
    "RowCount",
    "Shift",
    "ShiftThresholds",
    "StabilityReport",
    "UniqueKeys",
    "ValidationReport",
    "expectation_from_spec",
    "stability",
    "validate",
]
