"""Reference profiles: what is stored, deterministic bytes, clear errors on bad input or bad bytes."""

from __future__ import annotations

import numpy as np
import orjson
import pandas as pd
import pytest

from keel.errors import IntegrityError, ValidationError
from keel.monitoring import ReferenceProfile, build_profile
from keel.profiles._profile import MAX_CATEGORIES, OTHER, QUANTILE_GRID, QUANTILE_POINTS


def _frame(n: int = 5000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(10, 2, n)
    x[::50] = np.nan
    return pd.DataFrame(
        {
            "x": x,
            "count": rng.integers(0, 20, n),
            "plan": pd.Series(rng.choice(["free", "pro", "team"], n)),
            "active": rng.random(n) < 0.3,
            "tier": pd.Categorical(rng.choice(["a", "b"], n)),
        }
    )


def test_kinds_are_inferred_from_dtypes() -> None:
    profile = build_profile(_frame())
    kinds = {name: c.kind for name, c in profile.columns.items()}
    assert kinds == {
        "x": "numeric",
        "count": "numeric",
        "plan": "categorical",
        "active": "categorical",
        "tier": "categorical",
    }
    assert list(profile.columns) == ["x", "count", "plan", "active", "tier"]
    assert profile.rows == 5000


def test_numeric_profile_holds_numpys_quantiles_and_moments() -> None:
    frame = _frame()
    col = build_profile(frame).columns["x"]
    values = frame["x"].dropna().to_numpy()
    assert col.count == values.size and col.missing == 100
    assert col.quantiles.size == QUANTILE_POINTS
    np.testing.assert_array_equal(col.quantiles, np.quantile(values, QUANTILE_GRID))
    assert col.minimum == values.min() and col.maximum == values.max()
    assert col.mean == pytest.approx(values.mean()) and col.std == pytest.approx(values.std())
    assert col.bin_counts.sum() == values.size
    assert col.bin_edges[0] == values.min() and col.bin_edges[-1] == values.max()


def test_infinite_and_null_values_count_as_missing() -> None:
    frame = pd.DataFrame({"x": [1.0, np.inf, -np.inf, None, 2.0], "s": ["a", None, np.nan, "b", "a"]})
    profile = build_profile(frame)
    assert (profile.columns["x"].count, profile.columns["x"].missing) == (2, 3)
    assert profile.columns["s"].frequencies == {"a": 2, "b": 1}
    assert profile.columns["s"].missing == 2
    assert frame["x"].isna().sum() == 1  # the caller's frame is untouched


def test_categories_beyond_the_cap_go_to_other() -> None:
    values = [f"c{i:05d}" for i in range(MAX_CATEGORIES + 50)] + ["c00000"] * 3
    col = build_profile(pd.DataFrame({"c": values})).columns["c"]
    assert len(col.frequencies) == MAX_CATEGORIES + 1
    assert col.frequencies[OTHER] == 50
    assert col.frequencies["c00000"] == 4
    assert sum(col.frequencies.values()) == len(values)


def test_declared_kinds_override_inference() -> None:
    profile = build_profile(_frame(), kinds={"count": "categorical"})
    col = profile.columns["count"]
    assert col.kind == "categorical"
    assert sum(col.frequencies.values()) == 5000
    assert all(isinstance(k, str) for k in col.frequencies)


def test_prediction_profile_numeric_or_declared_categorical() -> None:
    frame = _frame()
    scores = np.linspace(0, 1, len(frame))
    assert build_profile(frame, predictions=scores).prediction.kind == "numeric"  # type: ignore[union-attr]
    classes = build_profile(frame, predictions=np.arange(len(frame)) % 2, prediction_kind="categorical")
    assert classes.prediction is not None and classes.prediction.frequencies == {"0": 2500, "1": 2500}


def test_round_trip_is_bytes_identical_and_deterministic() -> None:
    frame = _frame()
    first = build_profile(frame, predictions=np.linspace(0, 1, len(frame))).to_bytes()
    second = build_profile(frame.copy(), predictions=np.linspace(0, 1, len(frame))).to_bytes()
    assert first == second
    loaded = ReferenceProfile.from_bytes(first)
    assert loaded.to_bytes() == first
    assert loaded == build_profile(frame, predictions=np.linspace(0, 1, len(frame)))
    np.testing.assert_array_equal(loaded.columns["x"].quantiles, build_profile(frame).columns["x"].quantiles)
    assert list(loaded.columns) == list(frame.columns)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(version=99), "version 99"),
        (lambda d: d.pop("columns"), "columns"),
        (lambda d: d["columns"][0].update(quantiles=[1.0, 0.0]), "quantiles"),
        (lambda d: d["columns"][0].update(kind="text"), "text"),
        (lambda d: d["columns"][0].update(count=-1), "-1"),
    ],
)
def test_malformed_bytes_are_an_integrity_error(mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    data = orjson.loads(build_profile(_frame()).to_bytes())
    mutate(data)
    with pytest.raises(IntegrityError, match=message):
        ReferenceProfile.from_bytes(orjson.dumps(data))


def test_garbage_bytes_are_an_integrity_error() -> None:
    with pytest.raises(IntegrityError, match="not valid JSON"):
        ReferenceProfile.from_bytes(b"\x00not json")
    with pytest.raises(IntegrityError, match="JSON object"):
        ReferenceProfile.from_bytes(b"[1, 2]")


def test_bad_inputs_are_validation_errors() -> None:
    with pytest.raises(ValidationError, match="no rows"):
        build_profile(pd.DataFrame({"x": pd.Series([], dtype=float)}))
    with pytest.raises(ValidationError, match="unknown kind 'text'"):
        build_profile(_frame(), kinds={"plan": "text"})
    with pytest.raises(ValidationError, match="'nope', which is not in the reference frame"):
        build_profile(_frame(), kinds={"nope": "numeric"})
    with pytest.raises(ValidationError, match="declared numeric"):
        build_profile(_frame(), kinds={"plan": "numeric"})
    with pytest.raises(ValidationError, match="datetime"):
        build_profile(pd.DataFrame({"t": pd.date_range("2024-01-01", periods=3)}))
    with pytest.raises(ValidationError, match="one-dimensional"):
        build_profile(_frame(), predictions=np.zeros((5000, 2)))
