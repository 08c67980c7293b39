"""The canonical form of an entity key, shared by every online backend.

One key column keeps its value as is (an ``int`` stays an ``int``, so SQLite can use it as its rowid); a
composite key becomes the compact JSON text of its values (``[42,"eu"]``), which is unambiguous whatever the
strings contain and keeps ``1`` and ``"1"`` apart.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Sequence
from typing import Any

from keel.errors import ValidationError

__all__ = ["encode_key", "encode_keys"]

# A shared encoder: ``json.dumps`` with non-default options builds a new encoder on every call.
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _key_part(value: Any, key: tuple[Any, ...]) -> int | str:
    if type(value) is int or type(value) is str:
        return value
    # numpy integers are fine; bool is an int subclass but never a sensible key.
    is_bool = isinstance(value, bool)
    if isinstance(value, numbers.Integral) and not is_bool:
        return int(value)
    if isinstance(value, str):
        return str(value)
    raise ValidationError(
        f"entity key {key!r}: key values must be integers or strings, got {type(value).__name__} {value!r}"
    )


def encode_key(values: tuple[Any, ...]) -> int | str:
    """The canonical form of one entity key, the same in every backend.

    Args:
        values: the key's values, in the order of the view's key columns.

    Returns:
        The value itself for a one-column key (``(42,)`` -> ``42``, ``("a",)`` -> ``"a"``); the compact JSON
        text of the values for a composite key (``(42, "eu")`` -> ``'[42,"eu"]'``).

    Raises:
        ValidationError: ``values`` is not a non-empty tuple of integers and strings.
    """
    if type(values) is not tuple or not values:
        raise ValidationError(f"entity key {values!r}: pass a tuple of key values, one per key column (e.g. (42,))")
    if len(values) == 1:
        return _key_part(values[0], values)
    return _JSON.encode([_key_part(v, values) for v in values])


def encode_keys(entity_keys: Sequence[tuple[Any, ...]]) -> list[int | str]:
    """:func:`encode_key` of every key, with a fast path for the common one-column int/str keys."""
    out: list[int | str] = []
    append = out.append
    for key in entity_keys:
        # The read path runs this per requested entity: the checks below are the cheapest that stay exact.
        if type(key) is tuple and len(key) == 1:
            value = key[0]
            if type(value) is int or type(value) is str:
                append(value)
                continue
        append(encode_key(key))
    return out
