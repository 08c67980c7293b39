"""Fixtures of the serving tests: a materialized project for the feature server, one with models for the
prediction service."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from _serving_project import build_project

import keel


@pytest.fixture(scope="module")
def feature_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[keel.Project]:
    """The materialized project, shared by a module's tests (pushes use their own customer ids)."""
    project = build_project(tmp_path_factory.mktemp("serving") / "project")
    yield project
    project.close()


@pytest.fixture(scope="module")
def prediction_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[keel.Project]:
    """``churn`` v1 and v2 registered (champion: v1) and fresh online rows for a dozen customers, shared by a
    module's tests."""
    from threadpoolctl import threadpool_limits

    from _training_fixtures import build_project, push_fresh_online, register_churn_versions

    with threadpool_limits(1):
        project, labels = build_project(tmp_path_factory.mktemp("prediction") / "project")
        register_churn_versions(project, labels)
    project.models.set_alias("churn", "champion", 1)
    push_fresh_online(project, 12)
    yield project
    project.close()
