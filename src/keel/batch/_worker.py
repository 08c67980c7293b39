"""Chunk scoring, in worker processes or in the calling one: the model package turns rows into predictions."""

from __future__ import annotations

import hashlib
import os
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from keel.batch._io import RowSlice, SliceReader
from keel.errors import IntegrityError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from keel.models import ModelPackage

#: Prefix of the probability columns of a classifier's output.
PROBA_PREFIX = "proba_"
#: The id column of the output when no id column is given: the input's row number (from 0).
ROW_COLUMN = "row_number"
#: Where a chunk given as a mapping of columns carries its row count.
_ROWS = "\x00rows"


@dataclass(frozen=True)
class ModelSource:
    """Where a worker finds the package: an artifact store and digest, or the verified bytes themselves."""

    digest: str
    fmt: str
    label: str
    artifacts_uri: str | None = None
    blob: bytes | None = None
    allow_pickle: bool = False
    trusted_types: tuple[str, ...] = ()  # the registry's: a worker loads what the parent process loads

    def load(self) -> ModelPackage:
        """The package, its SHA-256 verified before it is deserialized."""
        from keel.models import loads

        if self.blob is not None:
            actual = hashlib.sha256(self.blob).hexdigest()
            if actual != self.digest:
                raise IntegrityError(f"{self.label}: the package hashes to {actual}, not {self.digest}; refused")
            blob = self.blob
        else:
            from keel.artifacts import ArtifactStore

            assert self.artifacts_uri is not None
            blob = ArtifactStore(self.artifacts_uri).get_bytes(self.digest, name=self.label)
        return loads(blob, self.fmt, allow_pickle=self.allow_pickle, trusted_types=self.trusted_types, what=self.label)


@dataclass(frozen=True)
class ChunkOutcome:
    """What scoring one chunk gave: its row count, or the error (as text: it crosses processes), and the id of
    the process that scored it."""

    index: int
    rows: int
    part: str | None
    error: str | None = None
    pid: int = 0


class Scorer:
    """Scores chunks with one loaded package and writes each chunk's part file.

    Args:
        package: the model package.
        parts_uri: the folder (fsspec URI) receiving ``part-<index>.parquet`` files.
        id_column: the input column copied to the output as the id, or ``None`` for the row number.
        probabilities: add a classifier's class probabilities.
    """

    def __init__(
        self, package: ModelPackage, parts_uri: str, id_column: str | None, probabilities: bool = True
    ) -> None:
        import fsspec

        self.package = package
        self.fs, self.parts_path = fsspec.core.url_to_fs(parts_uri)
        self.id_column = id_column
        self.proba = probabilities and package.task == "classification" and hasattr(package.estimator, "predict_proba")
        self._local = threading.local()  # one input reader per thread

    def score(self, index: int, start: int, data: bytes | pa.Table | pd.DataFrame | RowSlice) -> ChunkOutcome:
        """Score chunk ``index`` (input rows from ``start``) and write its part; errors come back as text.

        ``data`` is the chunk as an Arrow table (or its IPC bytes), a frame with its features joined, or a
        :class:`RowSlice` of the input that is read here.
        """
        try:
            if isinstance(data, bytes):
                frame: pd.DataFrame | dict[str, Any] = self._columns(data, start)
            elif isinstance(data, RowSlice):
                frame = self._table_columns(self._reader().read(data), start)
            elif _is_table(data):
                frame = self._table_columns(data, start)
            else:
                frame = data
            table = self.predict(frame, start)
            name = f"part-{index:06d}.parquet"
            from keel.batch._io import write_parquet_atomic

            # a part is read once, by this run or a resumed one: written as fast as it is read back (no
            # compression, no dictionaries), the output is the compact file
            write_parquet_atomic(self.fs, f"{self.parts_path}/{name}", table, compression="none", use_dictionary=False)
            return ChunkOutcome(index, table.num_rows, name, pid=os.getpid())
        except Exception as exc:  # reported with the chunk's row range; the run goes on
            return ChunkOutcome(index, 0, None, _describe(exc, start), pid=os.getpid())

    def _reader(self) -> SliceReader:
        reader: SliceReader | None = getattr(self._local, "reader", None)
        if reader is None:
            reader = self._local.reader = SliceReader()
        return reader

    def _columns(self, data: bytes, start: int = 0) -> pd.DataFrame | dict[str, Any]:
        """A chunk's columns from Arrow IPC bytes (see :meth:`_table_columns`)."""
        from keel.batch._io import from_ipc

        return self._table_columns(from_ipc(data), start)

    def _table_columns(self, table: pa.Table, start: int = 0) -> dict[str, Any]:
        """A chunk's columns: the package's input of the table (:meth:`ModelPackage.arrow_columns`, the
        conversion the engines use too, which checks every value) and the id column through pandas."""
        columns = self.package.arrow_columns(table, rows=_input_rows(start))
        if self.id_column is not None:
            # the output's id is built from the pandas column (pa.Array.from_pandas), whether or not it is a feature
            columns = {**columns, self.id_column: table.column(self.id_column).to_pandas()}
        columns[_ROWS] = table.num_rows
        return columns

    def predict(self, frame: pd.DataFrame | dict[str, Any], start: int) -> Any:
        """The output table of ``frame``: id, prediction and (for classifiers) one probability per class."""
        import pyarrow as pa

        package = self.package
        n = int(frame.pop(_ROWS)) if isinstance(frame, dict) else len(frame)
        # the package's own preparation and prediction, as in ModelPackage.predict / predict_proba
        scored = package.score(frame, probabilities=self.proba, rows=_input_rows(start))
        prediction = scored.predictions
        proba = scored.probabilities
        if self.proba and proba is None:  # pragma: no cover - self.proba implies a classifier with probabilities
            proba = np.empty((0, len(package.classes or [])), dtype=np.float64)
        columns: dict[str, Any] = {}
        if self.id_column is None:
            columns[ROW_COLUMN] = pa.array(np.arange(start, start + n, dtype=np.int64))
        else:
            columns[self.id_column] = pa.Array.from_pandas(frame[self.id_column])
        columns["prediction"] = pa.array(prediction)
        if proba is not None:
            for i, cls in enumerate(package.classes or []):
                columns[f"{PROBA_PREFIX}{cls}"] = pa.array(proba[:, i], type=pa.float64())
        return pa.table(columns)


def _is_table(data: Any) -> bool:
    import pyarrow as pa

    return isinstance(data, pa.Table)


def _input_rows(start: int) -> Callable[[int], str]:
    """How an input check names a chunk's row: by its input row number."""
    return lambda i: f"input row {start + i}"


def _describe(exc: BaseException, start: int) -> str:
    from keel.models import InputValuesError

    text = f"{type(exc).__name__}: {exc}"
    row = getattr(exc, "row", None)
    if isinstance(row, int) and not isinstance(exc, InputValuesError):  # which names its input rows itself
        text += f" (input row {start + row})"
    if not hasattr(exc, "row") and not text.strip():
        text = traceback.format_exc(limit=3)
    return text


def limit_lane_threads(threads: int) -> None:
    """Initializer of a scoring thread of the calling process: OpenMP (the trees' parallel loops) limited to
    ``threads`` in this thread only (OpenMP's thread count is a per-thread setting)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads, user_api="openmp")  # never restored: the thread ends with the run


# -- the worker process's side -------------------------------------------------------------------------------
_SCORER: Scorer | None = None


def init_worker(
    source: ModelSource, parts_uri: str, id_column: str | None, probabilities: bool, threads: int | None
) -> None:
    """Worker initializer: limit native threads (OpenMP, BLAS, Arrow's pool), load the package once
    (verified), keep a scorer."""
    global _SCORER
    if threads:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, str(threads))
        try:
            from threadpoolctl import threadpool_limits

            threadpool_limits(threads)
        except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
            pass
        import pyarrow as pa

        pa.set_cpu_count(threads)
    _SCORER = Scorer(source.load(), parts_uri, id_column, probabilities)


def ping() -> int:
    """A no-op task: its answer tells that a worker has started and loaded the package."""
    return os.getpid()


def score_in_worker(index: int, start: int, data: bytes | pd.DataFrame | RowSlice) -> ChunkOutcome:
    """Score one chunk with the worker's scorer."""
    if _SCORER is None:  # pragma: no cover - the initializer always runs first
        return ChunkOutcome(index, 0, None, "RuntimeError: the worker has no model loaded")
    return _SCORER.score(index, start, data)
