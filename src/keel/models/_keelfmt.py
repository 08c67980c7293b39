"""The ``keel`` package format: fitted scikit-learn objects as one JSON tree plus one block of array bytes.

Loading never unpickles and never calls a function named by the blob: it rebuilds plain Python values
natively, numpy arrays from the data block, and objects of *trusted classes* only (a class, never a function,
from :data:`TRUSTED_MODULES`, outside :data:`DENIED_MODULES` and :data:`DENIED_TYPES`), the way ``skops``
does. Loading is one JSON parse and one ``np.frombuffer`` per array instead of ``skops``' one zip member and
one ``.npy`` header per array.

Layout::

    header   32 bytes, little endian: magic b"KEELPKG\\0", version (u32), 0 (u32),
             length of the tree (u64), length of the data block (u64)
    tree     JSON (UTF-8): {"types": [[module, qualname], ...], "root": node}
    padding  zero bytes up to a multiple of 64 from the start of the blob
    data     every array's bytes, each starting at a multiple of 64 within the block

A node is ``null``, a boolean, an integer (64-bit), a finite float or a string, standing for itself, or a list
whose first item names its kind (``"l"`` list, ``"D"`` dict with string keys, ``"a"`` array, ``"o"`` object,
...; see ``_Encoder``). Containers, arrays and objects carry an id, so a value met twice (or in a cycle) is
written once and referenced (``["r", id]``): identity survives the round trip, as with pickle.

Encoding is deterministic (the same objects give the same bytes; sets are written sorted) and refuses what it
cannot represent faithfully (functions, untrusted or local classes, objects rebuilt by a function, ...) with
:class:`Unsupported`, so the caller can fall back to another format instead of writing something wrong.
"""

from __future__ import annotations

import base64
import copyreg
import importlib
import math
import struct
import types
from typing import Any, Literal

import numpy as np
import orjson

from keel.errors import IntegrityError

#: Top-level packages whose classes may be rebuilt on load.
TRUSTED_MODULES = ("sklearn", "numpy", "scipy", "keel")

#: Modules of the trusted packages whose classes are never rebuilt: they open files, sockets or raw pointers,
#: clean up paths when collected, or run tools (and some run code when merely imported).
DENIED_MODULES = (
    "numpy.ctypeslib",
    "numpy.distutils",
    "numpy.f2py",
    "numpy.lib._datasource",
    "numpy.lib._npyio_impl",
    "numpy.lib.npyio",
    "numpy.testing",
    "scipy._lib._ccallback",
    "scipy._lib._testutils",
    "scipy.datasets",
    "scipy.io",
    "sklearn.callback",
    "sklearn.datasets",
    "sklearn.externals",
    "sklearn.utils._testing",
    "keel._demo",
    "keel.artifacts",
    "keel.batch",
    "keel.catalog",
    "keel.cli",
    "keel.config",
    "keel.engines",
    "keel.monitoring",
    "keel.offline",
    "keel.online",
    "keel.project",
    "keel.serving",
)

#: Module path parts never imported: ``__main__`` runs a tool, test modules are not library code.
_DENIED_PARTS = frozenset({"__main__", "conftest", "testing", "tests"})

#: Single classes never rebuilt (subclasses included): memory-mapped files, file fetchers, raw C callbacks.
DENIED_TYPES = ("numpy.memmap", "numpy.DataSource", "scipy.LowLevelCallable")

#: The only ``builtins`` names a blob may use, as type references (``float`` as a ``dtype`` parameter, ...).
_BUILTIN_TYPES: dict[str, type] = {
    t.__name__: t for t in (bool, int, float, complex, str, bytes, bytearray, list, tuple, dict, set, frozenset)
}

MAGIC = b"KEELPKG\x00"
VERSION = 1
_HEADER = struct.Struct("<8sIIQQ")
_ALIGN = 64
_INT_MIN, _INT_END = -(2**63), 2**64  # orjson's integer range
#: dtype kinds whose bytes are plain data (no object pointers, no heap references).
_PLAIN_KINDS = frozenset("biufcmMUSV")


#: How pickle's protocol 2+ rebuilds an object: ``cls.__new__(cls, *args)`` (``..._ex``: with keywords too).
_NEWOBJ = getattr(copyreg, "__newobj__")  # noqa: B009 - not in the type stubs
_NEWOBJ_EX = getattr(copyreg, "__newobj_ex__")  # noqa: B009


class Unsupported(Exception):
    """The object cannot be represented in this format (the caller falls back to another one)."""


# -- trust ---------------------------------------------------------------------------------------------------
def _module_allowed(module: str) -> bool:
    parts = module.split(".")
    if parts[0] not in TRUSTED_MODULES or _DENIED_PARTS.intersection(parts):
        return False
    return not any(module == d or module.startswith(d + ".") for d in DENIED_MODULES)


def _denied_class(cls: type) -> bool:
    for name in DENIED_TYPES:
        module, _, qualname = name.rpartition(".")
        try:
            denied = getattr(importlib.import_module(module), qualname)
        except (ImportError, AttributeError):
            continue
        if isinstance(denied, type) and issubclass(cls, denied):
            return True
    return False


#: Classes already resolved and checked, by (module, qualname).
_RESOLVED: dict[tuple[str, str], type] = {}


def resolve(module: Any, qualname: Any, what: str = "model package") -> type:
    """The trusted class ``module.qualname``.

    Raises:
        IntegrityError: the name is outside the trusted libraries, denied, not found, or not a class.
    """
    found = _RESOLVED.get((module, qualname)) if isinstance(module, str) and isinstance(qualname, str) else None
    if found is not None:
        return found
    if not isinstance(module, str) or not isinstance(qualname, str):
        raise IntegrityError(f"{what} is malformed (a type name is not a string); refused")
    name = f"{module}.{qualname}"
    untrusted = IntegrityError(f"{what} holds types outside the trusted libraries ({name}); refused")
    if module == "builtins":
        cls = _BUILTIN_TYPES.get(qualname)
        if cls is None:
            raise untrusted
    else:
        parts = qualname.split(".")
        if not _module_allowed(module) or name in DENIED_TYPES:
            raise untrusted
        if any(not p.isidentifier() or p.startswith("__") for p in parts):
            raise IntegrityError(f"{what} names {name}, which is not a class; refused")
        try:
            obj: Any = importlib.import_module(module)
            for part in parts:
                obj = getattr(obj, part)
        except Exception as exc:  # ImportError, AttributeError, or whatever a broken module raises
            raise IntegrityError(f"{what} names {name}, which cannot be found ({exc}); refused") from exc
        if not isinstance(obj, type):
            raise IntegrityError(f"{what} names {name}, which is not a class; refused")
        cls = obj
        if not _module_allowed(cls.__module__) or _denied_class(cls):
            raise IntegrityError(f"{what} holds a type that is never loaded ({name}); refused")
    _RESOLVED[(module, qualname)] = cls
    return cls


def _check_built(cls: type, *, called: bool, newargs: bool) -> None:
    """Refuses ``cls`` as the class of a rebuilt object, unless it asked to be rebuilt this way.

    A class is *called* with arguments only if it defines its own ``__reduce__``/``__reduce_ex__`` (an
    extension type such as ``sklearn.tree._tree.Tree`` that pickles as ``(cls, args, state)``); ``__new__``
    gets arguments only if the class defines ``__getnewargs__``/``__getnewargs_ex__``. Builtins, arrays,
    numpy scalars and dtypes have their own node kinds and are never rebuilt as objects.
    """
    name = f"{cls.__module__}.{cls.__qualname__}"
    if cls.__module__ == "builtins" or issubclass(cls, np.ndarray | np.generic | np.dtype | type):
        raise IntegrityError(f"{name} is not rebuilt as an object; refused")
    if called and cls.__reduce__ is object.__reduce__ and cls.__reduce_ex__ is object.__reduce_ex__:
        raise IntegrityError(f"{name} does not define how it is rebuilt by a call; refused")
    if newargs and not (hasattr(cls, "__getnewargs__") or hasattr(cls, "__getnewargs_ex__")):
        raise IntegrityError(f"{name} does not define arguments for __new__; refused")


# -- dtypes --------------------------------------------------------------------------------------------------
def _dtype_spec(dt: np.dtype, *, allow_object: bool = False) -> Any:
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
            "formats": [_dtype_spec(f[0]) for f in fields],
            "offsets": [int(f[1]) for f in fields],
            "itemsize": dt.itemsize,
            "aligned": bool(dt.isalignedstruct),
        }
    if dt.subdtype is not None:
        base, shape = dt.subdtype
        return ["sub", _dtype_spec(base), list(shape)]
    if dt.kind not in _PLAIN_KINDS and not (allow_object and dt.kind == "O"):
        raise Unsupported(f"dtype {dt} is not plain data")
    return dt.str


#: Dtypes already decoded, by their JSON form (a package repeats a few dtypes hundreds of times).
_DTYPES: dict[tuple[bytes, bool], np.dtype] = {}
_DTYPES_MAX = 1024


def _cached_dtype(spec: Any, *, allow_object: bool = False) -> np.dtype:
    """:func:`_dtype`, remembered."""
    key = (spec.encode() if type(spec) is str else orjson.dumps(spec), allow_object)
    dt = _DTYPES.get(key)
    if dt is None:
        dt = _dtype(spec, allow_object=allow_object)
        if len(_DTYPES) >= _DTYPES_MAX:
            _DTYPES.clear()
        _DTYPES[key] = dt
    return dt


def _dtype(spec: Any, *, allow_object: bool = False) -> np.dtype:
    """The dtype of a :func:`_dtype_spec` form (only plain-data dtypes, unless ``allow_object``)."""
    if type(spec) is str:
        dt = np.dtype(spec)
        if dt.fields is not None or dt.subdtype is not None:
            raise ValueError(f"dtype {spec!r} is not a simple dtype")
        if dt.kind not in _PLAIN_KINDS and not (allow_object and dt.kind == "O"):
            raise ValueError(f"dtype {spec!r} is not plain data")
        return dt
    if type(spec) is dict:
        formats = [_dtype(f) for f in spec["formats"]]
        return np.dtype(
            {
                "names": [_str(n) for n in spec["names"]],
                "formats": formats,
                "offsets": [_int(o) for o in spec["offsets"]],
                "itemsize": _int(spec["itemsize"]),
            },
            align=spec["aligned"] is True,
        )
    if type(spec) is list and len(spec) == 3 and spec[0] == "sub":
        return np.dtype((_dtype(spec[1]), tuple(_int(n) for n in spec[2])))
    raise ValueError(f"bad dtype {spec!r}")


def _int(value: Any) -> int:
    if type(value) is not int or value < 0:
        raise ValueError(f"expected a non-negative integer, got {value!r}")
    return value


def _str(value: Any) -> str:
    if type(value) is not str:
        raise ValueError(f"expected a string, got {value!r}")
    return value


# -- blob layout ---------------------------------------------------------------------------------------------
def _pad(size: int) -> int:
    return -size % _ALIGN


def pack(tree: bytes, data: bytes) -> bytes:
    """The blob of a JSON ``tree`` and a ``data`` block."""
    head = _HEADER.pack(MAGIC, VERSION, 0, len(tree), len(data))
    return b"".join((head, tree, bytes(_pad(len(head) + len(tree))), data))


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
    data_start = start + _pad(start)
    if data_start + data_len != len(view):
        raise IntegrityError(
            f"{what} is truncated or corrupted ({len(view)} bytes, the header says {data_start + data_len}); refused"
        )
    return bytes(view[_HEADER.size : start]), view[data_start:]


# -- encoding ------------------------------------------------------------------------------------------------
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

    def __init__(self) -> None:
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
                found = resolve(module, qualname)
            except IntegrityError as exc:
                raise Unsupported(str(exc)) from exc
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
            return ["s", _dtype_spec(obj.dtype), _zero_padding(obj.tobytes(), obj.dtype).hex()]
        if isinstance(obj, np.dtype):
            return ["dt", _dtype_spec(obj, allow_object=True)]
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
        spec = _dtype_spec(arr.dtype)
        data = _zero_padding((arr.T if order == "F" else np.ascontiguousarray(arr)).tobytes(), arr.dtype)
        padding = _pad(self.size)
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
            _check_built(cls, called=called, newargs=bool(args or kwargs) and not called)
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


def encode(obj: Any) -> bytes:
    """The ``keel`` blob of ``obj``.

    Raises:
        Unsupported: ``obj`` holds something the format cannot represent faithfully.
    """
    try:
        return _Encoder().encode(obj)
    except Unsupported:
        raise
    except (orjson.JSONEncodeError, RecursionError, TypeError, ValueError) as exc:
        raise Unsupported(f"{type(exc).__name__}: {exc}") from exc


# -- decoding ------------------------------------------------------------------------------------------------
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
        return int(_str(node[1]))

    def special_float(self, node: list[Any]) -> float:
        value: float = struct.unpack("<d", bytes.fromhex(_str(node[1])))[0]
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
        return base64.b64decode(_str(node[1]), validate=True)

    def bytearray_(self, node: list[Any]) -> bytearray:
        return self.keep(node[1], bytearray(base64.b64decode(_str(node[2]), validate=True)))  # type: ignore[no-any-return]

    def complex_(self, node: list[Any]) -> complex:
        return complex(_real(self.node(node[1])), _real(self.node(node[2])))

    def slice_(self, node: list[Any]) -> slice:
        return slice(self.node(node[1]), self.node(node[2]), self.node(node[3]))

    def type_(self, node: list[Any]) -> type:
        return self.types[_int(node[1])]

    def dtype(self, node: list[Any]) -> np.dtype:
        return _cached_dtype(node[1], allow_object=True)

    def scalar(self, node: list[Any]) -> Any:
        dt = _cached_dtype(node[1])
        raw = bytes.fromhex(_str(node[2]))
        if len(raw) != dt.itemsize or dt.itemsize == 0:
            raise ValueError(f"a {dt} scalar of {len(raw)} bytes")
        return np.frombuffer(raw, dtype=dt)[0]

    def array(self, node: list[Any]) -> np.ndarray:
        _, number, spec, shape, order, offset = node
        dt = _cached_dtype(spec)
        shape = tuple(_int(n) for n in shape)
        count = math.prod(shape)
        size = count * dt.itemsize
        if order not in ("C", "F") or _int(offset) + size > len(self.data):
            raise ValueError("an array outside the data block")
        if size == 0:
            arr = np.empty(shape, dtype=dt, order=order)
        else:
            arr = np.frombuffer(self.data, dtype=dt, count=count, offset=offset).reshape(shape, order=order)
            arr = arr.copy(order="K")  # writeable, owns its memory, outlives the blob
        return self.keep(number, arr)  # type: ignore[no-any-return]

    def object_array(self, node: list[Any]) -> np.ndarray:
        _, number, shape, order, items = node
        shape = tuple(_int(n) for n in shape)
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
        cls = self.types[_int(node[2])]
        if not issubclass(cls, np.random.BitGenerator):
            raise IntegrityError(f"{cls.__module__}.{cls.__qualname__} is not a numpy bit generator; refused")
        bit_generator = self.keep(node[1], cls())
        bit_generator.__setstate__(self.node(node[3]))
        return bit_generator  # type: ignore[no-any-return]

    def instance(self, node: list[Any]) -> Any:
        _, number, type_id, state, more = node
        cls = self.types[_int(type_id)]
        args, kwargs, items, pairs = more if more is not None else (None, None, None, None)
        _check_built(cls, called=False, newargs=bool(args or kwargs))
        arguments = [self.node(v) for v in args] if args else []
        keywords = self.node(kwargs) if kwargs is not None else {}
        if type(keywords) is not dict:
            raise ValueError("keyword arguments that are not a dict")
        obj = self.keep(number, cls.__new__(cls, *arguments, **keywords))
        return self._fill(obj, state, items, pairs)

    def call(self, node: list[Any]) -> Any:
        _, number, type_id, args, state, more = node
        cls = self.types[_int(type_id)]
        _check_built(cls, called=True, newargs=False)
        obj = self.keep(number, cls(*[self.node(v) for v in args]))
        items, pairs = more if more is not None else (None, None)
        return self._fill(obj, state, items, pairs)

    def cython(self, node: list[Any]) -> Any:
        _, number, type_id, checksum, state = node
        cls = self.types[_int(type_id)]
        _check_built(cls, called=False, newargs=False)
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


def decode(blob: bytes, what: str = "model package") -> Any:
    """The object of a ``keel`` blob, built from trusted classes only.

    Raises:
        IntegrityError: the blob names a type outside the trusted libraries (or a denied one, or a function),
            or it is truncated or malformed.
    """
    tree, data = unpack(blob, what)
    try:
        document = orjson.loads(tree)
        names = document["types"]
        if type(names) is not list or any(type(n) is not list or len(n) != 2 for n in names):
            raise ValueError("a malformed type table")
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise IntegrityError(f"{what} is malformed ({exc}); refused") from exc
    bad = []
    for module, qualname in names:
        try:
            resolve(module, qualname, what)
        except IntegrityError as exc:
            if "outside the trusted libraries" not in str(exc):
                raise
            bad.append(f"{module}.{qualname}")
    if bad:
        raise IntegrityError(f"{what} holds types outside the trusted libraries ({', '.join(bad)}); refused")
    types = [resolve(module, qualname, what) for module, qualname in names]
    try:
        return _Decoder(types, data).node(document["root"])
    except IntegrityError:
        raise
    except Exception as exc:  # a malformed tree, or a trusted class refusing its state
        raise IntegrityError(f"{what} is malformed ({type(exc).__name__}: {exc}); refused") from exc
