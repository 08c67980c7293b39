"""Data quality of a current window against the reference profile: missing values, out-of-range values, new
categories, and schema changes (missing, new and re-typed columns)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from keel.errors import ValidationError
from keel.profiles._profile import OTHER, ColumnProfile, ReferenceProfile, as_float, category_counts, infer_kind

__all__ = ["ColumnQuality", "KindChange", "QualityResult", "check_quality"]

NEW_CATEGORIES_LISTED = 20
"""New categories listed per column (the most frequent); their total share counts them all."""


@dataclass(frozen=True)
class ColumnQuality:
    """The quality figures of one column present on both sides.

    Attributes:
        name: the column.
        kind: its reference kind.
        reference_missing_rate: share of the reference rows that were missing.
        current_missing_rate: share of the current rows that are missing (``±inf`` counts as missing in
            numeric columns, as in the profile).
        out_of_range_share: numeric columns: share of the current values outside the reference's
            [min, max]; ``None`` for categorical columns.
        new_categories: categorical columns: the most frequent values the reference never saw, with their share
            of the current values (at most :data:`NEW_CATEGORIES_LISTED`).
        new_category_share: categorical columns: share of the current values that the reference never saw.
    """

    name: str
    kind: str
    reference_missing_rate: float
    current_missing_rate: float
    out_of_range_share: float | None = None
    new_categories: list[tuple[str, float]] = field(default_factory=list)
    new_category_share: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict."""
        return {
            "name": self.name,
            "kind": self.kind,
            "reference_missing_rate": self.reference_missing_rate,
            "current_missing_rate": self.current_missing_rate,
            "out_of_range_share": self.out_of_range_share,
            "new_categories": [{"value": v, "share": s} for v, s in self.new_categories],
            "new_category_share": self.new_category_share,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ColumnQuality:
        """The inverse of :meth:`to_dict`."""
        oor = data.get("out_of_range_share")
        return cls(
            name=str(data["name"]),
            kind=str(data["kind"]),
            reference_missing_rate=float(data["reference_missing_rate"]),
            current_missing_rate=float(data["current_missing_rate"]),
            out_of_range_share=None if oor is None else float(oor),
            new_categories=[(str(c["value"]), float(c["share"])) for c in data.get("new_categories", [])],
            new_category_share=float(data.get("new_category_share", 0.0)),
        )


@dataclass(frozen=True)
class KindChange:
    """A column whose values changed kind: numbers in the reference, text now (or the other way round)."""

    column: str
    reference: str
    current: str

    def to_dict(self) -> dict[str, Any]:
        return {"column": self.column, "reference": self.reference, "current": self.current}


@dataclass(frozen=True)
class QualityResult:
    """The quality of a current window.

    Attributes:
        columns: figures of every reference column present in the current data (and not re-typed).
        missing_columns: reference columns absent from the current data.
        new_columns: current columns the reference does not have.
        kind_changes: columns whose kind changed.
        issues: one human sentence per crossed threshold or schema change, in column order.
        thresholds: the thresholds used (``missing_rate_increase``, ``out_of_range_share``,
            ``new_category_share``).
    """

    columns: list[ColumnQuality]
    missing_columns: list[str]
    new_columns: list[str]
    kind_changes: list[KindChange]
    issues: list[str]
    thresholds: dict[str, float]

    @property
    def schema_changed(self) -> bool:
        """Whether a column went missing, appeared, or changed kind."""
        return bool(self.missing_columns or self.new_columns or self.kind_changes)

    @property
    def failed(self) -> bool:
        """Whether a threshold was crossed or the schema changed (then ``issues`` says why)."""
        return bool(self.issues)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict; includes ``failed``."""
        return {
            "columns": [c.to_dict() for c in self.columns],
            "missing_columns": list(self.missing_columns),
            "new_columns": list(self.new_columns),
            "kind_changes": [k.to_dict() for k in self.kind_changes],
            "issues": list(self.issues),
            "thresholds": dict(self.thresholds),
            "failed": self.failed,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QualityResult:
        """The inverse of :meth:`to_dict`."""
        return cls(
            columns=[ColumnQuality.from_dict(c) for c in data["columns"]],
            missing_columns=[str(c) for c in data["missing_columns"]],
            new_columns=[str(c) for c in data["new_columns"]],
            kind_changes=[
                KindChange(str(k["column"]), str(k["reference"]), str(k["current"])) for k in data["kind_changes"]
            ],
            issues=[str(i) for i in data["issues"]],
            thresholds={str(k): float(v) for k, v in data["thresholds"].items()},
        )


def check_quality(
    reference: ReferenceProfile,
    current: pd.DataFrame,
    *,
    missing_rate_increase: float = 0.1,
    out_of_range_share: float = 0.05,
    new_category_share: float = 0.05,
) -> QualityResult:
    """Compare the current window's data quality with the reference's.

    Args:
        reference: the stored reference profile.
        current: the current window's rows.
        missing_rate_increase: an issue when a column's missing rate rises by more than this (absolute, 0.1 =
            ten percentage points). Default 0.1: a broken upstream join or a dropped field shows as a jump far
            above it, while day-to-day variation of a few points stays below.
        out_of_range_share: an issue when more than this share of a numeric column's current values lie outside
            the reference's [min, max]. Default 0.05: with a reference of n rows, about 2/(n+1) of a
            same-distribution sample falls outside its extremes, so 5% is far beyond chance for any reference of
            more than a hundred rows, and a unit change (grams for kilograms) or a new range crosses it.
        new_category_share: an issue when more than this share of a categorical column's current values are
            categories the reference never saw. Default 0.05, the same reasoning as ``out_of_range_share``. A
            reference whose rare values were bucketed (``__other__``) cannot tell a new value from a rare one:
            such values count as known.

    Returns:
        The figures per column, the schema changes and the issues; ``failed`` is true when there is any issue.

    Raises:
        ValidationError: ``current`` is not a DataFrame or has no rows, or a threshold is not in [0, 1].
    """
    if not isinstance(current, pd.DataFrame):
        raise ValidationError(f"current must be a pandas DataFrame, got {type(current).__name__}")
    if len(current) == 0:
        raise ValidationError("the current data has no rows; a quality check needs at least one row")
    thresholds = {
        "missing_rate_increase": missing_rate_increase,
        "out_of_range_share": out_of_range_share,
        "new_category_share": new_category_share,
    }
    for name, value in thresholds.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise ValidationError(f"{name} must be a number in [0, 1], got {value!r}", field=name)

    issues: list[str] = []
    columns: list[ColumnQuality] = []
    kind_changes: list[KindChange] = []
    missing_columns = [c for c in reference.columns if c not in current.columns]
    new_columns = [str(c) for c in current.columns if c not in reference.columns]
    for name, ref in reference.columns.items():
        if name not in current.columns:
            issues.append(f"Column {name!r} is missing from the current data.")
            continue
        series = current[name]
        if ref.kind == "numeric":
            values = as_float(series)
            if values is None:
                now = _current_kind(series, name)
                kind_changes.append(KindChange(name, "numeric", now))
                issues.append(f"Column {name!r} changed kind: numeric in the reference, {now} ({series.dtype}) now.")
                continue
            col = _numeric_quality(ref, values)
        else:
            if _current_kind(series, name) == "numeric" and not pd.api.types.is_bool_dtype(series.dtype):
                if _numeric_labels(ref):
                    col = _categorical_quality(ref, series)
                else:
                    kind_changes.append(KindChange(name, "categorical", "numeric"))
                    issues.append(
                        f"Column {name!r} changed kind: categorical in the reference, numeric ({series.dtype}) now."
                    )
                    continue
            else:
                col = _categorical_quality(ref, series)
        columns.append(col)
        issues.extend(_column_issues(col, missing_rate_increase, out_of_range_share, new_category_share))
    for name in new_columns:
        issues.append(f"Column {name!r} is new: the reference does not have it.")
    return QualityResult(columns, missing_columns, new_columns, kind_changes, issues, thresholds)


def _current_kind(series: pd.Series, name: str) -> str:
    try:
        return infer_kind(series, name)
    except ValidationError:
        return str(series.dtype)


def _numeric_labels(ref: ColumnProfile) -> bool:
    """Whether a categorical reference's values are numbers (an integer-coded category stays one)."""
    keys = [k for k in ref.frequencies if k != OTHER]
    if not keys:
        return True
    try:
        for k in keys[:100]:
            float(k)
    except ValueError:
        return False
    return True


def _numeric_quality(ref: ColumnProfile, values: np.ndarray) -> ColumnQuality:
    present = values[~np.isnan(values)]
    oor = 0.0
    if present.size and ref.minimum is not None and ref.maximum is not None:
        oor = float(np.count_nonzero((present < ref.minimum) | (present > ref.maximum)) / present.size)
    return ColumnQuality(
        ref.name,
        "numeric",
        reference_missing_rate=ref.missing_rate,
        current_missing_rate=float(1 - present.size / values.size),
        out_of_range_share=oor if present.size else None,
    )


def _categorical_quality(ref: ColumnProfile, series: pd.Series) -> ColumnQuality:
    counts, missing = category_counts(series)
    total = sum(counts.values())
    new = {} if OTHER in ref.frequencies else {k: n for k, n in counts.items() if k not in ref.frequencies}
    listed = list(new.items())[:NEW_CATEGORIES_LISTED]  # counts are ordered most frequent first
    return ColumnQuality(
        ref.name,
        "categorical",
        reference_missing_rate=ref.missing_rate,
        current_missing_rate=missing / len(series),
        new_categories=[(k, n / total) for k, n in listed],
        new_category_share=sum(new.values()) / total if total else 0.0,
    )


def _column_issues(col: ColumnQuality, missing_increase: float, oor_share: float, new_share: float) -> list[str]:
    out = []
    rise = col.current_missing_rate - col.reference_missing_rate
    if rise > missing_increase:
        out.append(
            f"Column {col.name!r}: {col.current_missing_rate:.1%} missing, up from {col.reference_missing_rate:.1%} "
            f"in the reference (more than +{missing_increase:.0%} points)."
        )
    if col.out_of_range_share is not None and col.out_of_range_share > oor_share:
        out.append(
            f"Column {col.name!r}: {col.out_of_range_share:.1%} of the values lie outside the reference's range "
            f"(more than {oor_share:.0%})."
        )
    if col.new_category_share > new_share:
        names = ", ".join(repr(v) for v, _ in col.new_categories[:5])
        more = "" if len(col.new_categories) <= 5 else ", ..."
        out.append(
            f"Column {col.name!r}: {col.new_category_share:.1%} of the values are categories the reference never "
            f"saw ({names}{more}; more than {new_share:.0%})."
        )
    return out
