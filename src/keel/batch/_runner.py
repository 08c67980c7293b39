"""The batch run: stream the input by chunks, join features, score in workers, write in order, resume."""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor, as_completed, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keel.batch._io import (
    InputFile,
    RowSlice,
    is_local,
    is_memory,
    iter_chunks,
    open_input,
    replace,
    temp_name,
    to_ipc,
)
from keel.batch._manifest import Manifest
from keel.batch._worker import (
    ChunkOutcome,
    ModelSource,
    Scorer,
    init_worker,
    limit_lane_threads,
    ping,
    score_in_worker,
)
from keel.errors import BackendError, NotFoundError, ValidationError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from keel.models import ModelPackage
    from keel.project import Project

log = logging.getLogger(__name__)

FEATURE_MODES = ("input", "offline", "online")
#: Suffixes of the files kept next to the output while a run is unfinished.
MANIFEST_SUFFIX = ".manifest.json"
PARTS_SUFFIX = ".parts"

ProgressCallback = Callable[[int, "int | None"], None]


@dataclass(frozen=True)
class ChunkFailure:
    """A chunk that failed twice (first attempt and one retry).

    Attributes:
        chunk: the chunk's index.
        start_row: its first input row (0-based).
        end_row: one past its last input row.
        error: the last attempt's error.
    """

    chunk: int
    start_row: int
    end_row: int
    error: str

    def __str__(self) -> str:
        return f"chunk {self.chunk} (rows {self.start_row}-{self.end_row - 1}): {self.error}"


@dataclass
class BatchResult:
    """What a batch run did.

    Attributes:
        output: where the predictions are (``None`` when no chunk succeeded).
        model: the version scored with (``churn v3``).
        package_digest: that version's package SHA-256.
        rows: rows in the output (scored now or in an earlier, resumed run).
        chunks: chunks in the input.
        chunks_resumed: chunks taken from an earlier run instead of being scored again.
        failures: chunks that failed, with their row ranges and errors.
        seconds: wall time of this run.
        manifest: the manifest kept for a re-run (``None`` once everything succeeded).
        warnings: what was noticed (online values from another version than the model's ...).
    """

    output: str | None
    model: str
    package_digest: str
    rows: int
    chunks: int
    chunks_resumed: int
    failures: list[ChunkFailure]
    seconds: float
    manifest: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every chunk was scored."""
        return not self.failures

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        text = (
            f"{self.rows:,} rows in {self.seconds:.2f} s ({self.rows_per_s:,.0f} rows/s) with {self.model}; "
            f"{self.chunks} chunk(s), {self.chunks_resumed} resumed, {len(self.failures)} failed"
        )
        return text + "".join(f"\n  {f}" for f in self.failures)


class _Inline:
    """Scores in the calling thread (one worker): same code path, no process start-up."""

    def __init__(self, scorer: Scorer) -> None:
        self.scorer = scorer

    def submit(self, index: int, start: int, data: Any) -> Future[ChunkOutcome]:
        future: Future[ChunkOutcome] = Future()
        future.set_result(self.scorer.score(index, start, data))
        return future

    def shutdown(self) -> None:
        pass


class _Threads:
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


#: Modules the fork server imports before forking workers: the heavy ones every worker needs and the
#: scikit-learn modules packages are commonly made of (imported once there, not once per worker).
_PRELOAD = [
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


class _Pool:
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
            context.set_forkserver_preload([*_PRELOAD, type(source).__module__])
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


#: Whether this process scores chunks on its own threads until the worker processes are ready (tests turn it
#: off to score with the processes alone).
LOCAL_UNTIL_READY = True
#: Whether worker processes are used even when threads suffice (tests turn it on).
PROCESSES_ALWAYS = False
#: Feature types whose chunks go from Arrow to the estimator without Python objects: scoring them releases the
#: GIL (Arrow's readers, NumPy, the estimators' compiled loops), so threads of this process run in parallel.
_GIL_FREE_DTYPES = frozenset({"float64", "int64", "bool"})


def _threads_suffice(package: ModelPackage) -> bool:
    """Whether ``workers`` threads of this process score as fast as ``workers`` processes would: every
    feature numeric (no Python objects to build per row), so the work releases the GIL, and no process start-up
    (a fresh interpreter importing NumPy, pandas, Arrow and scikit-learn, then the package) has to be paid."""
    return all(f.dtype in _GIL_FREE_DTYPES for f in package.schema.features)


class _Parallel:
    """``workers`` > 1: ``workers`` threads of this process score; worker processes, when there are any, take
    every new chunk once they are ready (the threads hide their start-up behind useful work). No processes when
    threads suffice (numeric features: the work releases the GIL), for an input too small to share among them
    or an output they cannot write; no threads when :data:`LOCAL_UNTIL_READY` is off."""

    def __init__(self, local: _Threads | None, pool: _Pool | None) -> None:
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


def predict_batch(
    project: Project,
    model: str,
    input: str | Path,
    output: str | Path,
    *,
    workers: int = 1,
    chunk_rows: int = 100_000,
    id_column: str | None = None,
    features: str = "input",
    timestamp: str | None = None,
    resume: bool = True,
    allow_pickle: bool = False,
    probabilities: bool = True,
    on_progress: ProgressCallback | None = None,
) -> BatchResult:
    """Score a Parquet or CSV file by chunks; see :meth:`keel.Project.predict_batch`."""
    import fsspec

    started = time.perf_counter()
    if workers < 1:
        raise ValidationError(f"workers must be at least 1, got {workers}", field="workers")
    if chunk_rows < 1:
        raise ValidationError(f"chunk_rows must be at least 1, got {chunk_rows}", field="chunk_rows")
    if features not in FEATURE_MODES:
        raise ValidationError(f"features must be one of {', '.join(FEATURE_MODES)}, got {features!r}", field="features")
    record = project.models.get(model)
    label = f"model {record.name} v{record.version}"
    source = open_input(str(input))  # the file's metadata only: quick
    out_fs, out_path = fsspec.core.url_to_fs(str(output))
    if not out_path.lower().endswith((".parquet", ".pq")):
        raise ValidationError(f"{output}: the output is written as Parquet; name it .parquet", field="output")
    if out_path == source.path and type(out_fs) is type(source.fs):
        raise ValidationError(f"{output}: the output would overwrite the input", field="output")
    parts_path = out_path + PARTS_SUFFIX
    parts_uri = _uri(out_fs, parts_path)
    threads = max(1, (os.cpu_count() or 1) // workers)
    chunks = None if source.num_rows is None else max(1, -(-source.num_rows // chunk_rows))
    # Worker processes pay off only with more chunks than workers, and must be able to write the parts.
    pool_possible = workers > 1 and (chunks is None or chunks > workers) and not is_memory(out_fs)

    def start_pool() -> _Pool:
        store = project.artifacts
        in_memory = is_memory(store.fs)
        model_source = ModelSource(
            digest=record.package_digest,
            fmt=record.package_format,
            label=label,
            artifacts_uri=None if in_memory else store.uri,
            blob=store.get_bytes(record.package_digest, name=label) if in_memory else None,
            allow_pickle=allow_pickle,
            trusted_types=project.models.trusted_types,
        )
        return _Pool(workers, model_source, parts_uri, id_column, probabilities, threads)

    # Features joined here hold this process's GIL: score in processes, started first (they start while this
    # process loads the model and checks the input).
    pool = start_pool() if pool_possible and features != "input" else None
    engine: _Inline | _Parallel | None = None
    try:
        package = project.models.load(f"{record.name}:{record.version}", allow_pickle=allow_pickle)
        scorer = Scorer(package, parts_uri, id_column, probabilities)
        if workers == 1:
            engine = _Inline(scorer)
        else:
            if pool is None and pool_possible and (PROCESSES_ALWAYS or not _threads_suffice(package)):
                pool = start_pool()
            lanes = workers if chunks is None else min(workers, chunks)
            local = _Threads(scorer, lanes, threads) if LOCAL_UNTIL_READY or pool is None else None
            engine = _Parallel(local, pool)
            log.debug(
                "scoring on %d thread(s) of this process, %d worker process(es)",
                lanes if local is not None else 0,
                workers if pool is not None else 0,
            )
        return _run(
            project,
            record,
            package,
            source,
            engine,
            output=str(output),
            out_fs=out_fs,
            out_path=out_path,
            parts_path=parts_path,
            workers=workers,
            chunk_rows=chunk_rows,
            id_column=id_column,
            features=features,
            timestamp=timestamp,
            resume=resume,
            probabilities=probabilities,
            on_progress=on_progress,
            started=started,
        )
    finally:
        if engine is not None:
            engine.shutdown()
        elif pool is not None:
            pool.shutdown()


def _run(
    project: Project,
    record: Any,
    package: ModelPackage,
    source: InputFile,
    engine: _Inline | _Parallel,
    *,
    output: str,
    out_fs: Any,
    out_path: str,
    parts_path: str,
    workers: int,
    chunk_rows: int,
    id_column: str | None,
    features: str,
    timestamp: str | None,
    resume: bool,
    probabilities: bool,
    on_progress: ProgressCallback | None,
    started: float,
) -> BatchResult:
    parent = out_path.rpartition("/")[0]
    if parent:
        out_fs.makedirs(parent, exist_ok=True)

    joiner = _Joiner(project, package, source, features, id_column, timestamp)
    columns = joiner.columns()
    manifest_path = out_path + MANIFEST_SUFFIX
    manifest = Manifest(
        input=source.fingerprint(),
        model={"name": record.name, "version": record.version, "digest": record.package_digest},
        settings={
            "chunk_rows": chunk_rows,
            "features": features,
            "id_column": id_column,
            "timestamp": timestamp,
            "probabilities": probabilities,
        },
    )
    old = Manifest.load(out_fs, manifest_path) if resume else None
    if old is not None and old.matches(manifest):
        manifest.chunks = {k: v for k, v in old.chunks.items() if out_fs.exists(f"{parts_path}/{v['part']}")}
        log.info("resuming: %d chunk(s) done in an earlier run", len(manifest.chunks))
    elif out_fs.exists(parts_path):
        out_fs.rm(parts_path, recursive=True)
    out_fs.makedirs(parts_path, exist_ok=True)
    manifest.save(out_fs, manifest_path)

    total = source.num_rows
    done_rows = 0
    resumed = 0
    chunks = 0
    failures: dict[int, ChunkFailure] = {}
    pending: dict[Future[ChunkOutcome], tuple[int, int, int, Any, int]] = {}
    by_process: dict[int, int] = {}

    def progress(rows: int) -> None:
        nonlocal done_rows
        done_rows += rows
        if on_progress is not None:
            on_progress(done_rows, total)

    def fail(index: int, start: int, rows: int, error: str) -> None:
        failures[index] = ChunkFailure(index, start, start + rows, error)
        manifest.failures[str(index)] = {"start": start, "end": start + rows, "error": error}
        manifest.save(out_fs, manifest_path)
        log.warning("chunk %d (rows %d-%d) failed: %s", index, start, start + rows - 1, error)
        progress(rows)

    def settle(future: Future[ChunkOutcome]) -> None:
        index, start, rows, data, attempt = pending.pop(future)
        try:
            outcome = future.result()
        except BrokenProcessPool as exc:  # every chunk would fail the same way: stop, keep what is done
            raise BackendError(
                f"the worker processes died while scoring chunk {index} (rows {start}-{start + rows - 1}): {exc}. "
                "Killed for lack of memory? Fewer --workers or smaller --chunk-rows help; a script calling "
                "predict_batch with workers > 1 needs an `if __name__ == '__main__':` guard. Finished chunks are "
                "kept: a re-run resumes."
            ) from exc
        except Exception as exc:  # the chunk's data could not reach the worker, for instance
            outcome = ChunkOutcome(index, 0, None, f"{type(exc).__name__}: {exc}")
        by_process[outcome.pid] = by_process.get(outcome.pid, 0) + 1
        if outcome.error is None and outcome.part is not None:
            manifest.chunks[str(index)] = {"start": start, "rows": rows, "part": outcome.part}
            manifest.failures.pop(str(index), None)
            manifest.save(out_fs, manifest_path)
            progress(rows)
        elif attempt == 0:
            log.info("chunk %d failed (%s); retrying once", index, outcome.error)
            pending[_submit(engine, index, start, data)] = (index, start, rows, data, 1)
        else:
            fail(index, start, rows, outcome.error or "unknown error")

    # a classifier's labels are few: dictionary-encoded; ids, numbers and probabilities are mostly distinct
    combiner = _Combiner(
        out_fs, out_path, parts_path, manifest, ["prediction"] if package.task == "classification" else []
    )

    def settle_some() -> None:
        finished, _ = wait(list(pending), return_when=FIRST_COMPLETED)
        for future in finished:
            settle(future)
        combiner.advance(chunks, {entry[0] for entry in pending.values()})

    try:
        for index, rows, item in _chunks(source, joiner, columns, chunk_rows):
            chunks += 1
            start = index * chunk_rows
            if str(index) in manifest.chunks and manifest.chunks[str(index)]["rows"] == rows:
                resumed += 1
                progress(rows)
                continue
            manifest.chunks.pop(str(index), None)  # an earlier run's part that does not fit: scored again
            data: Any = None
            if isinstance(item, RowSlice):
                data = item  # read by whoever scores it
            else:
                error = ""
                for _attempt in range(2):  # joining features is retried once too
                    try:
                        data = joiner.prepare(item)
                        break
                    except Exception as exc:
                        error = f"{type(exc).__name__}: {exc}"
                if data is None:
                    fail(index, start, rows, f"feature retrieval failed: {error}")
                    continue
            pending[_submit(engine, index, start, data)] = (index, start, rows, data, 0)
            while len(pending) >= 2 * workers:
                settle_some()
        while pending:
            settle_some()
        combiner.advance(chunks, set())
        written = combiner.finish()
    except BaseException:
        combiner.abort()
        raise
    finally:
        engine.shutdown()  # the caller shuts it down too (twice is harmless)
    log.debug("chunks scored by process id: %s", by_process)
    rows_out = sum(int(c["rows"]) for k, c in manifest.chunks.items() if int(k) < chunks)
    if not failures:
        out_fs.rm(parts_path, recursive=True)
        out_fs.rm(manifest_path)
    return BatchResult(
        output=_uri(out_fs, out_path) if written else None,
        model=f"{record.name} v{record.version}",
        package_digest=record.package_digest,
        rows=rows_out,
        chunks=chunks,
        chunks_resumed=resumed,
        failures=[failures[i] for i in sorted(failures)],
        seconds=time.perf_counter() - started,
        manifest=_uri(out_fs, manifest_path) if failures else None,
        warnings=joiner.warnings,
    )


def _chunks(
    source: InputFile, joiner: _Joiner, columns: list[str], chunk_rows: int
) -> Iterator[tuple[int, int, pa.Table | RowSlice]]:
    """(index, rows, the chunk) for every chunk of the input: a :class:`RowSlice` that the scorer reads itself
    when the input is a Parquet file of small enough row groups that another process can open, the chunk's
    table read here otherwise."""
    if joiner.mode == "input" and source.slices_fit(chunk_rows) and not source.in_memory():
        assert source.num_rows is not None
        uri = source.path if is_local(source.fs) else source.uri
        for index in range(max(1, -(-source.num_rows // chunk_rows))):
            start = index * chunk_rows
            rows = max(0, min(chunk_rows, source.num_rows - start))
            yield index, rows, RowSlice(uri, tuple(columns), start, rows, source.size, source.mtime)
        return
    for index, table in enumerate(iter_chunks(source, columns, chunk_rows)):
        yield index, table.num_rows, table


def _submit(engine: _Inline | _Parallel, index: int, start: int, data: Any) -> Future[ChunkOutcome]:
    return engine.submit(index, start, data)


def _uri(fs: Any, path: str) -> str:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return (
        path
        if protocol in ("file", "local")
        else f"{protocol}://{path.removeprefix('/') if protocol == 'memory' else path}"
    )


class _Combiner:
    """Appends the done chunks' parts, in input order, to the output under a temporary name as soon as every
    chunk before them is settled (done, failed or taken from an earlier run), one part at a time: the output is
    written while the chunks are scored, and memory holds one part at most."""

    def __init__(
        self, fs: Any, out_path: str, parts_path: str, manifest: Manifest, dictionary: list[str] | None = None
    ) -> None:
        self.fs = fs
        self.dictionary = dictionary or []  # the columns worth dictionary-encoding (few distinct values)
        self.out_path = out_path
        self.parts_path = parts_path
        self.manifest = manifest
        self.tmp = temp_name(out_path)
        self.next = 0  # the first chunk not appended (or skipped) yet
        self._file: Any = None
        self._writer: Any = None

    def advance(self, settled: int, unsettled: set[int]) -> None:
        """Append every chunk from the next one up to the first still unsettled, below ``settled``."""
        while self.next < settled and self.next not in unsettled:
            entry = self.manifest.chunks.get(str(self.next))
            if entry is not None:  # not a failed chunk
                self._append(entry["part"])
            self.next += 1

    def _append(self, part: str) -> None:
        import pyarrow.parquet as pq

        with self.fs.open(f"{self.parts_path}/{part}", "rb") as f:
            table = pq.read_table(f)
        if self._writer is None:
            self._file = self.fs.open(self.tmp, "wb")
            self._writer = pq.ParquetWriter(self._file, table.schema, use_dictionary=self.dictionary)
        elif table.schema != self._writer.schema:
            table = table.cast(self._writer.schema)
        self._writer.write_table(table)

    def finish(self) -> bool:
        """Close the output and rename it into place; ``False`` when no chunk was done (no output)."""
        if self._writer is None:
            return False
        self._writer.close()
        self._file.close()
        self._writer = self._file = None
        replace(self.fs, self.tmp, self.out_path)
        return True

    def abort(self) -> None:
        """Remove the unfinished output."""
        if self._writer is not None:
            try:
                self._writer.close()
                self._file.close()
            finally:
                self._writer = self._file = None
                if self.fs.exists(self.tmp):
                    self.fs.rm(self.tmp)


class _Joiner:
    """Turns an input chunk into the frame the package scores: its own columns, or features joined to it."""

    def __init__(
        self,
        project: Project,
        package: ModelPackage,
        source: InputFile,
        mode: str,
        id_column: str | None,
        timestamp: str | None,
    ) -> None:
        self.project = project
        self.package = package
        self.source = source
        self.mode = mode
        self.id_column = id_column
        self.timestamp = timestamp
        self.warnings: list[str] = []
        self.keys: list[str] = []
        self.read_all = False
        available = set(source.columns)
        if id_column is not None and id_column not in available:
            raise ValidationError(
                f"{source.uri}: no id column {id_column!r}; columns: {', '.join(source.columns)}", field=id_column
            )
        if mode == "input":
            missing = [c for c in package.feature_names if c not in available]
            if missing:
                raise ValidationError(
                    f"{source.uri} lacks feature column(s) {missing} of model {package.name!r}, which needs: "
                    f"{', '.join(package.feature_names)}. Add them, or join them from the stores with "
                    "features='offline' (entity keys + a timestamp column) or features='online' (entity keys).",
                    field=missing[0],
                )
            return
        from keel.features import FeatureRef

        self.refs = list(package.feature_refs)
        for ref in self.refs:
            parsed = FeatureRef.parse(ref)
            try:
                view = project.definitions.feature_view(parsed.view)[0]
            except NotFoundError:
                self.read_all = True  # an on-demand view: its request fields come from the input
                continue
            for key in project.definitions.join_keys(view):
                if key not in self.keys:
                    self.keys.append(key)
        missing = [k for k in self.keys if k not in available]
        if missing:
            raise ValidationError(
                f"{source.uri} lacks entity key column(s) {missing} needed to look up the features of model "
                f"{package.name!r}",
                field=missing[0],
            )
        if mode == "offline":
            if timestamp is None:
                self.read_all = True  # the retrieval finds the only timestamp column
            elif timestamp not in available:
                raise ValidationError(
                    f"{source.uri}: no timestamp column {timestamp!r}; columns: {', '.join(source.columns)}",
                    field=timestamp,
                )
        if mode == "online":
            self.online_refs = [f"{p.view}:{p.feature}" for p in (FeatureRef.parse(r) for r in self.refs)]
            self.pinned = {p.view: p.version for p in (FeatureRef.parse(r) for r in self.refs)}

    def columns(self) -> list[str]:
        """The input columns to read."""
        if self.mode == "input":
            wanted = [*self.package.feature_names, *([self.id_column] if self.id_column else [])]
        elif self.read_all:
            return list(self.source.columns)
        else:
            wanted = [
                *self.keys,
                *([self.timestamp] if self.timestamp else []),
                *([self.id_column] if self.id_column else []),
            ]
        return list(dict.fromkeys(wanted))

    def prepare(self, table: pa.Table) -> pa.Table | pd.DataFrame:
        """What a worker scores: the chunk's table (sent to a worker process as Arrow IPC bytes), or a frame
        with the features joined."""
        if self.mode == "input":
            return table
        import pandas as pd

        frame = table.to_pandas()
        features = [c for c in self.package.feature_names if c in frame.columns and c not in self.keys]
        entity = frame.drop(columns=[c for c in features if c not in (self.id_column, self.timestamp)])
        if self.mode == "offline":
            offline: pd.DataFrame = self.project.historical_features(entity, self.refs, timestamp=self.timestamp)
            return offline
        found = self.project.online_features(self.online_refs, {k: entity[k].tolist() for k in self.keys})
        for view, version in found.versions.items():
            wanted = self.pinned.get(view)
            if wanted is not None and version != wanted:
                note = f"online values of {view!r} come from version {version}; the model was trained on {wanted}"
                if note not in self.warnings:
                    self.warnings.append(note)
        values = found.to_frame().reset_index(drop=True)
        joined: pd.DataFrame = pd.concat([entity.reset_index(drop=True), values], axis=1)
        return joined
