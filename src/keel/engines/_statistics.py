"""What every engine's column statistics hold, and how their numbers are made JSON-safe.

Statistics are stored in the catalog with each version. Every engine gives, per column: ``dtype``, ``count``
(non-null values) and ``nulls``; numbers add ``min``, ``max`` (integers stay exact), ``mean``, ``std`` (sample)
and ``quantiles`` at :data:`QUANTILES` (``p01`` …, interpolated between ranks); integers and strings add
``distinct`` (within a few percent: the Spark engine's is a HyperLogLog estimate, the local engine counts
exactly); booleans ``mean``; timestamps ``min``/``max``
(ISO 8601); strings ``top`` (the :data:`TOP_CATEGORIES` most frequent values, most frequent first, ties by
value); lists ``mean_length``.

Floats have no ``distinct``: a continuous feature's distinct count is about its count and tells nothing, and
on Spark its sketch cost as much as every other statistic together (TensorFlow Data Validation, too, counts
unique values of categorical features only). Their quantiles describe them.

Engines that cannot afford exact quantiles on data larger than one machine compute them approximately and
say so: over more than :data:`QUANTILE_SAMPLE_ROWS` rows, the Spark engine's are exact over a uniform sample of
about that many rows, so their rank error is within :data:`QUANTILE_RANK_ERROR` with probability above
``1 - 10**-5`` (the Dvoretzky–Kiefer–Wolfowitz inequality: ``P(error > e) <= 2 exp(-2 n e**2)``).
"""

from __future__ import annotations

import math
from typing import Any

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
TOP_CATEGORIES = 20
#: Over more rows than this, an engine may compute quantiles over a uniform sample of about this many.
QUANTILE_SAMPLE_ROWS = 2**18
#: The rank error such sampled quantiles stay within (with probability above ``1 - 10**-5``).
QUANTILE_RANK_ERROR = 0.005


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
