"""What a model takes as input: one definition of a valid value per feature dtype, for every way in.

The prediction service checks each JSON value of a request (:func:`check_value`). Batch scoring, both engines and
the Python API check whole columns at once in Arrow: the input's column types before any row is read, when they
are known (:func:`check_schema`), then every batch's values (:func:`check_table`); a pandas frame is checked as
Arrow sees it (:func:`check_frame`); these loop over no row in Python unless a column is already refused (to
find the examples the error shows). The rules, by the feature's dtype:

=============  ============================================  ==================================================
dtype          accepted                                      refused
=============  ============================================  ==================================================
``float64``    integers, finite floats                       booleans, strings, ``inf`` and ``-inf``
``int64``      integers and integral floats within 64 bits   booleans, strings, fractions, ``inf``, beyond 64 bits
``bool``       ``true`` and ``false``                        numbers (``0`` and ``1`` too), strings
``string``     strings                                       numbers, booleans
``timestamp``  timestamps, dates, ISO 8601 strings           numbers, booleans, other strings
=============  ============================================  ==================================================

A missing value is accepted for every dtype, and the model imputes it as it learned to in training: JSON
``null``; in a column, a null, or a NaN (pandas and NumPy write a missing number as NaN, and JSON cannot carry
one). A batch or frame column of another type holding only missing values is a column of missing values (a
file's column whose type cannot hold the feature's values is refused before any row is read, unless it is of
Arrow's null type). Columns the model does not read are ignored on every path (a request's entity keys, an input's
id column).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from keel._numbers import INT64_MAX, INT64_MIN, fits_int64, int64_range
from keel.errors import ValidationError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from keel.models._schema import FeatureSchema, InputSchema

__all__ = [
    "WANTED",
    "InputValuesError",
    "RowLabel",
    "check_frame",
    "check_schema",
    "check_table",
    "check_value",
]

#: What a fitting value is, by dtype, as every message says it.
WANTED: dict[str, str] = {
    "float64": "a finite number",
    "int64": "an integer within 64 bits",
    "bool": "true or false",
    "string": "a string",
    "timestamp": "an ISO 8601 timestamp",
}
#: How a message names the row at a position of the checked table (``row 3``, ``input row 100003``).
RowLabel = Callable[[int], str]
#: Examples of refused rows an error shows.
_EXAMPLES = 3
_NON_FINITE_TEXT = ("nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity")


class InputValuesError(ValidationError):
    """Values of one input column that the model does not take.

    The message names the model, the column, how many rows of the checked batch are refused and a few of them
    (their row numbers as the caller counts them, and their values).

    Attributes:
        field: the column.
        row: the first refused row's position in the checked table or frame.
        count: how many rows of it are refused.
    """

    def __init__(self, message: str, *, field: str, row: int, count: int) -> None:
        super().__init__(message, field=field, row=row)
        self.count = count


# -- one value (a request's JSON values) -------------------------------------------------------------------------
_JSON_TYPES = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "an array",
    dict: "an object",
}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return _JSON_TYPES.get(type(value), type(value).__name__)


def check_value(value: Any, feature: FeatureSchema) -> Any:
    """``value`` (parsed from JSON) as ``feature`` takes it: checked, a timestamp text parsed (UTC), ``None`` kept.

    Raises:
        ValidationError: the value does not fit the feature's dtype (``field`` is the feature; the caller says
            which record).
    """
    if value is None:
        return None
    kind = type(value)
    dtype = feature.dtype
    if dtype == "float64" or dtype == "int64":
        if kind is int:
            if dtype == "int64" and not fits_int64(value):
                raise _refused(feature, f"{value} is outside {int64_range()}")
            return value
        if kind is float:
            if not math.isfinite(value):
                raise _refused(feature, f"{value!r} is not allowed; send a finite number, or null to impute it")
            if dtype == "int64" and not value.is_integer():
                raise _refused(feature, f"expected an integer, got {value!r}")
            if dtype == "int64" and not fits_int64(value):
                raise _refused(feature, f"{value!r} is outside {int64_range()}")
            return value
        if kind is str and value.strip().lower() in _NON_FINITE_TEXT:
            raise _refused(feature, f"{value!r} is not allowed; send a finite number, or null to impute it")
        want = "an integer" if dtype == "int64" else "a number"
        raise _refused(feature, f"expected {want}, got {_json_type(value)} {value!r}")
    if dtype == "bool":
        if kind is bool:
            return value
        raise _refused(feature, f"expected true or false, got {_json_type(value)} {value!r}")
    if dtype == "string":
        if kind is str:
            return value
        raise _refused(feature, f"expected a string, got {_json_type(value)} {value!r}")
    if dtype == "timestamp":
        if kind is str:
            import pandas as pd

            try:
                ts: Any = pd.Timestamp(value)
            except (ValueError, TypeError):
                ts = None
            if ts is None or pd.isna(ts):
                raise _refused(feature, f"expected an ISO 8601 timestamp, got {value!r}")
            return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
        raise _refused(feature, f"expected an ISO 8601 timestamp string, got {_json_type(value)} {value!r}")
    return value


def _refused(feature: FeatureSchema, message: str) -> ValidationError:
    return ValidationError(message, field=feature.name)


# -- column types ------------------------------------------------------------------------------------------------
def _value_type(kind: pa.DataType) -> pa.DataType:
    import pyarrow as pa

    return kind.value_type if pa.types.is_dictionary(kind) else kind


def _type_fits(kind: pa.DataType, dtype: str) -> bool:
    """Whether a column of Arrow type ``kind`` can hold values of ``dtype`` (each value is checked after)."""
    import pyarrow as pa

    t = _value_type(kind)
    if pa.types.is_null(t):
        return True
    if dtype in ("float64", "int64"):
        return bool(pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t))
    if dtype == "bool":
        return bool(pa.types.is_boolean(t))
    if dtype == "string":
        return _is_text(t)
    if dtype == "timestamp":
        return bool(pa.types.is_timestamp(t) or pa.types.is_date(t) or _is_text(t))
    return True  # a dtype the rules do not cover: the package's conversion judges


def _is_text(t: pa.DataType) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t))


def _type_words(kind: pa.DataType) -> str:
    """The values a column of type ``kind`` holds, as a message says it (``int64 values``)."""
    return f"{_value_type(kind)} values"


def check_schema(schema: pa.Schema, inputs: InputSchema, *, model: str, what: str) -> None:
    """Refuse an input whose feature columns are of a type that cannot hold the feature's values, before any row
    is read (a column of nulls only, Arrow's ``null`` type, fits every feature). Absent columns are not judged.

    Raises:
        ValidationError: naming the column, its type and the feature's dtype.
    """
    names = set(schema.names)
    for feature in inputs.features:
        if feature.name not in names:
            continue
        kind = schema.field(feature.name).type
        if not _type_fits(kind, feature.dtype):
            raise ValidationError(
                f"model {model!r}: column {feature.name!r} of {what} holds {_type_words(kind)}, which are not "
                f"{feature.dtype} values; {_advice(feature.dtype)}",
                field=feature.name,
            )


def _advice(dtype: str) -> str:
    if dtype == "string":
        return "write the column as strings (for a CSV input, Keel reads it as text)"
    if dtype == "bool":
        return "write the column as booleans (0 and 1 are numbers, not booleans)"
    return f"write the column as {dtype} values"


# -- whole columns (batch, engines, the Python API) ----------------------------------------------------------------
def check_table(
    table: pa.Table | pa.RecordBatch, inputs: InputSchema, *, model: str, rows: RowLabel | None = None
) -> None:
    """Check every value of ``table``'s feature columns (vectorised; absent columns are not judged here).

    Args:
        table: the rows.
        inputs: the model's input schema.
        model: the model's name, for messages.
        rows: how messages name the row at a position (default ``row <position>``).

    Raises:
        InputValuesError: the first column holding values its feature does not take: how many rows and a few of
            them.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    names = set(table.schema.names)
    for feature in inputs.features:
        if feature.name not in names:
            continue
        column = table.column(feature.name)
        kind = _value_type(column.type)
        dtype = feature.dtype
        if pa.types.is_null(kind) or column.null_count == len(column):
            continue
        judged = _Judged(column, feature, model, rows if rows is not None else _position)
        if not _type_fits(kind, dtype):
            present = pc.is_valid(column)
            if pa.types.is_floating(kind):  # NaN is a missing number
                present = pc.and_(present, pc.invert(pc.is_nan(column)))
            judged.refuse_where(
                present,
                f"a value that is not {WANTED[dtype]}",
                f"the column holds {_type_words(column.type)}; {_advice(dtype)}",
            )
        elif dtype in ("float64", "int64"):
            _check_numbers(judged, kind)
        elif dtype == "timestamp" and _is_text(kind):
            _check_timestamp_text(judged)


def _position(i: int) -> str:
    return f"row {i}"


_OUTSIDE = "a value outside the 64-bit integer range"
_RANGE = f"integers run from {INT64_MIN} to {INT64_MAX}"


def _check_numbers(judged: _Judged, kind: pa.DataType) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    column = judged.column
    int64 = judged.feature.dtype == "int64"
    if pa.types.is_integer(kind):
        if int64 and pa.types.is_unsigned_integer(kind) and kind.bit_width == 64:
            judged.refuse_where(pc.greater(column, pa.scalar(INT64_MAX, pa.uint64())), _OUTSIDE, _RANGE)
        return  # every other integer type holds only integers within 64 bits
    if kind != pa.float64():  # decimals, float32, float16
        column = pc.cast(column, pa.float64(), safe=False)
    judged.refuse_where(
        pc.is_inf(column), "an infinite value", "send a finite number, or a missing value for the model to impute"
    )
    if not int64:
        return
    fraction = pc.and_(pc.is_finite(column), pc.not_equal(column, pc.floor(column)))
    judged.refuse_where(fraction, "a value that is not an integer", "send whole numbers for an int64 feature")
    # 2**63 is exact as a float; every float64 at or above it (or below -2**63) is outside the range
    beyond = pc.or_(pc.greater_equal(column, float(2**63)), pc.less(column, float(INT64_MIN)))
    judged.refuse_where(beyond, _OUTSIDE, _RANGE)


def _check_timestamp_text(judged: _Judged) -> None:
    """Timestamp texts are parsed as the package parses them (pandas, ISO 8601); a text it cannot read is refused."""
    import pandas as pd
    import pyarrow as pa

    column = judged.column
    texts = column.cast(pa.string()) if pa.types.is_dictionary(column.type) else column
    values = pd.Series(texts.to_numpy(zero_copy_only=False), dtype=object)
    parsed = pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")
    bad = (parsed.isna() & values.notna()).to_numpy()
    if bad.any():
        judged.refuse(
            np.flatnonzero(bad),
            "a value that is not an ISO 8601 timestamp",
            "write timestamps such as '2025-01-05T10:00:00Z'",
        )


class _Judged:
    """One column being checked, and how its refusal is told."""

    def __init__(self, column: Any, feature: FeatureSchema, model: str, label: RowLabel) -> None:
        self.column = column
        self.feature = feature
        self.model = model
        self.label = label

    def refuse_where(self, mask: Any, problem: str, advice: str) -> None:
        """Refuse the rows an Arrow boolean ``mask`` flags (nulls are not flagged), if any."""
        import pyarrow.compute as pc

        mask = pc.fill_null(mask, False)
        if pc.any(mask).as_py():
            self.refuse(np.flatnonzero(mask.to_numpy(zero_copy_only=False)), problem, advice)

    def refuse(self, bad: np.ndarray, problem: str, advice: str) -> None:
        """Raise the error of the refused rows at positions ``bad`` (ascending)."""
        f = self.feature
        shown = ", ".join(f"{self.label(int(i))} ({_shown(self.column[int(i)])})" for i in bad[:_EXAMPLES])
        more = ", ..." if len(bad) > _EXAMPLES else ""
        count = len(bad)
        rows = f"{count:,} row holds" if count == 1 else f"{count:,} rows hold"
        raise InputValuesError(
            f"model {self.model!r}: column {f.name!r} ({f.dtype}): {rows} {problem}: {shown}{more}; {advice}",
            field=f.name,
            row=int(bad[0]),
            count=count,
        )


def _shown(value: Any) -> str:
    if hasattr(value, "as_py"):
        value = value.as_py()
    if isinstance(value, np.generic):
        value = value.item()
    return repr(value)


# -- pandas frames (the Python API) --------------------------------------------------------------------------------
def check_frame(frame: pd.DataFrame, inputs: InputSchema, *, model: str, rows: RowLabel | None = None) -> None:
    """Check ``frame``'s feature columns as :func:`check_table` checks an Arrow table (absent columns are not
    judged here). A column is seen as Arrow converts it (NaN and ``None`` as missing); a column of mixed types
    that Arrow cannot convert is refused for its values that do not fit.

    Raises:
        InputValuesError: see :func:`check_table`.
    """
    import pandas as pd
    import pyarrow as pa

    label = rows if rows is not None else _position
    present = [f for f in inputs.features if f.name in frame.columns]
    for feature in present:
        series: Any = frame[feature.name]
        if isinstance(series, pd.DataFrame):  # a column name given twice: the package's conversion refuses it
            continue
        if (
            feature.dtype == "string"
            and series.dtype == object
            and pd.api.types.infer_dtype(series, skipna=True) in ("string", "empty")
        ):
            continue  # all strings (or missing), the common case: judged without building Arrow strings
        try:
            array = pa.Array.from_pandas(series)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError):
            _check_mixed(series, feature, model, label)
            continue
        check_table(pa.table({feature.name: array}), _only(feature), model=model, rows=label)


def _only(feature: FeatureSchema) -> InputSchema:
    from keel.models._schema import InputSchema

    return InputSchema((feature,))


def _check_mixed(series: pd.Series, feature: FeatureSchema, model: str, label: RowLabel) -> None:
    """A column Arrow cannot convert (values of several types): each value judged on its own (an error path only:
    a column of one type converts)."""
    values = series.tolist()
    bad = np.array([not _scalar_fits(v, feature.dtype) for v in values], dtype=bool)
    if bad.any():
        kinds = sorted({type(v).__name__ for v in values if not _missing(v)})
        _Judged(values, feature, model, label).refuse(
            np.flatnonzero(bad),
            f"a value that is not {WANTED[feature.dtype]}",
            f"the column {'mixes' if len(kinds) > 1 else 'holds'} {', '.join(kinds)} values; {_advice(feature.dtype)}",
        )


def _missing(value: Any) -> bool:
    import pandas as pd

    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float | np.floating) and math.isnan(value)


def _scalar_fits(value: Any, dtype: str) -> bool:
    """Whether one Python or NumPy value fits ``dtype`` (missing values fit)."""
    import datetime as dt

    import pandas as pd

    if _missing(value):
        return True
    if isinstance(value, np.generic):
        value = value.item()
    if dtype in ("float64", "int64"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if dtype == "int64":
            return (isinstance(value, int) or value.is_integer()) and fits_int64(value)
        return True
    if dtype == "bool":
        return isinstance(value, bool)
    if dtype == "string":
        return isinstance(value, str)
    if dtype == "timestamp":
        if isinstance(value, dt.datetime | dt.date | pd.Timestamp):
            return True
        if isinstance(value, str):
            return not pd.isna(pd.to_datetime(value, utc=True, errors="coerce", format="ISO8601"))
        return False
    return True
