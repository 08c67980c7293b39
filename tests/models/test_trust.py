"""The allowlist: every estimator kind a project trains still stores without pickle and loads back the same; the
user's own classes load only when named; a fallback is never silent."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
    StackingClassifier,
    VotingClassifier,
)
from sklearn.feature_selection import SelectKBest, f_classif
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge, SGDClassifier
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, SplineTransformer, StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
from threadpoolctl import threadpool_limits

from _training_fixtures import build_project
from keel.errors import IntegrityError, ValidationError
from keel.models import InputSchema, ModelPackage, _trust, dumps, loads, serialize
from keel.models import _keelfmt as fmt
from keel.training import TrainingSpec


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    with threadpool_limits(1):
        yield


RNG = np.random.default_rng(5)
X = pd.DataFrame({"a": RNG.normal(size=200), "b": RNG.normal(size=200)})
X.loc[::17, "a"] = np.nan
Y_CLASS = (X["b"] > 0).to_numpy().astype(np.int64)
Y_LABELS = np.where(X["b"] > 0.5, "high", np.where(X["b"] > -0.5, "mid", "low"))
Y_VALUE = X["b"].to_numpy() * 3 + 1


def _impute(model: Any) -> Any:
    return make_pipeline(SimpleImputer(), StandardScaler(), model)


#: Every estimator kind Keel trains (the automatic preprocessing in front of trees and linear models) and the
#: common others, each with its target: (make, y, the format it is stored in).
KINDS: dict[str, tuple[Callable[[], Any], Any, str]] = {
    "logistic": (lambda: _impute(LogisticRegression()), Y_CLASS, "keel"),
    "logistic_labels": (lambda: _impute(LogisticRegression()), Y_LABELS, "keel"),
    "linear": (lambda: _impute(LinearRegression()), Y_VALUE, "keel"),
    "ridge": (lambda: _impute(Ridge()), Y_VALUE, "keel"),
    "sgd": (lambda: _impute(SGDClassifier(random_state=0)), Y_CLASS, "keel"),
    "random_forest": (lambda: _impute(RandomForestClassifier(5, random_state=0)), Y_LABELS, "keel"),
    "random_forest_regressor": (lambda: _impute(RandomForestRegressor(5, random_state=0)), Y_VALUE, "keel"),
    "extra_trees": (lambda: _impute(ExtraTreesClassifier(5, random_state=0)), Y_CLASS, "keel"),
    "extra_trees_regressor": (lambda: _impute(ExtraTreesRegressor(5, random_state=0)), Y_VALUE, "keel"),
    "gradient_boosting": (lambda: _impute(GradientBoostingClassifier(n_estimators=5)), Y_LABELS, "keel"),
    "gradient_boosting_regressor": (
        lambda: _impute(GradientBoostingRegressor(n_estimators=5, loss="huber")),
        Y_VALUE,
        "keel",
    ),
    "hist_gradient_boosting": (lambda: HistGradientBoostingClassifier(max_iter=5), Y_LABELS, "keel"),
    "hist_gradient_boosting_regressor": (
        lambda: HistGradientBoostingRegressor(max_iter=5, loss="poisson"),
        np.abs(Y_VALUE),
        "keel",
    ),
    "decision_tree": (lambda: _impute(DecisionTreeClassifier(random_state=0)), Y_CLASS, "keel"),
    "decision_tree_regressor": (lambda: _impute(DecisionTreeRegressor(random_state=0)), Y_VALUE, "keel"),
    "svc": (lambda: _impute(SVC()), Y_CLASS, "keel"),
    "naive_bayes": (lambda: _impute(GaussianNB()), Y_CLASS, "keel"),
    "mlp": (lambda: _impute(MLPClassifier(max_iter=30, random_state=0)), Y_CLASS, "keel"),
    # ensembles of named estimators hold a Bunch, which does not encode back to the same keel bytes
    "stacking": (
        lambda: _impute(StackingClassifier([("lr", LogisticRegression()), ("tree", DecisionTreeClassifier())])),
        Y_CLASS,
        "skops",
    ),
    "voting": (
        lambda: _impute(VotingClassifier([("lr", LogisticRegression()), ("nb", GaussianNB())], voting="soft")),
        Y_CLASS,
        "skops",
    ),
    "identity_function_transformer": (
        lambda: make_pipeline(SimpleImputer(), FunctionTransformer(), LogisticRegression()),
        Y_CLASS,
        "keel",
    ),
    # what the keel format cannot hold (functions, KD-trees) goes to skops, still without pickle
    "log1p_function_transformer": (
        lambda: make_pipeline(
            SimpleImputer(), FunctionTransformer(np.abs), FunctionTransformer(np.log1p), LogisticRegression()
        ),
        Y_CLASS,
        "skops",
    ),
    "target_transform": (
        lambda: _impute(TransformedTargetRegressor(Ridge(), func=np.log1p, inverse_func=np.expm1)),
        np.abs(Y_VALUE),
        "skops",
    ),
    "select_k_best": (
        lambda: _impute(make_pipeline(SelectKBest(f_classif, k=1), LogisticRegression())),
        Y_CLASS,
        "skops",
    ),
    "splines": (lambda: _impute(make_pipeline(SplineTransformer(), LogisticRegression())), Y_CLASS, "skops"),
    "knn": (lambda: _impute(KNeighborsClassifier()), Y_CLASS, "skops"),
    "knn_regressor": (lambda: _impute(KNeighborsRegressor()), Y_VALUE, "skops"),
}


def _package(model: Any, y: Any) -> ModelPackage:
    model.fit(X, y)
    classification = y.dtype.kind in "iUO"
    classes = [c.item() if hasattr(c, "item") else c for c in model.classes_] if classification else None
    task = "classification" if classification else "regression"
    schema = InputSchema.infer(X, {"a": "float64", "b": "float64"})
    return ModelPackage("m", task, "y", model, None, schema, ["v@1:a", "v@1:b"], classes=classes)


@pytest.mark.parametrize("kind", list(KINDS))
# a few iterations keep the test fast; the stored model need not have converged to round-trip
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_every_estimator_kind_is_stored_without_pickle_and_loads_back_the_same(kind: str) -> None:
    make, y, expected = KINDS[kind]
    package = _package(make(), y)

    result = serialize(package)

    assert result.format == expected
    assert (result.reason is None) == (expected == "keel")
    again = loads(result.blob, result.format)
    np.testing.assert_array_equal(again.predict(X), package.predict(X))
    if hasattr(package.estimator, "predict_proba"):
        np.testing.assert_array_equal(again.predict_proba(X), package.predict_proba(X))


def test_a_column_transformer_with_one_hot_encoding_round_trips() -> None:
    frame = X.assign(plan=np.where(Y_CLASS == 1, "pro", "basic"))
    model = Pipeline(
        [
            ("prepare", ColumnTransformer([("num", SimpleImputer(), ["a", "b"]), ("cat", OneHotEncoder(), ["plan"])])),
            ("model", LogisticRegression()),
        ]
    ).fit(frame, Y_CLASS)

    again = fmt.decode(fmt.encode({"m": model}))["m"]

    np.testing.assert_array_equal(again.predict_proba(frame), model.predict_proba(frame))


def test_every_public_scikit_learn_estimator_is_on_the_allowlist() -> None:
    from sklearn.utils import all_estimators

    missing = [
        f"{cls.__module__}.{cls.__qualname__}"
        for _, cls in all_estimators()
        if not cls.__module__.startswith("sklearn.model_selection")
        and not _trust.allowed(cls.__module__, cls.__qualname__, "class")
    ]

    assert missing == []


def test_every_listed_helper_exists_in_the_installed_libraries() -> None:
    listed = [n.rpartition(".") for n in _trust.HELPER_CLASSES]
    functions = [(m, ".", n) for m, names in _trust.LIBRARY_FUNCTIONS.items() for n in names]

    assert [f"{m}.{q}" for m, _, q in listed if not _trust.allowed(m, q, "class")] == []
    assert [f"{m}.{q}" for m, _, q in functions if not _trust.allowed(m, q, "function")] == []


def test_functions_are_not_classes_and_private_names_are_not_public() -> None:
    assert _trust.allowed("numpy", "log1p", "function") and not _trust.allowed("numpy", "log1p", "class")
    assert not _trust.allowed("numpy", "load", "function")
    assert not _trust.allowed("sklearn.utils._testing", "assert_run_python_script_without_output", "function")
    assert not _trust.allowed("sklearn.base", "BaseEstimator", "class")  # not an estimator of a listed module
    assert not _trust.allowed("sklearn.metrics._dist_metrics", "PyFuncDistance64", "class")  # holds a function


# -- the user's own classes -------------------------------------------------------------------------------------
class Clipper(BaseEstimator, TransformerMixin):  # type: ignore[misc]
    """A custom transformer: the user's own class, outside the allowlist."""

    def fit(self, x: Any, y: Any = None) -> Clipper:
        self.high_ = np.nanmax(np.asarray(x, dtype=float), axis=0)
        return self

    def transform(self, x: Any) -> Any:
        return np.minimum(np.asarray(x, dtype=float), self.high_)


CLIPPER = f"{Clipper.__module__}.{Clipper.__qualname__}"


def _custom() -> ModelPackage:
    return _package(make_pipeline(SimpleImputer(), Clipper(), LogisticRegression()), Y_CLASS)


def test_a_package_of_the_users_own_class_falls_back_to_pickle_with_the_reason_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="keel.models"):
        result = serialize(_custom())

    assert result.format == "joblib"
    assert result.reason is not None and CLIPPER in result.reason
    assert result.reason.startswith("keel: ") and "; skops: " in result.reason
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "stored as joblib" in caplog.records[0].getMessage() and CLIPPER in caplog.records[0].getMessage()


@pytest.mark.parametrize("prefer", ["keel", "skops"])
def test_a_package_of_a_trusted_own_class_loads_only_when_the_class_is_named(prefer: str) -> None:
    package = _custom()

    blob, name = dumps(package, prefer=prefer, trusted_types=[CLIPPER])

    assert name == prefer
    with pytest.raises(IntegrityError, match=rf"\({CLIPPER}\).*trusted_types=\['{CLIPPER}'\]"):
        loads(blob, name)
    with pytest.raises(IntegrityError, match=CLIPPER):
        loads(blob, name, trusted_types=["somewhere.Else"])
    again = loads(blob, name, trusted_types=[CLIPPER])
    np.testing.assert_array_equal(again.predict_proba(X), package.predict_proba(X))


def test_trusted_types_are_full_names() -> None:
    with pytest.raises(ValidationError, match="full names") as info:
        loads(b"", "keel", trusted_types=["Clipper"])
    assert info.value.field == "trusted_types"


def test_an_encoder_bug_is_raised_not_hidden_behind_a_pickle(monkeypatch: pytest.MonkeyPatch) -> None:
    package = _package(_impute(LogisticRegression()), Y_CLASS)

    def broken(obj: Any, **_: Any) -> bytes:
        raise RuntimeError("a bug in the encoder")

    monkeypatch.setattr(fmt, "encode", broken)

    with pytest.raises(RuntimeError, match="a bug in the encoder"):
        dumps(package)


# -- through a project: lineage, registry, keel.yaml ---------------------------------------------------------
@pytest.fixture(scope="module")
def projects(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, pd.DataFrame]:
    root = tmp_path_factory.mktemp("trust")
    plain, labels = build_project(root / "plain")
    trusting, _ = build_project(root / "trusting", trusted_types=[CLIPPER])
    return plain, trusting, labels[["customer_id", "ts", "churned"]]


def _spec(labels: pd.DataFrame, model: Any) -> TrainingSpec:
    return TrainingSpec("custom", labels=labels, label="churned", features=["activity:*", "profile:age"], model=model)


def test_the_runs_lineage_records_the_package_format_and_why_it_fell_back(
    projects: tuple[Any, Any, pd.DataFrame],
) -> None:
    plain, _, labels = projects

    safe = plain.train(_spec(labels, LogisticRegression(max_iter=300)))
    custom = plain.train(_spec(labels, make_pipeline(Clipper(), LogisticRegression(max_iter=300))))

    assert safe.record.lineage["package_format"] == "keel" and safe.record.lineage["package_format_reason"] is None
    assert custom.record.package_format == "joblib"
    assert custom.record.lineage["package_format"] == "joblib"
    assert CLIPPER in custom.record.lineage["package_format_reason"]
    assert plain.runs.get(custom.record.id).lineage == custom.record.lineage  # as the catalog stored it


def test_a_project_trusting_a_class_stores_it_without_pickle_and_its_registry_loads_it(
    projects: tuple[Any, Any, pd.DataFrame],
) -> None:
    plain, trusting, labels = projects
    run = trusting.train(_spec(labels, make_pipeline(Clipper(), LogisticRegression(max_iter=300))))
    assert run.record.package_format == "keel"
    version = trusting.models.register(run)
    rows = trusting.historical_features(labels.head(20), ["activity:*", "profile:age"])

    loaded = trusting.models.load(f"custom:{version.version}")

    np.testing.assert_array_equal(loaded.predict_proba(rows), run.package.predict_proba(rows))
    untrusting = type(trusting.models)(trusting.catalog, trusting.artifacts)
    with pytest.raises(IntegrityError, match=CLIPPER):
        untrusting.load(f"custom:{version.version}")
    again = untrusting.load(f"custom:{version.version}", trusted_types=[CLIPPER])
    np.testing.assert_array_equal(again.predict_proba(rows), run.package.predict_proba(rows))
    assert trusting.models.trusted_types == (CLIPPER,) and plain.models.trusted_types == ()


def test_verify_reports_the_hash_the_format_and_every_type(projects: tuple[Any, Any, pd.DataFrame]) -> None:
    _, trusting, labels = projects
    run = trusting.train(_spec(labels, make_pipeline(Clipper(), LogisticRegression(max_iter=300))))
    version = trusting.models.register(run)
    ref = f"custom:{version.version}"

    trusted = trusting.models.verify(ref)
    untrusting = type(trusting.models)(trusting.catalog, trusting.artifacts).verify(ref)

    assert trusted.ok and trusted.hash_matches and trusted.audit.format == "keel"
    names = {r.name: r.allowed for r in trusted.audit.references}
    assert names[CLIPPER] and names["sklearn.linear_model._logistic.LogisticRegression"]
    assert not untrusting.ok and untrusting.audit.refused == [CLIPPER]
