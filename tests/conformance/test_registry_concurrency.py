"""Invariant 4 for the registry: processes registering at once get distinct, gap-free version numbers, and
aliases moved from several processes at once keep an unbroken history, on SQLite and on PostgreSQL."""

from __future__ import annotations

import importlib
import itertools
import uuid
from pathlib import Path
from types import ModuleType

import pytest
from _catalog_workers import run_processes

from keel.artifacts import ArtifactStore
from keel.catalog import SqlCatalog

WORKERS = 8
VERSIONS_PER_WORKER = 5
MOVES_PER_WORKER = 5


@pytest.fixture(params=["sqlite_file", pytest.param("postgresql", marks=pytest.mark.postgres)])
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A catalog URL several processes can open."""
    if request.param == "sqlite_file":
        return f"sqlite:///{tmp_path / 'shared' / 'catalog.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def workers(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The process targets, importable by name in 'spawn' children (which inherit sys.path)."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    return importlib.import_module("_registry_workers")


def finished_runs(url: str, artifacts: ArtifactStore, count: int) -> list[str]:
    """``count`` finished runs, each with its own stored package."""
    catalog = SqlCatalog(url)
    ids = []
    for i in range(count):
        run_id = uuid.uuid4().hex
        catalog.start_run(run_id=run_id, spec="shared", spec_snapshot={}, params={"worker": i})
        digest = artifacts.put_bytes(f"package {i} of {run_id}".encode())
        catalog.finish_run(
            run_id,
            status="finished",
            params={"worker": i},
            metrics={},
            durations={},
            lineage={},
            package_digest=digest,
            package_format="skops",
        )
        ids.append(run_id)
    catalog.close()
    return ids


def test_processes_registering_at_once_get_distinct_gap_free_versions(
    catalog_url: str, tmp_path: Path, workers: ModuleType
) -> None:
    artifacts = ArtifactStore(tmp_path / "artifacts")
    run_ids = finished_runs(catalog_url, artifacts, WORKERS)

    payloads = run_processes(
        workers.register_versions,
        lambda w: (catalog_url, str(tmp_path / "artifacts"), run_ids[w], w, VERSIONS_PER_WORKER),
        workers=WORKERS,
    )

    total = WORKERS * VERSIONS_PER_WORKER
    returned = sorted(number for got in payloads.values() for number, _ in got)
    assert returned == list(range(1, total + 1))  # distinct and gap-free
    catalog = SqlCatalog(catalog_url)
    stored = {v.version: v.run_id for v in catalog.model_versions("shared")}
    catalog.close()
    assert sorted(stored) == list(range(1, total + 1))
    for worker, got in payloads.items():  # each process's numbers point at its own run
        assert all(stored[number] == run_ids[worker] == run_id for number, run_id in got)


def test_aliases_moved_by_processes_at_once_keep_an_unbroken_history(
    catalog_url: str, tmp_path: Path, workers: ModuleType
) -> None:
    artifacts = ArtifactStore(tmp_path / "artifacts")
    run_ids = finished_runs(catalog_url, artifacts, 1)
    catalog = SqlCatalog(catalog_url)
    for _ in range(WORKERS):
        catalog.add_model_version(name="shared", run_id=run_ids[0], package_digest="0" * 64, package_format="skops")
    catalog.close()

    payloads = run_processes(
        workers.move_alias,
        lambda w: (catalog_url, str(tmp_path / "artifacts"), w + 1, w, MOVES_PER_WORKER),
        workers=WORKERS,
    )

    catalog = SqlCatalog(catalog_url)
    history = catalog.alias_history("shared", "champion")
    final = catalog.alias("shared", "champion")
    catalog.close()
    assert history[0].from_version is None
    for before, after in itertools.pairwise(history):  # every move starts where the last one ended
        assert after.from_version == before.to_version
        assert after.from_version != after.to_version
    assert final == history[-1].to_version
    moves = [(f, t) for got in payloads.values() for f, t in got if f != t]  # the moves that moved something
    assert sorted(moves, key=repr) == sorted([(h.from_version, h.to_version) for h in history], key=repr)
