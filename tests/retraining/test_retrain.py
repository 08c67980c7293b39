"""A :class:`Retrainer` built from its collaborators alone — a registry over an in-memory catalog and a
``memory://`` artifact store, a training function, a spec lookup — retrains, compares on the challenger's
holdout, promotes only a winner and records every step."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from _training_fixtures import Services, activity_frame, in_memory_services, labels_frame
from keel.errors import NotFoundError, ValidationError
from keel.retraining import Retrainer
from keel.training import TimeSplit, TrainingRun, TrainingSpec

FEATURES = ["activity:spend", "activity:orders", "activity:plan"]


def _spec(labels: pd.DataFrame) -> TrainingSpec:
    return TrainingSpec(
        "churn",
        labels=labels,
        label="churned",
        features=FEATURES,
        model=LogisticRegression(max_iter=500),
        split=TimeSplit(validation_fraction=0.3),
        seed=1,
    )


@pytest.fixture
def services() -> tuple[Services, pd.DataFrame]:
    """The champion (v1) was trained on labels that were noise; the labels as they are now carry the signal."""
    activity = activity_frame(600)
    services = in_memory_services(activity)
    labels = labels_frame(activity)[["customer_id", "ts", "churned"]]
    noise = labels.assign(churned=np.random.default_rng(4).permutation(labels["churned"].to_numpy()))
    champion = services.registry.register(services.train(_spec(noise)))
    services.registry.promote("churn", champion.version)
    return services, labels


def _retrainer(services: Services, specs: dict[str, TrainingSpec], train: Any = None) -> Retrainer:
    return Retrainer(services.registry, train or services.train, specs.__getitem__, services.catalog)


def _kinds(services: Services) -> list[str]:
    return [e.kind for e in services.catalog.monitoring_events("churn")]


def test_a_better_challenger_is_registered_compared_and_promoted(services: tuple[Services, pd.DataFrame]) -> None:
    svc, labels = services
    steps: list[str] = []
    decision = _retrainer(svc, {"churn": _spec(labels)}).retrain(
        "churn@champion", margin=0.01, report_id="r-1", on_step=steps.append
    )
    assert decision.promoted and decision.champion == 1 and decision.challenger == 2
    assert decision.metric == "roc_auc" and decision.alias == "champion"
    assert decision.challenger_score is not None and decision.champion_score is not None
    assert decision.challenger_score > decision.champion_score * 1.01
    assert decision.holdout_rows == svc.registry.run_of("churn:2").lineage["rows"]["validation"]
    assert svc.registry.get("churn@champion").version == 2 and svc.registry.get("churn@challenger").version == 2
    assert svc.registry.get("churn:2").tags["challenges"] == "1"
    assert "building the training set" in steps
    assert _kinds(svc) == ["retrain_started", "compared", "promoted"]
    assert {e.report_id for e in svc.catalog.monitoring_events("churn")} == {"r-1"}


def test_a_challenger_that_does_not_win_by_the_margin_leaves_the_champion(
    services: tuple[Services, pd.DataFrame],
) -> None:
    svc, labels = services
    # The labels are still the noise the champion learned: the same spec trained again does no better.
    same = _spec(labels.assign(churned=np.random.default_rng(4).permutation(labels["churned"].to_numpy())))
    decision = _retrainer(svc, {"churn": same}).retrain("churn@champion", margin=0.5)
    assert not decision.promoted and "does not win by the margin" in decision.reason
    assert svc.registry.get("churn@champion").version == 1 and svc.registry.get("churn@challenger").version == 2
    assert _kinds(svc) == ["retrain_started", "compared", "kept"]


def test_an_alias_moved_during_the_retraining_is_not_overwritten(services: tuple[Services, pd.DataFrame]) -> None:
    svc, labels = services

    def train_while_someone_promotes(spec: TrainingSpec, *, on_step: Any = None) -> TrainingRun:
        theirs = svc.registry.register(svc.train(spec))  # another engineer promotes their own version meanwhile
        svc.registry.promote("churn", theirs.version)
        return svc.train(spec, on_step=on_step)

    decision = _retrainer(svc, {"churn": _spec(labels)}, train_while_someone_promotes).retrain("churn@champion")
    assert not decision.promoted and decision.reason.startswith("not promoted: alias 'champion'")
    assert svc.registry.get("churn@champion").version == 2  # theirs stands
    assert _kinds(svc)[-1] == "kept"


def test_a_failed_retraining_is_recorded_then_raised(services: tuple[Services, pd.DataFrame]) -> None:
    svc, _labels = services
    with pytest.raises(KeyError):
        _retrainer(svc, {}).retrain("churn@champion", report_id="r-2")
    assert _kinds(svc) == ["retrain_started", "retrain_failed"]
    assert "retraining failed: KeyError" in svc.catalog.monitoring_events("churn")[-1].message


def test_data_that_fails_its_expectations_is_not_trained_on_and_the_refusal_is_audited(
    services: tuple[Services, pd.DataFrame],
) -> None:
    svc, labels = services
    trained: list[str] = []

    def train(spec: TrainingSpec, **kw: Any) -> TrainingRun:
        trained.append(spec.name)
        return svc.train(spec, **kw)

    def check(spec: TrainingSpec) -> list[str]:
        return ["activity v2: orders >= 0 (12 rows)"] if "activity:orders" in spec.features else []

    retrainer = Retrainer(svc.registry, train, {"churn": _spec(labels)}.__getitem__, svc.catalog, data_check=check)

    with pytest.raises(ValidationError, match=r"refused: the data fails its expectations: activity v2: orders >= 0"):
        retrainer.retrain("churn@champion", report_id="r-3")

    assert trained == []
    assert _kinds(svc) == ["retrain_started", "retrain_refused"]
    refused = svc.catalog.monitoring_events("churn")[-1]
    assert "orders >= 0 (12 rows)" in refused.message
    assert svc.registry.get("churn@champion").version == 1


def test_labels_window_trains_on_the_recent_labels_only(services: tuple[Services, pd.DataFrame]) -> None:
    svc, labels = services
    decision = _retrainer(svc, {"churn": _spec(labels)}).retrain("churn@champion", labels_window=timedelta(days=30))
    rows = svc.registry.run_of(f"churn:{decision.challenger}").lineage["rows"]
    recent = labels["ts"] >= labels["ts"].max() - pd.Timedelta(days=30)
    assert rows["train"] + rows["validation"] == int(recent.sum()) < len(labels)
    started = svc.catalog.monitoring_events("churn", kinds=("retrain_started",))[0]
    assert started.details["labels_window"] == "30 days, 0:00:00"


def test_bad_arguments_are_refused_before_anything_is_recorded(services: tuple[Services, pd.DataFrame]) -> None:
    svc, labels = services
    retrainer = _retrainer(svc, {"churn": _spec(labels)})
    with pytest.raises(ValidationError, match="margin must be at least 0") as caught:
        retrainer.retrain("churn@champion", margin=-0.1)
    assert caught.value.field == "margin"
    with pytest.raises(NotFoundError):
        retrainer.retrain("nope@champion")
    assert _kinds(svc) == []


def test_a_winner_worse_on_a_declared_segment_is_not_promoted_and_the_audit_says_where() -> None:
    """The champion knows only the plan (no ranking within a plan). The challenger reads every feature, so it wins
    overall, but it learned from labels flipped for "team" customers (the training part only): within "team" on the
    holdout it ranks backwards, far worse than the champion."""
    activity = activity_frame(4000)
    svc = in_memory_services(activity)
    labels = labels_frame(activity)[["customer_id", "ts", "churned"]]
    weak = TrainingSpec(
        "churn",
        labels=labels,
        label="churned",
        features=["activity:plan"],
        model=LogisticRegression(max_iter=500),
        split=TimeSplit(validation_fraction=0.3),
        seed=1,
    )
    champion = svc.registry.register(svc.train(weak))
    svc.registry.promote("churn", champion.version)
    cutoff = labels["ts"].sort_values().iloc[int(len(labels) * 0.7)]
    plans = svc.features.set_index("customer_id")["plan"]
    few = (labels["customer_id"].map(plans) == "team").to_numpy()
    flipped = labels.assign(
        churned=np.where(few & (labels["ts"] < cutoff).to_numpy(), 1 - labels["churned"], labels["churned"])
    )
    trees = _spec(flipped)
    trees.model = HistGradientBoostingClassifier(max_iter=80, random_state=0)

    gated = _retrainer(svc, {"churn": trees}).retrain("churn@champion", segments=["plan", "spend:2"])

    assert gated.challenger_score is not None and gated.champion_score is not None
    assert gated.challenger_score > gated.champion_score  # better overall
    assert not gated.promoted
    assert 'plan == "team"' in gated.reason and "significantly worse" in gated.reason
    assert '"basic"' not in gated.reason and '"pro"' not in gated.reason
    assert svc.registry.get("churn@champion").version == champion.version
    kept = svc.catalog.monitoring_events("churn")[-1]
    assert kept.kind == "kept" and 'plan == "team"' in kept.message
    ungated = _retrainer(svc, {"churn": trees}).retrain("churn@champion")
    assert ungated.promoted  # without the gate, the overall winner moves in
