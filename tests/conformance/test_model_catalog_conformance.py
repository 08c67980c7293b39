"""The catalog's runs, model versions and aliases behave alike on every backend (SQLite file and memory,
PostgreSQL)."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import timedelta
from typing import Any

import pytest

from _processes import dead_owner
from keel._process import ProcessOwner
from keel.catalog import SqlCatalog, utcnow
from keel.errors import ConflictError, NotFoundError, ValidationError


@pytest.fixture
def catalog(any_catalog: SqlCatalog) -> SqlCatalog:
    return any_catalog


def start(catalog: SqlCatalog, spec: str = "churn", **params: Any) -> str:
    run_id = uuid.uuid4().hex
    catalog.start_run(run_id=run_id, spec=spec, spec_snapshot={"name": spec}, params=params)
    return run_id


def finish(catalog: SqlCatalog, run_id: str, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "status": "finished",
        "params": {"estimator": {"C": 1.0}},
        "metrics": {"auc": 0.8, "brier": None},
        "durations": {"fit": 0.5},
        "lineage": {"feature_versions": {"activity": 2}, "git": None},
        "package_digest": "a" * 64,
        "package_format": "skops",
    }
    values.update(overrides)
    return catalog.finish_run(run_id, **values)


def test_a_run_is_written_running_then_completed_once(catalog: SqlCatalog) -> None:
    before = utcnow()
    run_id = start(catalog, seed=3)
    running = catalog.run(run_id)
    assert (running.status, running.params, running.metrics, running.finished_at) == ("running", {"seed": 3}, {}, None)
    assert before - timedelta(seconds=1) <= running.started_at <= utcnow() + timedelta(seconds=1)
    assert running.started_at.utcoffset() == timedelta(0)

    done = finish(catalog, run_id)

    assert done == catalog.run(run_id)
    assert done.status == "finished" and done.metrics == {"auc": 0.8, "brier": None}
    assert done.lineage == {"feature_versions": {"activity": 2}, "git": None}
    assert done.finished_at is not None and done.finished_at >= done.started_at
    with pytest.raises(ValidationError, match="never changes once it ended"):
        finish(catalog, run_id, status="failed", error="late")
    with pytest.raises(ValidationError, match="'finished' or 'failed'"):
        finish(catalog, start(catalog), status="done")
    assert catalog.run(run_id) == done


def test_a_run_records_the_process_that_owns_it(catalog: SqlCatalog) -> None:
    run_id = start(catalog)

    assert ProcessOwner.from_dict(catalog.run(run_id).owner) == ProcessOwner.current()


def test_running_runs_of_dead_processes_are_failed_and_the_others_left_alone(catalog: SqlCatalog) -> None:
    dead = ProcessOwner.from_dict(dead_owner())
    assert dead is not None
    here = ProcessOwner.current()
    runs: dict[str, str] = {}
    for name, owner in [
        ("killed", dead),
        ("alive", here),
        ("elsewhere", dataclasses.replace(dead, host=f"{dead.host}-another-machine")),
        ("another container", dataclasses.replace(dead, namespace="pid:[1]")),
        ("finished", dead),
    ]:
        runs[name] = uuid.uuid4().hex
        catalog.start_run(run_id=runs[name], spec="churn", spec_snapshot={}, params={"seed": 1}, owner=owner)
    finish(catalog, runs["finished"])

    failed = catalog.fail_dead_runs()

    assert [r.id for r in failed] == [runs["killed"]]
    record = catalog.run(runs["killed"])
    assert record == failed[0]
    assert record.status == "failed" and record.finished_at is not None
    assert record.error == (
        f"process died: pid {dead.pid} on {dead.host} ended without completing the run (killed, crashed, or its "
        "machine restarted)"
    )
    assert record.params == {"seed": 1}  # what the run recorded stays
    assert {name: catalog.run(i).status for name, i in runs.items() if name != "killed"} == {
        "alive": "running",
        "elsewhere": "running",
        "another container": "running",
        "finished": "finished",
    }
    assert catalog.fail_dead_runs() == []
    with pytest.raises(ValidationError, match="never changes once it ended"):
        finish(catalog, runs["killed"])  # the process cannot come back to complete it


def test_runs_refuse_what_json_cannot_hold(catalog: SqlCatalog) -> None:
    with pytest.raises(ValidationError, match="params"):
        catalog.start_run(run_id=uuid.uuid4().hex, spec="s", spec_snapshot={}, params={"alpha": float("nan")})
    run_id = start(catalog)
    with pytest.raises(ValidationError, match="metrics"):
        finish(catalog, run_id, metrics={"auc": float("inf")})
    with pytest.raises(ValidationError, match="lineage"):
        finish(catalog, run_id, lineage={"when": object()})
    assert catalog.run(run_id).status == "running"


def test_runs_are_found_by_id_or_prefix_and_listed_newest_first(catalog: SqlCatalog) -> None:
    ids = [start(catalog, spec) for spec in ("churn", "churn", "fraud")]
    finish(catalog, ids[0])
    finish(catalog, ids[1], status="failed", error="RuntimeError: boom", package_digest=None, package_format=None)

    assert [r.id for r in catalog.runs()] == list(reversed(ids))
    assert [r.id for r in catalog.runs("churn")] == [ids[1], ids[0]]
    assert [r.id for r in catalog.runs(status="failed")] == [ids[1]]
    assert [r.id for r in catalog.runs(limit=1)] == [ids[2]]
    assert catalog.run(ids[1][:10]).error == "RuntimeError: boom"
    with pytest.raises(NotFoundError, match="no run 'ffffffffff'"):
        catalog.run("ffffffffff")
    with pytest.raises(NotFoundError):
        catalog.run(ids[0][:4])  # too short to be taken as a prefix


def test_model_versions_aliases_and_notes(catalog: SqlCatalog) -> None:
    run_id = start(catalog)
    finish(catalog, run_id)
    versions = [
        catalog.add_model_version(name="churn", run_id=run_id, package_digest=c * 64, package_format="skops")
        for c in "abc"
    ]
    assert [v.version for v in versions] == [1, 2, 3]
    assert catalog.add_model_version(name="fraud", run_id=run_id, package_digest="d" * 64, package_format="joblib")
    assert catalog.model_version("churn").version == 3
    assert catalog.model_version("churn", 2).package_digest == "b" * 64
    assert [(v.name, v.version) for v in catalog.model_versions()][-1] == ("fraud", 1)

    catalog.set_alias("churn", "champion", 1, reason="first")
    moved = catalog.set_alias("churn", "champion", 3, reason="better", expect=1)
    assert (moved.from_version, moved.to_version, moved.reason) == (1, 3, "better")
    with pytest.raises(ConflictError, match="points at v3, not v1"):
        catalog.set_alias("churn", "champion", 2, expect=1)
    with pytest.raises(ConflictError, match="points at nothing, not v1"):
        catalog.set_alias("churn", "challenger", 2, expect=1)
    assert catalog.set_alias("churn", "challenger", 2, expect=None).to_version == 2
    assert catalog.aliases("churn") == {"challenger": 2, "champion": 3}
    assert catalog.model_version("churn", 3).aliases == ("champion",)
    catalog.set_alias("churn", "challenger", None, reason="retired")
    assert catalog.alias("churn", "challenger") is None
    history = catalog.alias_history("churn")
    assert [(h.alias, h.from_version, h.to_version) for h in history] == [
        ("champion", None, 1),
        ("champion", 1, 3),
        ("challenger", None, 2),
        ("challenger", 2, None),
    ]
    assert all(h.at.utcoffset() == timedelta(0) for h in history)

    noted = catalog.annotate_model_version("churn", 2, description="eu", tags={"team": "risk"})
    assert (noted.description, noted.tags, noted.version) == ("eu", {"team": "risk"}, 2)
    noted = catalog.annotate_model_version("churn", 2, tags={"team": None, "stage": "dev"})
    assert (noted.description, noted.tags) == ("eu", {"stage": "dev"})
    with pytest.raises(NotFoundError, match="no version 9"):
        catalog.annotate_model_version("churn", 9, description="x")
