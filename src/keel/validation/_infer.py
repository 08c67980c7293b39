"""Expectations inferred from an ingested version's statistics, and the files a team reviews and commits.

:func:`infer` proposes, from the statistics stored with a version (no pass over the data), what the data showed:
no missing values where there were none (or a share at most twice the one seen), each number within the range
seen (a warning: ranges drift), each text among the few values seen (an unseen category is an error, as in
TensorFlow Data Validation's domains), unique keys and event times when there were no duplicates. The proposal is
a starting point: a file the user edits (:func:`dump`, :func:`load`), re-inferred later with a diff to review.

Example:
    >>> stats = {"plan": {"dtype": "string", "count": 10, "nulls": 0, "distinct": 2, "top": [["a", 6], ["b", 4]]}}
    >>> [e.describe() for e in infer(stats, rows=10, has_duplicates=False)]
    ['plan is not null', "plan is one of 'a', 'b'", '(keys, event time) are unique']
"""

from __future__ import annotations

import decimal
import math
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from keel.errors import ValidationError
from keel.validation._expectations import (
    Expectation,
    InRange,
    NotNull,
    OneOf,
    UniqueKeys,
    expectation_from_spec,
)

__all__ = ["MAX_DOMAIN", "dump", "infer", "load"]

#: A text column with at most this many distinct values seen gets a domain (``one_of``).
MAX_DOMAIN = 20


def infer(
    statistics: Mapping[str, Mapping[str, Any]],
    *,
    rows: int,
    has_duplicates: bool,
    features: Sequence[str] | None = None,
) -> list[Expectation]:
    """The expectations a version's ``statistics`` suggest, feature by feature (``features``: which ones;
    default: every column with statistics)."""
    out: list[Expectation] = []
    for name in features if features is not None else list(statistics):
        stats = statistics.get(name)
        if stats is None:
            raise ValidationError(f"no statistics for column {name!r}; it has: {', '.join(statistics)}", field=name)
        nulls = int(stats.get("nulls", 0))
        if nulls == 0:
            out.append(NotNull(name))
        elif rows and nulls / rows < 0.5:
            out.append(NotNull(name, max_rate=min(1.0, math.ceil(2000 * nulls / rows) / 1000)))
        dtype = stats.get("dtype")
        lo, hi = stats.get("min"), stats.get("max")
        numbers = isinstance(lo, int | float) and isinstance(hi, int | float)
        if dtype in ("int64", "float64") and numbers and _finite(lo) and _finite(hi):
            assert isinstance(lo, int | float) and isinstance(hi, int | float)
            out.append(InRange(name, min=_outward(lo, up=False), max=_outward(hi, up=True), severity="warning"))
        top = stats.get("top") or []
        few = dtype == "string" and top and int(stats.get("distinct", MAX_DOMAIN + 1)) <= MAX_DOMAIN
        if few and sum(int(n) for _, n in top) == int(stats.get("count", -1)):  # every value seen is listed
            out.append(OneOf(name, sorted(str(v) for v, _ in top)))
    if not has_duplicates:
        out.append(UniqueKeys())
    return out


def _outward(value: int | float, *, up: bool, digits: int = 4) -> int | float:
    """A float bound rounded away from the data to ``digits`` significant digits (what a person would write: the
    range still holds every value seen); integers stay as they are."""
    if isinstance(value, int) or value == 0:
        return value
    exponent = math.floor(math.log10(abs(value))) - (digits - 1)
    rounding = decimal.ROUND_CEILING if up else decimal.ROUND_FLOOR
    rounded = float(decimal.Decimal(repr(value)).quantize(decimal.Decimal(1).scaleb(exponent), rounding=rounding))
    return rounded if (rounded >= value if up else rounded <= value) else value


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def dump(view: str, expectations: Sequence[Expectation]) -> str:
    """The expectations file of ``view``: YAML, one entry per expectation, as its spec."""
    document = {"view": view, "expectations": [e.spec() for e in expectations]}
    header = (
        f"# Expectations of feature view {view!r}: edit, review and commit; `keel validate check {view}` uses them.\n"
    )
    return header + yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


def load(text: str, *, source: str = "the expectations file") -> tuple[str, list[Expectation]]:
    """The view and expectations of an expectations file.

    Raises:
        ValidationError: not YAML, not a mapping with ``view`` and a list of ``expectations``, or an entry that
            is not an expectation (named by its position).
    """
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValidationError(f"{source} is not YAML: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("view"), str):
        raise ValidationError(f"{source} must be a mapping with a 'view' and a list of 'expectations'")
    entries = document.get("expectations") or []
    if not isinstance(entries, list):
        raise ValidationError(f"{source}: 'expectations' must be a list")
    found = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ValidationError(f"{source}: expectation {i + 1} is not a mapping: {entry!r}")
        try:
            found.append(expectation_from_spec(entry))
        except ValidationError as exc:
            raise ValidationError(f"{source}: expectation {i + 1}: {exc}", field=exc.field) from exc
    return document["view"], found
