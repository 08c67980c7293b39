"""Scoring lanes: where a batch run's chunks are scored (this thread, threads of this process, worker processes).

Every lane takes ``submit(index, start, data)`` and answers a future of the chunk's
:class:`~keel.batch._worker.ChunkOutcome`; which lanes a run uses is decided by :func:`open_lanes`.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from typing import TYPE_CHECKING, Any

from keel.batch._io import to_ipc
from keel.batch._worker import ChunkOutcome, ModelSource, Scorer, init_worker, limit_lane_threads, ping, score_in_worker

if TYPE_CHECKING:
    from keel.models import ModelPackage

log = logging.getLogger(__name__)

#: Whether this process scores chunks on its own threads until the worker processes are ready (tests turn it
#: off to score with the processes alone).
LOCAL_UNTIL_READY = True
#: Whether worker processes are used even when threads suffice (tests turn it on).
PROCESSES_ALWAYS = False
#: Feature types whose chunks go from Arrow to the estimator without Python objects: scoring them releases the
#: GIL (Arrow's readers, NumPy, the estimators' compiled loops), so threads of this process run in parallel.
_GIL_FREE_DTYPES = frozenset({"float64", "int64", "bool"})

#: Modules the fork server imports before forking workers: the heavy ones every worker needs and the
#: scikit-learn modules packages are commonly made of (imported once there, not once per worker).
PRELOAD = [
    "numpy",
    "pandas",
    "pyarrow.parquet",
    "fsspec",
    "sklearn.base",
    "sklearn.compose",
    "sklearn.ensemble",
    "sklearn.impute",
    "sklearn.pipeline",
    "sklearn.preprocessing",
    "keel.artifacts",
    "keel.models",
]


class Inline:
    """Scores in the calling thread (one worker): same code path, no process start-up."""

    def __init__(self, scorer: Scorer) -> None:
        self.scorer = scorer

    def submit(self, index: int, start: int, data: Any) -> Future[ChunkOutcome]:
        future: Future[ChunkOutcome] = Future()
        future.set_result(self.scorer.score(index, start, data))
        return future

    def shutdown(self) -> None:
        pass


class Threads:
    """Scores on ``lanes`` threads of the calling process (the trees' loops, NumPy and Arrow release the GIL, so
    the lanes run in parallel), each limited to ``threads`` OpenMP threads, and BLAS to ``threads`` threads while
    they run (BLAS's thread count is process-wide: restored at :meth:`shutdown`), so that lanes x threads fit
    the cores."""

    def __init__(self, scorer: Scorer, lanes: int, threads: int) -> None:
        from threadpoolctl import threadpool_limits

        self.scorer = scorer
        self._blas: Any = threadpool_limits(threads, user_api="blas")
        self.executor = ThreadPoolExecutor(
            lanes, thread_name_prefix="keel-batch", initializer=limit_lane_threads, initargs=(threads,)
        )

    def submit(self, index: int, start: int, data: Any) -> Future[ChunkOutcome]:
        return self.executor.submit(self.scorer.score, index, start, data)

    def shutdown(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)
        if self._blas is not None:
            self._blas.restore_original_limits()
            self._blas = None


class Pool:
    """Worker processes (forkserver or spawn), each loading the package once by its verified digest.

    They are started on a background thread at once (starting the first one waits for the fork server's
    imports), and :attr:`ready` is set when the first has loaded the package; :attr:`failure` says why they
    did not start, if they did not.
    """

    def __init__(
        self,
        workers: int,
        source: ModelSource,
        parts_uri: str,
        id_column: str | None,
        probabilities: bool,
        threads: int,
    ) -> None:
        if "forkserver" in multiprocessing.get_all_start_methods():
            context: Any = multiprocessing.get_context("forkserver")
            # the fork server imports these once; the workers forked from it start without importing them
            context.set_forkserver_preload([*PRELOAD, type(source).__module__])
        else:
            context = multiprocessing.get_context("spawn")
        self.pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=context,
            initializer=init_worker,
            initargs=(source, parts_uri, id_column, probabilities, threads),
        )
        self.ready = threading.Event()
        self.failure: str | None = None
        self.used = False
        self._closing = False
        self._started = False  # the start-up thread is past its last look at _closing
        self._lock = threading.Lock()
        # not a daemon: an interpreter that exits waits for it to stop the workers it started
        self._starter = threading.Thread(target=self._start, args=(workers,), name="keel-batch-start")
        self._starter.start()

    def _start(self, workers: int) -> None:
        began = time.perf_counter()
        try:
            pings = [self.pool.submit(ping) for _ in range(workers)]  # starts the processes
            next(as_completed(pings)).result()
        except Exception as exc:  # BrokenProcessPool (no __main__ guard, a worker could not load the model ...)
            self.failure = f"{type(exc).__name__}: {exc}"
            if not self._closing:
                log.warning("the worker processes did not start (%s); scoring goes on in this process", self.failure)
        else:
            log.info("worker processes ready after %.2f s", time.perf_counter() - began)
            self.ready.set()
        with self._lock:
            self._started = True
            closing = self._closing
        if closing:  # the run finished without them: stop them here
            self.pool.shutdown(wait=True, cancel_futures=True)

    def submit(self, index: int, start: int, data: Any) -> Future[ChunkOutcome]:
        self.used = True
        import pyarrow as pa

        if isinstance(data, pa.Table):
            data = to_ipc(data)  # only the slice's own rows cross the pipe
        return self.pool.submit(score_in_worker, index, start, data)

    def shutdown(self) -> None:
        """Stop the workers; when no chunk went to them and they are still starting, the start-up thread stops
        them once they are up, and this returns at once."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            handed_over = not self._started and not self.used
        if handed_over:
            return
        self._starter.join()
        self.pool.shutdown(wait=True, cancel_futures=True)


def threads_suffice(package: ModelPackage) -> bool:
    """Whether ``workers`` threads of this process score as fast as ``workers`` processes would: every
    feature numeric (no Python objects to build per row), so the work releases the GIL, and no process start-up
    (a fresh interpreter importing NumPy, pandas, Arrow and scikit-learn, then the package) has to be paid."""
    return all(f.dtype in _GIL_FREE_DTYPES for f in package.schema.features)


class Parallel:
    """``workers`` > 1: ``workers`` threads of this process score; worker processes, when there are any, take
    every new chunk once they are ready (the threads hide their start-up behind useful work). No processes when
    threads suffice (numeric features: the work releases the GIL), for an input too small to share among them
    or an output they cannot write; no threads when :data:`LOCAL_UNTIL_READY` is off."""

    def __init__(self, local: Threads | None, pool: Pool | None) -> None:
        assert local is not None or pool is not None
        self.local = local
        self.pool = pool
        self.switched_at: int | None = None

    def submit(self, index: int, start: int, data: Any) -> Future[ChunkOutcome]:
        if self.pool is not None and (self.local is None or self.pool.ready.is_set()):
            if self.switched_at is None:
                self.switched_at = index
                if self.local is not None:
                    log.info("chunks from %d go to the worker processes", index)
            return self.pool.submit(index, start, data)
        assert self.local is not None
        return self.local.submit(index, start, data)

    def shutdown(self) -> None:
        if self.local is not None:
            self.local.shutdown()
        if self.pool is not None:
            self.pool.shutdown()


Lanes = Inline | Parallel


def open_lanes(
    scorer: Scorer,
    *,
    workers: int,
    chunks: int | None,
    threads: int,
    pool: Pool | None = None,
    start_pool: Callable[[], Pool] | None = None,
) -> Lanes:
    """The lanes of a run of ``chunks`` chunks (``None``: unknown) on ``workers`` lanes.

    Args:
        scorer: scores chunks in this process.
        workers: the lanes wanted.
        chunks: the input's chunks, when known.
        threads: native threads per lane.
        pool: worker processes started already (the run joins features in this process, which holds its GIL).
        start_pool: starts worker processes, when the run can use them (``None``: it cannot).
    """
    if workers == 1:
        return Inline(scorer)
    if pool is None and start_pool is not None and (PROCESSES_ALWAYS or not threads_suffice(scorer.package)):
        pool = start_pool()
    lanes = workers if chunks is None else min(workers, chunks)
    local = Threads(scorer, lanes, threads) if LOCAL_UNTIL_READY or pool is None else None
    log.debug(
        "scoring on %d thread(s) of this process, %d worker process(es)",
        lanes if local is not None else 0,
        workers if pool is not None else 0,
    )
    return Parallel(local, pool)
