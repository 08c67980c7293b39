"""Champion against challenger by segment: a challenger better overall but worse on one planted segment is flagged
there and nowhere else, with a reason for the audit record; the paired bootstrap spreads like resampling rows of
both models together; equal models raise few false alarms (measured over repeated seeds and reported)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn import metrics as skm

from keel.analysis._compare import compare_models
from keel.analysis._segments import segment_metrics, segments_of
from keel.errors import ValidationError


def population(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "region": rng.choice(list("abcde"), n),
            "plan": rng.choice(["basic", "pro"], n),
            "age": rng.integers(18, 80, n),
        }
    )
    return frame, (rng.random(n) < 0.4).astype(np.int64)


def wrong_on(y: np.ndarray, share: float | np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Predictions wrong on about ``share`` of the rows (per row when an array)."""
    return np.where(rng.random(y.size) < share, 1 - y, y)


def test_a_challenger_better_overall_but_worse_on_one_segment_is_flagged_there_only() -> None:
    frame, y = population(20_000, seed=0)
    rng = np.random.default_rng(1)
    region_c = frame["region"].eq("c").to_numpy()
    champion = wrong_on(y, 0.15, rng)
    challenger = wrong_on(y, np.where(region_c, 0.35, 0.08), rng)
    segments = segments_of(frame, ["region", "plan", "age:3"])
    result = compare_models(y, champion, challenger, task="classification", segments=segments)
    assert result.overall.difference > 0 and not result.overall.worse  # better overall
    assert result.overall.champion == pytest.approx(skm.accuracy_score(y, champion))
    assert result.overall.challenger == pytest.approx(skm.accuracy_score(y, challenger))
    assert [s.name for s in result.worse_segments()] == ['region == "c"']
    (worse,) = result.worse_segments()
    assert worse.high < 0 and worse.p_adjusted <= 0.05 and worse.reliable
    assert worse.difference == pytest.approx(
        skm.accuracy_score(y[region_c], challenger[region_c]) - skm.accuracy_score(y[region_c], champion[region_c])
    )
    assert not result.passes
    (reason,) = result.gate_reasons()
    assert reason.startswith('challenger is significantly worse than the champion on region == "c"')
    assert "Holm-adjusted p = " in reason and f"{worse.rows:,} rows" in reason
    text = json.dumps(result.to_dict(), allow_nan=False)
    assert '"passes": false' in text and "significantly worse" in text


def test_identical_models_are_never_worse() -> None:
    frame, y = population(3000, seed=2)
    pred = wrong_on(y, 0.2, np.random.default_rng(3))
    result = compare_models(y, pred, pred, task="classification", segments=segments_of(frame, ["region"]))
    assert result.passes and not result.overall.worse
    for entry in (result.overall, *result.segments):
        assert entry.difference == 0 and entry.low == 0 and entry.high == 0 and entry.p_value == 1.0


def test_the_paired_bootstrap_spreads_like_resampling_rows_of_both_models_together() -> None:
    rng = np.random.default_rng(4)
    n = 2000
    y = (rng.random(n) < 0.3).astype(np.int64)
    shared = rng.normal(size=n)  # both models see the same hard rows: their errors are correlated
    score_a = 1 / (1 + np.exp(-(1.5 * y + shared + rng.normal(0, 0.6, n) - 1)))
    score_b = 1 / (1 + np.exp(-(1.7 * y + shared + rng.normal(0, 0.6, n) - 1)))
    pred_a, pred_b = (score_a >= 0.5).astype(int), (score_b >= 0.5).astype(int)
    found = {
        metric: compare_models(
            y, pred_a, pred_b, proba_a=score_a, proba_b=score_b, task="classification", segments=[],
            metric=metric, n_boot=4000, seed=5,
        ).overall
        for metric in ("accuracy", "roc_auc", "log_loss")
    }  # fmt: skip
    correct = (pred_b == y).astype(float) - (pred_a == y)  # accuracy and log loss are means of per-row values
    loss = np.log(np.where(y == 1, score_a, 1 - score_a)) - np.log(np.where(y == 1, score_b, 1 - score_b))
    rows: dict[str, list[float]] = {"accuracy": [], "roc_auc": [], "log_loss": []}
    for _ in range(1000):
        i = rng.integers(0, n, n)
        rows["accuracy"].append(correct[i].mean())
        rows["roc_auc"].append(skm.roc_auc_score(y[i], score_b[i]) - skm.roc_auc_score(y[i], score_a[i]))
        rows["log_loss"].append(loss[i].mean())
    for metric, values in rows.items():
        low, high = np.percentile(values, [2.5, 97.5])
        assert found[metric].high - found[metric].low == pytest.approx(high - low, rel=0.12), metric
    assert found["roc_auc"].difference == pytest.approx(skm.roc_auc_score(y, score_b) - skm.roc_auc_score(y, score_a))
    # pairing matters: the unpaired spread (independent resamples of each model) is much wider
    alone = segment_metrics(y, pred_a, task="classification", segments=[], metrics=["accuracy"], n_boot=2000)
    unpaired = np.sqrt(2) * (alone.overall.metrics["accuracy"].high - alone.overall.metrics["accuracy"].low)
    assert found["accuracy"].high - found["accuracy"].low < 0.8 * unpaired


def test_a_worse_ranking_on_a_segment_is_flagged_by_roc_auc() -> None:
    frame, y = population(8000, seed=6)
    rng = np.random.default_rng(7)
    region_b = frame["region"].eq("b").to_numpy()
    score_a = 1 / (1 + np.exp(-(2 * (y - 0.5) + rng.normal(0, 1.0, y.size))))
    score_b = 1 / (1 + np.exp(-(2.4 * (y - 0.5) + rng.normal(0, np.where(region_b, 4.0, 0.9)))))
    result = compare_models(
        y,
        (score_a >= 0.5).astype(int),
        (score_b >= 0.5).astype(int),
        proba_a=score_a,
        proba_b=score_b,
        task="classification",
        segments=segments_of(frame, ["region"]),
        metric="roc_auc",
    )
    assert [s.name for s in result.worse_segments()] == ['region == "b"']
    entry = result.worse_segments()[0]
    assert entry.champion == pytest.approx(skm.roc_auc_score(y[region_b], score_a[region_b]))
    assert entry.challenger == pytest.approx(skm.roc_auc_score(y[region_b], score_b[region_b]))
    assert result.within_bin_pair_share is not None and 0 < result.within_bin_pair_share < 0.25


@pytest.mark.parametrize("metric", ["mae", "rmse", "r2"])
def test_a_regressor_worse_on_one_segment_is_flagged(metric: str) -> None:
    frame, _ = population(6000, seed=8)
    rng = np.random.default_rng(9)
    y = rng.normal(500.0, 30.0, 6000)
    plan_pro = frame["plan"].eq("pro").to_numpy()
    pred_a = y + rng.normal(0, 10, y.size)
    pred_b = y + rng.normal(0, np.where(plan_pro, 16, 7), y.size)
    result = compare_models(y, pred_a, pred_b, task="regression", segments=segments_of(frame, ["plan"]), metric=metric)
    assert [s.name for s in result.worse_segments()] == ['plan == "pro"']
    scorer = {"mae": skm.mean_absolute_error, "rmse": skm.root_mean_squared_error, "r2": skm.r2_score}[metric]
    entry = result.segments[1]
    assert entry.champion == pytest.approx(scorer(y[plan_pro], pred_a[plan_pro]), rel=1e-9)
    assert entry.challenger == pytest.approx(scorer(y[plan_pro], pred_b[plan_pro]), rel=1e-9)


def test_p_values_are_corrected_across_segments_with_holm_or_benjamini_hochberg() -> None:
    frame, y = population(6000, seed=10)
    rng = np.random.default_rng(11)
    champion = wrong_on(y, 0.2, rng)
    challenger = wrong_on(y, np.where(frame["region"].isin(["a", "b"]).to_numpy(), 0.24, 0.2), rng)
    segments = segments_of(frame, ["region"])
    holm = compare_models(y, champion, challenger, task="classification", segments=segments)
    raw = np.array([s.p_value for s in holm.segments])
    order = np.argsort(raw)
    expected = np.empty_like(raw)
    expected[order] = np.minimum(1, np.maximum.accumulate((len(raw) - np.arange(len(raw))) * raw[order]))
    assert [s.p_adjusted for s in holm.segments] == pytest.approx(expected.tolist())
    bh = compare_models(y, champion, challenger, task="classification", segments=segments, correction="bh")
    assert [s.p_adjusted for s in bh.segments] == pytest.approx(stats.false_discovery_control(raw).tolist())
    assert "Benjamini–Hochberg-adjusted" in bh.segments[0].reason


def test_equal_models_raise_few_false_alarms() -> None:
    seeds = range(40)
    alarms = 0
    for seed in seeds:
        frame, y = population(4000, seed=100 + seed)
        rng = np.random.default_rng(seed)
        result = compare_models(
            y,
            wrong_on(y, 0.2, rng),
            wrong_on(y, 0.2, rng),
            task="classification",
            segments=segments_of(frame, ["region", "plan"]),
            n_boot=500,
            seed=seed,
        )
        alarms += not result.passes
    rate = alarms / len(seeds)
    print(f"champion/challenger false alarms with equal models over {len(seeds)} seeds: {rate:.1%} (7 segments)")
    assert rate <= 0.1


def test_a_segment_too_small_to_judge_never_blocks() -> None:
    frame, y = population(3000, seed=12)
    rng = np.random.default_rng(13)
    tiny = (frame["age"].eq(30) & frame["plan"].eq("pro")).to_numpy()
    champion = y.copy()
    challenger = np.where(tiny, 1 - y, y)  # wrong on every row of a segment of about 25 rows
    result = compare_models(
        y, champion, challenger, task="classification", segments=segments_of(frame, ["age == 30 and plan == 'pro'"])
    )
    (entry,) = result.segments
    assert 0 < entry.rows < 50 and entry.challenger == 0.0 and entry.champion == 1.0
    assert not entry.reliable and not entry.worse and result.passes
    assert "too small to judge" in entry.reason and "min_rows=50" in entry.reason
    del rng


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_boot": 50}, "n_boot=50 is too small to find any of 5 segments worse"),
        ({"metric": "roc_auc"}, "proba_a is missing"),
        ({"metric": "roc_auc", "proba_a": np.full(300, 0.5)}, "proba_b is missing"),
        ({"correction": "bonferroni"}, "correction must be 'holm' or 'bh'"),
        ({"pred_b": np.zeros(10)}, "pred_b has 10 rows but y_true has 300"),
        ({"metric": "mae"}, "unknown classification metric 'mae'"),
        ({"alpha": 0.0}, "alpha must be"),
        ({"task": "regression", "proba_a": np.full(300, 0.5)}, "a regression has no probabilities"),
    ],
)
def test_bad_inputs_get_clear_errors(kwargs: dict[str, object], message: str) -> None:
    frame, y = population(300, seed=14)
    arguments: dict[str, object] = {
        "pred_a": y,
        "pred_b": 1 - y,
        "task": "classification",
        "segments": segments_of(frame, ["region"]),
    }
    arguments.update(kwargs)
    pred_a, pred_b = arguments.pop("pred_a"), arguments.pop("pred_b")
    with pytest.raises(ValidationError) as caught:
        compare_models(y, pred_a, pred_b, **arguments)  # type: ignore[arg-type]
    assert message in str(caught.value), str(caught.value)
