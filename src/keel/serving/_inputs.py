"""Checking and resolving a prediction request's records against a model's input schema.

Each record gives entity keys (the model's features are read online), raw feature values, or both: an explicit
value, ``null`` included, overrides the looked-up one. Every value is checked against the model's input
schema before the model sees it, so bad input is a :class:`~keel.errors.ValidationError` naming the field and
the record, never a 500. :func:`warnings_of` tells, per record, what the model had to make do with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from keel.errors import ValidationError
from keel.models import MAX_CATEGORIES, check_value

if TYPE_CHECKING:
    from keel.models import FeatureSchema
    from keel.online import OnlineFeatureService
    from keel.serving._loaded import InputColumn, LoadedModel

__all__ = ["Resolved", "resolve", "typed_column", "warnings_of"]

_MISSING = object()
_NUMERIC = ("int64", "float64")


def _bad(i: int, name: str, message: str) -> ValidationError:
    return ValidationError(f"records[{i}].{name}: {message}", field=name, row=i)


def _check_value(value: Any, f: FeatureSchema, i: int) -> Any:
    """``value`` of column ``f`` in record ``i``, checked against its type (timestamps parsed); ``None`` kept.

    What fits is the model's one definition (:func:`keel.models.check_value`), which batch scoring and the Python
    API apply to whole columns.

    Raises:
        ValidationError: the value is of the wrong type, or not finite.
    """
    try:
        return check_value(value, f)
    except ValidationError as exc:
        raise _bad(i, f.name, str(exc)) from None


#: Integers below this in magnitude are exact as float64.
_EXACT = 2**53
#: The Python type of an online value that reads back unchanged through ``to_frame`` (by the value's dtype).
_PLAIN_TYPES: dict[str, type] = {"float64": float, "int64": int, "string": str, "bool": bool}


def typed_column(values: list[Any], dtype: str) -> Any:
    """A typed column of ``values`` (``None`` missing), as retrieval types it."""
    import pandas as pd

    if dtype in _NUMERIC:
        if all(v is None or type(v) is float or (type(v) is int and -_EXACT < v < _EXACT) for v in values):
            return np.array([np.nan if v is None else v for v in values], dtype=np.float64)  # as pandas gives them
        return pd.array(values, dtype="Float64").to_numpy(dtype=np.float64, na_value=np.nan)
    if dtype == "bool":
        return pd.array(values, dtype="boolean")
    if dtype == "timestamp":
        return pd.Series(values, dtype="datetime64[us, UTC]").array
    return np.array(values, dtype=object)


def _plain(value: Any) -> Any:
    """A looked-up value as a plain Python value (missing -> ``None``)."""
    import pandas as pd

    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


@dataclass
class Resolved:
    """A request's input values, column by column (``None``: missing), and which records were looked up."""

    columns: dict[str, list[Any]]
    looked_up: list[bool]


def resolve(online: OnlineFeatureService, model: LoadedModel, records: list[dict[str, Any]]) -> Resolved:
    """Every record's value of every input column: explicit values checked, the others read online.

    Raises:
        ValidationError: a value is invalid, or a column has neither a value nor the keys to look it up.
    """
    columns: dict[str, list[Any]] = {inp.schema.name: [None] * len(records) for inp in model.inputs}
    wanted: dict[int, list[InputColumn]] = {}
    for i, record in enumerate(records):
        for inp in model.inputs:
            name = inp.schema.name
            value = record.get(name, _MISSING)
            if value is _MISSING:
                if inp.online_ref is None:
                    raise _bad(i, name, "missing, and it is not a feature the service can look up online")
                wanted.setdefault(i, []).append(inp)
            else:
                columns[name][i] = _check_value(value, inp.schema, i)
    looked_up = [False] * len(records)
    if wanted:
        rows = sorted(wanted)
        needed: dict[str, InputColumn] = {}
        for i in rows:
            looked_up[i] = True
            for inp in wanted[i]:
                needed.setdefault(inp.schema.name, inp)
        refs = [inp.online_ref for inp in needed.values() if inp.online_ref is not None]
        try:
            result = online.get(refs, [records[i] for i in rows], full_feature_names=model.full_names)
        except ValidationError as exc:
            raise _lookup_error(exc, rows, wanted) from None
        read = _looked_up(result, needed)
        for name in needed:
            values = read[name]
            column = columns[name]
            for position, i in enumerate(rows):
                if any(w.schema.name == name for w in wanted[i]):
                    column[i] = values[position] if values else None
    return Resolved(columns, looked_up)


def _looked_up(result: Any, needed: dict[str, InputColumn]) -> dict[str, list[Any]]:
    """Each needed column's online values as plain Python values, as ``result.to_frame()`` types them.

    Values already of their dtype's plain type (float, int, str, bool, or None) read back unchanged through the
    frame (NaN as None), so the frame is built only for a column holding anything else.
    """
    out: dict[str, list[Any]] = {}
    frame = None
    for name, inp in needed.items():
        column = inp.online_column
        raw = result.values.get(column) if column is not None else None
        kind = _PLAIN_TYPES.get(result.dtypes.get(column, ""))
        if raw is not None and kind is not None and all(v is None or type(v) is kind for v in raw):
            out[name] = [None if v is None or v != v else v for v in raw]  # v != v: NaN
            continue
        if frame is None:
            frame = result.to_frame()
        out[name] = [_plain(v) for v in frame[column].tolist()] if column in frame.columns else []
    return out


def _lookup_error(exc: ValidationError, rows: list[int], wanted: dict[int, list[InputColumn]]) -> ValidationError:
    """The online read's error, told in terms of the request's records."""
    row = getattr(exc, "row", None)
    field_name = getattr(exc, "field", None)
    if row is None or not 0 <= row < len(rows):
        return ValidationError(f"looking up features online: {exc}", field=field_name)
    i = rows[row]
    missing = ", ".join(repr(inp.schema.name) for inp in wanted[i])
    return ValidationError(
        f"records[{i}]: no value for {missing}, and the record cannot be looked up online: {exc}",
        field=field_name,
        row=i,
    )


def warnings_of(model: LoadedModel, resolved: Resolved, prepared: dict[str, np.ndarray]) -> list[list[dict[str, Any]]]:
    """Per record: missing values imputed, unknown categories, values outside the training range."""
    count = len(resolved.looked_up)
    out: list[list[dict[str, Any]]] = [[] for _ in range(count)]
    for inp in model.inputs:
        f = inp.schema
        raw = resolved.columns[f.name]
        if f.dtype == "string":
            known = frozenset(f.categories) if f.categories and len(f.categories) < MAX_CATEGORIES else None
            for i, value in enumerate(raw):
                if value is None:
                    out[i].append(_missing(f, resolved.looked_up[i]))
                elif known is not None and value not in known:
                    out[i].append(
                        {
                            "type": "unknown_category",
                            "field": f.name,
                            "message": f"{f.name}: category {value!r} was not seen in training",
                        }
                    )
            continue
        numbers = prepared.get(f.name)
        for i, value in enumerate(raw):
            if value is None:
                out[i].append(_missing(f, resolved.looked_up[i]))
                continue
            if numbers is None or f.dtype == "bool" or f.min is None or f.max is None:
                continue
            x = float(numbers[i])
            if x < f.min or x > f.max:
                shown: Any = value
                lo: Any = f.min
                hi: Any = f.max
                if f.dtype == "timestamp":
                    shown = value.isoformat()
                    lo = datetime.fromtimestamp(f.min, UTC).isoformat()
                    hi = datetime.fromtimestamp(f.max, UTC).isoformat()
                out[i].append(
                    {
                        "type": "out_of_range",
                        "field": f.name,
                        "message": f"{f.name}: {shown!r} is outside the training range [{lo}, {hi}]",
                    }
                )
    return out


def _missing(f: FeatureSchema, looked_up: bool) -> dict[str, Any]:
    where = "no value online (unknown entity or expired)" if looked_up else "null"
    return {"type": "missing_imputed", "field": f.name, "message": f"{f.name}: {where}; the model imputes it"}
