"""The model package: predictions on raw frames, input validation, serialization (skops, or joblib by choice)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

import keel
from _training_fixtures import build_project
from keel.errors import IntegrityError, ValidationError
from keel.models import InputSchema, ModelPackage, dumps, loads
from keel.training import TrainingRun, TrainingSpec

FEATURES = ["activity:*", "profile:age"]


class MajorityClassifier(BaseEstimator, ClassifierMixin):  # type: ignore[misc]
    """A custom estimator: a type outside the trusted libraries, so its package cannot be skops."""

    def fit(self, x: Any, y: Any) -> MajorityClassifier:
        values, counts = np.unique(y, return_counts=True)
        self.classes_ = values
        self.majority_ = values[np.argmax(counts)]
        return self

    def predict(self, x: Any) -> Any:
        return np.full(len(x), self.majority_)

    def predict_proba(self, x: Any) -> Any:
        return np.tile((self.classes_ == self.majority_).astype(float), (len(x), 1))


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """One native thread: tiny fits are quicker so, and a busy machine does not stall OpenMP's workers."""
    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[keel.Project, pd.DataFrame, dict[str, Any]]]:
    project, labels = build_project(tmp_path_factory.mktemp("package") / "project")
    labels = labels[["customer_id", "ts", "churned"]]
    runs: dict[str, TrainingRun] = {}
    for key, model in (
        ("linear", LogisticRegression(max_iter=500)),
        ("trees", HistGradientBoostingClassifier(max_iter=20)),
        ("custom", MajorityClassifier()),
    ):
        runs[key] = project.train(TrainingSpec(key, labels=labels, label="churned", features=FEATURES, model=model))
    frame = project.historical_features(labels.head(30), FEATURES)
    yield project, frame, runs
    project.close()


@pytest.fixture
def frame(trained: tuple[keel.Project, pd.DataFrame, dict[str, Any]]) -> pd.DataFrame:
    return trained[1].copy()


@pytest.fixture(params=["linear", "trees"])
def package(request: pytest.FixtureRequest, trained: tuple[keel.Project, pd.DataFrame, dict[str, Any]]) -> Any:
    return trained[2][request.param].package


def test_predict_and_predict_proba_on_raw_retrieved_features(package: ModelPackage, frame: pd.DataFrame) -> None:
    predictions = package.predict(frame)
    proba = package.predict_proba(frame)

    assert predictions.shape == (30,) and set(predictions) <= {0, 1}
    assert proba.shape == (30, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert package.classes == [0, 1]
    np.testing.assert_array_equal(predictions, np.asarray(package.classes)[proba.argmax(axis=1)])
    assert package.feature_names == ["spend", "orders", "plan", "active", "since", "age"]
    assert package.feature_refs[0] == "activity@1:spend"


def test_extra_columns_are_ignored_and_column_order_does_not_matter(package: ModelPackage, frame: pd.DataFrame) -> None:
    expected = package.predict_proba(frame)
    shuffled = frame[list(reversed(frame.columns))].assign(unrelated=np.arange(len(frame)), churned=1)

    np.testing.assert_array_equal(package.predict_proba(shuffled), expected)
    only_features = frame[package.feature_names]
    np.testing.assert_array_equal(package.predict_proba(only_features), expected)


def test_a_missing_column_is_named(package: ModelPackage, frame: pd.DataFrame) -> None:
    with pytest.raises(ValidationError, match="'orders'") as info:
        package.predict(frame.drop(columns=["orders"]))
    assert info.value.field == "orders"
    with pytest.raises(ValidationError, match="pandas DataFrame"):
        package.predict(frame.to_numpy())


def test_a_value_of_the_wrong_type_is_named_with_its_row(package: ModelPackage, frame: pd.DataFrame) -> None:
    spend = frame["spend"].astype(object)
    spend.iloc[3] = "twelve"
    with pytest.raises(
        ValidationError, match=r"1 row holds a value that is not a finite number: row 3 \('twelve'\)"
    ) as info:
        package.predict(frame.assign(spend=spend))
    assert info.value.field == "spend" and info.value.row == 3

    with pytest.raises(ValidationError, match=r"column 'since' \(timestamp\): 1 row holds .*: row 1 \('soon'\)"):
        package.predict(frame.assign(since=["2024-01-01", "soon", *["2024-01-02"] * (len(frame) - 2)]))
    with pytest.raises(ValidationError, match=r"column 'active' \(bool\): 1 row holds .*: row 0 \('yes'\)"):
        package.predict(frame.assign(active=["yes", *[True] * (len(frame) - 1)]))


def test_values_given_as_python_objects_predict_like_typed_columns(package: ModelPackage, frame: pd.DataFrame) -> None:
    expected = package.predict_proba(frame)
    loose = pd.DataFrame(
        {
            "spend": pd.Series([None if pd.isna(v) else float(v) for v in frame["spend"]], dtype=object),
            "orders": pd.Series([int(v) for v in frame["orders"]], dtype=object),
            "plan": frame["plan"].astype(object),
            "active": [bool(v) for v in frame["active"]],
            "since": [t.isoformat() for t in frame["since"]],
            "age": frame["age"].astype("float64"),
        }
    )

    np.testing.assert_allclose(package.predict_proba(loose), expected)


def test_numbers_given_as_text_are_refused_as_the_prediction_service_refuses_them(
    package: ModelPackage, frame: pd.DataFrame
) -> None:
    as_text = frame.assign(orders=[str(v) for v in frame["orders"]])

    with pytest.raises(ValidationError, match=r"column 'orders' \(int64\): 30 rows hold .*: row 0 \('\d'\)") as info:
        package.predict(as_text)
    assert info.value.field == "orders" and info.value.row == 0


def test_timestamps_give_the_same_predictions_whatever_their_unit_or_zone(
    package: ModelPackage, frame: pd.DataFrame
) -> None:
    expected = package.predict_proba(frame)
    for since in (
        frame["since"].astype("datetime64[ns, UTC]"),
        frame["since"].astype("datetime64[s, UTC]"),
        frame["since"].dt.tz_convert("America/New_York"),
        frame["since"].dt.tz_localize(None),  # naive: taken as UTC
    ):
        np.testing.assert_array_equal(package.predict_proba(frame.assign(since=since)), expected)


def test_nulls_and_unknown_categories_are_handled(package: ModelPackage, frame: pd.DataFrame) -> None:
    holes = frame.copy()
    for column in ("spend", "plan", "since"):
        holes.loc[holes.index[:3], column] = None
    holes["orders"] = holes["orders"].astype("Int64")
    holes.loc[holes.index[:3], "orders"] = pd.NA
    holes.loc[holes.index[3:6], "plan"] = "enterprise"

    proba = package.predict_proba(holes)

    assert np.isfinite(proba).all()
    np.testing.assert_array_equal(proba[6:], package.predict_proba(frame)[6:])


def test_an_empty_frame_gives_no_predictions(package: ModelPackage, frame: pd.DataFrame) -> None:
    assert package.predict(frame.head(0)).shape == (0,)
    assert package.predict_proba(frame.head(0)).shape == (0, 2)


def test_the_schema_records_what_training_saw(package: ModelPackage) -> None:
    schema = {f.name: f for f in package.schema.features}
    assert schema["plan"].categories == ("basic", "pro", "team")
    assert schema["spend"].null_fraction > 0
    assert schema["orders"].min == 0 and schema["orders"].max == 9
    since = schema["since"]
    assert since.min is not None and 1.5e9 < since.min < 1.71e9  # seconds since the epoch (2017 .. 2024)
    assert InputSchema.from_dict(package.schema.to_dict()) == package.schema


# -- serialization -------------------------------------------------------------------------------------------
def test_a_package_of_trusted_types_round_trips_without_pickle(package: ModelPackage, frame: pd.DataFrame) -> None:
    blob, fmt = dumps(package)

    assert fmt == "keel"
    again = loads(blob, fmt)
    np.testing.assert_array_equal(again.predict_proba(frame), package.predict_proba(frame))
    np.testing.assert_array_equal(again.predict(frame), package.predict(frame))
    assert again.schema == package.schema
    assert (again.name, again.task, again.label, again.classes) == (
        package.name,
        package.task,
        package.label,
        package.classes,
    )
    assert again.feature_refs == package.feature_refs and again.metadata == package.metadata


def test_an_untrusted_type_falls_back_to_joblib_which_loads_only_when_allowed(
    trained: tuple[keel.Project, pd.DataFrame, dict[str, Any]], frame: pd.DataFrame
) -> None:
    project, _, runs = trained
    run = runs["custom"]
    assert run.record.package_format == "joblib"
    blob, fmt = dumps(run.package)
    assert fmt == "joblib"

    with pytest.raises(ValidationError, match="allow_pickle=True") as info:
        loads(blob, fmt)
    assert "pickle" in str(info.value) and info.value.field == "allow_pickle"
    again = loads(blob, fmt, allow_pickle=True)
    np.testing.assert_array_equal(again.predict(frame), run.package.predict(frame))

    version = project.models.register(run)
    assert version.package_format == "joblib"
    with pytest.raises(ValidationError, match="joblib"):
        project.models.load(f"custom:{version.version}")
    loaded = project.models.load(f"custom:{version.version}", allow_pickle=True)
    np.testing.assert_array_equal(loaded.predict(frame), run.package.predict(frame))


def test_a_skops_blob_holding_an_untrusted_type_is_refused(package: ModelPackage) -> None:
    custom = ModelPackage(
        "x", "classification", "y", MajorityClassifier().fit([[0], [1]], [0, 1]), None, package.schema, []
    )
    import skops.io as sio

    from keel.models._serialization import _parts

    blob = sio.dumps(_parts(custom))
    with pytest.raises(IntegrityError, match="MajorityClassifier"):
        loads(blob, "skops")
    with pytest.raises(ValidationError, match="unknown format"):
        loads(blob, "onnx")


def test_the_registry_loads_the_same_package_back(
    trained: tuple[keel.Project, pd.DataFrame, dict[str, Any]], frame: pd.DataFrame, tmp_path: Path
) -> None:
    project, _, runs = trained
    version = project.models.register(runs["trees"])
    loaded = project.models.load(f"trees:{version.version}")
    np.testing.assert_array_equal(loaded.predict_proba(frame), runs["trees"].package.predict_proba(frame))
    assert loaded.metadata["run_id"] == runs["trees"].id


# -- the fast path: replayed preprocessing and one tree walk, bit-identical to the preprocessor's ----------
def _synthetic(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "x": rng.standard_normal(n),
            "count": rng.integers(0, 50, n),
            "flag": rng.random(n) < 0.3,
            "seen": pd.Timestamp("2025-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 10**6, n), unit="s"),
            "plan": rng.choice(["basic", "pro", "team"], n).astype(object),
            "region": rng.choice(["eu", "us", "asia", "latam"], n).astype(object),
        }
    )
    frame.loc[rng.random(n) < 0.1, "x"] = np.nan
    frame.loc[rng.random(n) < 0.1, "plan"] = None
    return frame


_DTYPES = {"x": "float64", "count": "int64", "flag": "bool", "seen": "timestamp", "plan": "string", "region": "string"}


def _fitted(estimator: Any, target: np.ndarray, task: str = "classification") -> ModelPackage:
    from keel.training._preprocessing import auto_preprocessor

    train = _synthetic(400, 1)
    preprocessor = auto_preprocessor(_DTYPES, estimator)
    package = ModelPackage(
        name="fast",
        task=task,
        label="y",
        estimator=None,
        preprocessor=preprocessor,
        schema=InputSchema.infer(train, _DTYPES),
        feature_refs=[f"v@1:{c}" for c in _DTYPES],
    )
    estimator.fit(preprocessor.fit_transform(package.prepare(train)), target)
    classes = list(getattr(estimator, "classes_", [])) or None
    return ModelPackage(**{**package.__dict__, "estimator": estimator, "classes": classes})


def _slow(package: ModelPackage) -> ModelPackage:
    """The same package without the fast path: the preprocessor on a frame, predict and predict_proba apart."""
    from dataclasses import replace

    slow = replace(package)
    slow.__dict__["_fast_plan"] = None
    return slow


def _scoring_input() -> pd.DataFrame:
    frame = _synthetic(300, 2)
    frame.loc[0, "plan"] = "enterprise"  # a category never seen in training
    frame.loc[1, "region"] = None
    frame.loc[2, "x"] = 1e12  # far outside the training range
    frame.loc[3, ["x", "plan", "region"]] = [np.nan, None, None]
    frame["count"] = frame["count"].astype("Int64")
    frame.loc[4, "count"] = pd.NA
    return frame


_TARGET = np.random.default_rng(3).integers(0, 3, 400)


@pytest.mark.parametrize(
    "case",
    ["hgb_binary_string_classes", "hgb_multiclass", "logistic_onehot_scaled", "hgb_regression"],
)
def test_the_fast_path_gives_exactly_the_preprocessors_answers(case: str) -> None:
    from sklearn.ensemble import HistGradientBoostingRegressor

    if case == "hgb_binary_string_classes":
        package = _fitted(HistGradientBoostingClassifier(max_iter=15), np.where(_TARGET > 0, "stay", "churn"))
    elif case == "hgb_multiclass":
        package = _fitted(HistGradientBoostingClassifier(max_iter=15), _TARGET)
    elif case == "logistic_onehot_scaled":
        package = _fitted(LogisticRegression(max_iter=300), np.where(_TARGET > 0, "yes", "no"))
    else:
        package = _fitted(HistGradientBoostingRegressor(max_iter=15), _TARGET * 1.5, task="regression")
    plan = package._plan()
    assert plan is not None  # the automatic preprocessing is replayed ...
    assert plan.joint is (case.startswith("hgb_") and case != "hgb_regression")
    slow = _slow(package)
    frame = _scoring_input()
    fast_matrix, slow_matrix = package.transform(frame), slow.transform(frame)
    assert fast_matrix.dtype == slow_matrix.dtype and fast_matrix.flags.c_contiguous == slow_matrix.flags.c_contiguous
    assert np.array_equal(fast_matrix.view(np.int64), slow_matrix.view(np.int64))  # ... bit for bit
    predictions = slow.estimator.predict(slow_matrix)
    assert np.array_equal(package.predict(frame), predictions)
    assert package.predict(frame).dtype == predictions.dtype
    scored = package.score(frame)
    assert np.array_equal(scored.predictions, predictions)
    if package.task == "classification":
        probabilities = slow.estimator.predict_proba(slow_matrix)
        assert np.array_equal(package.predict_proba(frame), probabilities)
        assert scored.probabilities is not None and np.array_equal(scored.probabilities, probabilities)
    else:
        assert scored.probabilities is None
    prepared = slow.prepare(frame)
    for name, dtype in _DTYPES.items():  # the prepared columns too (the service's warnings read them)
        if dtype == "string":
            assert pd.Series(scored.prepared[name]).equals(prepared[name].reset_index(drop=True))
        else:
            assert np.array_equal(scored.prepared[name], prepared[name].to_numpy(), equal_nan=True)
    for row in [*range(8), *range(8, len(frame), 25)]:  # one row at a time, as the HTTP service scores
        one = frame.iloc[[row]]
        assert np.array_equal(package.score(one).predictions, slow.predict(one))


def test_a_mapping_of_columns_scores_like_a_frame() -> None:
    package = _fitted(HistGradientBoostingClassifier(max_iter=10), _TARGET)
    frame = _scoring_input().head(20)
    columns = {
        "x": frame["x"].to_numpy(dtype=np.float64),
        "count": frame["count"].astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan),
        "flag": pd.array(frame["flag"], dtype="boolean"),
        "seen": frame["seen"].array,
        "plan": np.array([None if pd.isna(v) else v for v in frame["plan"]], dtype=object),
        "region": np.array([None if pd.isna(v) else v for v in frame["region"]], dtype=object),
    }
    from_frame, from_mapping = package.score(frame), package.score(columns)
    assert np.array_equal(from_frame.predictions, from_mapping.predictions)
    assert from_frame.probabilities is not None and from_mapping.probabilities is not None
    assert np.array_equal(from_frame.probabilities, from_mapping.probabilities)
    with pytest.raises(ValidationError, match="lacks feature column"):
        package.score({k: v for k, v in columns.items() if k != "plan"})


def test_a_preprocessor_it_does_not_know_is_used_as_it_is() -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import FunctionTransformer

    train = _synthetic(200, 4)[["x", "count"]].fillna(0.0)
    dtypes = {"x": "float64", "count": "int64"}
    preprocessor = ColumnTransformer([("f", FunctionTransformer(np.tanh), ["x", "count"])])
    estimator = LogisticRegression().fit(preprocessor.fit_transform(train), _TARGET[:200] > 0)
    package = ModelPackage(
        name="custom_pre",
        task="classification",
        label="y",
        estimator=estimator,
        preprocessor=preprocessor,
        schema=InputSchema.infer(train, dtypes),
        feature_refs=["v@1:x", "v@1:count"],
        classes=[False, True],
    )
    assert package._plan() is None
    assert np.array_equal(package.predict(train), estimator.predict(preprocessor.transform(train)))


@pytest.mark.parametrize("estimator", ["hgb", "logistic"])
def test_an_all_numeric_model_gets_the_fast_path_in_the_preprocessors_own_memory_layout(estimator: str) -> None:
    """One numeric part: the preprocessor passes the imputer's output through in pandas' column-major layout,
    and the fast path builds the same layout, so the estimator sees identical arrays either way."""
    from keel.training._preprocessing import auto_preprocessor

    rng = np.random.default_rng(5)
    dtypes = {f"f{i}": "float64" for i in range(6)}
    train = pd.DataFrame(rng.standard_normal((500, 6)), columns=list(dtypes))
    train[train > 2.0] = np.nan
    y = (train["f0"].fillna(0) + rng.standard_normal(500) > 0).astype(np.int64).to_numpy()
    model = HistGradientBoostingClassifier(max_iter=10) if estimator == "hgb" else LogisticRegression(max_iter=300)
    preprocessor = auto_preprocessor(dtypes, model)
    model.fit(preprocessor.fit_transform(train), y)
    package = ModelPackage(
        "numeric", "classification", "y", model, preprocessor, InputSchema.infer(train, dtypes), [], classes=[0, 1]
    )
    plan = package._plan()
    assert plan is not None
    frame = pd.DataFrame(rng.standard_normal((300, 6)), columns=list(dtypes))
    frame.iloc[::7, 2] = np.nan
    slow = _slow(package)
    fast_matrix, slow_matrix = package.transform(frame), slow.transform(frame)
    assert plan.order == "F" and slow_matrix.flags.f_contiguous and not slow_matrix.flags.c_contiguous
    assert fast_matrix.flags.f_contiguous == slow_matrix.flags.f_contiguous
    assert np.array_equal(fast_matrix.view(np.int64), slow_matrix.view(np.int64))
    assert np.array_equal(package.predict_proba(frame), slow.estimator.predict_proba(slow_matrix))
    assert np.array_equal(package.predict(frame), slow.estimator.predict(slow_matrix))


@pytest.mark.parametrize("classes", [2, 3])
def test_small_batches_walk_all_trees_at_once_and_give_the_same_floats(classes: int) -> None:
    """The NumPy walk of every tree together (small batches) against scikit-learn's tree-by-tree walk: the same
    raw scores bit for bit, so the same predictions and probabilities, on values at the thresholds and missing."""
    from keel.models._forest import SMALL_BATCH_ROWS, _Forest, _joint_hgb

    rng = np.random.default_rng(11)
    x = rng.standard_normal((2000, 7))
    x[rng.random(x.shape) < 0.1] = np.nan
    y = np.digitize(np.nan_to_num(x[:, 0]) + 0.5 * np.nan_to_num(x[:, 1]), [-0.5, 0.5][: classes - 1])
    model = HistGradientBoostingClassifier(max_iter=60, max_leaf_nodes=15, random_state=0).fit(x, y)
    forest = _Forest.of(model)
    assert forest is not None and _Forest.of(model) is forest  # compiled once
    thresholds = forest.classes[0][2][~forest.classes[0][6]]
    rows = rng.standard_normal((SMALL_BATCH_ROWS, 7))
    rows[:, 2] = thresholds[rng.integers(0, thresholds.size, SMALL_BATCH_ROWS)]  # exactly at split points
    rows[rng.random(rows.shape) < 0.15] = np.nan
    for n in (1, 7, SMALL_BATCH_ROWS):
        part = rows[:n]
        assert np.array_equal(forest.raw(part), model._raw_predict(part))
        predictions, probabilities = _joint_hgb(model, part)
        assert np.array_equal(predictions, model.predict(part))
        assert np.array_equal(probabilities, model.predict_proba(part))


def test_categorical_splits_keep_scikit_learns_own_walk() -> None:
    from keel.models._forest import _Forest

    rng = np.random.default_rng(12)
    x = np.c_[rng.integers(0, 5, 500).astype(float), rng.standard_normal(500)]
    y = (x[:, 0] % 2 == 0).astype(int)
    model = HistGradientBoostingClassifier(max_iter=10, categorical_features=[0]).fit(x, y)
    assert _Forest.of(model) is None
