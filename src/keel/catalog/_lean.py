"""Point reads on the database driver itself: one compiled statement, one round trip, no transaction object.

A catalog read through a SQLAlchemy ``Connection`` costs about 150 µs before the database does any work (the
statement's cache key, the ``BEGIN``/``COMMIT`` pair, result metadata, type processors), several times what SQLite
takes to find one row by its key. The reads a page or a service repeats many times a second — one run by id, a few
runs by id — go through :class:`LeanReads` instead: the statement is compiled once per dialect, executed on a
pooled driver connection, and its values decoded by column type as SQLAlchemy would (JSON text to objects on SQLite,
naive timestamps to UTC). A single ``SELECT`` sees one consistent snapshot on both backends, so no explicit
transaction is needed; the pool still resets the connection when it is returned.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext, suppress
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import orjson
import sqlalchemy as sa
import sqlalchemy.exc as sa_exc

__all__ = ["LeanReads", "Read"]

#: One read of :meth:`LeanReads.many`: the statement's cache key, its factory, and its bound values.
Read = tuple[str, Callable[[], "sa.Select[Any]"], Mapping[str, Any]]


def _json(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def _timestamp(value: Any) -> Any:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value


def _boolean(value: Any) -> Any:
    return None if value is None else bool(value)


def _decoder(column_type: sa.types.TypeEngine[Any]) -> Callable[[Any], Any] | None:
    if isinstance(column_type, sa.JSON):
        return _json
    if isinstance(column_type, sa.DateTime):
        return _timestamp
    if isinstance(column_type, sa.Boolean):
        return _boolean
    return None


class _Compiled:
    """One statement as the driver takes it: its SQL text, its parameters' order, and a decoder per column."""

    def __init__(self, statement: sa.Select[Any], dialect: sa.Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql = compiled.string
        self.positional = compiled.positiontup if dialect.positional else None
        self.compiled = compiled
        self.names: list[str] = [str(c.key) for c in statement.selected_columns]
        self.decoders = [_decoder(c.type) for c in statement.selected_columns]

    def arguments(self, values: Mapping[str, Any]) -> Any:
        params = self.compiled.construct_params(dict(values))
        if self.positional is not None:
            return tuple(params[name] for name in self.positional)
        return params

    def row(self, raw: tuple[Any, ...]) -> SimpleNamespace:
        return SimpleNamespace(
            **{
                name: (decode(value) if decode is not None and value is not None else value)
                for name, decode, value in zip(self.names, self.decoders, raw, strict=True)
            }
        )


class LeanReads:
    """Compiled single-statement reads over an engine's pool.

    Args:
        engine: the catalog's engine (its pool, its dialect).
        guard: a context manager around every read (the catalog's: outages and error translation).
        own_connections: give each thread a connection of its own, kept open, instead of taking one from the pool
            and giving it back on every read (which costs a fifth of a point read). For a SQLite file, where a
            connection is a file handle; :meth:`close` closes them.

    Each statement is built once by its factory and kept under its key; the factory's bind parameters are
    given per call. Rows come back as attribute objects (``row.id``), like SQLAlchemy's rows.
    """

    def __init__(
        self,
        engine: sa.Engine,
        *,
        guard: Callable[[], AbstractContextManager[None]] = nullcontext,
        own_connections: bool = False,
    ) -> None:
        self._engine = engine
        self._guard = guard
        self._own = own_connections
        self._local = threading.local()
        self._owned: list[Any] = []
        self._compiled: dict[str, _Compiled] = {}
        self._lock = threading.Lock()

    def _statement(self, key: str, factory: Callable[[], sa.Select[Any]]) -> _Compiled:
        found = self._compiled.get(key)
        if found is None:
            with self._lock:
                found = self._compiled.setdefault(key, _Compiled(factory(), self._engine.dialect))
        return found

    def all(self, key: str, factory: Callable[[], sa.Select[Any]], **values: Any) -> list[SimpleNamespace]:
        """Every row of the statement built by ``factory`` (cached under ``key``), with ``values`` bound."""
        return self.many([(key, factory, values)])[0]

    def many(self, reads: list[Read]) -> list[list[SimpleNamespace]]:
        """The rows of each ``(key, factory, values)`` read, all on one connection; on SQLite inside one read
        transaction, so that they see the same snapshot (PostgreSQL reads in its default isolation, as the
        catalog's own read transactions do)."""
        with self._guard():
            return self._many(reads)

    def _many(self, reads: list[Read]) -> list[list[SimpleNamespace]]:
        statements = [(self._statement(key, factory), values) for key, factory, values in reads]
        dialect = self._engine.dialect
        together = len(statements) > 1 and dialect.name == "sqlite"
        connection: Any = self._local.__dict__.get("connection")
        if connection is not None and self._local.pid != os.getpid():  # inherited by a fork: never shared
            connection = self._local.connection = None
        pooled = connection is None
        if pooled:
            try:
                connection = self._engine.raw_connection()
            except dialect.loaded_dbapi.Error as exc:  # the pool hands the driver's own error through
                raise sa_exc.DBAPIError.instance(None, None, exc, dialect.loaded_dbapi.Error) from exc
            if self._own:  # this thread's from now on: out of the pool, closed by close()
                connection.detach()
                self._local.connection, self._local.pid = connection, os.getpid()
                with self._lock:
                    self._owned.append(connection)
                pooled = False
        failed = False
        sql, arguments = "", None
        try:
            cursor = connection.cursor()
            try:
                if together:
                    cursor.execute("BEGIN")
                found = []
                for statement, values in statements:
                    sql, arguments = statement.sql, statement.arguments(values)
                    cursor.execute(sql, arguments)
                    found.append([statement.row(tuple(row)) for row in cursor.fetchall()])
                if together:
                    cursor.execute("COMMIT")
            finally:
                cursor.close()
        except dialect.loaded_dbapi.Error as exc:
            # As SQLAlchemy itself would: a lost connection leaves the pool, and the error is its DBAPIError.
            failed = True
            lost = dialect.is_disconnect(exc, connection.dbapi_connection, None)
            if lost:
                connection.invalidate(exc)
            raise sa_exc.DBAPIError.instance(
                sql, arguments, exc, dialect.loaded_dbapi.Error, connection_invalidated=lost
            ) from exc
        except BaseException:
            failed = True
            raise
        finally:
            if pooled:
                connection.close()  # back to the pool, which rolls back whatever is left open
            elif failed:  # a connection of this thread's that failed midway is not used again
                self._local.__dict__.pop("connection", None)
                self._forget(connection)
        return found

    def _forget(self, connection: Any) -> None:
        with self._lock:
            if connection in self._owned:
                self._owned.remove(connection)
        with suppress(Exception):  # closing a broken connection may fail too; it is dropped either way
            connection.close()

    def close(self) -> None:
        """Close the threads' own connections (the next read of a thread opens another)."""
        with self._lock:
            owned, self._owned = self._owned, []
        self._local = threading.local()
        for connection in owned:
            with suppress(Exception):  # a connection of a thread that is gone may be closed already
                connection.close()
