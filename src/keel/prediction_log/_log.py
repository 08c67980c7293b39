"""The prediction log: every prediction the service makes, appended to Parquet files in the offline store.

The request handler only puts the request's inputs and answer on a bounded queue; a background thread of
each :class:`PredictionLog` turns them into rows and writes them, so the response path does no file I/O.

Layout (a contract: monitoring reads it)::

    <offline>/_prediction_log/model=<name>/version=<version>/<YYYY-MM-DD>/part-<yyyymmddTHHMMSS>-<pid>-<hex8>.parquet

The date and time are UTC, when the file was opened; ``pid`` is the writing process (each uvicorn worker writes
its own files) and ``hex8`` 8 random hex digits (several apps in one process never clash). A file is written
under a hidden temporary name (``.part-….parquet.tmp``) and renamed once complete, so a reader only ever sees
complete files and a crash leaves no partial ``.parquet`` behind. A writer keeps one open file per model
version and closes it when it exceeds ``max_bytes`` or ``max_seconds`` since it was opened (the project's
``prediction_log`` setting), when the UTC date changes, and on :meth:`PredictionLog.close` (the app's
shutdown, or ``atexit``), which writes everything queued before it returns.

One row per scored record, with the columns:

=====================  ==============================  =====================================================
column                 type                            value
=====================  ==============================  =====================================================
``request_id``         string                          the request's id (``X-Request-ID``)
``record``             int32                           the record's index in the request
``predicted_at``       timestamp[us, tz=UTC]           when the request was scored
``model``              string                          the model's name
``version``            int32                           the model's version
``key.<join key>``     int64 or string                 each join key of the model's feature views, as the
                                                       record gave it (null when it gave raw values only)
``feature.<input>``    float64, int64, bool, string    each input column of the model's schema: the value
                       (timestamp[us, tz=UTC])         scored, after online lookup, on-demand computation
                                                       and explicit overrides, before imputation (null
                                                       stays null)
``prediction``         float64 (regression); the       the prediction
                       class's type (int64 or string)
``proba.<class>``      float64                         a classifier's probability of each class
=====================  ==============================  =====================================================

:func:`read_prediction_log` reads it back (DuckDB, ``union_by_name``: files of other versions may have other
columns).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

import orjson

from keel.errors import KeelError, NotFoundError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from keel.models._package import ModelPackage
    from keel.project import Project

__all__ = [
    "BASE_COLUMNS",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_QUEUE_ROWS",
    "DEFAULT_MAX_SECONDS",
    "LOG_FOLDER",
    "LogLayout",
    "PredictionLog",
    "build_layout",
    "log_root",
    "read_prediction_log",
]

#: The log's folder in the offline store.
LOG_FOLDER = "_prediction_log"
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_SECONDS = 60.0
#: Rows waiting to be written beyond which new rows are dropped (counted and logged) rather than block.
DEFAULT_MAX_QUEUE_ROWS = 100_000
#: Rows buffered per file before they are written as one row group.
DEFAULT_ROW_GROUP_ROWS = 65_536
#: Columns every file has, in this order, before its key, feature, prediction and probability columns.
BASE_COLUMNS = ("request_id", "record", "predicted_at", "model", "version")
_WARN_EVERY_SECONDS = 10.0
#: After the first request arrives, the writer waits this long for more before converting them together: one
#: conversion per batch of requests instead of one per request, and the serving threads are interrupted (for
#: the GIL) a few times a second instead of at every request.
DEFAULT_LINGER_SECONDS = 0.2
_PART = "part-"
_TMP_SUFFIX = ".tmp"


def log_root(offline: str) -> str:
    """The prediction log's root under the offline store ``offline`` (a directory or fsspec URI)."""
    return f"{offline.rstrip('/')}/{LOG_FOLDER}"


def _logger() -> Any:
    from keel.serving._logging import service_log

    return service_log


# -- the columns ---------------------------------------------------------------------------------------------
def _arrow_type(dtype: str) -> pa.DataType:
    import pyarrow as pa

    return {
        "float64": pa.float64(),
        "int64": pa.int64(),
        "bool": pa.bool_(),
        "string": pa.string(),
        "timestamp": pa.timestamp("us", tz="UTC"),
    }.get(dtype, pa.string())


@dataclass(frozen=True)
class LogLayout:
    """The columns of one model version's log files.

    Attributes:
        model: the model's name.
        version: its version.
        keys: ``(join key, "int64" | "string")`` of the join keys of the model's feature views.
        features: ``(input column, Keel dtype)`` of the model's input schema.
        prediction: the prediction's type: ``float64`` (regression), ``int64`` or ``string`` (the classes').
        classes: a classifier's classes, as the answer's probabilities name them (empty: no probabilities).
    """

    model: str
    version: int
    keys: tuple[tuple[str, str], ...]
    features: tuple[tuple[str, str], ...]
    prediction: str
    classes: tuple[str, ...]

    @cached_property
    def schema(self) -> pa.Schema:
        import pyarrow as pa

        fields = [
            pa.field("request_id", pa.string()),
            pa.field("record", pa.int32()),
            pa.field("predicted_at", pa.timestamp("us", tz="UTC")),
            pa.field("model", pa.string()),
            pa.field("version", pa.int32()),
        ]
        fields += [pa.field(f"key.{name}", _arrow_type(dtype)) for name, dtype in self.keys]
        fields += [pa.field(f"feature.{name}", _arrow_type(dtype)) for name, dtype in self.features]
        fields.append(pa.field("prediction", _arrow_type(self.prediction)))
        fields += [pa.field(f"proba.{c}", pa.float64()) for c in self.classes]
        return pa.schema(fields)


def _views_read(project: Project, package: ModelPackage) -> list[str]:
    """The feature views the package's features come from (an on-demand view's inputs included)."""
    from keel.features._refs import FeatureRef

    views: list[str] = []
    for text in package.feature_refs:
        view = FeatureRef.parse(text).view
        try:
            on_demand = project.definitions.find_on_demand(view)
        except KeelError:
            on_demand = None
        for name in [r.view for r in on_demand.inputs] if on_demand is not None else [view]:
            if name not in views:
                views.append(name)
    return views


def _key_columns(project: Project, package: ModelPackage) -> tuple[tuple[str, str], ...]:
    """Each join key of the model's feature views with its type, as the latest ingested version records it."""
    keys: dict[str, str] = {}
    for view in _views_read(project, package):
        try:
            names = project.definitions.join_keys(project.feature_view(view))
        except KeelError:  # no longer registered: its keys are unknown, the model still serves by values
            continue
        try:
            dtypes = dict(project.catalog.feature_version(view).columns.get("join_keys") or {})
        except NotFoundError:
            dtypes = {}
        for name in names:
            integer = str(dtypes.get(name, "")).startswith(("int", "uint"))
            keys.setdefault(name, "int64" if integer else "string")
    return tuple(keys.items())


def build_layout(project: Project, name: str, version: int, package: ModelPackage) -> LogLayout:
    """The log columns of ``name`` v``version`` (its package ``package``)."""
    import numpy as np

    classes: tuple[str, ...] = ()
    prediction = "float64"
    if package.task == "classification":
        known = list(package.classes or [])
        if known and all(isinstance(c, str) for c in known):
            prediction = "string"
        elif all(isinstance(c, int | np.integer) for c in known):
            prediction = "int64"
        if hasattr(package.estimator, "predict_proba"):
            classes = tuple(str(c) for c in known)
    features = tuple((f.name, f.dtype) for f in package.schema.features)
    return LogLayout(name, version, _key_columns(project, package), features, prediction, classes)


def _converter(dtype: str) -> Callable[[Any], Any]:
    if dtype == "float64":
        return float
    if dtype == "int64":
        return int
    if dtype == "bool":
        return bool
    if dtype == "string":
        return lambda v: v if type(v) is str else str(v)
    if dtype == "timestamp":
        return lambda v: v
    return lambda v: orjson.dumps(v, default=str).decode()


def _key_value(value: Any, dtype: str) -> Any:
    """A record's join key in the column's type; ``None`` when absent or not convertible."""
    if value is None or type(value) is bool:
        return None
    if dtype == "string":
        return value if type(value) is str else str(value) if type(value) is int else None
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer():
        return int(value)
    if type(value) is str:
        with contextlib.suppress(ValueError):
            return int(value.strip())
    return None


@dataclass(frozen=True)
class _Entry:
    """One request, as the handler enqueues it: nothing is converted on the response path."""

    layout: LogLayout
    request_id: str
    predicted_at: datetime
    records: Sequence[Mapping[str, Any]]
    columns: Mapping[str, Sequence[Any]]
    answer: Mapping[str, Any]


def _table(entries: _Entry | Sequence[_Entry]) -> pa.Table:
    """The rows of one request, or of several requests of one layout, as one table (one conversion)."""
    import pyarrow as pa

    group = [entries] if isinstance(entries, _Entry) else list(entries)
    layout = group[0].layout
    sizes = [len(e.records) for e in group]
    request_ids: list[str] = []
    records: list[int] = []
    times: list[datetime] = []
    for e, n in zip(group, sizes, strict=True):
        request_ids += [e.request_id] * n
        records += range(n)
        times += [e.predicted_at] * n
    total = len(records)
    columns: list[Any] = [
        pa.array(request_ids, pa.string()),
        pa.array(records, pa.int32()),
        pa.array(times, pa.timestamp("us", tz="UTC")),
        pa.array([layout.model] * total, pa.string()),
        pa.array([layout.version] * total, pa.int32()),
    ]
    schema = layout.schema
    for name, dtype in layout.keys:
        values = [_key_value(record.get(name), dtype) for e in group for record in e.records]
        columns.append(pa.array(values, schema.field(f"key.{name}").type))
    for name, dtype in layout.features:
        convert = _converter(dtype)
        values = [
            None if v is None else convert(v)
            for e, n in zip(group, sizes, strict=True)
            for v in (e.columns.get(name) or [None] * n)
        ]
        columns.append(pa.array(values, schema.field(f"feature.{name}").type))
    convert = _converter(layout.prediction)
    predictions = [
        None if p is None else convert(p)
        for e, n in zip(group, sizes, strict=True)
        for p in (e.answer.get("predictions") or [None] * n)
    ]
    columns.append(pa.array(predictions, schema.field("prediction").type))
    for c in layout.classes:
        values = []
        for e, n in zip(group, sizes, strict=True):
            probabilities = e.answer.get("probabilities")
            values += [p.get(c) for p in probabilities] if probabilities else [None] * n
        columns.append(pa.array(values, pa.float64()))
    return pa.Table.from_arrays(columns, schema=schema)


def _by_layout(entries: Sequence[_Entry]) -> list[list[_Entry]]:
    """Consecutive requests of the same layout and UTC date, grouped (order kept)."""
    groups: list[list[_Entry]] = []
    last: tuple[Any, str] | None = None
    for e in entries:
        mark = (e.layout, e.predicted_at.astimezone(UTC).strftime("%Y-%m-%d"))
        if groups and mark == last:
            groups[-1].append(e)
        else:
            groups.append([e])
            last = mark
    return groups


# -- the writer ----------------------------------------------------------------------------------------------
def _filesystem(uri: str) -> tuple[Any, str, bool]:
    """``uri``'s fsspec filesystem, its path there, and whether it is the local disk."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(uri)
    protocol = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return fs, root.rstrip("/") or "/", "file" in protocol or "local" in protocol


class _File:
    """One log file being written under its temporary name."""

    def __init__(self, log: PredictionLog, layout: LogLayout, opened: datetime) -> None:
        import pyarrow.parquet as pq

        self.log = log
        self.layout = layout
        self.date = opened.strftime("%Y-%m-%d")
        folder = f"{log.root}/model={layout.model}/version={layout.version}/{self.date}"
        name = f"{_PART}{opened:%Y%m%dT%H%M%S}-{os.getpid()}-{secrets.token_hex(4)}.parquet"
        self.final = f"{folder}/{name}"
        self.tmp = f"{folder}/.{name}{_TMP_SUFFIX}"
        log.fs.makedirs(folder, exist_ok=True)
        self.sink: Any = open(self.tmp, "wb") if log.is_local else log.fs.open(self.tmp, "wb")  # noqa: SIM115
        self.writer = pq.ParquetWriter(self.sink, layout.schema, compression="snappy")
        self.opened = time.monotonic()
        self.pending: list[pa.Table] = []
        self.pending_rows = 0
        self.pending_bytes = 0
        self.rows = 0

    @property
    def written(self) -> int:
        return int(self.sink.tell())

    def add(self, table: pa.Table) -> None:
        self.pending.append(table)
        self.pending_rows += table.num_rows
        self.pending_bytes += table.nbytes
        if self.pending_rows >= self.log.row_group_rows or self.written + self.pending_bytes >= self.log.max_bytes:
            self.write_pending()

    def write_pending(self) -> None:
        import pyarrow as pa

        if not self.pending:
            return
        table = pa.concat_tables(self.pending)
        self.pending, self.pending_rows, self.pending_bytes = [], 0, 0
        self.writer.write_table(table)
        self.rows += table.num_rows

    def full(self) -> bool:
        return self.written >= self.log.max_bytes

    def expired(self, now: float) -> bool:
        return now - self.opened >= self.log.max_seconds

    def publish(self) -> int:
        """Write what is pending, close the file and rename it into place; the rows it holds."""
        self.write_pending()
        self.writer.close()
        self.sink.flush()
        if self.log.is_local:
            os.fsync(self.sink.fileno())
        self.sink.close()
        if self.log.is_local:
            os.rename(self.tmp, self.final)
        else:
            self.log.fs.mv(self.tmp, self.final)
        return self.rows

    def discard(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()
        with contextlib.suppress(Exception):
            self.sink.close()
        with contextlib.suppress(Exception):
            self.log.fs.rm(self.tmp)


class PredictionLog:
    """Appends predictions to the log under ``uri`` from a background thread (see the module's docstring).

    Args:
        uri: the log's root (:func:`log_root` of the offline store): a directory or fsspec URI.
        max_bytes: a file is closed and made visible past this size...
        max_seconds: ...or this long after it was opened.
        max_queue_rows: rows waiting to be written beyond which new requests' rows are dropped (counted,
            logged), so that a slow disk never blocks predictions.
        row_group_rows: rows buffered per file before they are written as one row group.
        linger_seconds: how long the writer lets requests gather before converting them together.
        on_written: called from the writer thread with the rows of each published file.
        on_dropped: called with the rows of each dropped request.

    Example:
        >>> log = PredictionLog(log_root(project.config.offline))  # doctest: +SKIP
        >>> log.append(layout, "req-1", datetime.now(UTC), records, columns, answer)  # doctest: +SKIP
        >>> log.close()  # doctest: +SKIP
    """

    def __init__(
        self,
        uri: str,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_seconds: float = DEFAULT_MAX_SECONDS,
        max_queue_rows: int = DEFAULT_MAX_QUEUE_ROWS,
        row_group_rows: int = DEFAULT_ROW_GROUP_ROWS,
        linger_seconds: float = DEFAULT_LINGER_SECONDS,
        on_written: Callable[[int], None] | None = None,
        on_dropped: Callable[[int], None] | None = None,
    ) -> None:
        self.uri = uri.rstrip("/")
        self.fs, self.root, self.is_local = _filesystem(self.uri)
        self.max_bytes = max_bytes
        self.max_seconds = max_seconds
        self.max_queue_rows = max_queue_rows
        self.row_group_rows = row_group_rows
        self.linger_seconds = linger_seconds
        self._on_written = on_written
        self._on_dropped = on_dropped
        self._queue: deque[_Entry] = deque()
        self._queued_rows = 0
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._files: dict[tuple[str, int], _File] = {}  # the writer thread's own
        self._flush_asked = 0
        self._flush_done = 0
        self._warned_at = 0.0
        #: Rows written to published files, rows dropped, and files published (for tests and the demo).
        self.rows_written = 0
        self.rows_dropped = 0
        self.files_published = 0
        #: The threads that wrote log files (the writer's only; tests check the handler never does).
        self.writer_threads: set[int] = set()

    # -- the request side: enqueue only
    def append(
        self,
        layout: LogLayout,
        request_id: str,
        predicted_at: datetime,
        records: Sequence[Mapping[str, Any]],
        columns: Mapping[str, Sequence[Any]],
        answer: Mapping[str, Any],
    ) -> bool:
        """Queue one request's rows; ``False`` (counted, logged) when the queue is full or the log closed.

        The arguments are kept as they are, not copied: the caller must not change them afterwards.
        """
        n = len(records)
        if n == 0:
            return True
        with self._cond:
            if self._closed or self._queued_rows + n > self.max_queue_rows:
                self._dropped(n)
                return False
            self._queue.append(_Entry(layout, request_id, predicted_at, records, columns, answer))
            self._queued_rows += n
            if self._thread is None:
                self._start()
            self._cond.notify()
        return True

    def _dropped(self, n: int) -> None:
        self.rows_dropped += n
        if self._on_dropped is not None:
            self._on_dropped(n)
        now = time.monotonic()
        if now - self._warned_at >= _WARN_EVERY_SECONDS:
            self._warned_at = now
            why = "is closed" if self._closed else f"queue is full ({self.max_queue_rows:,} rows waiting)"
            _logger().warning("prediction log %s: dropped %d rows; %d dropped so far", why, n, self.rows_dropped)

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="keel-prediction-log", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Write everything queued so far and publish the open files; ``False`` if ``timeout`` passed first."""
        with self._cond:
            if self._thread is None or self._closed:
                return self._thread is None or not self._thread.is_alive()
            self._flush_asked += 1
            token = self._flush_asked
            self._cond.notify_all()
            return self._cond.wait_for(lambda: self._flush_done >= token or self._closed, timeout)

    def close(self, timeout: float | None = 60.0) -> None:
        """Write everything queued, publish every open file and stop the writer (idempotent)."""
        with self._cond:
            self._closed = True
            thread = self._thread
            self._cond.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        with contextlib.suppress(Exception):
            atexit.unregister(self.close)

    # -- the writer thread
    def _timeout(self) -> float | None:
        if not self._files:
            return None
        oldest = min(f.opened for f in self._files.values())
        return max(0.0, oldest + self.max_seconds - time.monotonic())

    def _run(self) -> None:
        self.writer_threads.add(threading.get_ident())
        while True:
            with self._cond:
                while not self._queue and not self._closed and self._flush_done >= self._flush_asked:
                    timeout = self._timeout()
                    if timeout is not None and timeout <= 0:
                        break
                    self._cond.wait(timeout)
                if self._queue and self.linger_seconds > 0:  # let more requests gather, then convert them at once
                    flush_asked = self._flush_asked
                    self._cond.wait_for(
                        lambda asked=flush_asked: (
                            self._closed  # type: ignore[misc]
                            or self._flush_asked != asked
                            or self._queued_rows >= self.row_group_rows
                        ),
                        self.linger_seconds,
                    )
                entries = list(self._queue)
                self._queue.clear()
                self._queued_rows = 0
                closing = self._closed
                flush = self._flush_asked
            for group in _by_layout(entries):
                self._write(group)
            now = time.monotonic()
            for key, f in list(self._files.items()):
                if closing or flush > self._flush_done or f.expired(now):
                    self._publish(key)
            with self._cond:
                self._flush_done = max(self._flush_done, flush)
                self._cond.notify_all()
                if closing and not self._queue:
                    return

    def _write(self, group: list[_Entry]) -> None:
        """Write requests of one layout and one UTC date (see :func:`_by_layout`)."""
        layout = group[0].layout
        key = (layout.model, layout.version)
        try:
            table = _table(group)
        except Exception:
            if len(group) > 1:  # one bad request must not cost the others their rows
                for entry in group:
                    self._write([entry])
                return
            _logger().exception("prediction log: cannot turn request %s into rows; dropped", group[0].request_id)
            self._dropped(len(group[0].records))
            return
        date = group[0].predicted_at.astimezone(UTC).strftime("%Y-%m-%d")
        f = self._files.get(key)
        if f is not None and (f.date != date or f.layout != layout):
            self._publish(key)
            f = None
        try:
            if f is None:
                f = self._files[key] = _File(self, layout, datetime.now(UTC))
            f.add(table)
        except Exception:
            _logger().exception("prediction log: cannot write %s v%d under %s", layout.model, layout.version, self.uri)
            self._abandon(key, extra=table.num_rows)
            return
        if f.full():
            self._publish(key)

    def _publish(self, key: tuple[str, int]) -> None:
        f = self._files.pop(key, None)
        if f is None:
            return
        try:
            rows = f.publish()
        except Exception:
            _logger().exception("prediction log: cannot close %s", f.final)
            self._files[key] = f
            self._abandon(key)
            return
        self.rows_written += rows
        self.files_published += 1
        if self._on_written is not None:
            self._on_written(rows)

    def _abandon(self, key: tuple[str, int], *, extra: int = 0) -> None:
        """Give up a file that failed: its rows are counted as dropped and its temporary file removed."""
        f = self._files.pop(key, None)
        lost = extra
        if f is not None:
            lost += f.rows + f.pending_rows
            f.discard()
        if lost:
            self._dropped(lost)


# -- reading -------------------------------------------------------------------------------------------------
def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _empty() -> pd.DataFrame:
    import pyarrow as pa

    schema = pa.schema(
        [
            ("request_id", pa.string()),
            ("record", pa.int32()),
            ("predicted_at", pa.timestamp("us", tz="UTC")),
            ("model", pa.string()),
            ("version", pa.int32()),
            ("prediction", pa.float64()),
        ]
    )
    return _frame(schema.empty_table())


def _frame(table: pa.Table) -> pd.DataFrame:
    import pandas as pd
    import pyarrow as pa

    mapping = {pa.int32(): pd.Int32Dtype(), pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}
    frame: pd.DataFrame = table.to_pandas(types_mapper=mapping.get)
    return frame


def read_prediction_log(
    project: Project,
    model: str,
    *,
    version: int | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> pd.DataFrame:
    """The logged predictions of ``model`` (every version, or ``version``) made in ``[start, end)``.

    Only complete files are read (files still open in a running service are not visible yet). Naive
    datetimes are taken as UTC. The frame has the log's columns (see :mod:`keel.prediction_log._log`),
    the union over the versions read (a column a version lacks is null there), ordered by ``predicted_at``,
    ``request_id`` and ``record``; integers and booleans have pandas' nullable dtypes (``Int32``, ``Int64``,
    ``boolean``), ``predicted_at`` is ``datetime64[us, UTC]``. Nothing logged: an empty frame with the base
    columns and ``prediction``.

    Example:
        >>> from keel.serving import read_prediction_log
        >>> rows = read_prediction_log(project, "churn", version=3, start=datetime(2025, 6, 1))  # doctest: +SKIP
    """
    import duckdb

    from keel.engines.local import fetch_arrow

    if start is not None and end is not None and _utc(start) >= _utc(end):
        return _empty()
    fs, root, is_local = _filesystem(log_root(project.config.offline))
    pattern = f"{root}/model={model}/version={'*' if version is None else int(version)}/*/{_PART}*.parquet"
    files = sorted(fs.glob(pattern))
    if not files:
        return _empty()
    if not is_local:
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        files = [f if "://" in f else f"{protocol}://{f.lstrip('/')}" for f in files]
    where = []
    if start is not None:
        where.append(f"predicted_at >= {_quote(_utc(start).isoformat())}::TIMESTAMPTZ")
    if end is not None:
        where.append(f"predicted_at < {_quote(_utc(end).isoformat())}::TIMESTAMPTZ")
    sql = (
        f"SELECT * FROM read_parquet([{', '.join(_quote(f) for f in files)}], union_by_name=true, "
        f"hive_partitioning=false)"
        + (f" WHERE {' AND '.join(where)}" if where else "")
        + " ORDER BY predicted_at, request_id, record"
    )
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        if not is_local:
            con.register_filesystem(fs)
        table = fetch_arrow(con, sql)
    finally:
        con.close()
    if table.num_rows == 0:
        return _frame(table) if table.num_columns else _empty()
    return _frame(table)
