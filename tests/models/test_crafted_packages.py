"""Crafted packages: a package naming anything that could run code, open files or unpickle is refused, in both
safe formats, with the name in the error, before any object is built and before any module it names is imported.

Each payload, if it ran, would write a marker file; the marker stays absent. The payloads are real: the control
test shows skops itself, without Keel's audit, runs one of them.
"""

from __future__ import annotations

import base64
import io
import json
import pickle
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from keel.errors import IntegrityError
from keel.models import InputSchema, ModelPackage, dumps, loads
from keel.models import _keelfmt as fmt

# -- gadgets: (module, qualname), and what the payload passes them -------------------------------------------
#: Functions and classes of the formerly trusted libraries, and of Python, that execute code, open or write files,
#: start processes or unpickle.
GADGETS = [
    ("numpy.testing._private.utils", "runstring"),  # exec(string, dict): the reported exploit
    ("numpy.testing", "runstring"),
    ("numpy", "load"),  # with allow_pickle=True: unpickles
    ("numpy.lib._npyio_impl", "load"),
    ("numpy.lib.npyio", "NpzFile"),
    ("numpy", "memmap"),  # creates and maps files
    ("numpy", "DataSource"),  # fetches and opens files
    ("numpy.lib._datasource", "open"),
    ("numpy", "fromfile"),
    ("numpy.ctypeslib", "load_library"),
    ("scipy.io", "savemat"),  # writes files
    ("scipy.io", "loadmat"),
    ("scipy", "LowLevelCallable"),  # raw C function pointers
    ("sklearn.utils._testing", "assert_run_python_script_without_output"),  # runs Python source
    ("sklearn.datasets", "load_files"),
    ("sklearn.datasets", "dump_svmlight_file"),
    ("sklearn.utils", "_joblib"),
    ("joblib", "load"),  # unpickles
    ("joblib.numpy_pickle", "load"),
    ("pickle", "loads"),
    ("operator", "attrgetter"),
    ("operator", "methodcaller"),
    ("functools", "partial"),
    ("functools", "reduce"),
    ("builtins", "eval"),
    ("builtins", "exec"),
    ("builtins", "open"),
    ("builtins", "__import__"),
    ("builtins", "getattr"),
    ("builtins", "compile"),
    ("copyreg", "_reconstructor"),  # pickle's reducers
    ("copyreg", "__newobj__"),
    ("os", "system"),
    ("subprocess", "Popen"),
    ("keel.project", "Project"),
]
IDS = [f"{m}.{q}" for m, q in GADGETS]


@pytest.fixture
def marker(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "payload-ran"
    yield path
    assert not path.exists(), "a payload ran"


def _code(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').write('ran')"


def _refused(load: Callable[[], Any], name: str) -> None:
    """``load()`` raises an IntegrityError naming ``name``, and imports no module while doing so."""
    before = set(sys.modules)
    with pytest.raises(IntegrityError, match=name.replace(".", r"\.")) as info:
        load()
    assert "refused" in str(info.value)
    assert set(sys.modules) - before == set()


# -- packages the crafting starts from -----------------------------------------------------------------------
def _package(preprocessor: Any) -> ModelPackage:
    rng = np.random.default_rng(0)
    x = np.abs(rng.normal(size=(60, 2)))
    y = (x[:, 0] > x[:, 1]).astype(np.int64)
    preprocessor.fit(x)
    estimator = LogisticRegression().fit(preprocessor.transform(x), y)
    return ModelPackage(
        "m", "classification", "y", estimator, preprocessor, InputSchema.infer(_frame(x), _DTYPES), [], classes=[0, 1]
    )


_DTYPES = {"a": "float64", "b": "float64"}


def _frame(x: np.ndarray) -> Any:
    import pandas as pd

    return pd.DataFrame(x, columns=list(_DTYPES))


@pytest.fixture(scope="module")
def keel_blob() -> bytes:
    """A keel package whose preprocessing is a pipeline holding a ``FunctionTransformer`` without a function."""
    blob, name = dumps(_package(Pipeline([("same", FunctionTransformer()), ("scale", StandardScaler())])))
    assert name == "keel"
    loads(blob, "keel")  # everything the real package needs is imported: the crafted loads must add nothing
    return blob


@pytest.fixture(scope="module")
def skops_blob() -> bytes:
    """A skops package (a function in a ``FunctionTransformer`` keeps it out of the keel format)."""
    blob, name = dumps(_package(Pipeline([("log", FunctionTransformer(np.log1p)), ("scale", StandardScaler())])))
    assert name == "skops"
    loads(blob, "skops")
    return blob


# -- the keel format ------------------------------------------------------------------------------------------
def _edit_keel(blob: bytes, edit: Callable[[dict[str, Any], int], None], gadget: tuple[str, str]) -> bytes:
    """``blob`` with ``gadget`` added to the type table and the tree passed through ``edit(document, type id)``."""
    tree, data = fmt.unpack(blob)
    document = orjson.loads(tree)
    document["types"].append(list(gadget))
    edit(document, len(document["types"]) - 1)
    return fmt.pack(orjson.dumps(document), bytes(data))


def _call(type_id: int, code: str) -> list[Any]:
    """A node calling the gadget with the payload: ``gadget(code, {})`` (unused ids, far above the real ones)."""
    return ["c", 900_001, type_id, [code, ["D", 900_002, {}]], None, None]


def _nodes(node: Any) -> Iterator[list[Any]]:
    if isinstance(node, list):
        if node and isinstance(node[0], str):
            yield node
        for item in node:
            yield from _nodes(item)
    elif isinstance(node, dict):
        for item in node.values():
            yield from _nodes(item)


def _object_of(document: dict[str, Any], qualname: str) -> list[Any]:
    """The object node of the class ``qualname`` in the tree."""
    type_ids = [i for i, (_, q) in enumerate(document["types"]) if q == qualname]
    return next(n for n in _nodes(document["root"]) if n[0] == "o" and n[2] in type_ids)


@pytest.mark.parametrize("gadget", GADGETS, ids=IDS)
def test_a_keel_package_calling_a_gadget_in_its_metadata_is_refused(
    keel_blob: bytes, gadget: tuple[str, str], marker: Path
) -> None:
    def edit(document: dict[str, Any], type_id: int) -> None:
        meta = document["root"][2]["meta"][2]
        meta["metadata"] = _call(type_id, _code(marker))

    crafted = _edit_keel(keel_blob, edit, gadget)

    _refused(lambda: loads(crafted, "keel"), ".".join(gadget))


@pytest.mark.parametrize("gadget", GADGETS, ids=IDS)
def test_a_keel_package_with_a_gadget_as_a_pipeline_step_is_refused(
    keel_blob: bytes, gadget: tuple[str, str], marker: Path
) -> None:
    def edit(document: dict[str, Any], type_id: int) -> None:
        step = _object_of(document, "StandardScaler")
        step[:] = _call(type_id, _code(marker))

    crafted = _edit_keel(keel_blob, edit, gadget)

    _refused(lambda: loads(crafted, "keel"), ".".join(gadget))


@pytest.mark.parametrize("gadget", GADGETS, ids=IDS)
def test_a_keel_package_with_a_gadget_as_the_function_of_a_function_transformer_is_refused(
    keel_blob: bytes, gadget: tuple[str, str], marker: Path
) -> None:
    def edit(document: dict[str, Any], type_id: int) -> None:
        state = _object_of(document, "FunctionTransformer")[3][2]
        assert state["func"] is None
        state["func"] = ["T", type_id]  # the transformer would call it on every prediction

    crafted = _edit_keel(keel_blob, edit, gadget)

    _refused(lambda: loads(crafted, "keel"), ".".join(gadget))


def test_a_keel_package_naming_a_listed_function_where_a_class_belongs_is_refused(keel_blob: bytes) -> None:
    def edit(document: dict[str, Any], type_id: int) -> None:
        _object_of(document, "StandardScaler")[2] = type_id

    crafted = _edit_keel(keel_blob, edit, ("numpy", "log1p"))

    with pytest.raises(IntegrityError, match=r"numpy\.log1p, which is not a class"):
        loads(crafted, "keel")


# -- the skops format ----------------------------------------------------------------------------------------
def _edit_skops(blob: bytes, edit: Callable[[dict[str, Any]], None]) -> bytes:
    """``blob`` with its ``schema.json`` passed through ``edit``, every other member kept."""
    source = zipfile.ZipFile(io.BytesIO(blob))
    schema = json.loads(source.read("schema.json"))
    edit(schema)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for item in source.namelist():
            data = json.dumps(schema).encode() if item == "schema.json" else source.read(item)
            target.writestr(item, data)
    return out.getvalue()


def _json(value: Any) -> dict[str, Any]:
    return {"__class__": type(value).__name__, "__module__": "builtins", "__loader__": "JsonNode",
            "content": json.dumps(value), "is_json": True}  # fmt: skip


def _tuple(*items: dict[str, Any]) -> dict[str, Any]:
    return {"__class__": "tuple", "__module__": "builtins", "__loader__": "TupleNode", "content": list(items)}


def _dict() -> dict[str, Any]:
    keys = {"__class__": "list", "__module__": "builtins", "__loader__": "ListNode", "content": []}
    return {"__class__": "dict", "__module__": "builtins", "__loader__": "DictNode", "content": {}, "key_types": keys}


def _skops_nodes(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if "__loader__" in node:
            yield node
        for item in node.values():
            yield from _skops_nodes(item)
    elif isinstance(node, list):
        for item in node:
            yield from _skops_nodes(item)


def _node_of(schema: dict[str, Any], qualname: str) -> dict[str, Any]:
    return next(n for n in _skops_nodes(schema) if n["__class__"] == qualname)


def _plant(node: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    """An edit putting ``node`` into the package's ``metadata`` dict (under the key ``x``), where loading builds
    it like any other value."""

    def edit(schema: dict[str, Any]) -> None:
        metadata = schema["content"]["meta"]["content"]["metadata"]
        metadata["content"]["x"] = node
        str_type = {"__class__": "str", "__module__": "builtins", "__loader__": "TypeNode"}
        metadata["key_types"]["content"].append(str_type)

    return edit


def _constructor(gadget: tuple[str, str], code: str) -> dict[str, Any]:
    """skops' ``ConstructorFromReduceNode``: loading calls ``gadget(*content)``."""
    module, qualname = gadget
    return {"__class__": qualname, "__module__": module, "__loader__": "ConstructorFromReduceNode",
            "content": _tuple(_json(code), _dict())}  # fmt: skip


def _loss(gadget: tuple[str, str], code: str) -> dict[str, Any]:
    """skops' ``LossNode``: loading calls its own ``__module__.__class__`` with the reduce arguments."""
    module, qualname = gadget
    return {"__class__": qualname, "__module__": module, "__loader__": "LossNode",
            "__reduce__": {"args": _tuple(_json(code), _dict())}, "content": _dict()}  # fmt: skip


def test_the_payloads_are_real_skops_without_keels_audit_runs_them(skops_blob: bytes, tmp_path: Path) -> None:
    marker = tmp_path / "control"
    gadget = ("numpy.testing._private.utils", "runstring")
    crafted = _edit_skops(skops_blob, _plant(_loss(gadget, _code(marker))))

    sio.loads(crafted, trusted=sio.get_untrusted_types(data=crafted))  # a caller trusting what skops lists

    assert marker.exists()


@pytest.mark.parametrize("gadget", GADGETS, ids=IDS)
@pytest.mark.parametrize("node", [_constructor, _loss], ids=["constructor", "loss"])
def test_a_skops_package_calling_a_gadget_is_refused(
    skops_blob: bytes, gadget: tuple[str, str], node: Callable[..., dict[str, Any]], marker: Path
) -> None:
    crafted = _edit_skops(skops_blob, _plant(node(gadget, _code(marker))))

    _refused(lambda: loads(crafted, "skops"), ".".join(gadget))


@pytest.mark.parametrize("gadget", GADGETS, ids=IDS)
def test_a_skops_package_with_a_gadget_as_the_function_of_a_function_transformer_is_refused(
    skops_blob: bytes, gadget: tuple[str, str], marker: Path
) -> None:
    def edit(schema: dict[str, Any]) -> None:
        node = _node_of(schema, "log1p")
        assert node["__loader__"] == "FunctionNode"
        node["__module__"], node["__class__"] = gadget

    crafted = _edit_skops(skops_blob, edit)

    _refused(lambda: loads(crafted, "skops"), ".".join(gadget))


@pytest.mark.parametrize("gadget", GADGETS, ids=IDS)
def test_a_skops_package_with_a_gadget_as_a_pipeline_step_is_refused(
    skops_blob: bytes, gadget: tuple[str, str], marker: Path
) -> None:
    def edit(schema: dict[str, Any]) -> None:
        node = _node_of(schema, "StandardScaler")
        assert node["__loader__"] == "ObjectNode"
        node["__module__"], node["__class__"] = gadget

    crafted = _edit_skops(skops_blob, edit)

    _refused(lambda: loads(crafted, "skops"), ".".join(gadget))


def _function(module: str, name: str) -> dict[str, Any]:
    return {"__class__": name, "__module__": module, "__loader__": "FunctionNode"}


@pytest.mark.parametrize(
    ("node", "name"),
    [
        ({"__class__": "methodcaller", "__module__": "operator", "__loader__": "OperatorFuncNode",
          "attrs": _tuple(_json("system"), _json("touch x"))}, "operator.methodcaller"),
        ({"__class__": "attrgetter", "__module__": "operator", "__loader__": "OperatorFuncNode",
          "attrs": _tuple(_json("__globals__"))}, "operator.attrgetter"),
        ({"__class__": "partial", "__module__": "functools", "__loader__": "PartialNode",
          "content": {"func": _function("numpy", "log1p"), "args": _tuple(), "kwds": _dict(), "namespace": _dict()}},
         "functools.partial"),
        ({"__class__": "defaultdict", "__module__": "collections", "__loader__": "DefaultDictNode",
          "content": {"main": _dict(), "default_factory": _function("numpy", "log1p")}}, "collections.defaultdict"),
        ({"__class__": "StandardScaler", "__module__": "sklearn.preprocessing._data", "__loader__": "MethodNode",
          "content": {"func": "__init_subclass__", "obj": {"__class__": "StandardScaler", "__loader__": "ObjectNode",
                                                          "__module__": "sklearn.preprocessing._data"}}},
         "sklearn.preprocessing._data.StandardScaler.__init_subclass__"),
        ({"__class__": "Generator", "__module__": "numpy.random._generator", "__loader__": "RandomGeneratorNode",
          "content": {"bit_generator": {"content": {"bit_generator": _json("seed")}}, "seed_seq": _dict()}},
         "numpy.random.seed"),
        ({"__class__": "type", "__module__": "builtins", "__loader__": "TypeNode"}, "builtins.type"),
        ({"__class__": "eval", "__module__": "builtins", "__loader__": "TypeNode"}, "builtins.eval"),
        ({"__class__": "ndarray", "__module__": "numpy", "__loader__": "QuantileForestNode"}, "QuantileForestNode"),
    ],
    ids=["methodcaller", "attrgetter", "partial", "defaultdict", "method", "bit-generator", "type", "eval", "loader"],
)  # fmt: skip
def test_a_skops_package_with_a_gadget_node_is_refused(
    skops_blob: bytes, node: dict[str, Any], name: str, marker: Path
) -> None:
    crafted = _edit_skops(skops_blob, _plant(node))

    _refused(lambda: loads(crafted, "skops"), name)


# -- pickle-loading payloads do not get the chance --------------------------------------------------------------
class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (exec, (_code(self.marker),))


def test_a_pickle_handed_to_numpy_load_or_pickle_loads_in_a_package_is_refused(
    keel_blob: bytes, skops_blob: bytes, marker: Path, tmp_path: Path
) -> None:
    payload = pickle.dumps(_Payload(marker))
    pickled = tmp_path / "payload.npy"
    pickled.write_bytes(payload)

    def keel_edit(document: dict[str, Any], type_id: int) -> None:
        document["root"][2]["meta"][2]["metadata"] = ["c", 900_001, type_id, [str(pickled), None, True], None, None]

    _refused(lambda: loads(_edit_keel(keel_blob, keel_edit, ("numpy", "load")), "keel"), "numpy.load")

    def bytes_edit(document: dict[str, Any], type_id: int) -> None:
        call = ["c", 900_001, type_id, [["b", base64.b64encode(payload).decode()]], None, None]
        document["root"][2]["meta"][2]["metadata"] = call

    _refused(lambda: loads(_edit_keel(keel_blob, bytes_edit, ("pickle", "loads")), "keel"), "pickle.loads")
    node = {"__class__": "load", "__module__": "numpy", "__loader__": "ConstructorFromReduceNode",
            "content": _tuple(_json(str(pickled)), _json(None), _json(True))}  # fmt: skip
    _refused(lambda: loads(_edit_skops(skops_blob, _plant(node)), "skops"), "numpy.load")


def test_the_refusal_names_the_type_and_how_to_trust_it(skops_blob: bytes) -> None:
    crafted = _edit_skops(skops_blob, _plant(_function("mypkg.steps", "winsorize")))

    with pytest.raises(IntegrityError) as info:
        loads(crafted, "skops", what="model churn v3")

    message = str(info.value)
    assert message.startswith("model churn v3 holds types outside Keel's allowlist (mypkg.steps.winsorize)")
    assert "trusted_types=['mypkg.steps.winsorize']" in message and "keel.yaml" in message


def test_crafted_packages_refuse_untrusted_types_with_all_names_listed(keel_blob: bytes) -> None:
    def edit(document: dict[str, Any], type_id: int) -> None:
        document["types"].append(["os", "system"])
        document["root"][2]["meta"][2]["metadata"] = ["l", 900_003, [["T", type_id], ["T", type_id + 1]]]

    crafted = _edit_keel(keel_blob, edit, ("builtins", "exec"))

    with pytest.raises(IntegrityError, match=r"\(builtins\.exec, os\.system\)"):
        loads(crafted, "keel")
