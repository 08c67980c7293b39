"""The batch run: stream the input by chunks, join features, score in lanes, write in order, resume."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keel._files import is_local, protocol_of, storage_errors, writes_whole
from keel.batch._features import FeatureJoin, InputFeatures
from keel.batch._io import InputFile, RowSlice, iter_chunks, open_input, text_schema
from keel.batch._lanes import Lanes, Pool, open_lanes
from keel.batch._manifest import Manifest
from keel.batch._output import MANIFEST_SUFFIX, PARTS_SUFFIX, Combiner, Output
from keel.batch._worker import ChunkOutcome, ModelSource, Scorer
from keel.errors import BackendError, ValidationError

if TYPE_CHECKING:
    import pyarrow as pa

    from keel.artifacts import ArtifactStore
    from keel.catalog import ModelVersionRecord
    from keel.models import ModelPackage, ModelRegistry

log = logging.getLogger(__name__)

#: Where a run's features come from: the input's own columns, the offline store (point in time) or the online one.
FEATURE_SOURCES = ("input", "offline", "online")
FEATURE_MODES = FEATURE_SOURCES  # the earlier name, kept for callers of keel.batch.FEATURE_MODES

__all__ = [
    "FEATURE_MODES",
    "FEATURE_SOURCES",
    "MANIFEST_SUFFIX",
    "PARTS_SUFFIX",
    "BatchOptions",
    "BatchResult",
    "ChunkFailure",
    "ProgressCallback",
    "predict_batch",
]

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


@dataclass(frozen=True)
class BatchOptions:
    """How a batch run goes; checked when built.

    Attributes:
        workers: scoring lanes (1: score in this thread): threads of this process, each with its share of the
            cores, when every feature is numeric (scoring then releases the GIL); otherwise worker processes,
            each loading the package once by its digest.
        chunk_rows: rows per chunk.
        id_column: an input column copied to the output as its id (default: ``row_number``, from 0).
        feature_source: ``input`` (the input holds the feature columns), ``offline`` (joined point in time for
            the entity keys as of ``timestamp``) or ``online`` (looked up by entity keys).
        timestamp: with ``offline``, the as-of column (default: the input's only timestamp column).
        resume: reuse the chunks an interrupted run with the same input, model and settings finished.
        allow_pickle: load a pickle-based package.
        probabilities: add a classifier's ``proba_<class>`` columns.

    Raises:
        ValidationError: a value is out of range, naming the field.

    Example:
        >>> BatchOptions(workers=2, chunk_rows=50_000).feature_source
        'input'
    """

    workers: int = 1
    chunk_rows: int = 100_000
    id_column: str | None = None
    feature_source: str = "input"
    timestamp: str | None = None
    resume: bool = True
    allow_pickle: bool = False
    probabilities: bool = True

    def __post_init__(self) -> None:
        for name in ("workers", "chunk_rows"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValidationError(f"{name} must be an integer, got {value!r}", field=name)
            if value < 1:
                raise ValidationError(f"{name} must be at least 1, got {value}", field=name)
        if self.feature_source not in FEATURE_SOURCES:
            raise ValidationError(
                f"feature_source must be one of {', '.join(FEATURE_SOURCES)}, got {self.feature_source!r}",
                field="feature_source",
            )
        for name in ("id_column", "timestamp"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ValidationError(f"{name} must be a column name or None, got {value!r}", field=name)


def predict_batch(
    model: str,
    input: str | Path,
    output: str | Path,
    *,
    registry: ModelRegistry,
    artifacts: ArtifactStore,
    join: FeatureJoin | None = None,
    options: BatchOptions | None = None,
    on_progress: ProgressCallback | None = None,
) -> BatchResult:
    """Score a Parquet or CSV file (local or fsspec URI) by chunks into a Parquet file, in input order.

    Memory stays bounded by ``chunk_rows`` times the number of workers, whatever the input's size.

    Args:
        model: a model reference (``churn@champion``, ``churn:3``) of ``registry``.
        input: the rows to score.
        output: the Parquet file to write (atomically); a manifest next to it lets a re-run resume.
        registry: where ``model`` is registered.
        artifacts: the artifact store holding its package (worker processes load it from there).
        join: where the features come from (default: :class:`InputFeatures`, the input's own columns); its
            source must be ``options.feature_source``.
        options: workers, chunk size, id column ... (default: :class:`BatchOptions` ()).
        on_progress: called with (rows done, total rows or ``None``) after each chunk.

    Returns:
        :class:`BatchResult`, listing the chunks that failed twice with their row ranges.

    Example:
        >>> predict_batch("churn@champion", "in.parquet", "out.parquet", registry=project.models,
        ...               artifacts=project.artifacts, options=BatchOptions(workers=2))  # doctest: +SKIP
    """
    started = time.perf_counter()
    options = options if options is not None else BatchOptions()
    passthrough = join is None or isinstance(join, InputFeatures)
    if passthrough != (options.feature_source == "input"):
        raise ValidationError(
            f"feature_source={options.feature_source!r} needs "
            + ("a join (OfflineJoin or OnlineJoin)" if passthrough else "no join, or InputFeatures"),
            field="feature_source",
        )
    record = registry.get(model)
    source = open_input(str(input))  # the file's metadata only: quick
    target = Output.of(str(output), source)
    workers = options.workers
    threads = max(1, (os.cpu_count() or 1) // workers)
    chunks = None if source.num_rows is None else max(1, -(-source.num_rows // options.chunk_rows))
    # Worker processes pay off only with more chunks than workers, and must be able to write the parts.
    start_pool = (
        partial(_start_pool, record, artifacts, target, options, threads, registry.trusted_types)
        if workers > 1 and (chunks is None or chunks > workers) and not target.in_memory
        else None
    )
    # Features joined here hold this process's GIL: score in processes, started first (they start while this
    # process loads the model and checks the input).
    pool = start_pool() if start_pool is not None and not passthrough else None
    lanes: Lanes | None = None
    try:
        package = registry.load(f"{record.name}:{record.version}", allow_pickle=options.allow_pickle)
        scorer = Scorer(package, target.uri(target.parts_path), options.id_column, options.probabilities)
        lanes = open_lanes(scorer, workers=workers, chunks=chunks, threads=threads, pool=pool, start_pool=start_pool)
        if join is None:
            join = InputFeatures(package.feature_names, model=package.name)
        run = _Run(record, package, source, join, lanes, target, options, on_progress)
        return run.execute(started)
    finally:
        if lanes is not None:
            lanes.shutdown()
        elif pool is not None:
            pool.shutdown()


def _start_pool(
    record: ModelVersionRecord,
    artifacts: ArtifactStore,
    target: Output,
    options: BatchOptions,
    threads: int,
    trusted_types: tuple[str, ...] = (),
) -> Pool:
    """Worker processes loading the package from ``artifacts`` (or, for an in-memory store, which they cannot
    open, from its verified bytes)."""
    label = f"model {record.name} v{record.version}"
    in_memory = protocol_of(artifacts.fs) == "memory"
    source = ModelSource(
        digest=record.package_digest,
        fmt=record.package_format,
        label=label,
        artifacts_uri=None if in_memory else artifacts.uri,
        blob=artifacts.get_bytes(record.package_digest, name=label) if in_memory else None,
        allow_pickle=options.allow_pickle,
        trusted_types=trusted_types,
    )
    return Pool(
        options.workers, source, target.uri(target.parts_path), options.id_column, options.probabilities, threads
    )


class _Run:
    """One run once its model, input, output and lanes are settled: chunks go to the lanes, their parts come
    back and are appended to the output in order, and the manifest records each settled chunk."""

    def __init__(
        self,
        record: ModelVersionRecord,
        package: ModelPackage,
        source: InputFile,
        join: FeatureJoin,
        lanes: Lanes,
        output: Output,
        options: BatchOptions,
        on_progress: ProgressCallback | None,
    ) -> None:
        self.record = record
        self.package = package
        self.source = source
        self.join = join
        self.lanes = lanes
        self.output = output
        self.options = options
        self.on_progress = on_progress
        # a CSV file has no types: a string feature's column is read as the text it is
        self.text = [f.name for f in package.schema.features if f.dtype == "string"] if source.kind == "csv" else []
        self.columns = self._columns()
        self.manifest = Manifest(
            input=source.fingerprint(),
            model={"name": record.name, "version": record.version, "digest": record.package_digest},
            settings={
                "chunk_rows": options.chunk_rows,
                "features": options.feature_source,  # the key earlier runs' manifests hold
                "id_column": options.id_column,
                "timestamp": options.timestamp,
                "probabilities": options.probabilities,
            },
        )
        self.done_rows = 0
        self.resumed = 0
        self.chunks = 0
        self.failures: dict[int, ChunkFailure] = {}
        # future -> (index, start, rows, data, attempt)
        self.pending: dict[Future[ChunkOutcome], tuple[int, int, int, Any, int]] = {}
        self.by_process: dict[int, int] = {}

    def _columns(self) -> list[str]:
        """The input columns to read: the join's and the id column."""
        source, id_column = self.source, self.options.id_column
        if id_column is not None and id_column not in source.columns:
            raise ValidationError(
                f"{source.uri}: no id column {id_column!r}; columns: {', '.join(source.columns)}", field=id_column
            )
        try:
            wanted = self.join.columns(source.columns)
        except ValidationError as exc:  # the join speaks of "the input": name it
            raise ValidationError(f"{source.uri}: {exc}", field=exc.field) from exc
        if isinstance(self.join, InputFeatures) and source.schema is not None:
            # a feature column of a type that cannot hold the feature's values fails the run before any chunk is
            # scored (the values themselves are checked chunk by chunk)
            self.package.check_input_types(text_schema(source, self.text), what=f"{source.kind} input {source.uri}")
        return list(dict.fromkeys([*wanted, *([id_column] if id_column else [])]))

    def execute(self, started: float) -> BatchResult:
        """Score every chunk not done by an earlier run, assemble the output, and say what happened."""
        try:
            self._open_manifest()
        except storage_errors() as exc:  # the output's storage refuses the first write (a missing bucket ...)
            where = self.output.uri(self.output.path)
            raise BackendError(f"cannot write the output {where}: {exc}") from exc
        # a classifier's labels are few: dictionary-encoded; ids, numbers and probabilities are mostly distinct
        dictionary = ["prediction"] if self.package.task == "classification" else []
        with Combiner(self.output, self.manifest, dictionary) as combiner:
            try:
                for index, rows, item in self._chunks():
                    self._send(combiner, index, rows, item)
                while self.pending:
                    self._settle_some(combiner)
            finally:
                self.lanes.shutdown()  # the caller shuts them down too (twice is harmless)
            combiner.advance(self.chunks, set())
            written = combiner.finish()
        return self._result(written, started)

    def _open_manifest(self) -> None:
        """Take the chunks an earlier run of the same work finished, or start afresh."""
        fs, parts_path, manifest = self.output.fs, self.output.parts_path, self.manifest
        parent = self.output.path.rpartition("/")[0]
        folders = not writes_whole(fs)  # S3 has no folders to make (s3fs would create a missing bucket for one)
        if parent and folders:
            fs.makedirs(parent, exist_ok=True)
        old = Manifest.load(fs, self.output.manifest_path) if self.options.resume else None
        if old is not None and old.matches(manifest):
            manifest.chunks = {k: v for k, v in old.chunks.items() if fs.exists(f"{parts_path}/{v['part']}")}
            log.info("resuming: %d chunk(s) done in an earlier run", len(manifest.chunks))
        elif fs.exists(parts_path):
            fs.rm(parts_path, recursive=True)
        if folders:
            fs.makedirs(parts_path, exist_ok=True)
        manifest.save(fs, self.output.manifest_path)

    def _chunks(self) -> Iterator[tuple[int, int, pa.Table | RowSlice]]:
        """(index, rows, the chunk) for every chunk of the input: a :class:`RowSlice` that the scorer reads itself
        when the input is a Parquet file of small enough row groups that another process can open and the rows
        are scored as they are, the chunk's table read here otherwise."""
        source, chunk_rows = self.source, self.options.chunk_rows
        if isinstance(self.join, InputFeatures) and source.slices_fit(chunk_rows) and not source.in_memory():
            assert source.num_rows is not None
            uri = source.path if is_local(source.fs) else source.uri
            for index in range(max(1, -(-source.num_rows // chunk_rows))):
                start = index * chunk_rows
                rows = max(0, min(chunk_rows, source.num_rows - start))
                yield index, rows, RowSlice(uri, tuple(self.columns), start, rows, source.size, source.mtime)
            return
        for index, table in enumerate(iter_chunks(source, self.columns, chunk_rows, self.text)):
            yield index, table.num_rows, table

    def _send(self, combiner: Combiner, index: int, rows: int, item: pa.Table | RowSlice) -> None:
        """Hand one chunk to the lanes (unless an earlier run did it), waiting while enough are in flight."""
        self.chunks += 1
        start = index * self.options.chunk_rows
        done = self.manifest.chunks.get(str(index))
        if done is not None and done["rows"] == rows:
            self.resumed += 1
            self._progress(rows)
            return
        self.manifest.chunks.pop(str(index), None)  # an earlier run's part that does not fit: scored again
        data = item if isinstance(item, RowSlice) else self._joined(index, start, item)
        if data is None:
            return
        self.pending[self.lanes.submit(index, start, data)] = (index, start, rows, data, 0)
        while len(self.pending) >= 2 * self.options.workers:
            self._settle_some(combiner)

    def _joined(self, index: int, start: int, table: pa.Table) -> Any:
        """The chunk with its features joined (retried once), or ``None`` when the join failed twice."""
        error = ""
        for _attempt in range(2):
            try:
                return self.join.prepare(table)
            except Exception as exc:  # a store that did not answer, for instance
                error = f"{type(exc).__name__}: {exc}"
        self._fail(index, start, table.num_rows, f"feature retrieval failed: {error}")
        return None

    def _settle_some(self, combiner: Combiner) -> None:
        finished, _ = wait(list(self.pending), return_when=FIRST_COMPLETED)
        for future in finished:
            self._settle(future)
        combiner.advance(self.chunks, {entry[0] for entry in self.pending.values()})

    def _settle(self, future: Future[ChunkOutcome]) -> None:
        """Record a scored chunk, or retry it once, or record its failure."""
        index, start, rows, data, attempt = self.pending.pop(future)
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
        self.by_process[outcome.pid] = self.by_process.get(outcome.pid, 0) + 1
        if outcome.error is None and outcome.part is not None:
            self.manifest.chunks[str(index)] = {"start": start, "rows": rows, "part": outcome.part}
            self.manifest.failures.pop(str(index), None)
            self.manifest.save(self.output.fs, self.output.manifest_path)
            self._progress(rows)
        elif attempt == 0:
            log.info("chunk %d failed (%s); retrying once", index, outcome.error)
            self.pending[self.lanes.submit(index, start, data)] = (index, start, rows, data, 1)
        else:
            self._fail(index, start, rows, outcome.error or "unknown error")

    def _fail(self, index: int, start: int, rows: int, error: str) -> None:
        self.failures[index] = ChunkFailure(index, start, start + rows, error)
        self.manifest.failures[str(index)] = {"start": start, "end": start + rows, "error": error}
        self.manifest.save(self.output.fs, self.output.manifest_path)
        log.warning("chunk %d (rows %d-%d) failed: %s", index, start, start + rows - 1, error)
        self._progress(rows)

    def _progress(self, rows: int) -> None:
        self.done_rows += rows
        if self.on_progress is not None:
            self.on_progress(self.done_rows, self.source.num_rows)

    def _result(self, written: bool, started: float) -> BatchResult:
        """The result; the parts and the manifest are removed once every chunk is in the output."""
        log.debug("chunks scored by process id: %s", self.by_process)
        out, record = self.output, self.record
        rows = sum(int(c["rows"]) for k, c in self.manifest.chunks.items() if int(k) < self.chunks)
        if not self.failures:
            out.fs.rm(out.parts_path, recursive=True)
            out.fs.rm(out.manifest_path)
        return BatchResult(
            output=out.uri(out.path) if written else None,
            model=f"{record.name} v{record.version}",
            package_digest=record.package_digest,
            rows=rows,
            chunks=self.chunks,
            chunks_resumed=self.resumed,
            failures=[self.failures[i] for i in sorted(self.failures)],
            seconds=time.perf_counter() - started,
            manifest=out.uri(out.manifest_path) if self.failures else None,
            warnings=self.join.warnings,
        )
