"""Process targets of the catalog concurrency tests (a plain module, importable by 'spawn' children)."""

from __future__ import annotations

import hashlib
import traceback
from typing import Any


def _report(results: Any, worker: int, payload: Any, error: BaseException | None) -> None:
    message = None if error is None else "".join(traceback.format_exception(error))
    results.put((worker, payload, message))


def run_processes(target: Any, args_of: Any, *, workers: int, timeout: float = 180.0) -> dict[int, Any]:
    """Start ``workers`` spawned processes released together by a barrier; return each one's payload.

    ``target`` is called with ``(*args_of(worker), barrier, results)`` and reports through :func:`_report`.
    """
    import multiprocessing
    import queue

    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(workers)
    results = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args_of(w), barrier, results)) for w in range(workers)]
    for p in procs:
        p.start()
    payloads: dict[int, Any] = {}
    errors: list[str] = []
    try:
        for _ in range(workers):
            worker, payload, error = results.get(timeout=timeout)
            if error is not None:
                errors.append(f"worker {worker}: {error}")
            payloads[worker] = payload
    except queue.Empty:
        errors.append(f"a worker neither finished nor failed within {timeout:.0f} s")
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
                p.join()
    assert not errors, "\n".join(errors)
    assert [p.exitcode for p in procs] == [0] * workers
    return payloads


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
