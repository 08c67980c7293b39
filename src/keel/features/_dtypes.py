"""The small set of feature dtypes Keel understands, their Arrow and pandas forms, and the conversion of values
to them (:func:`to_arrow`: only conversions that keep the meaning; anything else names the row)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from keel.errors import ValidationError

if TYPE_CHECKING:
    import pyarrow as pa

#: The canonical dtype names.
DTYPES: tuple[str, ...] = ("int64", "float64", "bool", "string", "timestamp", "list[float64]")

_ALIASES = {
    "int": "int64",
    "integer": "int64",
    "float": "float64",
    "double": "float64",
    "boolean": "bool",
    "str": "string",
    "datetime": "timestamp",
    "list<float64>": "list[float64]",
    "list[float]": "list[float64]",
    "embedding": "list[float64]",
}


def canonical_dtype(dtype: str, *, where: str = "", field: str | None = None) -> str:
    """Return the canonical name of ``dtype`` or raise a :class:`ValidationError` listing the valid ones.

    Args:
        dtype: a dtype name or alias (``int``, ``double``, ``embedding``...).
        where: a prefix for error messages (``field 'plan': ``).
        field: the field the dtype belongs to, recorded on the error.
    """
    if not isinstance(dtype, str):
        raise ValidationError(f"{where}dtype must be a string, got {type(dtype).__name__}", field=field)
    name = dtype.strip().lower()
    name = _ALIASES.get(name, name)
    if name not in DTYPES:
        raise ValidationError(f"{where}unknown dtype {dtype!r}; valid dtypes are: {', '.join(DTYPES)}", field=field)
    return name


def arrow_type(dtype: str) -> pa.DataType:
    """The Arrow type Keel stores a column of ``dtype`` as (timestamps are UTC, microseconds)."""
    import pyarrow as pa

    return {
        "int64": pa.int64(),
        "float64": pa.float64(),
        "bool": pa.bool_(),
        "string": pa.string(),
        "timestamp": pa.timestamp("us", tz="UTC"),
        "list[float64]": pa.list_(pa.float64()),
    }[canonical_dtype(dtype)]


def dtype_of_arrow(t: pa.DataType) -> str | None:
    """The Keel dtype an Arrow type maps to naturally, or ``None`` when there is none."""
    import pyarrow as pa
    import pyarrow.types as pat

    if pat.is_integer(t):
        return "int64"
    if pat.is_floating(t) or pat.is_decimal(t):
        return "float64"
    if pat.is_boolean(t):
        return "bool"
    if pat.is_dictionary(t) and isinstance(t, pa.DictionaryType):  # categorical: the type of its values
        return dtype_of_arrow(t.value_type)
    if pat.is_string(t) or pat.is_large_string(t) or getattr(pat, "is_string_view", lambda _: False)(t):
        return "string"
    if pat.is_timestamp(t) or pat.is_date(t):
        return "timestamp"
    if (pat.is_list(t) or pat.is_large_list(t) or pat.is_fixed_size_list(t)) and isinstance(
        t, pa.ListType | pa.LargeListType | pa.FixedSizeListType
    ):
        inner = t.value_type
        if pat.is_floating(inner) or pat.is_integer(inner):
            return "list[float64]"
    return None


def pandas_type(t: pa.DataType) -> Any:
    """The pandas dtype Keel gives an Arrow column in the frames it returns (``types_mapper`` of ``to_pandas``).

    Integers and booleans become the nullable ``Int64`` and ``boolean`` (a null stays a null instead of
    turning the column into floats or objects); other types keep pyarrow's default.
    """
    import pandas as pd
    import pyarrow as pa

    if pa.types.is_integer(t):
        return pd.Int64Dtype()
    if pa.types.is_boolean(t):
        return pd.BooleanDtype()
    return None


_PY_TYPES: dict[str, str] = {
    "int64": "an integer",
    "float64": "a number",
    "bool": "a boolean",
    "string": "a string",
    "timestamp": "a timestamp",
    "list[float64]": "a list of numbers",
}


def _fits(value: Any, dtype: str) -> bool:
    """Whether one Python value can be a value of ``dtype`` (nulls always can)."""
    import datetime as dt
    import numbers

    import numpy as np

    if value is None or (isinstance(value, float) and value != value):
        return True
    if isinstance(value, bool | np.bool_):
        return dtype == "bool"
    if dtype == "float64":
        return isinstance(value, numbers.Real)
    if dtype == "int64":
        return isinstance(value, numbers.Integral) or (isinstance(value, numbers.Real) and float(value).is_integer())
    if dtype == "string":
        return isinstance(value, str)
    if dtype == "timestamp":
        return isinstance(value, dt.date | str | np.datetime64)
    if dtype == "list[float64]":
        return isinstance(value, list | tuple | np.ndarray) and all(
            isinstance(v, numbers.Real) and not isinstance(v, bool) for v in value
        )
    return False


def _bad_value(values: Any, dtype: str, what: str, field: str | None) -> ValidationError:
    """The error for the first value of ``values`` that is not of ``dtype`` (or a general one)."""
    items = values.tolist() if hasattr(values, "tolist") else list(values)
    for row, value in enumerate(items):
        if not _fits(value, dtype):
            return ValidationError(
                f"{what}: row {row} has {value!r}, which is not {_PY_TYPES[dtype]} ({dtype})", field=field, row=row
            )
    return ValidationError(f"{what}: values do not convert to {dtype}", field=field)


def to_arrow(values: Any, dtype: str, *, what: str, field: str | None = None) -> pa.Array:
    """``values`` (an Arrow array, a pandas Series, a list) as an Arrow array of the Keel ``dtype``.

    Only conversions that keep the meaning are made: integers to floats, integral floats to integers, naive
    timestamps taken as UTC, ISO 8601 strings and dates to timestamps, NaN to null. Anything else (text
    where numbers are declared, fractional numbers where integers are) is a :class:`ValidationError` naming
    ``what`` and, when it can be found, the row.
    """
    import pandas as pd
    import pyarrow as pa

    target = arrow_type(dtype)
    if isinstance(values, pa.ChunkedArray):
        arr = values.combine_chunks()
    elif isinstance(values, pa.Array):
        arr = values
    else:
        try:
            arr = pa.array(values, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError) as exc:
            raise _bad_value(values, dtype, what, field) from exc
    if arr.type == target:
        return arr
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if pa.types.is_null(arr.type):
        return pa.nulls(len(arr), target)
    natural = dtype_of_arrow(arr.type)
    if dtype == "timestamp" and natural == "string":
        try:
            parsed = pd.to_datetime(pd.Series(arr.to_pylist(), dtype=object), utc=True, format="ISO8601")
        except (ValueError, TypeError) as exc:
            raise ValidationError(f"{what}: {exc}; write timestamps in ISO 8601", field=field) from exc
        arr = pa.array(parsed, from_pandas=True)
        natural = "timestamp"
    compatible = natural == dtype or (natural, dtype) in {("int64", "float64"), ("float64", "int64")}
    if not compatible:
        raise ValidationError(
            f"{what} holds {natural or arr.type} values, not {dtype}; convert them (or declare {natural or arr.type})",
            field=field,
        )
    try:
        return arr.cast(target, safe=dtype != "timestamp")  # timestamps: nanoseconds truncated, as on ingest
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        if dtype == "int64" and natural == "float64":
            raise _first_fraction(arr, what, field) from exc
        raise ValidationError(f"{what}: cannot convert to {dtype}: {exc}", field=field) from exc


def _first_fraction(arr: pa.Array, what: str, field: str | None) -> ValidationError:
    for row, value in enumerate(arr.to_pylist()):
        if value is not None and not float(value).is_integer():
            return ValidationError(f"{what}: row {row} has {value!r}, which is not an integer", field=field, row=row)
    return ValidationError(f"{what}: values out of the int64 range", field=field)
