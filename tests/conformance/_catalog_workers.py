"""Process targets of the catalog concurrency tests (a plain module, importable by 'spawn' children)."""

from __future__ import annotations

import hashlib
import traceback
from typing import Any


def _report(results: Any, worker: int, payload: Any, error: BaseException | None) -> None:
    message = None if error is None else "".join(traceback.format_exception(error))
    results.put((worker, payload, message))


def add_versions(url: str, worker: int, count: int, barrier: Any, results: Any) -> None:
    """Open the catalog, wait for every worker, then add ``count`` versions of view ``shared``."""
    from keel.catalog import SqlCatalog

    try:
        catalog = SqlCatalog(url)
        barrier.wait(timeout=60)
        got = []
        for i in range(count):
            version, created = catalog.add_feature_version(
                view="shared",
                definition_version=1,
                definition_hash="d" * 64,
                location=f"shared/{worker}-{i}",
                files=[],
                row_count=i,
                event_time_min=None,
                event_time_max=None,
                data_digest=hashlib.sha256(f"{worker}-{i}".encode()).hexdigest(),
                columns={},
                statistics={"worker": worker, "i": i},
                has_duplicates=False,
            )
            got.append((version.version, version.data_digest, created))
        catalog.close()
    except BaseException as exc:
        _report(results, worker, None, exc)
        raise
    _report(results, worker, got, None)


def open_and_record(url: str, worker: int, barrier: Any, results: Any) -> None:
    """Wait for every worker, then open (so create and migrate) a new catalog and record one definition."""
    from keel.catalog import SqlCatalog

    try:
        barrier.wait(timeout=60)
        catalog = SqlCatalog(url)
        written = catalog.record_definitions([("entity", "customer", "c" * 64, {"name": "customer"}, "active")])
        payload = (catalog.migrated_from, catalog.schema_version(), [r.version for r in written])
        catalog.close()
    except BaseException as exc:
        _report(results, worker, None, exc)
        raise
    _report(results, worker, payload, None)
