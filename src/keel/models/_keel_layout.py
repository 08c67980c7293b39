"""The ``keel`` package format's layout: the header, the padding between the tree and the data block, the JSON
form of dtypes, and :class:`Unsupported`, the signal that the format cannot hold an object. See
:mod:`keel.models._keelfmt` for the format itself."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import orjson

from keel.errors import IntegrityError

__all__ = [
    "MAGIC",
    "VERSION",
    "Unsupported",
    "as_count",
    "as_str",
    "cached_dtype",
    "dtype_spec",
    "pack",
    "pad",
    "parse_dtype",
    "unpack",
]

MAGIC = b"KEELPKG\x00"
VERSION = 1
_HEADER = struct.Struct("<8sIIQQ")
_ALIGN = 64
#: dtype kinds whose bytes are plain data (no object pointers, no heap references).
_PLAIN_KINDS = frozenset("biufcmMUSV")


class Unsupported(Exception):
    """The object cannot be represented in this format (the caller falls back to another one)."""


# -- dtypes --------------------------------------------------------------------------------------------------
def dtype_spec(dt: np.dtype, *, allow_object: bool = False) -> Any:
    """A JSON form of ``dt`` (``"<f8"``; a dict for records; ``["sub", base, shape]`` for sub-arrays)."""
    if dt.metadata:
        raise Unsupported(f"dtype {dt} carries metadata")
    if dt.fields is not None:
        names = list(dt.names or ())
        fields = [dt.fields[n] for n in names]
        if any(len(f) != 2 for f in fields):
            raise Unsupported(f"dtype {dt} has field titles")
        return {
            "names": names,
            "formats": [dtype_spec(f[0]) for f in fields],
            "offsets": [int(f[1]) for f in fields],
            "itemsize": dt.itemsize,
            "aligned": bool(dt.isalignedstruct),
        }
    if dt.subdtype is not None:
        base, shape = dt.subdtype
        return ["sub", dtype_spec(base), list(shape)]
    if dt.kind not in _PLAIN_KINDS and not (allow_object and dt.kind == "O"):
        raise Unsupported(f"dtype {dt} is not plain data")
    return dt.str


#: Dtypes already decoded, by their JSON form (a package repeats a few dtypes hundreds of times).
_DTYPES: dict[tuple[bytes, bool], np.dtype] = {}
_DTYPES_MAX = 1024


def cached_dtype(spec: Any, *, allow_object: bool = False) -> np.dtype:
    """:func:`parse_dtype`, remembered."""
    key = (spec.encode() if type(spec) is str else orjson.dumps(spec), allow_object)
    dt = _DTYPES.get(key)
    if dt is None:
        dt = parse_dtype(spec, allow_object=allow_object)
        if len(_DTYPES) >= _DTYPES_MAX:
            _DTYPES.clear()
        _DTYPES[key] = dt
    return dt


def parse_dtype(spec: Any, *, allow_object: bool = False) -> np.dtype:
    """The dtype of a :func:`_dtype_spec` form (only plain-data dtypes, unless ``allow_object``)."""
    if type(spec) is str:
        dt = np.dtype(spec)
        if dt.fields is not None or dt.subdtype is not None:
            raise ValueError(f"dtype {spec!r} is not a simple dtype")
        if dt.kind not in _PLAIN_KINDS and not (allow_object and dt.kind == "O"):
            raise ValueError(f"dtype {spec!r} is not plain data")
        return dt
    if type(spec) is dict:
        formats = [parse_dtype(f) for f in spec["formats"]]
        return np.dtype(
            {
                "names": [as_str(n) for n in spec["names"]],
                "formats": formats,
                "offsets": [as_count(o) for o in spec["offsets"]],
                "itemsize": as_count(spec["itemsize"]),
            },
            align=spec["aligned"] is True,
        )
    if type(spec) is list and len(spec) == 3 and spec[0] == "sub":
        return np.dtype((parse_dtype(spec[1]), tuple(as_count(n) for n in spec[2])))
    raise ValueError(f"bad dtype {spec!r}")


def as_count(value: Any) -> int:
    if type(value) is not int or value < 0:
        raise ValueError(f"expected a non-negative integer, got {value!r}")
    return value


def as_str(value: Any) -> str:
    if type(value) is not str:
        raise ValueError(f"expected a string, got {value!r}")
    return value


# -- blob layout ---------------------------------------------------------------------------------------------
def pad(size: int) -> int:
    return -size % _ALIGN


def pack(tree: bytes, data: bytes) -> bytes:
    """The blob of a JSON ``tree`` and a ``data`` block."""
    head = _HEADER.pack(MAGIC, VERSION, 0, len(tree), len(data))
    return b"".join((head, tree, bytes(pad(len(head) + len(tree))), data))


def unpack(blob: bytes, what: str = "model package") -> tuple[bytes, memoryview]:
    """``(tree, data)`` of a blob written by :func:`pack`.

    Raises:
        IntegrityError: not such a blob, an unknown version, or a length that does not add up.
    """
    view = memoryview(blob)
    if len(view) < _HEADER.size or bytes(view[:8]) != MAGIC:
        raise IntegrityError(f"{what} is not a Keel package (bad header); refused")
    _, version, _, tree_len, data_len = _HEADER.unpack_from(view)
    if version != VERSION:
        raise IntegrityError(f"{what} is Keel package format version {version}; this Keel reads {VERSION}")
    start = _HEADER.size + tree_len
    data_start = start + pad(start)
    if data_start + data_len != len(view):
        raise IntegrityError(
            f"{what} is truncated or corrupted ({len(view)} bytes, the header says {data_start + data_len}); refused"
        )
    return bytes(view[_HEADER.size : start]), view[data_start:]
