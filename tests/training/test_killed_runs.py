"""A training whose process is killed (``kill -9``) never completes its run: the next listing, or the next
training, records it as failed ("process died") instead of leaving it ``running`` for ever."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import keel
from _training_fixtures import build_project

#: Trains on the project in argv[1] with an estimator that kills its own process in ``fit``: a kill at a known
#: point, after the run was recorded as running.
KILLED_IN_FIT = textwrap.dedent(
    """
    import os, signal, sys
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    import keel
    from keel.training import TrainingSpec

    class KilledInFit(LogisticRegression):
        def fit(self, X, y, sample_weight=None):
            os.kill(os.getpid(), signal.SIGKILL)

    project = keel.Project.open(sys.argv[1])
    labels = pd.read_parquet(os.path.join(sys.argv[1], "labels.parquet"))
    project.train(TrainingSpec("churn", labels=labels, label="churned", features=["activity:*"], model=KilledInFit()))
    """
)


def _kill_a_training(root: Path) -> None:
    child = subprocess.run([sys.executable, "-c", KILLED_IN_FIT, str(root)], capture_output=True, text=True)
    assert child.returncode == -signal.SIGKILL, child.stderr


def test_a_killed_trainings_run_is_failed_by_the_next_listing(project_dir: Path) -> None:
    project, labels = build_project(project_dir)
    labels[["customer_id", "ts", "churned"]].to_parquet(project_dir / "labels.parquet")
    project.close()

    _kill_a_training(project_dir)

    with keel.Project.open(project_dir) as reopened:
        [left] = reopened.catalog.runs()
        assert left.status == "running"  # what the killed process left behind
        [listed] = reopened.runs.list()
        assert listed.id == left.id
        assert listed.status == "failed"
        assert listed.error is not None and listed.error.startswith("process died: pid ")
        assert reopened.runs.get(left.id).status == "failed"


def test_the_next_training_records_a_dead_processs_run_as_failed() -> None:
    from sklearn.linear_model import LogisticRegression

    from _processes import dead_owner
    from _training_fixtures import activity_frame, in_memory_services, labels_frame
    from keel._process import ProcessOwner
    from keel.training import TrainingSpec

    activity = activity_frame(120)
    services = in_memory_services(activity)
    services.catalog.start_run(
        run_id="d" * 32, spec="churn", spec_snapshot={}, params={}, owner=ProcessOwner.from_dict(dead_owner())
    )
    labels = labels_frame(activity)[["customer_id", "ts", "churned"]]

    run = services.train(
        TrainingSpec("churn", labels=labels, label="churned", features=["activity:spend", "activity:orders"],
                     model=LogisticRegression(max_iter=200))
    )  # fmt: skip

    assert {r.id: r.status for r in services.catalog.runs()} == {run.id: "finished", "d" * 32: "failed"}
