"""Decoding the ``keel`` package format (see :mod:`keel.models._keelfmt`): every type the blob names is checked
against the allowlist (:mod:`keel.models._trust`) before anything is built."""

from __future__ import annotations

import base64
import math
import struct
from typing import Any

import numpy as np
import orjson

from keel.errors import IntegrityError
from keel.models._keel_layout import as_count, as_str, cached_dtype, unpack
from keel.models._trust import allowed, check_built, resolve, untrusted_error

__all__ = ["decode", "type_names"]


class _Decoder:
    """One decoding: resolved types, the data block, and the objects met so far by node id."""

    def __init__(self, types: list[type], data: memoryview) -> None:
        self.types = types
        self.data = data
        self.memo: dict[int, Any] = {}

    def node(self, node: Any) -> Any:
        t = type(node)
        if t is list:
            return _KINDS[node[0]](self, node)
        if t is dict:
            raise ValueError("a JSON object where a node was expected")
        return node

    def keep(self, number: Any, obj: Any) -> Any:
        if type(number) is not int or number in self.memo:
            raise ValueError(f"bad node id {number!r}")
        self.memo[number] = obj
        return obj

    def ref(self, node: list[Any]) -> Any:
        return self.memo[node[1]]

    def big_int(self, node: list[Any]) -> int:
        return int(as_str(node[1]))

    def special_float(self, node: list[Any]) -> float:
        value: float = struct.unpack("<d", bytes.fromhex(as_str(node[1])))[0]
        return value

    def list_(self, node: list[Any]) -> list[Any]:
        out: list[Any] = self.keep(node[1], [])
        out.extend(self.node(v) for v in node[2])
        return out

    def dict_str(self, node: list[Any]) -> dict[str, Any]:
        out: dict[str, Any] = self.keep(node[1], {})
        for key, value in node[2].items():
            out[key] = self.node(value)
        return out

    def dict_any(self, node: list[Any]) -> dict[Any, Any]:
        out: dict[Any, Any] = self.keep(node[1], {})
        flat = node[2]
        if len(flat) % 2:
            raise ValueError("a dict node with an odd number of items")
        for i in range(0, len(flat), 2):
            key = self.node(flat[i])
            out[key] = self.node(flat[i + 1])
        return out

    def tuple_(self, node: list[Any]) -> tuple[Any, ...]:
        return self.keep(node[1], tuple(self.node(v) for v in node[2]))  # type: ignore[no-any-return]

    def frozenset_(self, node: list[Any]) -> frozenset[Any]:
        return self.keep(node[1], frozenset(self.node(v) for v in node[2]))  # type: ignore[no-any-return]

    def set_(self, node: list[Any]) -> set[Any]:
        out: set[Any] = self.keep(node[1], set())
        out.update(self.node(v) for v in node[2])
        return out

    def bytes_(self, node: list[Any]) -> bytes:
        return base64.b64decode(as_str(node[1]), validate=True)

    def bytearray_(self, node: list[Any]) -> bytearray:
        return self.keep(node[1], bytearray(base64.b64decode(as_str(node[2]), validate=True)))  # type: ignore[no-any-return]

    def complex_(self, node: list[Any]) -> complex:
        return complex(_real(self.node(node[1])), _real(self.node(node[2])))

    def slice_(self, node: list[Any]) -> slice:
        return slice(self.node(node[1]), self.node(node[2]), self.node(node[3]))

    def type_(self, node: list[Any]) -> type:
        return self.types[as_count(node[1])]

    def dtype(self, node: list[Any]) -> np.dtype:
        return cached_dtype(node[1], allow_object=True)

    def scalar(self, node: list[Any]) -> Any:
        dt = cached_dtype(node[1])
        raw = bytes.fromhex(as_str(node[2]))
        if len(raw) != dt.itemsize or dt.itemsize == 0:
            raise ValueError(f"a {dt} scalar of {len(raw)} bytes")
        return np.frombuffer(raw, dtype=dt)[0]

    def array(self, node: list[Any]) -> np.ndarray:
        _, number, spec, shape, order, offset = node
        dt = cached_dtype(spec)
        shape = tuple(as_count(n) for n in shape)
        count = math.prod(shape)
        size = count * dt.itemsize
        if order not in ("C", "F") or as_count(offset) + size > len(self.data):
            raise ValueError("an array outside the data block")
        if size == 0:
            arr = np.empty(shape, dtype=dt, order=order)
        else:
            arr = np.frombuffer(self.data, dtype=dt, count=count, offset=offset).reshape(shape, order=order)
            arr = arr.copy(order="K")  # writeable, owns its memory, outlives the blob
        return self.keep(number, arr)  # type: ignore[no-any-return]

    def object_array(self, node: list[Any]) -> np.ndarray:
        _, number, shape, order, items = node
        shape = tuple(as_count(n) for n in shape)
        if order not in ("C", "F") or math.prod(shape) != len(items):
            raise ValueError("an object array whose items do not fill its shape")
        arr = self.keep(number, np.empty(shape, dtype=object, order=order))
        flat = arr.reshape(-1, order=order)  # a view: filling it fills arr
        for i, item in enumerate(items):
            flat[i] = self.node(item)
        return arr  # type: ignore[no-any-return]

    def generator(self, node: list[Any]) -> np.random.Generator:
        return self.keep(node[1], np.random.Generator(self.node(node[2])))  # type: ignore[no-any-return]

    def random_state(self, node: list[Any]) -> np.random.RandomState:
        state = np.random.RandomState(self.node(node[2]))
        self.keep(node[1], state)
        state.set_state(self.node(node[3]))
        return state

    def seed_sequence(self, node: list[Any]) -> np.random.SeedSequence:
        entropy, spawn_key, pool_size, children = (self.node(v) for v in node[2:6])
        sequence = np.random.SeedSequence(
            entropy, spawn_key=spawn_key, pool_size=pool_size, n_children_spawned=children
        )
        return self.keep(node[1], sequence)  # type: ignore[no-any-return]

    def bit_generator(self, node: list[Any]) -> np.random.BitGenerator:
        cls = self.types[as_count(node[2])]
        if not issubclass(cls, np.random.BitGenerator):
            raise IntegrityError(f"{cls.__module__}.{cls.__qualname__} is not a numpy bit generator; refused")
        bit_generator = self.keep(node[1], cls())
        bit_generator.__setstate__(self.node(node[3]))
        return bit_generator  # type: ignore[no-any-return]

    def instance(self, node: list[Any]) -> Any:
        _, number, type_id, state, more = node
        cls = self.types[as_count(type_id)]
        args, kwargs, items, pairs = more if more is not None else (None, None, None, None)
        check_built(cls, called=False, newargs=bool(args or kwargs))
        arguments = [self.node(v) for v in args] if args else []
        keywords = self.node(kwargs) if kwargs is not None else {}
        if type(keywords) is not dict:
            raise ValueError("keyword arguments that are not a dict")
        obj = self.keep(number, cls.__new__(cls, *arguments, **keywords))
        return self._fill(obj, state, items, pairs)

    def call(self, node: list[Any]) -> Any:
        _, number, type_id, args, state, more = node
        cls = self.types[as_count(type_id)]
        check_built(cls, called=True, newargs=False)
        obj = self.keep(number, cls(*[self.node(v) for v in args]))
        items, pairs = more if more is not None else (None, None)
        return self._fill(obj, state, items, pairs)

    def cython(self, node: list[Any]) -> Any:
        _, number, type_id, checksum, state = node
        cls = self.types[as_count(type_id)]
        check_built(cls, called=False, newargs=False)
        name = f"{cls.__module__}.{cls.__qualname__}"
        if not (hasattr(cls, "__setstate_cython__") and hasattr(cls, "__reduce_cython__")):
            raise IntegrityError(f"{name} is not a picklable Cython class; refused")
        obj: Any = cls.__new__(cls)  # type: ignore[call-overload]
        if obj.__reduce_cython__()[1][1] != checksum:  # the checksum of the class's field layout
            raise IntegrityError(f"{name} was written with another layout of its fields (another version); refused")
        self.keep(number, obj)
        if state is not None:
            obj.__setstate_cython__(self.node(state))
        return obj

    def _fill(self, obj: Any, state: Any, items: Any, pairs: Any) -> Any:
        """Items and state, as pickle applies them (``extend``, ``__setitem__``, ``__setstate__``)."""
        if items is not None:
            if not isinstance(obj, list):
                raise ValueError("list items for an object that is not a list")
            obj.extend([self.node(v) for v in items])
        if pairs is not None:
            if not isinstance(obj, dict) or len(pairs) % 2:
                raise ValueError("dict items for an object that is not a dict")
            for i in range(0, len(pairs), 2):
                obj[self.node(pairs[i])] = self.node(pairs[i + 1])
        if state is None:
            return obj
        value = self.node(state)
        setstate = getattr(obj, "__setstate__", None)
        if setstate is not None:
            setstate(value)
            return obj
        slots = None
        if type(value) is tuple and len(value) == 2:
            value, slots = value
        if value:
            obj.__dict__.update(value)
        if slots:
            for key, item in slots.items():
                setattr(obj, key, item)
        return obj


def _real(value: Any) -> float:
    if type(value) is not float and type(value) is not int:
        raise ValueError(f"a complex part that is not a number: {value!r}")
    return float(value)


_KINDS: dict[str, Any] = {
    "r": _Decoder.ref,
    "i": _Decoder.big_int,
    "f": _Decoder.special_float,
    "l": _Decoder.list_,
    "D": _Decoder.dict_str,
    "d": _Decoder.dict_any,
    "t": _Decoder.tuple_,
    "F": _Decoder.frozenset_,
    "S": _Decoder.set_,
    "b": _Decoder.bytes_,
    "ba": _Decoder.bytearray_,
    "j": _Decoder.complex_,
    "sl": _Decoder.slice_,
    "T": _Decoder.type_,
    "dt": _Decoder.dtype,
    "s": _Decoder.scalar,
    "a": _Decoder.array,
    "oa": _Decoder.object_array,
    "g": _Decoder.generator,
    "rs": _Decoder.random_state,
    "ss": _Decoder.seed_sequence,
    "bg": _Decoder.bit_generator,
    "o": _Decoder.instance,
    "c": _Decoder.call,
    "cy": _Decoder.cython,
}


def type_names(blob: bytes, what: str = "model package") -> list[str]:
    """The full names of the types a ``keel`` blob refers to, read without building anything.

    Raises:
        IntegrityError: the blob is truncated or malformed.
    """
    return [f"{module}.{qualname}" for module, qualname in _type_table(unpack(blob, what)[0], what)[1]]


def _type_table(tree: bytes, what: str) -> tuple[dict[str, Any], list[list[str]]]:
    try:
        document = orjson.loads(tree)
        names = document["types"]
        if type(names) is not list or any(
            type(n) is not list or len(n) != 2 or type(n[0]) is not str or type(n[1]) is not str for n in names
        ):
            raise ValueError("a malformed type table")
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise IntegrityError(f"{what} is malformed ({exc}); refused") from exc
    return document, names


def decode(blob: bytes, what: str = "model package", *, trusted_types: frozenset[str] = frozenset()) -> Any:
    """The object of a ``keel`` blob, built from allowlisted classes (and those of ``trusted_types``) only.

    Every name of the type table is checked against the allowlist before any module it names is imported and
    before any object is built.

    Raises:
        IntegrityError: the blob names a type outside the allowlist (or a function), or it is truncated or
            malformed.
    """
    tree, data = unpack(blob, what)
    document, names = _type_table(tree, what)
    bad = [  # a listed function is not refused here: resolve says it is not a class
        f"{m}.{q}"
        for m, q in names
        if not allowed(m, q, "class", trusted_types) and not allowed(m, q, "function", trusted_types)
    ]
    if bad:
        raise untrusted_error(what, bad)
    types = [resolve(module, qualname, what, trusted_types) for module, qualname in names]
    try:
        return _Decoder(types, data).node(document["root"])
    except IntegrityError:
        raise
    except Exception as exc:  # a malformed tree, or a trusted class refusing its state
        raise IntegrityError(f"{what} is malformed ({type(exc).__name__}: {exc}); refused") from exc
