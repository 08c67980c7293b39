"""Concurrent pushes to the offline store: processes pushing at once never lose each other's rows."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pandas as pd
from _push_workers import push_batches

import keel
from keel import Entity, FeatureView, Field, ParquetSource

WORKERS = 4
BATCHES = 5


def test_processes_pushing_at_once_keep_every_row(project_dir: Path) -> None:
    (project_dir / "data").mkdir()
    pd.DataFrame(
        {
            "customer_id": list(range(10)),
            "event_time": pd.Timestamp("2025-01-01", tz="UTC"),
            "spend": [1.0] * 10,
        }
    ).to_parquet(project_dir / "data" / "activity.parquet")
    project = keel.Project.open(project_dir)
    view = FeatureView(
        "activity",
        entities=[Entity("customer", ["customer_id"])],
        source=ParquetSource("data/activity.parquet", timestamp="event_time"),
        schema=[Field("spend", "float64")],
    )
    project.apply([view])
    project.ingest(view)

    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(WORKERS)
    workers = [ctx.Process(target=push_batches, args=(str(project_dir), w, BATCHES, barrier)) for w in range(WORKERS)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(timeout=180)
    assert [p.exitcode for p in workers] == [0] * WORKERS

    versions = project.feature_versions("activity")
    assert [v.version for v in versions] == list(range(1, 2 + WORKERS * BATCHES))
    latest = versions[-1]
    assert latest.row_count == 10 + WORKERS * BATCHES * 3
    pushed = [1000 * (w + 1) + 10 * b + i for w in range(WORKERS) for b in range(BATCHES) for i in range(3)]
    entities = pd.DataFrame({"customer_id": pushed, "ts": pd.Timestamp("2025-01-03", tz="UTC")})
    train = project.historical_features(entities, ["activity:spend"])
    assert train["spend"].tolist() == [float(i) for i in pushed]
