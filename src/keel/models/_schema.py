"""The input schema of a model package: what training saw of each input column, and the conversion of a
column to the numbers the model is given (with the error that names the first value that does not fit)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from keel.errors import ValidationError

if TYPE_CHECKING:
    import pandas as pd

#: How many categories of a string feature the schema remembers.
MAX_CATEGORIES = 1000


@dataclass(frozen=True)
class FeatureSchema:
    """What training saw of one input column.

    Attributes:
        name: the column.
        dtype: its Keel dtype.
        categories: for strings, the categories seen (up to 1,000), sorted.
        min: for numbers, the smallest value seen.
        max: for numbers, the largest value seen.
        null_fraction: share of missing values in training.
    """

    name: str
    dtype: str
    categories: tuple[str, ...] | None = None
    min: float | None = None
    max: float | None = None
    null_fraction: float = 0.0


@dataclass(frozen=True)
class InputSchema:
    """The model's input columns, in order."""

    features: tuple[FeatureSchema, ...]

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    def to_dict(self) -> list[dict[str, Any]]:
        return [{k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(f).items()} for f in self.features]

    @classmethod
    def from_dict(cls, items: list[dict[str, Any]]) -> InputSchema:
        return cls(
            tuple(
                FeatureSchema(
                    **{**i, "categories": tuple(i["categories"]) if i.get("categories") is not None else None}
                )
                for i in items
            )
        )

    @classmethod
    def infer(cls, frame: pd.DataFrame, dtypes: dict[str, str]) -> InputSchema:
        """The schema of ``frame``'s columns (``dtypes`` gives each one's Keel dtype)."""
        out = []
        for name, dtype in dtypes.items():
            col = frame[name]
            nulls = float(col.isna().mean()) if len(col) else 0.0
            if dtype == "string":
                cats = sorted({str(v) for v in col.dropna().unique()})
                out.append(FeatureSchema(name, dtype, tuple(cats[:MAX_CATEGORIES]), null_fraction=nulls))
            elif dtype in ("int64", "float64", "bool", "timestamp"):
                values = _numeric(col, dtype, name)
                finite = values[np.isfinite(values)]
                lo = float(finite.min()) if finite.size else None
                hi = float(finite.max()) if finite.size else None
                out.append(FeatureSchema(name, dtype, None, lo, hi, nulls))
            else:
                out.append(FeatureSchema(name, dtype, null_fraction=nulls))
        return cls(tuple(out))


_EPOCH_US = 10**6


def _bad_value(col: pd.Series, bad: pd.Series | np.ndarray, name: str, dtype: str, what: str) -> ValidationError:
    """The error for the first value of ``col`` flagged in ``bad``, naming its column and row."""
    row = int(np.argmax(np.asarray(bad)))
    value = col.iloc[row]
    value = value.item() if isinstance(value, np.generic) else value
    return ValidationError(
        f"column {name!r} ({dtype}): row {row} has {value!r}, which is not {what}", field=name, row=row
    )


def _numeric(col: pd.Series, dtype: str, name: str) -> np.ndarray:
    """A float64 array of a numeric, boolean or timestamp column (missing -> NaN).

    Timestamps become seconds since the epoch (UTC; naive values are taken as UTC), whatever the column's
    time unit, so a frame in nanoseconds and one in microseconds give the same numbers.

    Raises:
        ValidationError: a value is not of the column's type (the message names the row).
    """
    import pandas as pd

    if dtype == "timestamp":
        if pd.api.types.is_datetime64_any_dtype(col):
            ts = col.dt.tz_localize("UTC") if getattr(col.dt, "tz", None) is None else col.dt.tz_convert("UTC")
        else:
            ts = pd.to_datetime(col, utc=True, errors="coerce", format="ISO8601")
            bad = ts.isna() & col.notna()
            if bad.any():
                raise _bad_value(col, bad, name, dtype, "a timestamp")
        us = ts.astype("datetime64[us, UTC]")  # the unit of every stored timestamp; ns would overflow after 2262
        out = np.asarray(us.array.asi8, dtype=np.float64) / _EPOCH_US
        out[us.isna().to_numpy()] = np.nan
        return out
    if dtype == "bool" or pd.api.types.is_bool_dtype(col):
        if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
            return col.astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)
        values = col.to_numpy(dtype=object)
        wrong = np.array([not (pd.isna(v) or isinstance(v, bool | np.bool_ | int | np.integer)) for v in values], bool)
        if wrong.any():
            raise _bad_value(col, wrong, name, dtype, "a boolean")
        return np.array([np.nan if pd.isna(v) else float(v) for v in values], dtype=np.float64)
    if pd.api.types.is_numeric_dtype(col):
        return col.to_numpy(dtype=np.float64, na_value=np.nan)
    converted = pd.to_numeric(col, errors="coerce")
    bad = converted.isna() & col.notna()
    if bad.any():
        raise _bad_value(col, bad, name, dtype, "a number")
    return converted.to_numpy(dtype=np.float64, na_value=np.nan)
