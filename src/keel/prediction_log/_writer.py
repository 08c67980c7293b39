"""The prediction log's writer: every prediction the service makes, appended to Parquet files off its response path.

The request handler only puts the request's inputs and answer on a bounded queue; a background thread of
each :class:`PredictionLog` turns them into rows (the columns of :mod:`keel.prediction_log._layout`) and writes
them, so the response path does no file I/O.

A file is written under a hidden temporary name (``.part-….parquet.tmp``) and published by an atomic rename
once complete (:func:`keel._files.replace`: synced on a local disk), so a reader only ever sees complete files
and a crash leaves no partial ``.parquet`` behind. A writer keeps one open file per model version and closes it
when it exceeds ``max_bytes`` or ``max_seconds`` since it was opened (the project's ``prediction_log``
setting), when the UTC date changes, and on :meth:`PredictionLog.close` (the app's shutdown, or ``atexit``),
which writes everything queued before it returns.

What a crash loses: a process killed (``kill -9``, out of memory, a power cut) loses the rows of the files it
had open, which it would have published within ``max_seconds`` of opening them, and the rows still queued;
every file published before stays whole. Its temporary files stay behind, hidden from readers; the next
writer to start under the same log removes those untouched for :data:`STALE_TEMPORARY`.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson

from keel._files import discard, open_filesystem, replace
from keel.prediction_log._layout import PART, TMP_SUFFIX, LogLayout

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "DEFAULT_LINGER_SECONDS",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_QUEUE_ROWS",
    "DEFAULT_MAX_SECONDS",
    "DEFAULT_ROW_GROUP_ROWS",
    "STALE_TEMPORARY",
    "PredictionLog",
]

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_SECONDS = 60.0
#: Rows waiting to be written beyond which new rows are dropped (counted and logged) rather than block.
DEFAULT_MAX_QUEUE_ROWS = 100_000
#: Rows buffered per file before they are written as one row group.
DEFAULT_ROW_GROUP_ROWS = 65_536
_WARN_EVERY_SECONDS = 10.0
#: After the first request arrives, the writer waits this long for more before converting them together: one
#: conversion per batch of requests instead of one per request, and the serving threads are interrupted (for
#: the GIL) a few times a second instead of at every request.
DEFAULT_LINGER_SECONDS = 0.2
#: A temporary file untouched for this long (and for ten times ``max_seconds``) was left by a writer that died: a
#: live one publishes each file within ``max_seconds`` of opening it. The next writer to start removes it.
STALE_TEMPORARY = timedelta(hours=1)


#: A child of the service's logger: the writer runs inside the prediction service, and its lines belong there.
_log = logging.getLogger("keel.serving.prediction_log")


def _logger() -> logging.Logger:
    return _log


# -- rows ----------------------------------------------------------------------------------------------------
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
class _File:
    """One log file being written under its temporary name."""

    def __init__(self, log: PredictionLog, layout: LogLayout, opened: datetime) -> None:
        import pyarrow.parquet as pq

        self.log = log
        self.layout = layout
        self.date = opened.strftime("%Y-%m-%d")
        folder = f"{log.root}/model={layout.model}/version={layout.version}/{self.date}"
        name = f"{PART}{opened:%Y%m%dT%H%M%S}-{os.getpid()}-{secrets.token_hex(4)}.parquet"
        self.final = f"{folder}/{name}"
        self.tmp = f"{folder}/.{name}{TMP_SUFFIX}"
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
        replace(self.log.fs, self.tmp, self.final)
        return self.rows

    def discard(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()
        with contextlib.suppress(Exception):
            self.sink.close()
        discard(self.log.fs, self.tmp)


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
        self.fs, self.root, self.is_local = open_filesystem(self.uri)
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
                self._dropped(
                    n, "is closed" if self._closed else f"queue is full ({self.max_queue_rows:,} rows waiting)"
                )
                return False
            self._queue.append(_Entry(layout, request_id, predicted_at, records, columns, answer))
            self._queued_rows += n
            if self._thread is None:
                self._start()
            self._cond.notify()
        return True

    def _dropped(self, n: int, why: str) -> None:
        """Count ``n`` rows lost, and say why (at most every few seconds for the same cause of trouble)."""
        self.rows_dropped += n
        if self._on_dropped is not None:
            self._on_dropped(n)
        now = time.monotonic()
        if now - self._warned_at >= _WARN_EVERY_SECONDS:
            self._warned_at = now
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

    def sweep(self, *, older_than: timedelta | None = None) -> list[str]:
        """Remove the temporary files of this log that writers killed before publishing them left behind: those
        untouched for ``older_than`` (default: :data:`STALE_TEMPORARY`, and at least ten times ``max_seconds``).
        Best effort (a file that cannot be examined or removed is left); returns the paths removed. The writer
        thread calls it once when it starts."""
        if older_than is None:
            older_than = max(STALE_TEMPORARY, timedelta(seconds=10 * self.max_seconds))
        try:
            found = self.fs.glob(f"{self.root}/model=*/version=*/*/.{PART}*{TMP_SUFFIX}")
        except Exception:
            return []
        cutoff = datetime.now(UTC) - older_than
        removed = []
        for path in found:
            with contextlib.suppress(Exception):
                modified = self.fs.modified(path)
                if (modified if modified.tzinfo else modified.replace(tzinfo=UTC)) < cutoff:
                    self.fs.rm(path)
                    removed.append(path)
        if removed:
            _logger().info("prediction log: removed %d temporary file(s) left by stopped writers", len(removed))
        return removed

    def _run(self) -> None:
        self.writer_threads.add(threading.get_ident())
        self.sweep()
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
            self._dropped(len(group[0].records), f"cannot turn request {group[0].request_id} into rows")
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
            self._abandon(key, extra=table.num_rows, why=f"cannot write {layout.model} v{layout.version}")
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
            self._abandon(key, why=f"cannot close {f.final}")
            return
        self.rows_written += rows
        self.files_published += 1
        if self._on_written is not None:
            self._on_written(rows)

    def _abandon(self, key: tuple[str, int], *, extra: int = 0, why: str) -> None:
        """Give up a file that failed: its rows are counted as dropped and its temporary file removed."""
        f = self._files.pop(key, None)
        lost = extra
        if f is not None:
            lost += f.rows + f.pending_rows
            f.discard()
        if lost:
            self._dropped(lost, why)
