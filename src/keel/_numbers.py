"""The integers Keel stores: 64-bit, as Arrow, Parquet, DuckDB, SQLite and Redis keys hold them."""

from __future__ import annotations

from typing import Any

__all__ = ["INT64_MAX", "INT64_MIN", "fits_int64", "int64_range"]

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


def fits_int64(value: Any) -> bool:
    """Whether an integer (or an integral float) is within the 64-bit range."""
    return bool(INT64_MIN <= value <= INT64_MAX)


def int64_range() -> str:
    """The range, as error messages say it."""
    return f"the 64-bit integer range ({INT64_MIN} to {INT64_MAX})"
