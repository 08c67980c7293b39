"""Fixtures of the feature server tests."""

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
