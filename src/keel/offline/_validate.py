"""Validate a source's rows against a feature view's schema and normalise them for storage.

Keys become int64 or string, event and created times UTC microsecond timestamps, features their declared
dtype. The first bad value is reported with its row number (counting from 0 in the source's order) and column.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.types as pat

from keel.errors import ValidationError
from keel.features._dtypes import arrow_type

if TYPE_CHECKING:
    import pandas as pd

    from keel.features import FeatureView

log = logging.getLogger(__name__)

UTC_US = pa.timestamp("us", tz="UTC")


class NaiveTimestampWarning(UserWarning):
    """A timestamp column had no time zone; its values were taken as UTC."""


@dataclass
class ValidatedTable:
    """A validated, normalised table and what was noticed on the way."""

    table: pa.Table
    join_keys: list[str]
    timestamp: str
    created_timestamp: str | None
    features: dict[str, str]
    warnings: list[str] = field(default_factory=list)

    @property
    def columns(self) -> dict[str, Any]:
        """The version's self-description stored in the catalog."""
        return {
            "join_keys": {k: _key_dtype(self.table.schema.field(k).type) for k in self.join_keys},
            "timestamp": self.timestamp,
            "created_timestamp": self.created_timestamp,
            "features": dict(self.features),
        }


def _is_text(t: pa.DataType) -> bool:
    is_view = getattr(pat, "is_string_view", None)  # pyarrow >= 16
    return bool(pat.is_string(t) or pat.is_large_string(t) or (is_view is not None and is_view(t)))


def _key_dtype(t: pa.DataType) -> str:
    return "int64" if pat.is_integer(t) else "string"


def _first_bad_row(column: pa.ChunkedArray | pa.Array, target: pa.DataType) -> int:
    """Binary search for the first row that does not cast to ``target`` (log n casts)."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    lo, hi = 0, len(arr)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            pc.cast(arr.slice(lo, mid - lo), target, safe=True)
            lo = mid
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            hi = mid
    return lo


def _first_true(mask: pa.ChunkedArray | pa.Array) -> int:
    idx = pc.index(mask, True).as_py()
    return int(idx)


def _cast(column: pa.ChunkedArray, target: pa.DataType, *, view: str, name: str, dtype: str) -> pa.ChunkedArray:
    src = column.type
    if dtype == "string" and (pat.is_floating(src) or pat.is_boolean(src) or pat.is_timestamp(src)):
        raise ValidationError(
            f"feature view {view!r}, column {name!r}: declared string but the source holds {src}; "
            "declare the matching dtype or convert the column in the source",
            field=name,
        )
    if dtype == "timestamp":
        return _timestamps(column, view=view, name=name, allow_nulls=True)
    if dtype == "float64" and pat.is_floating(src):
        return _nan_to_null(pc.cast(column, target))
    try:
        out = pc.cast(column, target, safe=True)
        return _nan_to_null(out) if dtype == "float64" else out
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        row = _first_bad_row(column, target)
        value = column[row].as_py()
        raise ValidationError(
            f"feature view {view!r}, column {name!r}: row {row} has value {value!r}, which is not a valid "
            f"{dtype} ({exc.__class__.__name__}: {str(exc).splitlines()[0]})",
            field=name,
            row=row,
        ) from exc


def parse_timestamps(values: pd.Series) -> tuple[pd.Series, bool]:
    """Parse strings (ISO 8601) or datetime objects as UTC timestamps; unparseable values become NaT.

    Returns:
        The UTC series, and whether some non-null value carried no time zone (it was taken as UTC).
    """
    import pandas as pd

    parsed = pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")
    valid = values[parsed.notna()]
    if valid.empty:
        return parsed, False
    try:
        local = pd.to_datetime(valid, format="ISO8601")
    except (ValueError, TypeError):  # several zones, or zoned values mixed with naive ones: look at each
        return parsed, any(_is_naive(v) for v in valid)
    return parsed, getattr(local.dt, "tz", None) is None


def _is_naive(value: object) -> bool:
    import pandas as pd

    try:
        return pd.Timestamp(value).tzinfo is None  # type: ignore[arg-type]
    except (ValueError, TypeError):
        return False


def _to_utc_us(column: pa.ChunkedArray, *, round_up: bool) -> pa.ChunkedArray:
    """Zoned timestamps of any unit as UTC microseconds; finer units are rounded (up when ``round_up``)."""
    src = column.type
    assert isinstance(src, pa.TimestampType)
    if src.unit == "ns":
        column = pc.cast(column, pa.timestamp("ns", tz="UTC"))
        if round_up:  # an event is never placed before the moment it happened
            column = pc.ceil_temporal(column, unit="microsecond")
        return pc.cast(column, UTC_US, safe=False)
    try:
        return pc.cast(column, UTC_US, safe=True)
    except pa.ArrowInvalid as exc:  # seconds or milliseconds beyond the microsecond range
        raise _TimestampRange(str(exc)) from exc


class _TimestampRange(Exception):
    pass


def _naive_warning(view: str, name: str) -> None:
    msg = f"feature view {view!r}: column {name!r} has timestamps without a time zone; they were taken as UTC"
    warnings.warn(msg, NaiveTimestampWarning, stacklevel=5)
    log.warning(msg)


def _nan_to_null(values: pa.ChunkedArray) -> pa.ChunkedArray:
    """NaN is how pandas spells a missing float; Keel stores it as null."""
    nan = pc.is_nan(values)
    if not pc.any(nan).as_py():  # the common case: no copy of the column
        return values
    return pc.if_else(nan, pa.scalar(None, pa.float64()), values)


def _timestamps(
    column: pa.ChunkedArray, *, view: str, name: str, allow_nulls: bool, event_time: bool = False
) -> pa.ChunkedArray:
    """``column`` as UTC microsecond timestamps; naive values are taken as UTC with a warning.

    Event times finer than a microsecond are rounded up, so that a value never becomes visible before it
    happened; other timestamps are truncated.
    """
    src = column.type
    if pat.is_timestamp(src):
        assert isinstance(src, pa.TimestampType)
        if src.tz is None:
            _naive_warning(view, name)
            column = pc.assume_timezone(column, "UTC")
        zoned = column
    elif pat.is_date(src):
        zoned = pc.assume_timezone(pc.cast(column, pa.timestamp("s")), "UTC")
    elif _is_text(src):
        series = column.to_pandas()
        parsed, naive = parse_timestamps(series)
        bad = parsed.isna() & series.notna()
        if bad.any():
            row = int(bad.to_numpy().argmax())
            raise ValidationError(
                f"feature view {view!r}, column {name!r}: row {row} has {series.iloc[row]!r}, which is not "
                "an ISO 8601 timestamp",
                field=name,
                row=row,
            )
        if naive:
            _naive_warning(view, name)
        zoned = pa.chunked_array([pa.Array.from_pandas(parsed)])
        if not pat.is_timestamp(zoned.type):  # no value at all: pandas gives no unit to keep
            zoned = pa.chunked_array([pa.nulls(len(column), UTC_US)])
    elif pat.is_null(src) and allow_nulls:
        zoned = pa.chunked_array([pa.nulls(len(column), UTC_US)])
    else:
        raise ValidationError(
            f"feature view {view!r}, column {name!r}: expected timestamps, the source holds {src}",
            field=name,
        )
    try:
        out = _to_utc_us(zoned, round_up=event_time)
    except _TimestampRange as exc:
        raise ValidationError(
            f"feature view {view!r}, column {name!r}: a timestamp is out of range ({exc})", field=name
        ) from exc
    if not allow_nulls and out.null_count:
        row = _first_true(pc.is_null(out))
        raise ValidationError(
            f"feature view {view!r}, column {name!r}: row {row} has no timestamp; every row needs one",
            field=name,
            row=row,
        )
    return out


def _keys(column: pa.ChunkedArray, *, view: str, name: str) -> pa.ChunkedArray:
    src = column.type
    if isinstance(src, pa.DictionaryType):  # categorical keys: judged by their values (ints stay ints)
        column = pc.cast(column, src.value_type)
        src = column.type
    if column.null_count:
        row = _first_true(pc.is_null(column))
        raise ValidationError(
            f"feature view {view!r}, join key {name!r}: row {row} is null; every row needs its entity key",
            field=name,
            row=row,
        )
    if pat.is_integer(src):
        try:
            return pc.cast(column, pa.int64(), safe=True)
        except pa.ArrowInvalid as exc:
            row = _first_bad_row(column, pa.int64())
            raise ValidationError(
                f"feature view {view!r}, join key {name!r}: row {row} does not fit in int64",
                field=name,
                row=row,
            ) from exc
    if _is_text(src):
        return pc.cast(column, pa.string())
    raise ValidationError(
        f"feature view {view!r}, join key {name!r}: keys must be integers or strings, the source holds {src}",
        field=name,
    )


def validate_table(raw: pa.Table, view: FeatureView, join_keys: list[str]) -> ValidatedTable:
    """Check ``raw`` against ``view`` and return the normalised table (declared columns only).

    Raises:
        ValidationError: a column is missing or has the wrong type, a key or event time is null, or a value
            does not convert; the message names the column and the first bad row.
    """
    source = view.source
    needed = [*join_keys, source.timestamp]
    if source.created_timestamp:
        needed.append(source.created_timestamp)
    needed += view.feature_names
    missing = [c for c in dict.fromkeys(needed) if c not in raw.column_names]
    if missing:
        raise ValidationError(
            f"feature view {view.name!r}: column(s) {missing} missing from {source.describe}; "
            f"it has: {', '.join(raw.column_names)}",
            field=missing[0],
        )
    arrays: dict[str, pa.ChunkedArray] = {}
    for key in join_keys:
        arrays[key] = _keys(raw.column(key), view=view.name, name=key)
    arrays[source.timestamp] = _timestamps(
        raw.column(source.timestamp),
        view=view.name,
        name=source.timestamp,
        allow_nulls=False,
        event_time=True,
    )
    if source.created_timestamp:
        arrays[source.created_timestamp] = _timestamps(
            raw.column(source.created_timestamp),
            view=view.name,
            name=source.created_timestamp,
            allow_nulls=True,
        )
    for f in view.schema:
        if f.name in arrays:
            raise ValidationError(
                f"feature view {view.name!r}: feature {f.name!r} is also a join key or timestamp column",
                field=f.name,
            )
        arrays[f.name] = _cast(raw.column(f.name), arrow_type(f.dtype), view=view.name, name=f.name, dtype=f.dtype)
    table = pa.table(arrays)
    return ValidatedTable(
        table=table,
        join_keys=list(join_keys),
        timestamp=source.timestamp,
        created_timestamp=source.created_timestamp,
        features={f.name: f.dtype for f in view.schema},
    )
