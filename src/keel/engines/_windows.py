"""Event-time windows and the bucket counts every engine makes per window: what feature stability is measured on.

A :class:`Window` cuts time into consecutive intervals, numbered by an integer index:

- a fixed width (``12h``, ``1d``, ``7d``, ``2w``) counts whole widths from Monday 1970-01-05 00:00 UTC, so daily
  windows start at midnight UTC and weekly ones on Mondays (ISO weeks);
- ``monthly`` (``1mo``) numbers calendar months in UTC: ``year * 12 + month - 1``.

:meth:`Engine.window_counts <keel.engines.Engine.window_counts>` sorts every row of the data into its window and,
per column, into the first of a list of :mod:`conditions <keel.engines._conditions>` it meets (the column's
buckets; a row that meets none falls in one last bucket), and counts the rows per (window, column, bucket) in
one pass. Rows without an event time are left out.

Example:
    >>> Window.parse("7d").start(Window.parse("7d").index(datetime(2026, 12, 9, tzinfo=UTC)))
    datetime.datetime(2026, 12, 7, 0, 0, tzinfo=datetime.timezone.utc)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

import numpy as np

from keel.errors import ValidationError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from pyspark.sql import Column

    from keel.engines._conditions import Condition

__all__ = ["ORIGIN", "Window", "WindowCounts", "check_window_columns"]

#: Fixed-width windows count from this Monday, so that days start at midnight and weeks on Mondays (UTC).
ORIGIN = datetime(1970, 1, 5, tzinfo=UTC)
_ORIGIN_US = (ORIGIN - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
_UNITS = {"m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}
_NAMED = {"hourly": "1h", "daily": "1d", "weekly": "7d", "monthly": "1mo"}


@dataclass(frozen=True)
class Window:
    """Consecutive event-time windows: fixed ``width_us`` microseconds, or calendar months (``kind="month"``)."""

    kind: Literal["fixed", "month"]
    width_us: int = 0
    label: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.kind == "fixed" and self.width_us <= 0:
            raise ValidationError(f"a window must be longer than 0, got {self.width_us} microseconds", field="window")

    @classmethod
    def parse(cls, text: str) -> Window:
        """``"7d"``, ``"1d"``, ``"12h"``, ``"30m"``, ``"2w"``, ``"1mo"``, or ``hourly``, ``daily``, ``weekly``,
        ``monthly``.

        Raises:
            ValidationError: anything else, with the accepted forms.
        """
        spelled = str(text).strip().lower()
        spelled = _NAMED.get(spelled, spelled)
        if spelled in ("1mo", "month"):
            return cls("month", 0, "monthly")
        found = re.fullmatch(r"(\d+)\s*([mhdw])", spelled)
        if not found or int(found.group(1)) == 0:
            raise ValidationError(
                f"window {text!r} is not a duration: use a positive number of minutes, hours, days or weeks "
                "(30m, 12h, 1d, 7d, 2w), 1mo for calendar months, or hourly/daily/weekly/monthly",
                field="window",
            )
        seconds = int(found.group(1)) * _UNITS[found.group(2)]
        return cls("fixed", seconds * 1_000_000, spelled)

    def index(self, moment: datetime) -> int:
        """The number of the window holding ``moment`` (naive: UTC)."""
        aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
        if self.kind == "month":
            utc = aware.astimezone(UTC)
            return utc.year * 12 + utc.month - 1
        return (aware - ORIGIN) // timedelta(microseconds=self.width_us)

    def start(self, index: int) -> datetime:
        """When window ``index`` starts (UTC)."""
        if self.kind == "month":
            return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)
        return ORIGIN + timedelta(microseconds=index * self.width_us)

    def end(self, index: int) -> datetime:
        """When window ``index`` ends (the next one's start; the window excludes it)."""
        return self.start(index + 1)

    def duckdb_index(self, column_sql: str) -> str:
        """The window number of a DuckDB timestamp expression (floored division, exact in integers)."""
        if self.kind == "month":
            naive = f"make_timestamp(epoch_us({column_sql}))"
            return f"(year({naive}) * 12 + month({naive}) - 1)"
        shifted = f"(epoch_us({column_sql}) - {_ORIGIN_US})"
        w = self.width_us
        return f"(({shifted} - ((({shifted}) % {w}) + {w}) % {w}) // {w})"

    def spark_index(self, column: str) -> Column:
        """The window number of a Spark timestamp column, by name, as a Spark column (the session's time zone is
        UTC; floored integer division, exact)."""
        from pyspark.sql import functions as F

        c = "`" + column.replace("`", "``") + "`"
        if self.kind == "month":
            return F.expr(f"year({c}) * 12 + month({c}) - 1")
        shifted = f"(unix_micros({c}) - {_ORIGIN_US})"
        w = self.width_us
        return F.expr(f"({shifted} - pmod({shifted}, {w})) div {w}")


@dataclass(frozen=True)
class WindowCounts:
    """Rows per window, column and bucket.

    Attributes:
        window: the windows.
        indexes: the numbers of the windows holding at least one row, ascending.
        counts: per column, an array of shape ``(len(indexes), buckets + 1)``: the rows of each window in each of
            the column's buckets, then the rows that met none.
    """

    window: Window
    indexes: list[int]
    counts: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def starts(self) -> list[datetime]:
        """When each window starts."""
        return [self.window.start(i) for i in self.indexes]

    @classmethod
    def from_rows(cls, window: Window, buckets: dict[str, int], rows: list[tuple[int, int, int, int]]) -> WindowCounts:
        """Assembled from ``(window index, column number, bucket, rows)`` tuples (columns numbered in the order of
        ``buckets``, which gives each column's number of buckets)."""
        indexes = sorted({int(r[0]) for r in rows})
        position = {w: i for i, w in enumerate(indexes)}
        names = list(buckets)
        counts = {name: np.zeros((len(indexes), n + 1), dtype=np.int64) for name, n in buckets.items()}
        for w, column, bucket, n in rows:
            counts[names[int(column)]][position[int(w)], int(bucket)] += int(n)
        return cls(window, indexes, counts)


def check_window_columns(present: list[str], timestamp: str, buckets: Mapping[str, Sequence[Condition]]) -> None:
    """Refuse an event-time column or a bucket condition on a column the data lacks."""
    from keel.engines._conditions import check_columns

    if timestamp not in present:
        raise ValidationError(f"no event-time column {timestamp!r}; the data has {', '.join(present)}", field=timestamp)
    check_columns({f"{n}[{i}]": c for n, cs in buckets.items() for i, c in enumerate(cs)}, present)
