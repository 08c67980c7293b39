"""Reading a user's table file (labels, rows to check, entities) the same way everywhere, and the one rule that
says which of a table's columns holds its times."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from keel.errors import ValidationError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["TIME_COLUMNS", "read_table", "timestamp_column"]

#: The names taken as the time column when a table has no single datetime column, in order of preference.
TIME_COLUMNS = ("event_timestamp", "event_time", "timestamp")


def read_table(path: Path) -> pd.DataFrame:
    """Read a Parquet or CSV file into a DataFrame, by extension."""
    import pandas as pd

    if not path.exists():
        raise ValidationError(f"no file at {path}", field=str(path))
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(path)
    if suffix == ".csv":
        return pd.read_csv(path)
    raise ValidationError(f"{path}: unsupported file type {suffix!r}; use .parquet or .csv", field=str(path))


def timestamp_column(
    frame: pd.DataFrame,
    named: str | None = None,
    *,
    prefer: Sequence[str] = TIME_COLUMNS,
    what: str = "table",
) -> str | None:
    """The column of ``frame`` that holds its times, by one rule for every table Keel is handed.

    The column ``named``, when given; else the only datetime-typed column; else the first of ``prefer`` that
    ``frame`` has (of any type: a CSV file's times are text, parsed later). ``None`` when none of these
    applies (no datetime column and no preferred name, or several datetime columns and no preferred name).

    Raises:
        ValidationError: ``frame`` has no column ``named`` (the message starts with ``what`` and lists the
            columns).

    Example:
        >>> import pandas as pd
        >>> frame = pd.DataFrame({"id": [1], "ts": pd.to_datetime(["2025-01-01"], utc=True)})
        >>> timestamp_column(frame)
        'ts'
        >>> timestamp_column(pd.DataFrame({"id": [1], "timestamp": ["2025-01-01"]}))
        'timestamp'
    """
    import pandas as pd

    if named is not None:
        if named not in frame.columns:
            raise ValidationError(
                f"{what}: no timestamp column {named!r}; the columns are: {', '.join(map(str, frame.columns))}",
                field=named,
            )
        return named
    stamps = [str(c) for c in frame.columns if pd.api.types.is_datetime64_any_dtype(frame[c])]
    if len(stamps) == 1:
        return stamps[0]
    return next((name for name in prefer if name in frame.columns), None)
