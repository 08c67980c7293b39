"""The ``keel`` package format: faithful round trips, the same bytes every time, refusal of anything untrusted
or malformed, and the fallback to ``skops``/``joblib`` for what it cannot represent."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
)
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from threadpoolctl import threadpool_limits

from _training_fixtures import build_project
from keel.errors import IntegrityError, ValidationError
from keel.models import InputSchema, ModelPackage, dumps, loads
from keel.models import _keelfmt as fmt
from keel.models._serialization import _parts
from keel.training import TrainingSpec
from keel.training._preprocessing import auto_preprocessor

EXAMPLE_SPEC = Path(__file__).resolve().parents[2] / "examples" / "churn" / "training.py"
DTYPES = {"spend": "float64", "orders": "int64", "plan": "string", "active": "bool"}


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    """Raw feature columns: a float with nulls, an integer, a string with nulls, a boolean."""
    rng = np.random.default_rng(3)
    n = 300
    spend = rng.normal(50, 20, n)
    spend[rng.random(n) < 0.1] = np.nan
    plan = rng.choice(np.array(["basic", "pro", "team", None], dtype=object), n)
    return pd.DataFrame({"spend": spend, "orders": rng.integers(0, 10, n), "plan": plan, "active": rng.random(n) > 0.5})


def _target(frame: pd.DataFrame, kind: str) -> np.ndarray:
    score = frame["spend"].fillna(50).to_numpy() / 20 + frame["orders"].to_numpy() * 0.3
    score = score + (frame["plan"] == "basic").to_numpy() + np.random.default_rng(4).normal(0, 0.5, len(frame))
    if kind == "regression":
        return np.asarray(score)
    if kind == "labels":  # string class labels, three of them
        return np.where(score > 4.5, "stay", np.where(score > 3.0, "maybe", "leave"))
    return (score > np.median(score)).astype(np.int64)


def _package(frame: pd.DataFrame, estimator: Any, kind: str) -> ModelPackage:
    """A package as the trainer builds it: the automatic preprocessor fitted, then the estimator."""
    preprocessor = auto_preprocessor(DTYPES, estimator)
    y = _target(frame, kind)
    estimator.fit(preprocessor.fit_transform(frame[list(DTYPES)]), y)
    classes = [c.item() for c in estimator.classes_] if kind != "regression" else None
    return ModelPackage(
        name="m",
        task="regression" if kind == "regression" else "classification",
        label="y",
        estimator=estimator,
        preprocessor=preprocessor,
        schema=InputSchema.infer(frame, DTYPES),
        feature_refs=["activity@1:spend", "activity@1:orders", "activity@1:plan", "activity@1:active"],
        classes=classes,
        metadata={"run_id": "r1", "metrics": {"roc_auc": 0.75, "rows": np.int64(300), "loss": float("nan")}},
    )


def _assert_same_predictions(again: ModelPackage, package: ModelPackage, frame: pd.DataFrame) -> None:
    matrix = package.preprocessor.transform(frame[list(DTYPES)])
    np.testing.assert_array_equal(again.preprocessor.transform(frame[list(DTYPES)]), matrix)
    np.testing.assert_array_equal(again.estimator.predict(matrix), package.estimator.predict(matrix))
    np.testing.assert_array_equal(again.predict(frame), package.predict(frame))
    if package.task == "classification":
        np.testing.assert_array_equal(again.estimator.predict_proba(matrix), package.estimator.predict_proba(matrix))
        np.testing.assert_array_equal(again.predict_proba(frame), package.predict_proba(frame))


ESTIMATORS = {
    "hgb_classifier": (lambda: HistGradientBoostingClassifier(max_iter=15, random_state=0), "binary"),
    "hgb_classifier_labels": (lambda: HistGradientBoostingClassifier(max_iter=10, random_state=0), "labels"),
    "hgb_regressor": (lambda: HistGradientBoostingRegressor(max_iter=15, random_state=0), "regression"),
    "hgb_early_stopping": (
        lambda: HistGradientBoostingClassifier(max_iter=30, early_stopping=True, random_state=np.random.RandomState(1)),
        "binary",
    ),
    "random_forest": (lambda: RandomForestClassifier(n_estimators=8, random_state=0), "labels"),
    "logistic_regression": (lambda: LogisticRegression(max_iter=500), "binary"),
    "logistic_regression_labels": (lambda: LogisticRegression(max_iter=500), "labels"),
    "gradient_boosting": (lambda: GradientBoostingClassifier(n_estimators=10, random_state=0), "binary"),
    "gradient_boosting_regressor": (lambda: GradientBoostingRegressor(n_estimators=10, random_state=0), "regression"),
}


# -- round trips ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", list(ESTIMATORS))
def test_a_package_round_trips_through_the_keel_format_with_identical_predictions(
    key: str, frame: pd.DataFrame
) -> None:
    make, kind = ESTIMATORS[key]
    package = _package(frame, make(), kind)

    blob, fmt_name = dumps(package)

    assert fmt_name == "keel"
    again = loads(blob, "keel")
    _assert_same_predictions(again, package, frame)
    assert type(again.estimator) is type(package.estimator)
    assert (again.name, again.task, again.label, again.classes, again.feature_refs) == (
        package.name,
        package.task,
        package.label,
        package.classes,
        package.feature_refs,
    )
    assert again.schema == package.schema
    assert again.metadata["metrics"]["rows"] == 300 and type(again.metadata["metrics"]["rows"]) is np.int64
    assert np.isnan(again.metadata["metrics"]["loss"])


def test_the_non_tree_preprocessor_one_hot_encodes_and_scales(frame: pd.DataFrame) -> None:
    package = _package(frame, LogisticRegression(max_iter=500), "binary")
    encoder = package.preprocessor.named_transformers_["categorical"].named_steps["encode"]
    assert type(encoder).__name__ == "OneHotEncoder"  # the other branch of the automatic preprocessor

    again = loads(*dumps(package))

    again_encoder = again.preprocessor.named_transformers_["categorical"].named_steps["encode"]
    assert [list(c) for c in again_encoder.categories_] == [list(c) for c in encoder.categories_]
    assert again_encoder.categories_[0].dtype == object


def test_loaded_arrays_are_writeable_own_their_memory_and_keep_shared_references(frame: pd.DataFrame) -> None:
    package = _package(frame, HistGradientBoostingClassifier(max_iter=5, random_state=0), "binary")
    parts = _parts(package)
    parts["again"] = parts["estimator"]  # one estimator referenced twice

    blob = fmt.encode(parts)
    loaded = fmt.decode(blob)
    del blob

    assert loaded["again"] is loaded["estimator"]
    nodes, original = loaded["estimator"]._predictors[0][0].nodes, package.estimator._predictors[0][0].nodes
    assert nodes.flags.writeable and nodes.flags.owndata and nodes.dtype == original.dtype
    np.testing.assert_array_equal(nodes, original)


def test_values_of_every_kind_round_trip() -> None:
    record = np.dtype([("a", "<f8"), ("b", "u1"), ("c", "<i4", (2,))], align=True)
    cycle: list[Any] = [1]
    cycle.append(cycle)
    shared = np.arange(6.0)
    values: dict[Any, Any] = {
        "scalars": [None, True, 0, -(2**70), 2**64, 1.5, -0.0, float("inf"), float("-inf"), 3 + 4j, "é"],
        "containers": ((1, "a"), {3, 1, 2}, frozenset({"x", "y"}), b"\x00\xff", bytearray(b"ab"), slice(1, None, 2)),
        (1, 2): "a tuple key",
        7: {"nested": {"deep": [1, [2, [3]]]}},
        "numpy": [np.float32(1.25), np.int8(-3), np.bool_(True), np.str_("hé"), np.datetime64("2024-01-02", "D")],
        "dtypes": [np.dtype("<M8[ns]"), np.dtype(object), record, np.float64, float],
        "arrays": [
            np.asfortranarray(np.arange(12, dtype=">i8").reshape(3, 4)),
            np.arange(20.0)[::3],
            np.array(5),
            np.empty((0, 3)),
            np.zeros(3, dtype=record),
            np.array(["a", "bc"], dtype="<U2"),
            np.array(["x", None, np.nan, 3], dtype=object).reshape(2, 2),
            np.array(["2024-01-01T00:00"], dtype="datetime64[us]"),
        ],
        "shared": [shared, shared],
        "cycle": cycle,
        "random": [np.random.RandomState(3), np.random.default_rng(4), np.random.SeedSequence(5, spawn_key=(1,))],
    }

    again = fmt.decode(fmt.encode(values))

    assert list(again) == list(values)
    assert again["scalars"][:3] == [None, True, 0] and again["scalars"][3:5] == [-(2**70), 2**64]
    assert str(again["scalars"][6]) == "-0.0" and again["scalars"][7:] == values["scalars"][7:]
    assert again["containers"] == values["containers"] and type(again["containers"][4]) is bytearray
    assert again[(1, 2)] == "a tuple key" and again[7] == values[7]
    for got, want in zip(again["numpy"], values["numpy"], strict=True):
        assert type(got) is type(want) and got == want
    assert again["dtypes"] == values["dtypes"] and again["dtypes"][2].isalignedstruct
    for got, want in zip(again["arrays"], values["arrays"], strict=True):
        assert got.dtype == want.dtype and got.shape == want.shape
        assert got.flags.writeable
        assert [str(v) for v in got.ravel()] == [str(v) for v in want.ravel()]
    assert again["arrays"][0].flags.f_contiguous and not again["arrays"][0].flags.c_contiguous
    assert again["shared"][0] is again["shared"][1]
    assert again["cycle"][1] is again["cycle"]
    state, generator, sequence = again["random"]
    assert state.randint(10**9) == np.random.RandomState(3).randint(10**9)
    assert generator.integers(10**9) == np.random.default_rng(4).integers(10**9)
    assert sequence.generate_state(4).tolist() == np.random.SeedSequence(5, spawn_key=(1,)).generate_state(4).tolist()


# -- the example's churn model, end to end -------------------------------------------------------------------
def test_the_example_churn_model_is_stored_as_keel_and_loads_back_from_the_registry(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("churn_example_training", EXAMPLE_SPEC)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = clone(module.churn.model).set_params(max_iter=20, min_samples_leaf=5)
    project, labels = build_project(tmp_path / "project")
    features = ["activity:*", "profile:age"]  # a float with nulls, an int, a string, a bool and a timestamp

    run = project.train(TrainingSpec("churn", labels=labels, label="churned", features=features, model=model))

    assert run.record.package_format == "keel"
    version = project.models.register(run)
    assert version.package_format == "keel"
    loaded = project.models.load(f"churn:{version.version}")
    rows = project.historical_features(labels[["customer_id", "ts", "churned"]].head(50), features)
    np.testing.assert_array_equal(loaded.predict_proba(rows), run.package.predict_proba(rows))
    np.testing.assert_array_equal(loaded.predict(rows), run.package.predict(rows))


# -- determinism ---------------------------------------------------------------------------------------------
def test_the_same_package_gives_the_same_bytes(frame: pd.DataFrame) -> None:
    package = _package(frame, HistGradientBoostingClassifier(max_iter=10, random_state=0), "labels")
    twin = _package(frame, HistGradientBoostingClassifier(max_iter=10, random_state=0), "labels")

    first, _ = dumps(package)

    assert dumps(package)[0] == first
    assert dumps(twin)[0] == first  # fitted again the same way: the same bytes
    assert fmt.encode({"s": {"b", "a", "c"}}) == fmt.encode({"s": {"c", "b", "a"}})
    assert fmt.encode({2.0, float("nan"), None, 1}) == fmt.encode({None, 1, float("nan"), 2.0})


_HASH_SEED_SCRIPT = """
import hashlib, sys
import numpy as np
from sklearn.preprocessing import OrdinalEncoder
from keel.models import _keelfmt
X = np.array([["pro"], ["basic"], ["team"], [None]], dtype=object)
value = {"encoder": OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1).fit(X),
         "plans": {"pro", "basic", "team", "free", "x", "y", "z"}, "keys": frozenset({("a", 1), ("b", 2)})}
print(hashlib.sha256(_keelfmt.encode(value)).hexdigest())
"""


def test_the_bytes_do_not_depend_on_string_hashing() -> None:
    digests = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", _HASH_SEED_SCRIPT], env=env, capture_output=True, text=True, check=True
        )
        digests.add(out.stdout.strip())
    assert len(digests) == 1


# -- refusal -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scaler_blob() -> bytes:
    """A small valid blob: a fitted scaler (one type, one object node)."""
    return fmt.encode(StandardScaler().fit(np.arange(12.0).reshape(6, 2)))


def _rewrite(blob: bytes, edit: Any) -> bytes:
    """``blob`` with its JSON tree passed through ``edit`` (the data block kept)."""
    tree, data = fmt.unpack(blob)
    document = orjson.loads(tree)
    edit(document)
    return fmt.pack(orjson.dumps(document), bytes(data))


def _with_type(module: str, qualname: str) -> Any:
    def edit(document: dict[str, Any]) -> None:
        document["types"][0] = [module, qualname]

    return edit


@pytest.mark.parametrize(
    ("module", "qualname"),
    [
        ("os", "system"),  # a function outside the trusted libraries
        ("builtins", "eval"),
        ("subprocess", "Popen"),  # a class outside them
        ("collections", "OrderedDict"),  # a container from the standard library: not handled natively
        ("numpy", "memmap"),  # trusted library, but it opens files
        ("numpy.lib._npyio_impl", "NpzFile"),
        ("keel.project", "Project"),
        ("sklearn.__main__", "X"),
    ],
)
def test_a_blob_naming_an_untrusted_or_denied_type_is_refused(scaler_blob: bytes, module: str, qualname: str) -> None:
    blob = _rewrite(scaler_blob, _with_type(module, qualname))

    with pytest.raises(IntegrityError, match=rf"{module}\.{qualname}.*refused"):
        loads(blob, "keel")


@pytest.mark.parametrize(
    ("module", "qualname"), [("numpy", "log1p"), ("sklearn.feature_selection._univariate_selection", "f_classif")]
)
def test_a_blob_naming_a_function_where_a_class_belongs_is_refused(
    scaler_blob: bytes, module: str, qualname: str
) -> None:
    blob = _rewrite(scaler_blob, _with_type(module, qualname))

    with pytest.raises(IntegrityError, match=rf"{module}\.{qualname}, which is not a class"):
        fmt.decode(blob)


def test_a_trusted_class_is_called_only_if_it_asked_to_be_rebuilt_by_a_call(scaler_blob: bytes) -> None:
    def call_it(document: dict[str, Any]) -> None:  # StandardScaler(...) instead of __new__ + state
        _, number, type_id, state, _ = document["root"]
        document["root"] = ["c", number, type_id, [], state, None]

    with pytest.raises(IntegrityError, match="StandardScaler does not define how it is rebuilt by a call"):
        fmt.decode(_rewrite(scaler_blob, call_it))

    def new_with_args(document: dict[str, Any]) -> None:
        document["root"][4] = [[1, 2], None, None, None]

    with pytest.raises(IntegrityError, match="does not define arguments for __new__"):
        fmt.decode(_rewrite(scaler_blob, new_with_args))


def test_a_cython_object_written_with_another_field_layout_is_refused() -> None:
    from sklearn._loss._loss import CyHalfMultinomialLoss

    blob = fmt.encode([CyHalfMultinomialLoss()])
    assert type(fmt.decode(blob)[0]) is CyHalfMultinomialLoss

    def other_checksum(document: dict[str, Any]) -> None:
        document["root"][2][0][3] += 1  # ["l", id, [["cy", id, type, checksum, state]]]

    with pytest.raises(IntegrityError, match="another layout"):
        fmt.decode(_rewrite(blob, other_checksum))


def test_an_object_array_is_never_read_from_raw_bytes(scaler_blob: bytes) -> None:
    def object_dtype(document: dict[str, Any]) -> None:
        for value in document["root"][3][2].values():
            if isinstance(value, list) and value[0] == "a":
                value[2] = "|O"  # eight bytes of float data read as a pointer would crash the process

    with pytest.raises(IntegrityError, match="not plain data"):
        fmt.decode(_rewrite(scaler_blob, object_dtype))


def test_a_truncated_or_altered_blob_is_refused(scaler_blob: bytes) -> None:
    for bad in (b"", scaler_blob[:20], scaler_blob[:-1], scaler_blob + b"\x00", b"PK\x03\x04" + scaler_blob[4:]):
        with pytest.raises(IntegrityError, match="refused"):
            loads(bad, "keel")
    newer = bytearray(scaler_blob)
    newer[8] = 99
    with pytest.raises(IntegrityError, match="format version 99"):
        fmt.decode(bytes(newer))

    def far_offset(document: dict[str, Any]) -> None:
        for value in document["root"][3][2].values():
            if isinstance(value, list) and value[0] == "a":
                value[5] = 10**6

    with pytest.raises(IntegrityError, match="outside the data block"):
        fmt.decode(_rewrite(scaler_blob, far_offset))
    with pytest.raises(IntegrityError, match="does not hold a model package"):
        loads(scaler_blob, "keel")  # a valid blob, but of a scaler, not a package


def test_random_corruption_gives_an_integrity_error_or_a_value_never_another_exception(scaler_blob: bytes) -> None:
    rng = random.Random(7)
    refused = 0
    for _ in range(400):
        corrupt = bytearray(scaler_blob)
        for _ in range(rng.randint(1, 3)):
            corrupt[rng.randrange(len(corrupt))] = rng.randrange(256)
        try:
            fmt.decode(bytes(corrupt))
        except IntegrityError:
            refused += 1
    assert refused > 100  # most corruptions are caught; the rest decode to some value, never crash


# -- fallback ------------------------------------------------------------------------------------------------
def _identity(x: Any) -> Any:
    """A function in a preprocessing step: pickle stores it by name, the ``keel`` format not at all."""
    return x


def test_a_package_the_format_cannot_hold_falls_back_to_joblib_which_needs_allow_pickle(frame: pd.DataFrame) -> None:
    package = _package(frame, LogisticRegression(max_iter=500), "binary")
    with pytest.raises(fmt.Unsupported, match="lambda"):
        fmt.encode({"step": FunctionTransformer(lambda x: x)})
    package.preprocessor = Pipeline([("pre", package.preprocessor), ("same", FunctionTransformer(_identity))])
    with pytest.raises(fmt.Unsupported, match="_identity"):
        fmt.encode(_parts(package))

    blob, fmt_name = dumps(package)

    assert fmt_name == "joblib"
    with pytest.raises(ValidationError, match="allow_pickle=True"):
        loads(blob, fmt_name)
    again = loads(blob, fmt_name, allow_pickle=True)
    np.testing.assert_array_equal(again.predict_proba(frame), package.predict_proba(frame))


def test_packages_in_the_older_formats_still_load(frame: pd.DataFrame) -> None:
    import io

    import joblib
    import skops.io as sio

    package = _package(frame, HistGradientBoostingClassifier(max_iter=5, random_state=0), "binary")
    skops_blob = sio.dumps(_parts(package))
    buffer = io.BytesIO()
    joblib.dump(_parts(package), buffer)

    _assert_same_predictions(loads(skops_blob, "skops"), package, frame)
    _assert_same_predictions(loads(buffer.getvalue(), "joblib", allow_pickle=True), package, frame)


def test_encoding_a_function_or_an_untrusted_class_is_unsupported() -> None:
    class Local:
        pass

    for value in (len, np.sum, lambda: 0, Local(), Path("x"), pd.DataFrame({"a": [1]})):
        with pytest.raises(fmt.Unsupported):
            fmt.encode({"v": value})


def test_a_loaded_keel_package_digest_is_stable_across_loads(frame: pd.DataFrame) -> None:
    package = _package(frame, RandomForestClassifier(n_estimators=3, random_state=0), "binary")
    blob, _ = dumps(package)

    again, _ = dumps(loads(blob, "keel"))

    assert hashlib.sha256(again).hexdigest() == hashlib.sha256(blob).hexdigest()
