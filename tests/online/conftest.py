"""Projects on each online backend (sqlite, memory, Redis), isolated and cleaned up after the test."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

import keel

OpenProject = Callable[[], Any]

BACKENDS = ["sqlite", "memory", pytest.param("redis", marks=pytest.mark.redis)]


def redis_test_url(url: str) -> str:
    """The Redis server's URL on database 15, away from anything a developer keeps in database 0."""
    return urlunsplit(urlsplit(url)._replace(path="/15"))


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The online backend of the test: ``sqlite`` (the default), ``memory`` or ``redis``."""
    return str(request.param)


@pytest.fixture
def open_project(backend: str, project_dir: Any, request: pytest.FixtureRequest) -> Iterator[OpenProject]:
    """Opens the test's project on ``backend``; every call is another ``Project`` on the same folder and store.

    The project's name, hence its key prefix in the online store, is unique to the test; on Redis every key
    under it is removed afterwards (the views through ``drop_view``, then anything left).
    """
    token = f"kt{uuid.uuid4().hex[:12]}"
    overrides: dict[str, Any] = {"name": token}
    if backend == "memory":
        overrides["online"] = f"memory://{token}"
    elif backend == "redis":
        overrides["online"] = redis_test_url(request.getfixturevalue("redis_server"))
    opened: list[Any] = []

    def open_() -> Any:
        project = keel.Project.open(project_dir, **overrides)
        opened.append(project)
        return project

    yield open_
    if opened:
        last = opened[-1]
        for view in last.feature_views():
            last.online_store.drop_view(view.name)
    for project in opened:
        project.close()
    if backend == "redis":
        import redis

        client = redis.Redis.from_url(overrides["online"])
        try:
            doomed = list(client.scan_iter(match=f"{token}:*", count=1_000))
            if doomed:
                client.unlink(*doomed)
        finally:
            client.close()


@pytest.fixture
def any_project(open_project: OpenProject) -> Any:
    """A project on the test's online backend."""
    return open_project()


@pytest.fixture
def project(project_dir: Any) -> Iterator[Any]:
    """A project with the default configuration (SQLite online store)."""
    with keel.Project.open(project_dir) as project:
        yield project
