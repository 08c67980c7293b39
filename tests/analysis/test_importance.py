"""Feature importance on data with planted structure: permutation importance (batched, grouped, with intervals)
against scikit-learn's, mutual information, impurity importance and its bias, SHAP, and correlated groups."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.inspection import permutation_importance as sklearn_permutation_importance
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import mean_squared_error, r2_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from keel.analysis import _importance
from keel.analysis._importance import (
    ImportanceResult,
    ShapNotInstalledError,
    ShapResult,
    correlated_groups,
    feature_associations,
    impurity_importance,
    mutual_information,
    permutation_importance,
    shap_importance,
)
from keel.errors import MissingExtraError, ValidationError


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Small models gain nothing from threads, and the machine is shared."""
    with threadpool_limits(1):
        yield


@pytest.fixture
def shap_module() -> Any:
    """The ``shap`` package; its absence fails under ``KEEL_REQUIRE_SERVICES=1`` and skips otherwise."""
    try:
        import shap
    except ImportError as exc:
        if os.environ.get("KEEL_REQUIRE_SERVICES") == "1":
            pytest.fail(f"shap is required (KEEL_REQUIRE_SERVICES=1) but not importable: {exc}")
        pytest.skip(f"shap is not installed (pip install 'keel[shap]'): {exc}")
    return shap


def regression_data(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """y = 2 strong + medium + 0.5 weak + noise; ``noise`` plays no part."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({name: rng.standard_normal(n) for name in ("strong", "medium", "weak", "noise")})
    y = 2 * X["strong"] + X["medium"] + 0.5 * X["weak"] + 0.3 * rng.standard_normal(n)
    return X, y.to_numpy()


def classification_data(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """A logistic link of x1, x2 and x3; ``noise`` plays no part."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({name: rng.standard_normal(n) for name in ("x1", "x2", "x3", "noise")})
    logit = 2 * X["x1"] - 1.2 * X["x2"] + 0.6 * X["x3"]
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return X, y.to_numpy()


def split(X: pd.DataFrame, y: np.ndarray, train: int) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame, np.ndarray]:
    return X.iloc[:train], y[:train], X.iloc[train:].reset_index(drop=True), y[train:]


# -- permutation importance -------------------------------------------------------------------------------------
def test_a_pure_noise_feature_ranks_last_and_the_planted_order_is_found() -> None:
    X_train, y_train, X, y = split(*regression_data(3000, seed=1), train=2000)
    model = HistGradientBoostingRegressor(max_iter=60, random_state=0).fit(X_train, y_train)

    result = permutation_importance(model.predict, X, y, score=r2_score, n_repeats=5, seed=0)

    assert result.ranking == ["strong", "medium", "weak", "noise"]
    noise = result["noise"]
    assert abs(noise.mean) < 0.01 * result["strong"].mean
    assert result.baseline_score == pytest.approx(r2_score(y, model.predict(X)))


def test_a_group_of_two_copies_is_found_and_its_joint_permutation_shows_what_each_alone_hides() -> None:
    rng = np.random.default_rng(2)
    n = 3000
    a = rng.standard_normal(n)
    X = pd.DataFrame({"a": a, "a_copy": a.copy(), "b": rng.standard_normal(n), "noise": rng.standard_normal(n)})
    y = 2 * a + X["b"].to_numpy() + 0.3 * rng.standard_normal(n)
    X_train, y_train, X_test, y_test = split(X, y, train=2000)
    # One candidate feature per split: the forest uses both copies, as a model with correlated inputs does.
    model = RandomForestRegressor(n_estimators=40, max_features=1, min_samples_leaf=5, random_state=0)
    model.fit(X_train, y_train)

    groups = correlated_groups(X)
    result = permutation_importance(
        model.predict,
        X_test,
        y_test,
        score=r2_score,
        groups={"+".join(g): g for g in groups},
        features=list(X.columns),
        n_repeats=5,
    )

    assert groups == [["a", "a_copy"]]
    group, alone = result["a+a_copy"], [result["a"], result["a_copy"]]
    assert group.is_group and group.columns == ("a", "a_copy")
    assert all(group.ci_low > f.ci_high for f in alone)  # type: ignore[operator]
    assert group.mean > 1.5 * max(f.mean for f in alone)
    assert group.mean > result["b"].mean  # alone, each copy understates the strongest signal


def test_an_identifier_fools_impurity_importance_but_not_permutation_importance_on_held_out_rows() -> None:
    rng = np.random.default_rng(3)
    n = 3000
    # Two informative features of low cardinality, one continuous, and an identifier unrelated to y.
    X = pd.DataFrame(
        {"x": rng.standard_normal(n), "flag": (rng.random(n) < 0.5).astype(int), "level": rng.integers(0, 4, n)}
    )
    logit = X["x"] + X["flag"] - 0.5 * X["level"]
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int).to_numpy()
    X["customer_id"] = rng.permutation(1_000_000)[:n]
    X_train, y_train, X_test, y_test = split(X, y, train=2000)
    model = RandomForestClassifier(n_estimators=60, random_state=0).fit(X_train, y_train)

    impurity = impurity_importance(model, list(X.columns))
    permutation = permutation_importance(
        lambda df: model.predict_proba(df)[:, 1], X_test, y_test, score=roc_auc_score, n_repeats=5
    )

    assert impurity is not None  # the bias (Strobl et al. 2007): many split points, credited by chance
    assert impurity["customer_id"] > 2 * max(impurity["flag"], impurity["level"])
    assert permutation.ranking[-1] == "customer_id"
    assert permutation["customer_id"].mean < 0.5 * min(permutation["flag"].mean, permutation["level"].mean)


def test_means_agree_with_scikit_learn_within_the_sampling_error_of_the_permutations() -> None:
    X_train, y_train, X, y = split(*classification_data(2000, seed=4), train=1000)
    model = HistGradientBoostingClassifier(max_iter=40, random_state=0).fit(X_train, y_train)
    repeats = 30

    ours = permutation_importance(
        lambda df: model.predict_proba(df)[:, 1], X, y, score=roc_auc_score, n_repeats=repeats, seed=11
    )
    theirs = sklearn_permutation_importance(model, X, y, scoring="roc_auc", n_repeats=repeats, random_state=11)

    for j, name in enumerate(X.columns):
        mine = ours[name]
        # Two independent means of 30 repeats: their difference has this standard error; 4 of them leave a
        # false alarm probability of about 6e-5 per feature.
        se = np.sqrt((np.var(mine.values, ddof=1) + np.var(theirs.importances[j], ddof=1)) / repeats)
        assert abs(mine.mean - theirs.importances_mean[j]) <= 4 * se + 1e-12, name
        assert mine.std == pytest.approx(float(np.std(mine.values)))
    assert ours.baseline_score == pytest.approx(roc_auc_score(y, model.predict_proba(X)[:, 1]))
    assert ours.predict_calls == 1 + X.shape[1]  # sklearn: 1 + 4 x 30


def test_the_same_seed_gives_the_same_numbers_and_a_feature_does_not_depend_on_its_neighbours() -> None:
    X_train, y_train, X, y = split(*regression_data(1500, seed=5), train=1000)
    model = LinearRegression().fit(X_train, y_train)

    first = permutation_importance(model.predict, X, y, score=r2_score, seed=3)
    again = permutation_importance(model.predict, X, y, score=r2_score, seed=3)
    other = permutation_importance(model.predict, X, y, score=r2_score, seed=4)
    alone = permutation_importance(model.predict, X, y, score=r2_score, seed=3, features=["weak"])

    assert first.to_dict() == again.to_dict()
    assert first["weak"].values != other["weak"].values
    assert alone["weak"].values == first["weak"].values


def test_repeats_are_stacked_into_as_few_calls_as_the_row_budget_allows_with_the_same_numbers() -> None:
    X_train, y_train, X, y = split(*regression_data(1500, seed=6), train=1000)
    model = LinearRegression().fit(X_train, y_train)
    sizes: list[int] = []

    def predict(frame: pd.DataFrame) -> np.ndarray:
        sizes.append(len(frame))
        return np.asarray(model.predict(frame))

    batched = permutation_importance(predict, X, y, score=r2_score, n_repeats=5)
    calls_batched, sizes[:] = list(sizes), []
    bounded = permutation_importance(predict, X, y, score=r2_score, n_repeats=5, max_rows_per_call=2 * len(X))

    assert calls_batched == [500] + [2500] * 4
    assert sizes == [500] + [1000, 1000, 500] * 4
    assert (batched.predict_calls, bounded.predict_calls) == (5, 13)
    assert [f.to_dict() for f in batched.features] == [f.to_dict() for f in bounded.features]


def test_rows_whose_permuted_values_tie_with_their_own_are_not_predicted_again_and_nothing_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(7)
    n = 3000
    X = pd.DataFrame(
        {
            "x": rng.standard_normal(n),
            "flag": rng.random(n) < 0.3,
            "level": rng.integers(0, 3, n),
            "plan": pd.Categorical(rng.choice(["basic", "pro"], n)),
        }
    )
    y = X["x"] + X["flag"] + 0.5 * X["level"] + (X["plan"] == "pro") + 0.2 * rng.standard_normal(n)
    X_train, y_train, X_test, y_test = split(X, y.to_numpy(), train=2000)
    model = HistGradientBoostingRegressor(max_iter=30, categorical_features="from_dtype", random_state=0)
    model.fit(X_train, y_train)
    sizes: list[int] = []

    def predict(frame: pd.DataFrame) -> np.ndarray:
        sizes.append(len(frame))
        return np.asarray(model.predict(frame))

    skipping = permutation_importance(predict, X_test, y_test, score=r2_score, n_repeats=4)
    predicted_rows = sum(sizes[1:])
    monkeypatch.setattr(_importance, "UNCHANGED_SHARE", 2.0)  # never skip: predict every stacked row
    everything = permutation_importance(model.predict, X_test, y_test, score=r2_score, n_repeats=4)

    assert predicted_rows < 0.8 * 4 * 4 * len(X_test)  # a flag keeps about 58% of its rows, a 3-level int 1/3
    assert skipping.to_dict() == everything.to_dict()


def test_predict_sees_the_columns_in_order_with_their_dtypes_and_the_input_is_left_alone() -> None:
    rng = np.random.default_rng(8)
    n = 400
    X = pd.DataFrame(
        {
            "amount": rng.standard_normal(n),
            "plan": pd.Categorical(rng.choice(["basic", "pro", "team"], n)),
            "city": pd.Series(rng.choice(["Oslo", "Lima", "Pune"], n), dtype="str"),
            "visits": pd.array(rng.integers(0, 9, n), dtype="Int64"),
            "active": rng.random(n) < 0.5,
            "seen": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 99, n), unit="D"),
        }
    )
    X.loc[3, "visits"] = pd.NA
    before = X.copy()
    seen: list[pd.Series] = []

    def predict(frame: pd.DataFrame) -> np.ndarray:
        seen.append(frame.dtypes)
        assert list(frame.columns) == list(X.columns)
        return frame["amount"].to_numpy() + (frame["plan"] == "pro").to_numpy() + (frame["city"] == "Oslo").to_numpy()

    y = predict(X) + 0.1 * rng.standard_normal(n)
    result = permutation_importance(predict, X, y, score=r2_score, n_repeats=3, groups={"place": ["plan", "city"]})

    assert all(dtypes.equals(X.dtypes) for dtypes in seen)
    pd.testing.assert_frame_equal(X, before)
    assert result.ranking[:2] == ["amount", "place"]
    assert result["visits"].mean == result["active"].mean == result["seen"].mean == 0.0


def test_a_loss_is_turned_around_so_that_important_still_means_positive() -> None:
    X_train, y_train, X, y = split(*regression_data(1500, seed=9), train=1000)
    model = LinearRegression().fit(X_train, y_train)

    result = permutation_importance(model.predict, X, y, score=mean_squared_error, greater_is_better=False, seed=1)

    assert result.ranking[0] == "strong" and result["strong"].mean > 1.0
    assert result.to_dict()["greater_is_better"] is False


def test_the_t_interval_covers_the_importance_over_all_permutations_at_about_its_nominal_rate() -> None:
    X_train, y_train, X, y = split(*regression_data(900, seed=10), train=500)
    features = ["strong", "medium", "weak"]
    fit = LinearRegression().fit(X_train[features], y_train)
    X = X[features]

    def mse(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.mean((a - b) ** 2))

    # The importance averaged over all permutations of this model on these rows, to within 0.5% of its spread.
    truth = permutation_importance(fit.predict, X, y, score=mse, greater_is_better=False, n_repeats=5000, seed=999)
    covered = total = 0
    for seed in range(200):
        result = permutation_importance(fit.predict, X, y, score=mse, greater_is_better=False, n_repeats=5, seed=seed)
        for f in result.features:
            covered += f.ci_low <= truth[f.name].mean <= f.ci_high  # type: ignore[operator]
            total += 1
    coverage = covered / total
    print(f"\n95% t-interval (5 repeats) coverage of the all-permutation importance: {coverage:.3f} over {total}")
    assert 0.92 <= coverage <= 0.98  # binomial sd at 600 intervals: 0.009


def test_results_round_trip_through_json() -> None:
    X_train, y_train, X, y = split(*regression_data(600, seed=12), train=300)
    model = LinearRegression().fit(X_train, y_train)
    result = permutation_importance(model.predict, X, y, score=r2_score, n_repeats=1)

    data = json.loads(json.dumps(result.to_dict()))

    assert ImportanceResult.from_dict(data) == result
    assert data["features"][0]["ci_low"] is None  # one repeat: no interval
    assert list(result.to_frame().columns) == ["name", "columns", "mean", "std", "ci_low", "ci_high"]


# -- mutual information ---------------------------------------------------------------------------------------
def test_mutual_information_ranks_an_informative_category_above_noise_of_both_kinds() -> None:
    rng = np.random.default_rng(13)
    n = 2000
    plan = rng.choice(["basic", "pro", "team"], n)
    y = (rng.random(n) < np.select([plan == "basic", plan == "pro"], [0.1, 0.5], 0.9)).astype(int)
    X = pd.DataFrame(
        {
            "plan": pd.Series(plan, dtype="str"),
            "noise": rng.standard_normal(n),
            "noise_code": pd.Categorical(rng.choice(list("abcdef"), n)),
            "flag": rng.random(n) < 0.5,
            "signup": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 10**6, n), unit="s"),
        }
    )
    X.loc[rng.choice(n, 100, replace=False), "plan"] = None
    X.loc[rng.choice(n, 100, replace=False), "noise"] = np.nan

    mi = mutual_information(X, y, task="classification", seed=0)

    assert list(mi.index) == list(X.columns)
    assert np.isfinite(mi).all()
    assert mi["plan"] > 5 * max(mi["noise"], mi["noise_code"], mi["flag"], mi["signup"])


def test_mutual_information_for_regression_finds_the_informative_numbers() -> None:
    X, y = regression_data(2000, seed=14)

    mi = mutual_information(X, y, task="regression", seed=0, max_rows=1000)

    assert list(mi.sort_values(ascending=False).index[:3]) == ["strong", "medium", "weak"]
    assert mi["noise"] < 0.5 * mi["weak"]


# -- impurity importance --------------------------------------------------------------------------------------
def test_impurity_importance_comes_from_the_last_step_of_a_pipeline_or_is_absent() -> None:
    X, y = classification_data(500, seed=15)
    forest = make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=10, random_state=0)).fit(X, y)
    linear = LogisticRegression().fit(X, y)

    importance = impurity_importance(forest, list(X.columns))

    assert importance is not None and list(importance.index) == list(X.columns)
    assert importance.sum() == pytest.approx(1.0)
    assert impurity_importance(linear, list(X.columns)) is None
    assert impurity_importance(RandomForestClassifier(), list(X.columns)) is None  # not fitted
    with pytest.raises(ValidationError, match="4 feature importances but 3 feature names"):
        impurity_importance(forest, ["x1", "x2", "x3"])
    assert "Strobl" in (impurity_importance.__doc__ or "")


# -- SHAP -----------------------------------------------------------------------------------------------------
def test_shap_of_a_tree_model_ranks_the_strongest_feature_first_and_explains_single_predictions(
    shap_module: Any,
) -> None:
    X_train, y_train, X, _ = split(*regression_data(1500, seed=16), train=1000)
    model = HistGradientBoostingRegressor(max_iter=40, random_state=0).fit(X_train, y_train)

    result = shap_importance(model, X, rows=[0, 7], max_rows=200)

    assert result.explainer == "tree"
    assert result.ranking[:3] == ["strong", "medium", "weak"]
    assert result.ranking[-1] == "noise"
    for explanation, row in zip(result.explanations, [0, 7], strict=True):
        assert explanation.row == row
        assert explanation.output == pytest.approx(float(model.predict(X.iloc[[row]])[0]), abs=1e-6)
        assert explanation.data["strong"] == X.loc[row, "strong"]
    assert ShapResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result


def test_shap_of_any_prediction_function_handles_strings_and_adds_up_to_the_prediction(shap_module: Any) -> None:
    rng = np.random.default_rng(17)
    n = 300
    X = pd.DataFrame(
        {
            "amount": rng.standard_normal(n),
            "city": pd.Series(rng.choice(["Oslo", "Lima", "Pune"], n), dtype="str"),
            "noise": rng.standard_normal(n),
        }
    )

    def predict(frame: pd.DataFrame) -> np.ndarray:
        assert str(frame["city"].dtype) == str(X["city"].dtype)
        return 2.0 * frame["amount"].to_numpy() + 1.5 * (frame["city"] == "Oslo").to_numpy()

    result = shap_importance(predict, X, rows=[5], max_rows=40, background_rows=30, seed=1)
    again = shap_importance(predict, X, rows=[5], max_rows=40, background_rows=30, seed=1)

    assert result.explainer == "permutation"
    assert result.ranking == ["amount", "city", "noise"]
    assert result.importance["noise"] == pytest.approx(0.0, abs=1e-9)
    [explanation] = result.explanations
    assert explanation.output == pytest.approx(float(predict(X.iloc[[5]])[0]), abs=1e-9)
    assert result == again


def test_shap_without_the_package_is_a_clear_error_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "shap", None)  # import shap now raises ImportError
    X, _ = regression_data(50, seed=18)

    with pytest.raises(ValidationError, match=r"pip install 'keel\[shap\]'") as info:
        shap_importance(lambda df: df["strong"].to_numpy(), X)

    assert isinstance(info.value, ShapNotInstalledError) and isinstance(info.value, MissingExtraError)


# -- correlated groups ----------------------------------------------------------------------------------------
def test_correlated_groups_gather_every_kind_of_strong_association_and_nothing_else() -> None:
    rng = np.random.default_rng(19)
    n = 3000
    income = rng.lognormal(10, 1, n)
    city = rng.choice([f"city{i}" for i in range(30)], n)
    X = pd.DataFrame(
        {
            "income": income,
            "log_income": np.log(income),  # monotone: Spearman 1
            "age": rng.integers(18, 90, n),
            "city": pd.Series(city, dtype="str"),
            "region": pd.Series([c[:5] + str(int(c[4:]) // 3) for c in city], dtype="str"),  # a function of city
            "customer_id": pd.Series([f"c{i}" for i in rng.permutation(n)], dtype="str"),
            "plan": pd.Categorical(rng.choice(["basic", "pro"], n)),
        }
    )
    X.loc[rng.choice(n, 30, replace=False), "income"] = np.nan

    groups = correlated_groups(X, threshold=0.9)
    associations = feature_associations(X)

    assert groups == [["income", "log_income"], ["city", "region"]]
    assert associations.loc["customer_id"].drop("customer_id").max() < 0.1  # chance corrected
    assert np.allclose(associations.to_numpy(), associations.to_numpy().T)
    assert correlated_groups(X[["age", "plan"]]) == []


# -- bad input ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"X": pd.DataFrame()}, "X is empty"),
        ({"X": np.zeros((3, 2))}, "must be a pandas DataFrame"),
        ({"y": np.zeros(5)}, "y has 5 values but X has 20 rows"),
        ({"n_repeats": 0}, "n_repeats must be an integer of at least 1"),
        ({"groups": {"pair": ["a", "missing"]}}, r"group 'pair' names column\(s\) \['missing'\]"),
        ({"groups": {"a": ["a", "b"]}, "features": ["a"]}, "denote both a feature and a group"),
        ({"confidence": 1.5}, r"confidence must be in \(0, 1\)"),
        ({"predict": lambda df: np.zeros(3)}, "predict returned 3 predictions for 20 rows"),
        ({"score": lambda t, p: float("nan")}, "needs a finite score"),
    ],
)
def test_bad_input_is_a_validation_error_naming_the_problem(change: dict[str, Any], message: str) -> None:
    X = pd.DataFrame({"a": np.arange(20.0), "b": np.arange(20.0) % 3})
    arguments: dict[str, Any] = {
        "predict": lambda df: df["a"].to_numpy(),
        "X": X,
        "y": np.arange(20.0),
        "score": r2_score,
    }
    arguments.update(change)
    predict, X_, y = arguments.pop("predict"), arguments.pop("X"), arguments.pop("y")

    with pytest.raises(ValidationError, match=message):
        permutation_importance(predict, X_, y, **arguments)


def test_other_entry_points_refuse_bad_input_clearly() -> None:
    X = pd.DataFrame({"a": np.arange(20.0), "b": np.arange(20.0) % 3})

    with pytest.raises(ValidationError, match="task must be 'classification' or 'regression'"):
        mutual_information(X, np.arange(20), task="ranking")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="a regression target must be numeric"):
        mutual_information(X, np.array(["x"] * 20), task="regression")
    with pytest.raises(ValidationError, match=r"threshold must be in \(0, 1\]"):
        correlated_groups(X, threshold=0)
    with pytest.raises(ValidationError, match="X is empty"):
        correlated_groups(X.iloc[:0])
