"""A materialization killed midway (``kill -9`` after its first batch, a known point) leaves the online store
serving: a rebuild's readers keep the old values until the new ones are complete, an upsert's each entity's old
row or its new one; the next run completes the work and removes what the killed one left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from keel import Entity, FeatureView, Field, ParquetSource

NOW = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
CUSTOMER = Entity("customer", ["customer_id"])
ENTITIES = 60
FEATURES = ["activity:spend", "activity:plan"]

#: Materializes the project in argv[1] up to argv[2] by batches of 10 entities, killing its own process once
#: the first batch is written.
KILLED_AFTER_ONE_BATCH = textwrap.dedent(
    """
    import os, signal, sys
    from datetime import datetime
    import keel
    from keel.online import materialize_view

    project = keel.Project.open(sys.argv[1])
    view, _ = project.definitions.registered("activity")
    materialize_view(
        view,
        project.catalog.feature_version("activity"),
        project.definitions.join_keys(view),
        catalog=project.catalog,
        engine=project.engine,
        offline_store=project.offline_store,
        online_store=project.online_store,
        store_id=project.online_store_id,
        end=datetime.fromisoformat(sys.argv[2]),
        batch_rows=10,
        on_progress=lambda written: os.kill(os.getpid(), signal.SIGKILL),
    )
    """
)


def ingest(project: Any, root: Path, ids: range, spend: float, hours_ago: int) -> None:
    frame = pd.DataFrame(
        {
            "customer_id": list(ids),
            "event_time": pd.Series([NOW - timedelta(hours=hours_ago)] * len(ids), dtype="datetime64[us, UTC]"),
            "spend": [spend + i for i in ids],
            "plan": [f"plan {spend:g}"] * len(ids),
        }
    )
    frame.to_parquet(root / "activity.parquet", index=False)
    view = FeatureView(
        "activity",
        entities=[CUSTOMER],
        source=ParquetSource("activity.parquet", timestamp="event_time"),
        schema=[Field("spend", "float64"), Field("plan", "string")],
        ttl=timedelta(days=2),
    )
    project.apply([CUSTOMER, view])
    project.ingest("activity")


def rows(project: Any) -> list[tuple[Any, ...]]:
    got = project.online_features(FEATURES, [{"customer_id": i} for i in range(ENTITIES)]).to_dict()
    return list(zip(*got.values(), strict=True))


def expected(spend: float, ids: range) -> list[tuple[Any, ...]]:
    return [(spend + i, f"plan {spend:g}") if i in ids else (None, None) for i in range(ENTITIES)]


def kill_a_materialization(project: Any, root: Path) -> None:
    env = {**os.environ, "KEEL_NAME": project.config.name, "KEEL_ONLINE": project.config.online}
    child = subprocess.run(
        [sys.executable, "-c", KILLED_AFTER_ONE_BATCH, str(root), NOW.isoformat()],
        capture_output=True,
        text=True,
        env=env,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("redis", marks=pytest.mark.redis)], indirect=True)
def test_a_rebuild_killed_midway_leaves_the_old_values_serving_until_the_next_run(
    open_project: Any, project_dir: Path
) -> None:
    project = open_project()
    ingest(project, project_dir, range(ENTITIES), spend=100.0, hours_ago=5)
    project.materialize(end=NOW)
    old = expected(100.0, range(ENTITIES))
    assert rows(project) == old
    # v2 lacks the last ten entities: the view must be rebuilt, not upserted
    ingest(project, project_dir, range(ENTITIES - 10), spend=200.0, hours_ago=6)

    kill_a_materialization(project, project_dir)

    assert rows(project) == old
    [leftover] = project.online_store.hidden_generations("activity")
    [result] = project.materialize(end=NOW)
    assert result.rebuilt and result.version == 2
    assert rows(project) == expected(200.0, range(ENTITIES - 10))
    assert leftover not in project.online_store.hidden_generations("activity")
    assert project.online_store.hidden_generations("activity") == []


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("redis", marks=pytest.mark.redis)], indirect=True)
def test_an_upsert_killed_midway_leaves_each_entity_old_or_new_until_the_next_run(
    open_project: Any, project_dir: Path
) -> None:
    project = open_project()
    ingest(project, project_dir, range(ENTITIES), spend=100.0, hours_ago=5)
    project.materialize(end=NOW)
    old = expected(100.0, range(ENTITIES))
    new = expected(200.0, range(ENTITIES))  # newer rows for every entity: an upsert

    ingest(project, project_dir, range(ENTITIES), spend=200.0, hours_ago=4)
    kill_a_materialization(project, project_dir)

    after_kill = rows(project)
    assert all(row in (before, after) for row, before, after in zip(after_kill, old, new, strict=True))
    updated = sum(row == after for row, after in zip(after_kill, new, strict=True))
    assert 0 < updated < ENTITIES  # killed after its first batch: some entities new already, the others old
    [result] = project.materialize(end=NOW)
    assert not result.rebuilt
    assert rows(project) == new
