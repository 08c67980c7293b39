"""Scalar conversions between stored forms and Python values, shared by the backends' read paths.

Stored forms: timestamps as integer microseconds since the Unix epoch (UTC), lists of floats as packed
little-endian float64 bytes. Reads turn them back into ``datetime`` (UTC) and ``list[float]``.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = ["EPOCH", "converter", "datetime_from_us", "floats_from_bytes", "us_from_datetime"]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LITTLE_ENDIAN = sys.byteorder == "little"


def datetime_from_us(us: int) -> datetime:
    """The UTC datetime of ``us`` microseconds since the epoch (exact, unlike ``fromtimestamp``'s float)."""
    return EPOCH + timedelta(microseconds=us)


def us_from_datetime(value: datetime) -> int:
    """Microseconds since the epoch of an aware datetime (a naive one is taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def floats_from_bytes(blob: bytes) -> list[float]:
    """A ``list[float]`` from packed little-endian float64 bytes."""
    values = array("d")
    values.frombytes(blob)
    if not _LITTLE_ENDIAN:  # the stored form is little-endian whatever machine wrote it
        values.byteswap()
    return values.tolist()


def converter(dtype: str) -> Callable[[Any], Any] | None:
    """The function turning a stored (SQLite) value of ``dtype`` into its Python value; ``None`` when the
    stored value already is the Python value, so that readers skip the column entirely."""
    if dtype == "bool":
        return bool
    if dtype == "timestamp":
        return datetime_from_us
    if dtype == "list[float64]":
        return floats_from_bytes
    return None
