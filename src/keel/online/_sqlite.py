"""The embedded online store: one SQLite file in WAL mode, one wide table per view.

Layout: ``__keel_online_views`` maps ``(prefix, view)`` to its table and schema (key columns, feature dtypes).
A view's table holds the encoded key (``INTEGER PRIMARY KEY``, i.e. the rowid, for one integer key column;
``TEXT PRIMARY KEY ... WITHOUT ROWID`` otherwise), the event time in epoch microseconds and one typed column
per feature (timestamps as epoch microseconds, lists as packed float64 bytes). A new feature is an
``ALTER TABLE ... ADD COLUMN``. Table names carry a random suffix, so a view dropped and written again by
another process gets a new table and this process's cached statements fail loudly ("no such table") instead
of reading columns whose meaning changed; the read then re-plans.

Concurrency: WAL lets many readers (threads and processes) read while one writer writes; each write batch is
one ``BEGIN IMMEDIATE`` transaction, so a reader sees a batch entirely or not at all. Each thread uses its
own connection.

Generations: an unpublished generation is a table of its own, recorded in ``__keel_online_generations`` with
its owner process and when it was last written to; publishing it is one transaction that points the view's
row of ``__keel_online_views`` at that table and drops the table it replaces, so a reader's statement sees
the old table or the new one (a reader holding a plan on the dropped table gets "no such table" and
re-plans). A process killed before publishing leaves the view as it was.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from keel.errors import BackendError, ConfigError
from keel.online._batch import Batch, ViewSchema
from keel.online._keys import encode_key, encode_keys
from keel.online._store import OnlineRead, OnlineStore, abandoned, empty_read, new_generation, now_ms
from keel.online._values import converter

__all__ = ["SqliteOnlineStore"]

_VIEWS = "__keel_online_views"
_GENERATIONS = "__keel_online_generations"
_KEY = "__keel_key"
_EVENT = "__keel_event_us"
_SQL_TYPES = {
    "int64": "INTEGER",
    "float64": "REAL",
    "bool": "INTEGER",
    "string": "TEXT",
    "timestamp": "INTEGER",
    "list[float64]": "BLOB",
}
# Reads of up to this many keys use a statement prepared for exactly that many; above it the number of
# placeholders is rounded up (padding with a repeated key) so that a few statements serve every size and stay
# in the connection's statement cache.
_EXACT_SIZES = 32


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _path_of(uri: str) -> Path:
    head = "sqlite:///"
    if not uri.startswith(head):
        raise ConfigError(f"online store {uri!r}: a SQLite URI looks like sqlite:///path/online.db")
    rest = uri[len(head) :].split("?", 1)[0]
    if not rest or rest == ":memory:":
        raise ConfigError(
            f"online store {uri!r}: an in-memory SQLite database cannot be shared between connections; "
            "use memory:// for an in-process store, or give a file path"
        )
    return Path(rest)


@dataclass
class _Plan:
    """The prepared SQL and conversions for reading ``features`` of one view."""

    table: str | None
    one: str = ""
    many_head: str = ""
    #: index of a feature needing conversion -> its converter
    converters: tuple[tuple[int, Callable[[Any], Any]], ...] = ()
    #: a row of an unknown entity (key, event time, features)
    missing: tuple[None, ...] = ()
    many: dict[int, str] = field(default_factory=dict)
    cached: bool = True

    def many_sql(self, size: int) -> str:
        sql = self.many.get(size)
        if sql is None:
            sql = self.many[size] = f"{self.many_head}{','.join('?' * size)})"
        return sql


_STORES: weakref.WeakSet[SqliteOnlineStore] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # SQLite connections must not cross a fork; the child opens its own. The inherited ones are kept
    # referenced (never closed) so that finalising them cannot disturb the parent's database state.
    for store in list(_STORES):
        store._abandoned.extend(store._connections)
        store._connections = []
        store._local = threading.local()


os.register_at_fork(after_in_child=_after_fork_in_child)


class SqliteOnlineStore(OnlineStore):
    """Online store in a SQLite file: ``sqlite:///path/online.db`` (the embedded default).

    Args:
        uri: ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``; folders are created.
        prefix: namespace of this project's views in the file.
        timeout: seconds a writer waits for another writer's lock before failing.
    """

    kind = "sqlite"

    def __init__(self, uri: str, *, prefix: str = "keel", timeout: float = 30.0) -> None:
        super().__init__(uri, prefix=prefix)
        self.path = _path_of(uri)
        self.timeout = timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._abandoned: list[sqlite3.Connection] = []
        self._plans: dict[tuple[str, tuple[str, ...]], _Plan] = {}
        self._closed = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = self._connect()
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            found = conn.execute(
                "SELECT count(*) FROM sqlite_master WHERE type='table' AND name IN (?, ?)", (_VIEWS, _GENERATIONS)
            )
            if found.fetchone()[0] != 2:  # only the first opener (of this Keel version) takes the write lock
                conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {_VIEWS} (prefix TEXT NOT NULL, view TEXT NOT NULL, "
                    "table_name TEXT NOT NULL UNIQUE, schema TEXT NOT NULL, PRIMARY KEY (prefix, view))"
                )
                conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {_GENERATIONS} (prefix TEXT NOT NULL, view TEXT NOT NULL, "
                    "generation TEXT NOT NULL, table_name TEXT NOT NULL UNIQUE, schema TEXT, owner TEXT NOT NULL, "
                    "touched_ms INTEGER NOT NULL, PRIMARY KEY (prefix, view, generation))"
                )
            self._chunk = min(conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER), 32_766)
        except (sqlite3.Error, OSError) as exc:
            self.close()
            raise BackendError(f"{self.description}: cannot open the database: {exc}") from exc
        _STORES.add(self)

    # -- connections
    def _connect(self) -> sqlite3.Connection:
        if self._closed:
            raise BackendError(f"{self.description} is closed; open a new store")
        # isolation_level=None (autocommit): this module alone decides where transactions begin and end.
        conn = sqlite3.connect(
            self.path,
            timeout=self.timeout,
            isolation_level=None,
            check_same_thread=False,
            cached_statements=512,
        )
        # NORMAL is durable against process crashes in WAL mode; a power cut may lose the last batches, which
        # materialization rewrites: an online store is a cache of the offline store.
        conn.execute("PRAGMA synchronous=NORMAL")
        with self._lock:
            self._connections.append(conn)
        self._local.conn = conn
        return conn

    def _connection(self) -> sqlite3.Connection:
        try:
            conn: sqlite3.Connection = self._local.conn
        except AttributeError:
            conn = self._connect()
        return conn

    def close(self) -> None:
        """Close every thread's connection."""
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()
        self._local = threading.local()
        self._plans.clear()

    def _hint(self, exc: BaseException) -> str:
        if isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc)):
            return f" (another connection held the write lock for more than {self.timeout:g}s)"
        return ""

    # -- metadata
    def _view_row(self, conn: sqlite3.Connection, view: str) -> tuple[str, ViewSchema] | None:
        row = conn.execute(
            f"SELECT table_name, schema FROM {_VIEWS} WHERE prefix = ? AND view = ?", (self.prefix, view)
        ).fetchone()
        return None if row is None else (row[0], ViewSchema.from_json(row[1]))

    def _forget(self, view: str) -> None:
        # list() copies the keys atomically: another thread may be adding a plan meanwhile.
        for plan_key in [k for k in list(self._plans) if k[0] == view]:
            self._plans.pop(plan_key, None)

    # -- writes
    def _write(self, batch: Batch, ttl: timedelta | None) -> int:
        # Convert before taking the write lock: readers are never blocked, but other writers are.
        values = [batch.sqlite_values(i) for i in range(len(batch.features))]
        with self._transaction() as conn:
            return self._write_locked(conn, batch, values)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: committed at the end, rolled back on any error (which the base class reports
        as a :class:`BackendError` naming the store, the view and the action)."""
        conn = self._connection()
        # IMMEDIATE takes the write lock now, so a busy database fails here rather than mid-batch.
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _write_locked(self, conn: sqlite3.Connection, batch: Batch, values: list[list[Any]]) -> int:
        view, generation = batch.view, batch.generation
        if generation is None:
            current = self._view_row(conn, view)
            table = current[0] if current else f"{self.prefix}:{view}:{secrets.token_hex(4)}"
            stored = current[1] if current else None
        else:
            staged = self._generation_row(conn, view, generation)
            if staged is None:
                raise self._unknown_generation(view, generation)
            table, stored = staged
        schema, added = batch.bind(stored)
        if stored is None:
            if schema.keys == (schema.keys[0],) and schema.keys[0][1] == "int64":
                key_sql, options = f"{_KEY} INTEGER PRIMARY KEY", ""  # the rowid itself: one b-tree lookup
            else:
                key_sql, options = f"{_KEY} TEXT PRIMARY KEY NOT NULL", " WITHOUT ROWID"
            columns = "".join(f", {_quote(n)} {_SQL_TYPES[d]}" for n, d in schema.dtypes.items())
            conn.execute(f"CREATE TABLE {_quote(table)} ({key_sql}, {_EVENT} INTEGER NOT NULL{columns}){options}")
            if generation is None:
                conn.execute(
                    f"INSERT INTO {_VIEWS} (prefix, view, table_name, schema) VALUES (?, ?, ?, ?)",
                    (self.prefix, view, table, schema.to_json()),
                )
        else:
            for name in added:
                conn.execute(f"ALTER TABLE {_quote(table)} ADD COLUMN {_quote(name)} {_SQL_TYPES[schema.dtypes[name]]}")
            if added and generation is None:
                conn.execute(
                    f"UPDATE {_VIEWS} SET schema = ? WHERE prefix = ? AND view = ?",
                    (schema.to_json(), self.prefix, view),
                )
        if generation is not None:  # records the schema, and that its writer is at work
            conn.execute(
                f"UPDATE {_GENERATIONS} SET schema = ?, touched_ms = ? "
                "WHERE prefix = ? AND view = ? AND generation = ?",
                (schema.to_json(), now_ms(), self.prefix, view, generation),
            )
        elif stored is None or added:
            self._forget(view)
        if not batch.num_rows:
            return 0
        written = [_quote(n) for n in batch.features]
        # A row replaces the stored row whole: features this batch does not carry are set to NULL.
        others = [_quote(n) for n in schema.dtypes if n not in batch.features]
        sets = ", ".join(
            [f"{_EVENT} = excluded.{_EVENT}"]
            + [f"{c} = excluded.{c}" for c in written]
            + [f"{c} = NULL" for c in others]
        )
        sql = (
            f"INSERT INTO {_quote(table)} ({_KEY}, {_EVENT}{''.join(', ' + c for c in written)}) "
            f"VALUES ({', '.join('?' * (len(written) + 2))}) "
            f"ON CONFLICT ({_KEY}) DO UPDATE SET {sets} WHERE excluded.{_EVENT} >= {_EVENT}"
        )
        cursor = conn.executemany(sql, zip(batch.keys, batch.event_us, *values, strict=True))
        return cursor.rowcount

    # -- reads
    def _plan(self, conn: sqlite3.Connection, view: str, features: tuple[str, ...]) -> _Plan:
        current = self._view_row(conn, view)
        if current is None:
            return _Plan(None, cached=False)
        table, schema = current
        columns = [_quote(n) if n in schema.dtypes else "NULL" for n in features]
        selected = "".join(", " + c for c in columns)
        converters = []
        for i, name in enumerate(features):
            convert = converter(schema.dtypes.get(name, ""))
            if convert is not None:
                converters.append((i, convert))
        plan = _Plan(
            table,
            one=f"SELECT {_EVENT}{selected} FROM {_quote(table)} WHERE {_KEY} = ?",
            many_head=f"SELECT {_KEY}, {_EVENT}{selected} FROM {_quote(table)} WHERE {_KEY} IN (",
            converters=tuple(converters),
            missing=(None,) * (len(features) + 2),
            # A feature unknown now may be added by another process: such plans are rebuilt at every read.
            cached=all(n in schema.dtypes for n in features),
        )
        if plan.cached:
            self._plans[(view, features)] = plan
        return plan

    def _read(self, view: str, entity_keys: Sequence[tuple[Any, ...]], features: Sequence[str]) -> OnlineRead:
        """Read all keys in one query (chunked at SQLite's variable limit)."""
        names = features if type(features) is tuple else tuple(features)
        try:
            conn = self._local.conn
        except AttributeError:
            conn = self._connect()
        plan = self._plans.get((view, names)) or self._plan(conn, view, names)
        try:
            return self._query(conn, plan, names, entity_keys)
        except sqlite3.OperationalError as exc:
            if not (plan.cached and "no such table" in str(exc)):
                raise
            # The view was dropped (and maybe written again) by another connection: plan afresh, once.
            self._forget(view)
            return self._query(conn, self._plan(conn, view, names), names, entity_keys)

    def _query(
        self,
        conn: sqlite3.Connection,
        plan: _Plan,
        names: tuple[str, ...],
        entity_keys: Sequence[tuple[Any, ...]],
    ) -> OnlineRead:
        n = len(entity_keys)
        if plan.table is None:
            encode_keys(entity_keys)  # bad keys are an error whether or not the view exists
            return empty_read(names, n)
        if n == 1:  # the serving path: one primary-key lookup, nothing else
            key = entity_keys[0]
            if type(key) is tuple and len(key) == 1 and (type(key[0]) is int or type(key[0]) is str):
                encoded = key[0]
            else:
                encoded = encode_key(key)
            row = conn.execute(plan.one, (encoded,)).fetchone()
            if row is None:
                return empty_read(names, 1)
            cells: list[Sequence[Any]] = list(zip(row, strict=True))  # one 1-tuple per column
            event_us = cells[0]
            del cells[0]
            for i, convert in plan.converters:
                value = cells[i][0]
                if value is not None:
                    cells[i] = (convert(value),)
            return OnlineRead(names, event_us, cells)
        keys = encode_keys(entity_keys)
        if n == 0:
            return empty_read(names, 0)
        limit = self._chunk
        if n <= limit:
            size = _size(n, limit)
            found = {row[0]: row for row in conn.execute(plan.many_sql(size), _padded(keys, size))}
        else:
            found = {}
            conn.execute("BEGIN")  # one snapshot for all chunks
            try:
                for start in range(0, n, limit):
                    chunk = keys[start : start + limit]
                    size = _size(len(chunk), limit)
                    found.update((r[0], r) for r in conn.execute(plan.many_sql(size), _padded(chunk, size)))
            finally:
                conn.execute("COMMIT")
        missing = plan.missing
        ordered = [found.get(key, missing) for key in keys]
        columns: list[Sequence[Any]] = list(zip(*ordered, strict=True))
        event_us = columns[1]
        del columns[:2]
        for i, convert in plan.converters:
            columns[i] = [None if v is None else convert(v) for v in columns[i]]
        return OnlineRead(names, event_us, columns)

    # -- dropping
    def _drop_view(self, view: str) -> None:
        try:
            with self._transaction() as conn:
                current = self._view_row(conn, view)
                if current is not None:
                    conn.execute(f"DROP TABLE IF EXISTS {_quote(current[0])}")
                    conn.execute(f"DELETE FROM {_VIEWS} WHERE prefix = ? AND view = ?", (self.prefix, view))
                for generation, *_ in self._generation_rows(conn, view):
                    self._drop_generation(conn, view, generation)
        finally:
            self._forget(view)

    # -- generations
    def _generation_rows(self, conn: sqlite3.Connection, view: str) -> list[tuple[str, str, int]]:
        """``(generation, owner JSON, touched_ms)`` of the view's unpublished generations."""
        return conn.execute(
            f"SELECT generation, owner, touched_ms FROM {_GENERATIONS} WHERE prefix = ? AND view = ?",
            (self.prefix, view),
        ).fetchall()

    def _generation_row(
        self, conn: sqlite3.Connection, view: str, generation: str
    ) -> tuple[str, ViewSchema | None] | None:
        """``(table, schema or None before the first write)`` of an unpublished generation, ``None`` if unknown."""
        row = conn.execute(
            f"SELECT table_name, schema FROM {_GENERATIONS} WHERE prefix = ? AND view = ? AND generation = ?",
            (self.prefix, view, generation),
        ).fetchone()
        if row is None:
            return None
        return row[0], None if row[1] is None else ViewSchema.from_json(row[1])

    def _drop_generation(self, conn: sqlite3.Connection, view: str, generation: str) -> None:
        found = self._generation_row(conn, view, generation)
        if found is None:
            return
        conn.execute(f"DROP TABLE IF EXISTS {_quote(found[0])}")
        conn.execute(
            f"DELETE FROM {_GENERATIONS} WHERE prefix = ? AND view = ? AND generation = ?",
            (self.prefix, view, generation),
        )

    def _abandoned_generations(self, conn: sqlite3.Connection, view: str) -> list[str]:
        found = []
        for generation, recorded, touched in self._generation_rows(conn, view):
            try:
                left_by = json.loads(recorded)
            except ValueError:
                left_by = None
            if abandoned(left_by, touched):
                found.append(generation)
        return found

    def _sweep_generations(self, view: str) -> list[str]:
        if not self._abandoned_generations(self._connection(), view):  # the common case: no write lock taken
            return []
        with self._transaction() as conn:
            doomed = self._abandoned_generations(conn, view)
            for generation in doomed:
                self._drop_generation(conn, view, generation)
        return doomed

    def _begin_generation(self, view: str, owner: dict[str, Any]) -> str:
        generation = new_generation()
        with self._transaction() as conn:
            for found in self._abandoned_generations(conn, view):
                self._drop_generation(conn, view, found)
            conn.execute(
                f"INSERT INTO {_GENERATIONS} (prefix, view, generation, table_name, schema, owner, touched_ms) "
                "VALUES (?, ?, ?, ?, NULL, ?, ?)",
                (self.prefix, view, generation, f"{self.prefix}:{view}:{generation}", json.dumps(owner), now_ms()),
            )
        return generation

    def _publish_generation(self, view: str, generation: str) -> None:
        try:
            with self._transaction() as conn:
                staged = self._generation_row(conn, view, generation)
                if staged is None:
                    raise self._unknown_generation(view, generation)
                table, schema = staged
                current = self._view_row(conn, view)
                if current is not None:
                    conn.execute(f"DROP TABLE IF EXISTS {_quote(current[0])}")
                    conn.execute(f"DELETE FROM {_VIEWS} WHERE prefix = ? AND view = ?", (self.prefix, view))
                if schema is not None:  # else nothing was written: the view is empty from now on
                    conn.execute(
                        f"INSERT INTO {_VIEWS} (prefix, view, table_name, schema) VALUES (?, ?, ?, ?)",
                        (self.prefix, view, table, schema.to_json()),
                    )
                conn.execute(
                    f"DELETE FROM {_GENERATIONS} WHERE prefix = ? AND view = ? AND generation = ?",
                    (self.prefix, view, generation),
                )
        finally:
            self._forget(view)

    def _discard_generation(self, view: str, generation: str) -> None:
        with self._transaction() as conn:
            self._drop_generation(conn, view, generation)

    def _hidden_generations(self, view: str) -> list[str]:
        return [row[0] for row in self._generation_rows(self._connection(), view)]

    def table_of(self, view: str) -> str | None:
        """The SQLite table holding ``view`` (for inspection and benchmarks), or ``None`` when absent."""
        current = self._view_row(self._connection(), view)
        return None if current is None else current[0]


def _size(n: int, limit: int) -> int:
    """The number of placeholders used for ``n`` keys: exact up to 32, then rounded up to 3 significant bits
    (at most 1/8 padding, and about eight statements per doubling of size), never above ``limit``."""
    if n <= _EXACT_SIZES:
        return n
    step = 1 << (n.bit_length() - 3)
    return min(-(-n // step) * step, limit)


def _padded(keys: list[int | str], size: int) -> list[int | str]:
    if size == len(keys):
        return keys
    return keys + [keys[0]] * (size - len(keys))  # a repeated key adds nothing to an IN list
