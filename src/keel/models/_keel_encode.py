"""Encoding objects into the ``keel`` package format (see :mod:`keel.models._keelfmt`): plain values natively,
arrays into the data block, objects of allowlisted classes the way they pickle."""

from __future__ import annotations

import base64
import copyreg
import math
import struct
import types
from typing import Any, Literal

import numpy as np
import orjson

from keel.errors import IntegrityError
from keel.models._keel_layout import Unsupported, dtype_spec, pack, pad
from keel.models._trust import check_built, resolve

__all__ = ["encode"]

_INT_MIN, _INT_END = -(2**63), 2**64  # orjson's integer range

#: How pickle's protocol 2+ rebuilds an object: ``cls.__new__(cls, *args)`` (``..._ex``: with keywords too).
_NEWOBJ = getattr(copyreg, "__newobj__")  # noqa: B009 - not in the type stubs
_NEWOBJ_EX = getattr(copyreg, "__newobj_ex__")  # noqa: B009
_FUNCTIONS = (types.FunctionType, types.BuiltinFunctionType, types.MethodType, np.ufunc)


def _covered(dt: np.dtype, mask: np.ndarray, at: int) -> None:
    """Marks in ``mask`` the bytes of the fields of ``dt`` (placed at ``at``)."""
    if dt.fields is not None:
        for name in dt.names or ():
            field, offset = dt.fields[name][:2]
            _covered(field, mask, at + offset)
    elif dt.subdtype is not None:
        base, shape = dt.subdtype
        for k in range(math.prod(shape)):
            _covered(base, mask, at + k * base.itemsize)
    else:
        mask[at : at + dt.itemsize] = True


def _zero_padding(data: bytes, dt: np.dtype) -> bytes:
    """``data`` with the padding bytes of a record dtype set to zero (they hold whatever memory held)."""
    if dt.fields is None or not dt.itemsize or not data:
        return data
    mask = np.zeros(dt.itemsize, dtype=bool)
    _covered(dt, mask, 0)
    if mask.all():
        return data
    raw = np.frombuffer(bytearray(data), dtype=np.uint8).reshape(-1, dt.itemsize)
    raw[:, ~mask] = 0
    return raw.tobytes()


def _sort_key(value: Any) -> tuple[str, Any]:
    """An order for set items that does not depend on hashing (sets iterate in hash order)."""
    t = type(value)
    if t is float:
        return ("float", (1, 0.0) if math.isnan(value) else (0, value))  # NaN compares with nothing
    if value is None or t in (bool, int, str, bytes):
        return (t.__name__, value)
    if t is tuple or t is frozenset:
        items = [_sort_key(v) for v in value]
        return (t.__name__, tuple(items if t is tuple else sorted(items)))
    raise Unsupported(f"a set holding {t.__name__} values has no stable order")


class _Encoder:
    """One encoding: the node tree, the type table and the data block."""

    def __init__(self, trusted: frozenset[str] = frozenset()) -> None:
        self.trusted = trusted  # names the caller trusts beyond the allowlist
        self.ids: dict[int, int] = {}  # id(obj) -> node id
        self.alive: list[Any] = []  # every object with a node id: its id() stays unique while encoding
        self.building: set[int] = set()  # ids of values whose parts are being encoded (no node id yet)
        self.types: list[list[str]] = []
        self.type_ids: dict[type, int] = {}
        self.chunks: list[bytes] = []
        self.size = 0

    def encode(self, root: Any) -> bytes:
        tree = orjson.dumps({"types": self.types, "root": self.node(root)})
        return pack(tree, b"".join(self.chunks))

    def _id(self, obj: Any) -> int:
        number = len(self.alive)
        self.ids[id(obj)] = number
        self.alive.append(obj)
        return number

    def _enter(self, obj: Any) -> None:
        if id(obj) in self.building:
            raise Unsupported(f"a cycle through a {type(obj).__name__}, which is built from its parts")
        self.building.add(id(obj))

    def type_id(self, cls: type) -> int:
        number = self.type_ids.get(cls)
        if number is None:
            module, qualname = cls.__module__, cls.__qualname__
            try:
                found = resolve(module, qualname, trusted=self.trusted)
            except IntegrityError as exc:
                # a class a load would refuse is not written (the short reason: the caller logs it)
                raise Unsupported(f"{module}.{qualname} is not on Keel's allowlist of classes") from exc
            if found is not cls:
                raise Unsupported(f"{module}.{qualname} does not name the class back")
            number = self.type_ids[cls] = len(self.types)
            self.types.append([module, qualname])
        return number

    def node(self, obj: Any) -> Any:
        t = type(obj)
        if t is str or t is bool or obj is None:
            return obj
        if t is int:
            return obj if _INT_MIN <= obj < _INT_END else ["i", str(obj)]
        if t is float:
            return obj if math.isfinite(obj) else ["f", struct.pack("<d", obj).hex()]
        number = self.ids.get(id(obj))
        if number is not None:
            return ["r", number]
        if t is list:
            number = self._id(obj)
            return ["l", number, [self.node(v) for v in obj]]
        if t is dict:
            number = self._id(obj)
            if all(type(k) is str for k in obj):
                return ["D", number, {k: self.node(v) for k, v in obj.items()}]
            return ["d", number, [self.node(x) for kv in obj.items() for x in kv]]
        if t is tuple or t is frozenset:
            self._enter(obj)
            items = [self.node(v) for v in (obj if t is tuple else sorted(obj, key=_sort_key))]
            self.building.discard(id(obj))
            return ["t" if t is tuple else "F", self._id(obj), items]
        if t is set:
            number = self._id(obj)
            return ["S", number, [self.node(v) for v in sorted(obj, key=_sort_key)]]
        if t is np.ndarray:
            return self.array(obj)
        if isinstance(obj, np.generic) and t.__module__ == "numpy":
            return ["s", dtype_spec(obj.dtype), _zero_padding(obj.tobytes(), obj.dtype).hex()]
        if isinstance(obj, np.dtype):
            return ["dt", dtype_spec(obj, allow_object=True)]
        if isinstance(obj, type):
            return ["T", self.type_id(obj)]
        if t is bytes:
            return ["b", base64.b64encode(obj).decode("ascii")]
        if t is bytearray:
            return ["ba", self._id(obj), base64.b64encode(obj).decode("ascii")]
        if t is complex:
            return ["j", self.node(obj.real), self.node(obj.imag)]
        if t is slice:
            return ["sl", self.node(obj.start), self.node(obj.stop), self.node(obj.step)]
        return self.random(obj) if t.__module__.startswith("numpy.random") else self.instance(obj)

    def array(self, arr: np.ndarray) -> Any:
        order: Literal["C", "F"] = "F" if arr.flags.f_contiguous and not arr.flags.c_contiguous else "C"
        shape = list(arr.shape)
        if arr.dtype.hasobject:
            if arr.dtype != np.dtype(object):
                raise Unsupported(f"dtype {arr.dtype} mixes objects with plain data")
            number = self._id(arr)
            return ["oa", number, shape, order, [self.node(v) for v in arr.ravel(order=order)]]
        spec = dtype_spec(arr.dtype)
        data = _zero_padding((arr.T if order == "F" else np.ascontiguousarray(arr)).tobytes(), arr.dtype)
        padding = pad(self.size)
        if padding:
            self.chunks.append(bytes(padding))
        offset = self.size + padding
        self.chunks.append(data)
        self.size = offset + len(data)
        return ["a", self._id(arr), spec, shape, order, offset]

    def random(self, obj: Any) -> Any:
        """numpy's random generators (they pickle through functions, so they have their own node kinds)."""
        t = type(obj)
        if t is np.random.Generator:
            bit_generator = self.node(obj.bit_generator)
            return ["g", self._id(obj), bit_generator]
        if t is np.random.RandomState:
            bit_generator = self.node(obj._bit_generator)
            number = self._id(obj)
            return ["rs", number, bit_generator, self.node(obj.get_state(legacy=False))]
        if t is np.random.SeedSequence:
            parts = [self.node(v) for v in (obj.entropy, obj.spawn_key, obj.pool_size, obj.n_children_spawned)]
            return ["ss", self._id(obj), *parts]
        if isinstance(obj, np.random.BitGenerator):
            type_id = self.type_id(t)
            number = self._id(obj)
            return ["bg", number, type_id, self.node(obj.__reduce__()[2])]
        return self.instance(obj)

    def instance(self, obj: Any) -> Any:
        """An object of a trusted class, rebuilt the way it pickles (``__reduce_ex__(4)``)."""
        t = type(obj)
        name = f"{t.__module__}.{t.__qualname__}"
        if isinstance(obj, _FUNCTIONS):
            raise Unsupported(f"{obj!r} is a function; functions are not stored")
        try:
            reduced = obj.__reduce_ex__(4)
        except Exception as exc:
            raise Unsupported(f"{name} cannot be reduced: {exc}") from exc
        if not isinstance(reduced, tuple) or not 2 <= len(reduced) <= 6:
            raise Unsupported(f"{name} pickles as a global ({reduced!r})")
        func, args, state, listitems, dictitems, setter = (*reduced, None, None, None, None)[:6]
        if setter is not None:
            raise Unsupported(f"{name} pickles with a state setter")
        called = False
        kwargs: dict[str, Any] = {}
        if func is _NEWOBJ:
            cls, args = args[0], args[1:]
        elif func is _NEWOBJ_EX:
            cls, args, kwargs = args
        elif isinstance(func, type):
            cls, called = func, True
        elif _is_cython_unpickle(func, args, t):
            return self.cython(obj, args[1], args[2] if args[2] is not None else state)
        else:
            raise Unsupported(f"{name} is rebuilt by {func!r}, not by its class")
        if not isinstance(cls, type):
            raise Unsupported(f"{name} is rebuilt from {cls!r}, not a class")
        type_id = self.type_id(cls)
        try:
            check_built(cls, called=called, newargs=bool(args or kwargs) and not called)
        except IntegrityError as exc:
            raise Unsupported(str(exc)) from exc
        if (listitems is not None and not isinstance(obj, list)) or (
            dictitems is not None and not isinstance(obj, dict)
        ):
            raise Unsupported(f"{name} pickles with items but is not a list or dict")
        self._enter(obj)
        arguments = [self.node(v) for v in args]
        keywords = self.node(dict(kwargs)) if kwargs else None
        self.building.discard(id(obj))
        number = self._id(obj)
        encoded_state = self.node(state)
        items = [self.node(v) for v in listitems] if listitems is not None else None
        pairs = [self.node(x) for kv in dictitems for x in kv] if dictitems is not None else None
        if called:
            extra = None if items is None and pairs is None else [items, pairs]
            return ["c", number, type_id, arguments, encoded_state, extra]
        plain = not arguments and keywords is None and items is None and pairs is None
        return ["o", number, type_id, encoded_state, None if plain else [arguments, keywords, items, pairs]]

    def cython(self, obj: Any, checksum: int, state: Any) -> Any:
        """An object of a Cython class that pickles through its generated ``__pyx_unpickle_<Class>``."""
        type_id = self.type_id(type(obj))
        number = self._id(obj)
        return ["cy", number, type_id, checksum, self.node(state)]


def _is_cython_unpickle(func: Any, args: Any, cls: type) -> bool:
    """Whether ``func(*args)`` is Cython's generated unpickler of ``cls``: ``cls.__new__(cls)``, a check of the
    layout's checksum, then ``__setstate_cython__(state)``; loading does those steps itself, not the function."""
    return (
        getattr(func, "__name__", None) == f"__pyx_unpickle_{cls.__name__}"
        and getattr(func, "__module__", None) == cls.__module__
        and type(args) is tuple
        and len(args) == 3
        and args[0] is cls
        and type(args[1]) is int
        and hasattr(cls, "__setstate_cython__")
        and hasattr(cls, "__reduce_cython__")
    )


def encode(obj: Any, *, trusted_types: frozenset[str] = frozenset()) -> bytes:
    """The ``keel`` blob of ``obj``, whose classes are all on the allowlist or in ``trusted_types``.

    Raises:
        Unsupported: ``obj`` holds something the format cannot represent faithfully, or a class a load would
            refuse.
    """
    try:
        return _Encoder(trusted_types).encode(obj)
    except Unsupported:
        raise
    except (orjson.JSONEncodeError, RecursionError, TypeError, ValueError) as exc:
        raise Unsupported(f"{type(exc).__name__}: {exc}") from exc
