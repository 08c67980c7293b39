"""Shared fixtures of the catalog conformance suites."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from keel.catalog import SqlCatalog


@pytest.fixture(params=["sqlite_file", "sqlite_memory", pytest.param("postgresql", marks=pytest.mark.postgres)])
def any_catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlCatalog]:
    """A fresh catalog on each backend: a SQLite file, SQLite in memory, and PostgreSQL (its own schema)."""
    if request.param == "sqlite_file":
        url = f"sqlite:///{tmp_path / 'catalog.db'}"
    elif request.param == "sqlite_memory":
        url = "sqlite://"
    else:
        url = request.getfixturevalue("postgres_url")
    cat = SqlCatalog(url)
    yield cat
    cat.close()
