"""Worker processes for the concurrent-push test (a plain module, so spawned children can import it)."""

from __future__ import annotations

from multiprocessing.synchronize import Barrier
from pathlib import Path

import pandas as pd

import keel


def push_batches(root: str, worker: int, batches: int, barrier: Barrier) -> None:
    """Push ``batches`` batches of 3 rows of customers unique to this worker to the offline store."""
    project = keel.Project.open(Path(root))
    barrier.wait()
    for b in range(batches):
        ids = [1000 * (worker + 1) + 10 * b + i for i in range(3)]
        rows = pd.DataFrame(
            {
                "customer_id": ids,
                "event_time": pd.Timestamp("2025-01-02", tz="UTC"),
                "spend": [float(i) for i in ids],
            }
        )
        project.push("activity", rows, to="offline")
    project.close()
