"""JSON rows of a feature view, checked cell by cell, as the DataFrame :meth:`keel.Project.push` takes.

JSON has fewer types than a feature view, so each cell is checked against its column's declared dtype here,
where the row is still known; the conversion and every other check (null keys, timestamps, ranges) are
ingestion's own, which reports rows too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from keel._numbers import fits_int64
from keel.errors import ValidationError
from keel.serving._body import json_type

if TYPE_CHECKING:
    import pandas as pd

    from keel.features import FeatureView

__all__ = ["rows_frame"]


def _is_number(value: Any) -> bool:
    return (type(value) is int or type(value) is float) and value is not True and value is not False


def _is_integer(value: Any) -> bool:
    return (type(value) is int or (type(value) is float and value.is_integer())) and fits_int64(value)


#: For each dtype: whether a non-null JSON value fits, and what a fitting value is, for error messages.
_FITS: dict[str, tuple[Any, str]] = {
    "int64": (_is_integer, "an integer within 64 bits"),
    "float64": (_is_number, "a number"),
    "bool": (lambda v: type(v) is bool, "true or false"),
    "string": (lambda v: type(v) is str, "a string"),
    "timestamp": (lambda v: type(v) is str, "an ISO 8601 string such as '2025-01-05T10:00:00Z'"),
    "list[float64]": (lambda v: type(v) is list and all(_is_number(x) for x in v), "an array of numbers"),
    "key": (lambda v: (type(v) is int and fits_int64(v)) or type(v) is str, "an integer within 64 bits or a string"),
}


def rows_frame(rows: Any, view: FeatureView, join_keys: list[str]) -> pd.DataFrame:
    """``rows`` (a JSON array of objects) as a DataFrame of ``view``'s columns.

    Columns absent from a row are null in it; columns the view does not declare are passed on (ingestion
    ignores them).

    Raises:
        ValidationError: ``rows`` is not a non-empty array of objects, or a cell does not fit its column's
            dtype; ``field`` names the column and ``row`` the row (from 0).
    """
    import pandas as pd

    if type(rows) is not list:
        raise ValidationError(f"'rows' must be an array of objects, got {json_type(rows)}", field="rows")
    if not rows:
        raise ValidationError(f"'rows' is empty; push at least one row of {view.name!r}", field="rows")
    for i, row in enumerate(rows):
        if type(row) is not dict:
            raise ValidationError(
                f"rows[{i}] must be an object of column values, got {json_type(row)}", field="rows", row=i
            )
    expected = dict.fromkeys(join_keys, "key")
    expected[view.source.timestamp] = "timestamp"
    if view.source.created_timestamp:
        expected[view.source.created_timestamp] = "timestamp"
    expected.update((f.name, f.dtype) for f in view.schema)
    names = list(dict.fromkeys(name for row in rows for name in row))
    columns: dict[str, Any] = {}
    for name in names:
        values = [row.get(name) for row in rows]
        dtype = expected.get(name)
        if dtype is None:
            columns[name] = values
            continue
        fits, wanted = _FITS[dtype]
        first: Any = None  # a key column holds integers or strings, not both
        for i, value in enumerate(values):
            if value is None:
                continue
            if not fits(value) or (dtype == "key" and first is not None and type(value) is not type(first)):
                what = "join key" if dtype == "key" else f"{dtype} column"
                if dtype == "key" and first is not None:
                    wanted = f"{json_type(first)} like the rows before it"
                raise ValidationError(
                    f"push to {view.name!r}: row {i}, {what} {name!r}: {json_type(value)} {value!r} is not {wanted}",
                    field=name,
                    row=i,
                )
            if first is None:
                first = value
        # Integers stay exact (and nullable) rather than going through float64.
        columns[name] = (
            pd.array(values, dtype="Int64") if dtype == "int64" or (dtype == "key" and type(first) is int) else values
        )
    return pd.DataFrame(columns)
