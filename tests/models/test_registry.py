"""The model registry: numbered immutable versions, references, aliases with history, notes, diff, integrity."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

import keel
from _training_fixtures import activity_frame, build_project, write_activity
from keel.catalog import RunRecord
from keel.errors import ConflictError, IntegrityError, NotFoundError, ValidationError
from keel.models import parse_model_ref
from keel.training import TrainingRun, TrainingSpec


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """One native thread: tiny fits are quicker so, and a busy machine does not stall OpenMP's workers."""
    with threadpool_limits(1):
        yield


@pytest.fixture
def built(project_dir: Path) -> Iterator[tuple[keel.Project, pd.DataFrame]]:
    project, labels = build_project(project_dir)
    yield project, labels[["customer_id", "ts", "churned"]]
    project.close()


@pytest.fixture
def project(built: tuple[keel.Project, pd.DataFrame]) -> keel.Project:
    return built[0]


def churn(labels: pd.DataFrame, **overrides: Any) -> TrainingSpec:
    values: dict[str, Any] = {
        "labels": labels,
        "label": "churned",
        "features": ["activity:spend", "activity:orders"],
        "model": LogisticRegression(),
    }
    values.update(overrides)
    return TrainingSpec("churn", **values)


@pytest.fixture
def run(built: tuple[keel.Project, pd.DataFrame]) -> TrainingRun:
    project, labels = built
    return project.train(churn(labels))


def recorded_run(project: keel.Project, *, spec: str = "churn", status: str = "finished", **fields: Any) -> RunRecord:
    """A run written straight into the catalog, with a stored package (for what training cannot vary)."""
    run_id = uuid.uuid4().hex
    project.catalog.start_run(run_id=run_id, spec=spec, spec_snapshot={}, params=fields.get("params", {}))
    digest = project.artifacts.put_bytes(f"package of {run_id}".encode()) if status == "finished" else None
    return project.catalog.finish_run(
        run_id,
        status=status,
        params=fields.get("params", {}),
        metrics=fields.get("metrics", {}),
        durations={},
        lineage=fields.get("lineage", {}),
        error=None if status == "finished" else "RuntimeError: boom",
        package_digest=digest,
        package_format="skops" if digest else None,
    )


# -- registering ---------------------------------------------------------------------------------------------
def test_versions_are_numbered_one_two_three_per_model_name(project: keel.Project, run: TrainingRun) -> None:
    first = project.models.register(run)
    second = project.models.register(run.record)
    third = project.models.register(run.id)
    other = project.models.register(run, name="churn-eu", description="EU only", tags={"region": "eu"})

    assert [v.version for v in (first, second, third)] == [1, 2, 3]
    assert (other.name, other.version, other.description, other.tags) == ("churn-eu", 1, "EU only", {"region": "eu"})
    assert first.name == "churn" and first.run_id == run.id
    assert first.package_digest == run.record.package_digest and first.package_format == "keel"
    assert first.created_at <= second.created_at <= third.created_at
    assert [(v.name, v.version) for v in project.models.versions()] == [
        ("churn", 1),
        ("churn", 2),
        ("churn", 3),
        ("churn-eu", 1),
    ]
    assert [v.version for v in project.models.versions("churn")] == [1, 2, 3]
    assert project.models.run_of("churn:2") == run.record


def test_only_a_finished_run_with_a_stored_package_is_registered(project: keel.Project, run: TrainingRun) -> None:
    failed = recorded_run(project, status="failed")
    with pytest.raises(ValidationError, match="failed: RuntimeError: boom; only a finished run"):
        project.models.register(failed)
    with pytest.raises(NotFoundError, match="no run 'f00d"):
        project.models.register("f00d" * 8)
    with pytest.raises(ValidationError, match="invalid model name"):
        project.models.register(run, name="churn@eu")

    path = Path(project.artifacts.path(run.record.package_digest or ""))
    path.unlink()
    with pytest.raises(IntegrityError, match="missing"):
        project.models.register(run)
    assert project.models.versions() == []


# -- references ----------------------------------------------------------------------------------------------
def test_load_by_version_alias_latest_and_bare_name(built: tuple[keel.Project, pd.DataFrame]) -> None:
    project, labels = built
    runs = [project.train(churn(labels, model=LogisticRegression(C=c))) for c in (0.1, 1.0, 10.0)]
    for r in runs:
        project.models.register(r)
    project.models.set_alias("churn", "champion", 2)
    frame = project.historical_features(labels.head(10), ["activity:spend", "activity:orders"])

    for ref, index in (("churn:1", 0), ("churn:3", 2), ("churn@champion", 1), ("churn@latest", 2), ("churn", 2)):
        package = project.models.load(ref)
        assert package.metadata["run_id"] == runs[index].id, ref
        np.testing.assert_array_equal(package.predict_proba(frame), runs[index].package.predict_proba(frame))
    assert project.models.get(" churn@champion ").version == 2


@pytest.mark.parametrize("ref", ["", " ", "churn:", "churn@", "@champion", ":3", "churn:1:2", "churn@a@b", "ch urn"])
def test_malformed_references_are_refused(ref: str) -> None:
    with pytest.raises(ValidationError, match="malformed model reference"):
        parse_model_ref(ref)


@pytest.mark.parametrize("ref", ["churn:0", "churn:x", "churn:-1"])
def test_a_version_must_be_a_number_from_one(ref: str) -> None:
    with pytest.raises(ValidationError):
        parse_model_ref(ref)


def test_parsed_references() -> None:
    assert parse_model_ref("churn") == ("churn", None, None)
    assert parse_model_ref("churn@latest") == ("churn", None, None)
    assert parse_model_ref("churn:12") == ("churn", 12, None)
    assert parse_model_ref("churn-eu.v2@challenger") == ("churn-eu.v2", None, "challenger")
    with pytest.raises(ValidationError):
        parse_model_ref(3)  # type: ignore[arg-type]


def test_unknown_models_versions_and_aliases_list_what_exists(project: keel.Project, run: TrainingRun) -> None:
    with pytest.raises(NotFoundError, match="registered models: none"):
        project.models.load("churn")
    project.models.register(run)
    project.models.register(run, name="fraud")
    project.models.set_alias("churn", "champion", 1)

    with pytest.raises(NotFoundError, match="no model named 'churm'; registered models: churn, fraud"):
        project.models.get("churm:1")
    with pytest.raises(NotFoundError, match=r"no version 7; versions: \[1\]"):
        project.models.load("churn:7")
    with pytest.raises(NotFoundError, match="no alias 'staging'; aliases: champion -> v1"):
        project.models.load("churn@staging")
    with pytest.raises(NotFoundError, match="no alias 'staging'; aliases: none"):
        project.models.get("fraud@staging")
    with pytest.raises(NotFoundError, match="no model named 'nope'"):
        project.models.get("nope@champion")


# -- aliases -------------------------------------------------------------------------------------------------
def test_aliases_move_and_keep_their_history(project: keel.Project, run: TrainingRun) -> None:
    for _ in range(3):
        project.models.register(run)

    first = project.models.set_alias("churn", "champion", 1)
    project.models.promote("churn", 2, reason="better auc")
    project.models.set_alias("churn", "challenger", 3)
    same = project.models.promote("churn", 2)  # already there: nothing moves, nothing recorded

    assert (first.from_version, first.to_version) == (None, 1)
    assert (same.from_version, same.to_version) == (2, 2)
    assert project.models.get("churn@champion").version == 2
    assert project.models.get("churn:2").aliases == ("champion",)
    assert project.models.get("churn:3").aliases == ("challenger",)
    assert project.models.get("churn:1").aliases == ()
    history = project.models.history("churn")
    assert [(h.alias, h.from_version, h.to_version, h.reason) for h in history] == [
        ("champion", None, 1, ""),
        ("champion", 1, 2, "better auc"),
        ("challenger", None, 3, ""),
    ]
    assert all(a.at <= b.at for a, b in itertools.pairwise(history))
    assert [h.to_version for h in project.models.history("churn", "champion")] == [1, 2]

    removed = project.catalog.set_alias("churn", "challenger", None, reason="retired")
    assert (removed.from_version, removed.to_version) == (3, None)
    assert project.catalog.aliases("churn") == {"champion": 2}


def test_rollback_restores_the_previous_holder(project: keel.Project, run: TrainingRun) -> None:
    for _ in range(3):
        project.models.register(run)
    for version in (1, 2, 3):
        project.models.promote("churn", version)

    back = project.models.rollback("churn")

    assert (back.from_version, back.to_version, back.reason) == (3, 2, "rollback from v3")
    assert project.models.get("churn@champion").version == 2
    assert project.models.history("churn", "champion")[-1] == back
    # a rollback is a move too: rolling back again returns to the version rolled back from
    assert project.models.rollback("churn", reason="v3 was fine").to_version == 3


def test_rollback_without_an_earlier_holder_or_alias_is_refused(project: keel.Project, run: TrainingRun) -> None:
    project.models.register(run)
    with pytest.raises(NotFoundError, match="no alias 'champion' to roll back; aliases: none"):
        project.models.rollback("churn")
    project.models.promote("churn", 1)
    with pytest.raises(ValidationError, match="no holder before v1"):
        project.models.rollback("churn")
    with pytest.raises(NotFoundError, match="no model named 'ghost'"):
        project.models.rollback("ghost")
    assert project.models.get("churn@champion").version == 1


def test_a_move_that_lost_a_race_is_refused(project: keel.Project, run: TrainingRun) -> None:
    for _ in range(2):
        project.models.register(run)
    project.models.promote("churn", 1)

    with pytest.raises(ConflictError, match="points at v1, not v2"):
        project.catalog.set_alias("churn", "champion", 2, expect=2)
    assert project.catalog.set_alias("churn", "champion", 2, expect=1).to_version == 2


def test_bad_alias_moves_are_refused(project: keel.Project, run: TrainingRun) -> None:
    project.models.register(run)
    for alias in ("latest", "1st", "two words", "", "a:b"):
        with pytest.raises(ValidationError, match="invalid alias"):
            project.models.set_alias("churn", alias, 1)
    for version in (0, -1, "1", 1.5, True):
        with pytest.raises(ValidationError, match="version must be a number"):
            project.models.set_alias("churn", "champion", version)  # type: ignore[arg-type]
    with pytest.raises(NotFoundError, match="no version 2"):
        project.models.set_alias("churn", "champion", 2)
    with pytest.raises(NotFoundError, match="no model named 'ghost'"):
        project.models.set_alias("ghost", "champion", 1)
    assert project.models.history("churn") == []


# -- notes ---------------------------------------------------------------------------------------------------
def test_tags_and_description_change_without_changing_the_version(project: keel.Project, run: TrainingRun) -> None:
    before = project.models.register(run)

    tagged = project.models.tag("churn:1", description="first try", team="risk", stage="dev")
    retagged = project.models.tag("churn@latest", stage="prod", team=None)

    assert (tagged.description, tagged.tags) == ("first try", {"team": "risk", "stage": "dev"})
    assert (retagged.description, retagged.tags) == ("first try", {"stage": "prod"})
    for after in (tagged, retagged, project.models.get("churn:1")):
        assert (after.version, after.run_id, after.package_digest, after.created_at) == (
            before.version,
            before.run_id,
            before.package_digest,
            before.created_at,
        )
    assert project.models.versions("churn") == [retagged]


# -- diff ----------------------------------------------------------------------------------------------------
def test_diff_shows_params_metrics_features_versions_and_data(built: tuple[keel.Project, pd.DataFrame]) -> None:
    project, labels = built
    a = project.train(churn(labels))
    write_activity(project.root, activity_frame(shift=5.0))  # new data: activity version 2
    project.ingest("activity")
    b = project.train(
        churn(labels, features=["activity:spend", "activity:plan", "profile:age"], model=LogisticRegression(C=0.5))
    )
    project.models.register(a)
    project.models.register(b)

    d = project.models.diff("churn:1", "churn@latest")

    assert (d.a.version, d.b.version) == (1, 2)
    assert d.params["estimator.C"] == (1.0, 0.5)
    assert "estimator.max_iter" not in d.params
    assert set(d.metrics) == set(a.metrics)
    auc_a, auc_b, delta = d.metrics["roc_auc"]
    assert (auc_a, auc_b) == (a.metrics["roc_auc"], b.metrics["roc_auc"]) and delta == pytest.approx(auc_b - auc_a)
    assert d.features_added == ["activity:plan", "profile:age"]
    assert d.features_removed == ["activity:orders"]
    assert d.feature_versions_changed == {"activity": (1, 2), "profile": (None, 1)}
    digests = {v.version: v.data_digest for v in project.feature_versions("activity")}
    assert d.data_digests_changed["activity"] == (digests[1], digests[2])
    assert d.training_set_changed
    assert d.libraries == {}

    same = project.models.diff("churn:1", "churn:1")
    assert same.params == {} and not same.features_added and not same.training_set_changed
    assert all(delta == 0 for _, _, delta in same.metrics.values())


def test_diff_shows_library_versions_that_differ(project: keel.Project) -> None:
    lineage = {"libraries": {"scikit-learn": "1.5.0", "numpy": "2.0.0", "python": "3.11.7"}, "features": ["v@1:f"]}
    newer = {"libraries": {"scikit-learn": "1.6.1", "numpy": "2.0.0", "lightgbm": "4.5.0"}, "features": ["v@1:f"]}
    project.models.register(recorded_run(project, lineage=lineage, metrics={"auc": 0.7, "note": "x"}))
    project.models.register(recorded_run(project, lineage=newer, metrics={"auc": 0.75}))

    d = project.models.diff("churn:1", "churn:2")

    assert d.libraries == {
        "scikit-learn": ("1.5.0", "1.6.1"),
        "lightgbm": (None, "4.5.0"),
        "python": ("3.11.7", None),
    }
    assert d.metrics["auc"][2] == pytest.approx(0.05)
    assert d.metrics["note"] == ("x", None, None)
    assert d.features_added == d.features_removed == []


# -- integrity -----------------------------------------------------------------------------------------------
def test_a_tampered_package_is_refused_before_it_is_deserialized(project: keel.Project, run: TrainingRun) -> None:
    version = project.models.register(run)
    path = Path(project.artifacts.path(version.package_digest))
    blob = path.read_bytes()
    path.write_bytes(blob[:-1] + bytes([blob[-1] ^ 1]))

    with pytest.raises(IntegrityError, match=f"model churn v1 .*{version.package_digest}.* is corrupt"):
        project.models.load("churn:1")

    path.unlink()
    with pytest.raises(NotFoundError, match="model churn v1"):
        project.models.load("churn:1")
    path.write_bytes(blob)  # restored from a backup: loads again
    assert project.models.load("churn:1").metadata["run_id"] == run.id


def test_versions_and_runs_survive_reopening_the_project(built: tuple[keel.Project, pd.DataFrame]) -> None:
    project, labels = built
    run = project.train(churn(labels))
    project.models.register(run)
    project.models.promote("churn", 1)

    with keel.Project.open(project.root) as again:
        assert again.models.get("churn@champion").run_id == run.id
        assert again.runs.get(run.id) == run.record
        frame = again.historical_features(labels.head(5), ["activity:spend", "activity:orders"])
        np.testing.assert_array_equal(again.models.load("churn@champion").predict(frame), run.package.predict(frame))
