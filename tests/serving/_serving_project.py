"""A real project for the feature server tests: one entity, one view of every dtype, ingested and materialized."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

import keel

FEATURES_PY = textwrap.dedent(
    """
    from datetime import timedelta
    from keel import Entity, FeatureView, Field, ParquetSource

    customer = Entity("customer", join_keys=["customer_id"])
    activity = FeatureView(
        "activity",
        entities=[customer],
        source=ParquetSource("data/activity.parquet", timestamp="event_time"),
        schema=[
            Field("spend", "float64"),
            Field("orders", "int64"),
            Field("plan", "string"),
            Field("active", "bool"),
            Field("last_seen", "timestamp"),
            Field("embedding", "list[float64]"),
        ],
        ttl=timedelta(days=10),
    )
    """
)

#: Recent enough that the view's TTL keeps every value readable online.
NOW = datetime.now(UTC).replace(microsecond=0)
LAST_SEEN = datetime(2025, 1, 5, 10, 30, tzinfo=UTC)


def write_project(root: Path) -> None:
    """The project's files: ``features.py`` and three customers' activity (customer 3 has no spend)."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        {
            "customer_id": [1, 2, 3],
            "event_time": [NOW - timedelta(hours=1)] * 3,
            "spend": [10.5, 20.0, None],
            "orders": [1, 2, 3],
            "plan": ["basic", "premium", "basic"],
            "active": [True, False, True],
            "last_seen": [LAST_SEEN] * 3,
            "embedding": [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]],
        }
    ).to_parquet(root / "data" / "activity.parquet")
    (root / "features.py").write_text(FEATURES_PY)


def build_project(root: Path, **overrides: Any) -> keel.Project:
    """Write, apply, ingest and materialize the project in ``root``."""
    write_project(root)
    project = keel.Project.open(root, **overrides)
    project.apply()
    project.ingest("activity")
    project.materialize()
    return project
