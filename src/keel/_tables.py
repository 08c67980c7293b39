"""Reading a user's table file (labels, rows to check, entities) the same way everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from keel.errors import ValidationError

if TYPE_CHECKING:
    import pandas as pd


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
