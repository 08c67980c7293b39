"""The local engine's compilation of :class:`~keel.engines.Normalisation`: Arrow compute over a table in memory.

Keys become int64 or string, event and created times UTC microsecond timestamps, features their declared
dtype. The first bad value is reported with its row number (counting from 0 in the source's order) and column.
Every engine raises these same errors with these same messages (the Spark engine compiles the rules to Spark
SQL); the conformance suite holds them to it.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.types as pat

from keel.errors import ValidationError

if TYPE_CHECKING:
    import pandas as pd

    from keel.engines._base import Normalisation

log = logging.getLogger(__name__)

UTC_US = pa.timestamp("us", tz="UTC")
#: ISO 8601 as Keel reads it in text (both engines): a date, optionally a time (with a fraction of up to
#: nanoseconds) and a zone after the time. The one group captures the zone (empty: a naive value). pandas alone
#: would also read 'now', 'today', negative years and 20250101; Spark would not, so neither engine accepts them.
ISO_8601 = (
    r"^\d{4}(?:-\d{1,2}(?:-\d{1,2}"
    r"(?:[T ]\d{1,2}(?::\d{2}(?::\d{2}(?:\.\d{1,9})?)?)?(Z|[+-]\d{2}(?::?\d{2})?)?)?"
    r")?)?$"
)
#: The timestamps Keel stores: those a Python datetime holds (years 1 to 9999, UTC), as every reader of stored
#: values turns them into one (statistics, the catalog, JSON answers). Arrow and pandas go further.
EARLIEST = datetime(1, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


class NaiveTimestampWarning(UserWarning):
    """A timestamp column had no time zone; its values were taken as UTC."""


#: The Arrow type of each Keel dtype (as :func:`keel.features._dtypes.arrow_type`, which engines may not import).
_ARROW = {
    "int64": pa.int64(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "string": pa.string(),
    "timestamp": UTC_US,
    "list[float64]": pa.list_(pa.float64()),
}

_KIND = {"int64": "integers", "string": "strings"}


@dataclass
class NormalisedTable:
    """A normalised table (declared columns only, in stored order) and what was noticed on the way."""

    table: pa.Table
    key_types: dict[str, str]
    warnings: list[str] = field(default_factory=list)


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
        iso = pc.fill_null(pc.match_substring_regex(column, ISO_8601), True).to_numpy(zero_copy_only=False)
        bad = (parsed.isna() | ~iso) & series.notna()
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
    outside = pc.or_(pc.less(out, pa.scalar(EARLIEST, UTC_US)), pc.greater(out, pa.scalar(LATEST, UTC_US)))
    if pc.any(outside).as_py():
        row = _first_true(outside)
        shown = repr(column[row].as_py()) if _is_text(src) else "a timestamp"  # Python cannot hold the value
        raise ValidationError(
            f"feature view {view!r}, column {name!r}: row {row} has {shown}, outside the years 1 to 9999 (UTC) "
            "that a timestamp can hold",
            field=name,
            row=row,
        )
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


def normalise_table(raw: pa.Table, rules: Normalisation) -> NormalisedTable:
    """Check ``raw`` against ``rules`` and return the normalised table (declared columns only).

    Naive timestamps are taken as UTC with a :class:`NaiveTimestampWarning` (also listed in the result).

    Raises:
        ValidationError: a column is missing or has the wrong type, a key or event time is null, or a value
            does not convert; the message names the column and the first bad row.
    """
    view = rules.view
    missing = [c for c in dict.fromkeys(rules.columns) if c not in raw.column_names]
    if missing:
        raise ValidationError(
            f"feature view {view!r}: column(s) {missing} missing from {rules.source}; "
            f"it has: {', '.join(raw.column_names)}",
            field=missing[0],
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", NaiveTimestampWarning)
        arrays: dict[str, pa.ChunkedArray] = {}
        for key in rules.join_keys:
            arrays[key] = _keys(raw.column(key), view=view, name=key)
        arrays[rules.timestamp] = _timestamps(
            raw.column(rules.timestamp), view=view, name=rules.timestamp, allow_nulls=False, event_time=True
        )
        if rules.created_timestamp:
            arrays[rules.created_timestamp] = _timestamps(
                raw.column(rules.created_timestamp), view=view, name=rules.created_timestamp, allow_nulls=True
            )
        for name, dtype in rules.features:
            if name in arrays:
                raise ValidationError(
                    f"feature view {view!r}: feature {name!r} is also a join key or timestamp column", field=name
                )
            arrays[name] = _cast(raw.column(name), _ARROW[dtype], view=view, name=name, dtype=dtype)
    noticed = [str(w.message) for w in caught]
    for w in caught:  # hand them on to the caller's filters too
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    key_types = {k: _key_dtype(arrays[k].type) for k in rules.join_keys}
    for key, required in rules.key_types:
        if key_types.get(key, required) != required:
            raise ValidationError(
                f"feature view {view!r}, join key {key!r}: {rules.source} holds {_KIND[key_types[key]]} but the "
                f"version it extends stores {_KIND[required]}; convert the column",
                field=key,
            )
    return NormalisedTable(pa.table(arrays), key_types, noticed)
