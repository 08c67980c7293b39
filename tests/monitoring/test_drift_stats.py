"""Drift statistics on data of known truth, checked against scipy on raw data and against hand computation."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from keel.errors import ValidationError
from keel.monitoring import DriftConfig, DriftResult, build_profile, detect_drift
from keel.monitoring._drift import ks_p_value, ks_statistic


def _numeric_frame(n: int, seed: int, shift: float = 0.0, columns: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({f"x{i}": rng.normal(shift, 1.0, n) for i in range(columns)})


def _categorical(n: int, seed: int, shares: list[float]) -> pd.Series:
    rng = np.random.default_rng(seed)
    return pd.Series(rng.choice(["a", "b", "c", "d"], n, p=shares))


UNIFORM = [0.25, 0.25, 0.25, 0.25]
CHANGED = [0.45, 0.25, 0.15, 0.15]  # Jensen-Shannon distance about 0.16 from UNIFORM


@pytest.mark.parametrize("n_current", [300, 50_000])
def test_same_distribution_does_not_drift(n_current: int) -> None:
    reference = _numeric_frame(100_000, seed=1).assign(plan=_categorical(100_000, 2, UNIFORM))
    current = _numeric_frame(n_current, seed=3).assign(plan=_categorical(n_current, 4, UNIFORM))
    result = detect_drift(build_profile(reference), current)
    assert result.drifted_features == []
    assert not result.dataset_drifted
    small = n_current < DriftConfig().small_sample
    assert {f.method for f in result.features} == ({"ks", "chi2"} if small else {"wasserstein", "jensenshannon"})


def test_numeric_mean_shift_is_detected_on_large_samples() -> None:
    profile = build_profile(_numeric_frame(100_000, seed=1))
    current = _numeric_frame(50_000, seed=3)
    current["x1"] += 0.3  # 0.3 standard deviations
    result = detect_drift(profile, current)
    assert result.drifted_features == ["x1"]
    x1 = next(f for f in result.features if f.name == "x1")
    assert x1.method == "wasserstein" and x1.p_value is None
    assert x1.statistic == pytest.approx(0.3, abs=0.02)
    assert result.share == pytest.approx(1 / 3) and not result.dataset_drifted


def test_numeric_mean_shift_is_detected_on_small_samples() -> None:
    profile = build_profile(_numeric_frame(100_000, seed=1))
    current = _numeric_frame(400, seed=3)
    current["x0"] += 0.5
    result = detect_drift(profile, current)
    assert result.drifted_features == ["x0"]
    x0 = result.features[0]
    assert x0.method == "ks" and x0.p_value is not None and x0.p_value < 0.05


@pytest.mark.parametrize("n_current", [600, 50_000])
def test_categorical_frequency_change_is_detected(n_current: int) -> None:
    profile = build_profile(pd.DataFrame({"plan": _categorical(100_000, 1, UNIFORM)}))
    result = detect_drift(profile, pd.DataFrame({"plan": _categorical(n_current, 2, CHANGED)}))
    assert result.drifted_features == ["plan"]
    assert result.dataset_drifted
    feature = result.features[0]
    assert set(feature.bins) == {"a", "b", "c", "d"}
    assert sum(feature.reference) == pytest.approx(1) and sum(feature.current) == pytest.approx(1)


def test_benjamini_hochberg_removes_false_positives_across_null_features() -> None:
    raw_hits, adjusted_hits = 0, 0
    for seed in range(10):
        profile = build_profile(_numeric_frame(20_000, seed=100 + seed, columns=30))
        current = _numeric_frame(200, seed=200 + seed, columns=30)
        result = detect_drift(profile, current)
        for f in result.features:
            raw = ks_p_value(f.statistic, 20_000, f.current_rows)
            raw_hits += raw < 0.05
            adjusted_hits += f.drifted
            assert f.p_value is not None and f.p_value >= raw
    assert raw_hits >= 5  # about 5% of 300 null tests reject without correction
    assert adjusted_hits <= 1


def test_benjamini_hochberg_keeps_a_real_shift_among_null_features() -> None:
    profile = build_profile(_numeric_frame(20_000, seed=5, columns=30))
    current = _numeric_frame(500, seed=6, columns=30)
    current["x7"] += 0.6
    assert detect_drift(profile, current).drifted_features == ["x7"]


@pytest.mark.parametrize("shift", [0.0, 0.08, 0.15, 0.3])
def test_ks_from_stored_quantiles_agrees_with_scipy_on_raw_data(shift: float) -> None:
    rng = np.random.default_rng(42)
    reference = rng.lognormal(0, 0.7, 200_000)
    current = rng.lognormal(shift, 0.7, 500)
    profile = build_profile(pd.DataFrame({"x": reference}))
    result = detect_drift(profile, pd.DataFrame({"x": current}))
    exact = stats.ks_2samp(reference, current)
    feature = result.features[0]
    assert feature.statistic == pytest.approx(exact.statistic, abs=0.0015)
    assert feature.p_value == pytest.approx(exact.pvalue, abs=0.02, rel=0.15)
    assert feature.drifted == (exact.pvalue < 0.05)


def test_ks_handles_ties_in_discrete_data() -> None:
    rng = np.random.default_rng(0)
    reference = rng.integers(0, 5, 100_000).astype(float)
    current = rng.integers(0, 6, 400).astype(float)
    profile = build_profile(pd.DataFrame({"x": reference}))
    statistic = ks_statistic(profile.columns["x"].quantiles, np.sort(current))
    assert statistic == pytest.approx(stats.ks_2samp(reference, current).statistic, abs=0.0015)


def test_chi2_with_a_new_category_matches_the_contingency_table() -> None:
    reference = pd.Series(["a"] * 500 + ["b"] * 300 + ["c"] * 200)
    current = pd.Series(["a"] * 40 + ["b"] * 30 + ["c"] * 20 + ["new"] * 10)
    result = detect_drift(build_profile(pd.DataFrame({"plan": reference})), pd.DataFrame({"plan": current}))
    feature = result.features[0]
    expected = stats.chi2_contingency(np.array([[500, 300, 200, 0], [40, 30, 20, 10]]))
    assert feature.method == "chi2"
    assert feature.statistic == pytest.approx(expected.statistic)
    assert feature.p_value == pytest.approx(expected.pvalue)
    assert feature.drifted
    assert "new" in feature.bins


def test_psi_by_hand_on_a_tiny_example() -> None:
    profile = build_profile(pd.DataFrame({"x": np.arange(1000.0)}))  # median 499.5
    current = pd.DataFrame({"x": np.r_[np.full(700, 100.0), np.full(300, 900.0)]})
    config = DriftConfig(numeric_method="psi", psi_bins=2, small_sample=0)
    feature = detect_drift(profile, current, config=config).features[0]
    by_hand = (0.7 - 0.5) * np.log(0.7 / 0.5) + (0.3 - 0.5) * np.log(0.3 / 0.5)
    assert feature.method == "psi"
    assert feature.statistic == pytest.approx(by_hand, rel=1e-12)
    assert not feature.drifted  # 0.169 < 0.2


def test_wasserstein_by_hand_on_a_tiny_example() -> None:
    profile = build_profile(pd.DataFrame({"x": np.arange(1000.0)}))
    current = pd.DataFrame({"x": np.arange(1000.0) + 100})  # every quantile moves by 100
    feature = detect_drift(profile, current).features[0]
    assert feature.method == "wasserstein"
    assert feature.statistic == pytest.approx(100 / np.arange(1000.0).std(), rel=1e-12)
    assert feature.drifted


def test_wasserstein_from_stored_quantiles_agrees_with_scipy_on_raw_data() -> None:
    rng = np.random.default_rng(7)
    reference = np.r_[rng.normal(-2, 1, 100_000), rng.normal(3, 0.5, 100_000)]
    current = np.r_[rng.normal(-1.8, 1, 30_000), rng.normal(3, 0.6, 20_000)]
    feature = detect_drift(build_profile(pd.DataFrame({"x": reference})), pd.DataFrame({"x": current})).features[0]
    exact = stats.wasserstein_distance(reference, current) / reference.std()
    assert feature.statistic == pytest.approx(exact, abs=0.005)


def test_constant_reference_column_is_handled() -> None:
    profile = build_profile(pd.DataFrame({"x": np.full(5000, 3.0), "z": np.zeros(5000)}))
    same = detect_drift(profile, pd.DataFrame({"x": np.full(2000, 3.0), "z": np.zeros(2000)}))
    assert same.drifted_features == []
    moved = detect_drift(profile, pd.DataFrame({"x": np.full(2000, 4.0), "z": np.full(2000, 0.5)}))
    assert moved.drifted_features == ["x", "z"]
    assert all(np.isfinite(f.statistic) for f in moved.features)
    assert moved.features[0].reference == [0.0, 1.0, 0.0] and moved.features[0].current == [0.0, 0.0, 1.0]


def test_prediction_drift_is_tested_apart_from_features() -> None:
    rng = np.random.default_rng(3)
    reference = _numeric_frame(50_000, seed=1)
    profile = build_profile(reference, predictions=rng.beta(2, 5, 50_000))
    result = detect_drift(profile, _numeric_frame(20_000, seed=2), predictions=rng.beta(5, 2, 20_000))
    assert result.prediction is not None and result.prediction.drifted
    assert result.drifted_features == [] and not result.dataset_drifted


def test_missing_columns_and_changed_kinds_are_skipped_not_tested() -> None:
    profile = build_profile(_numeric_frame(10_000, seed=1))
    current = _numeric_frame(5_000, seed=2).drop(columns=["x2"]).assign(x1=lambda d: d["x1"].astype(str) + "kg")
    result = detect_drift(profile, current)
    assert [f.name for f in result.features] == ["x0"]
    assert set(result.skipped) == {"x1", "x2"}
    assert "missing" in result.skipped["x2"]


def test_plot_data_widens_bins_for_values_beyond_the_reference() -> None:
    profile = build_profile(_numeric_frame(10_000, seed=1, columns=1))
    feature = detect_drift(profile, pd.DataFrame({"x0": np.r_[np.zeros(1500), np.full(500, 50.0)]})).features[0]
    assert len(feature.bins) == len(feature.reference) + 1 == len(feature.current) + 1
    assert feature.bins[-1] == 50.0 and feature.reference[-1] == 0.0
    assert feature.current[-1] == pytest.approx(0.25)
    assert sum(feature.current) == pytest.approx(1.0)


def test_result_round_trips_through_json_and_is_deterministic() -> None:
    reference = _numeric_frame(20_000, seed=1).assign(plan=_categorical(20_000, 2, UNIFORM))
    current = _numeric_frame(3000, seed=3, shift=0.2).assign(plan=_categorical(3000, 4, CHANGED))
    profile = build_profile(reference, predictions=np.linspace(0, 1, 20_000))
    first = detect_drift(profile, current, predictions=np.linspace(0.2, 1, 3000))
    second = detect_drift(profile, current, predictions=np.linspace(0.2, 1, 3000))
    text = json.dumps(first.to_dict())
    assert text == json.dumps(second.to_dict())
    assert DriftResult.from_dict(json.loads(text)) == first


def test_bad_inputs_are_validation_errors() -> None:
    profile = build_profile(_numeric_frame(1000, seed=1))
    with pytest.raises(ValidationError, match="no rows"):
        detect_drift(profile, _numeric_frame(1000, seed=1).iloc[:0])
    with pytest.raises(ValidationError, match=r"\['nope'\] are not in the reference profile"):
        detect_drift(profile, _numeric_frame(100, seed=1), columns=["x0", "nope"])
    with pytest.raises(ValidationError, match="no prediction profile"):
        detect_drift(profile, _numeric_frame(100, seed=1), predictions=np.zeros(100))
    with pytest.raises(ValidationError, match="numeric_method"):
        DriftConfig(numeric_method="kl")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="alpha"):
        DriftConfig(alpha=0)
