"""What every engine's column statistics hold, and how their numbers are made JSON-safe.

Statistics are stored in the catalog with each version. Every engine gives, per column: ``dtype``, ``count``
(non-null values) and ``nulls``; numbers add ``min``, ``max`` (integers stay exact), ``mean``, ``std`` (sample),
``quantiles`` at :data:`QUANTILES` (``p01`` …, interpolated between ranks) and ``distinct`` (approximate,
HyperLogLog: within a few percent); booleans ``mean``; timestamps ``min``/``max`` (ISO 8601); strings
``distinct`` and ``top`` (the :data:`TOP_CATEGORIES` most frequent values, most frequent first, ties by value);
lists ``mean_length``.

Engines that cannot afford exact quantiles on data larger than one machine compute them approximately and
say so: the Spark engine's are within a rank error of ``1 / QUANTILE_ACCURACY`` of the exact ones.
"""

from __future__ import annotations

import math
from typing import Any

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
TOP_CATEGORIES = 20
#: The relative rank error of approximate quantiles is at most ``1 / QUANTILE_ACCURACY``.
QUANTILE_ACCURACY = 10_000


def quantile_names() -> list[str]:
    """``p01``, ``p05`` … for :data:`QUANTILES`."""
    return [f"p{int(x * 100):02d}" for x in QUANTILES]


def json_bound(value: Any) -> int | float | str | None:
    """A minimum or maximum: integers as they are, floats made JSON-safe."""
    return int(value) if isinstance(value, int) else json_number(value)


def json_number(value: Any) -> float | str | None:
    """A JSON-safe number: NaN becomes None, infinities become "inf"/"-inf" (JSON has neither)."""
    if value is None:
        return None
    f = float(value)
    if math.isnan(f):
        return None
    if math.isinf(f):
        return "inf" if f > 0 else "-inf"
    return f
