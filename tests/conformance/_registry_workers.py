"""Process targets of the registry concurrency tests (a plain module, importable by 'spawn' children)."""

from __future__ import annotations

import traceback
from typing import Any


def _report(results: Any, worker: int, payload: Any, error: BaseException | None) -> None:
    message = None if error is None else "".join(traceback.format_exception(error))
    results.put((worker, payload, message))


def register_versions(
    url: str, artifacts: str, run_id: str, worker: int, count: int, barrier: Any, results: Any
) -> None:
    """Open the catalog and artifact store, wait for every worker, then register ``run_id`` ``count`` times."""
    from keel.artifacts import ArtifactStore
    from keel.catalog import SqlCatalog
    from keel.models import ModelRegistry

    try:
        catalog = SqlCatalog(url)
        registry = ModelRegistry(catalog, ArtifactStore(artifacts))
        barrier.wait(timeout=60)
        got = [(v.version, v.run_id) for v in (registry.register(run_id, name="shared") for _ in range(count))]
        catalog.close()
    except BaseException as exc:
        _report(results, worker, None, exc)
        raise
    _report(results, worker, got, None)


def move_alias(url: str, artifacts: str, version: int, worker: int, count: int, barrier: Any, results: Any) -> None:
    """Wait for every worker, then point alias ``champion`` of ``shared`` at ``version``, ``count`` times."""
    from keel.artifacts import ArtifactStore
    from keel.catalog import SqlCatalog
    from keel.models import ModelRegistry

    try:
        catalog = SqlCatalog(url)
        registry = ModelRegistry(catalog, ArtifactStore(artifacts))
        barrier.wait(timeout=60)
        got = []
        for i in range(count):
            change = registry.set_alias("shared", "champion", version, reason=f"worker {worker} move {i}")
            got.append((change.from_version, change.to_version))
        catalog.close()
    except BaseException as exc:
        _report(results, worker, None, exc)
        raise
    _report(results, worker, got, None)
