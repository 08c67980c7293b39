"""The small set of feature dtypes Keel understands, and their Arrow and pandas forms."""

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
