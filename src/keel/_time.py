"""The one clock: UTC datetimes everywhere, and durations written as ``30s``, ``15m``, ``1h``, ``7d``, ``2w``.

Every stored or compared timestamp in Keel is timezone-aware UTC; a naive datetime from a user is taken as UTC.

Example:
    >>> from datetime import datetime, timedelta, timezone
    >>> as_utc(datetime(2025, 6, 1, 12, 0))
    datetime.datetime(2025, 6, 1, 12, 0, tzinfo=datetime.timezone.utc)
    >>> as_utc(datetime(2025, 6, 1, 14, 0, tzinfo=timezone(timedelta(hours=2))))
    datetime.datetime(2025, 6, 1, 12, 0, tzinfo=datetime.timezone.utc)
    >>> parse_duration("7d")
    datetime.timedelta(days=7)
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from keel.errors import ValidationError

__all__ = ["as_utc", "checked_utc", "parse_duration", "utcnow"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def utcnow() -> datetime:
    """Now, in UTC, with microseconds."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """``value`` in UTC: an aware datetime converted, a naive one taken as UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def checked_utc(value: object, what: str) -> datetime | None:
    """:func:`as_utc` of a user's argument that may be ``None``; anything but a datetime is a
    :class:`~keel.errors.ValidationError` naming ``what``."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise ValidationError(f"{what} must be a datetime, got {value!r}", field=what)
    return as_utc(value)


def parse_duration(text: str | timedelta, what: str = "duration") -> timedelta:
    """``30s``, ``15m``, ``1h``, ``7d``, ``2w`` (or a timedelta) as a positive :class:`~datetime.timedelta`.

    Raises:
        ValidationError: not a duration, or not positive (the error names ``what``).
    """
    if isinstance(text, timedelta):
        value = text
    else:
        match = _DURATION.match(str(text))
        if match is None:
            raise ValidationError(
                f"{what} {text!r} is not a duration; write a number and a unit: 30s, 15m, 1h, 7d, 2w", field=what
            )
        value = timedelta(**{_UNITS[match.group(2).lower()]: float(match.group(1))})
    if value <= timedelta(0):
        raise ValidationError(f"{what} must be positive, got {text!r}", field=what)
    return value
