"""The catalog on SQLAlchemy: SQLite (the embedded default, also in memory) and PostgreSQL."""

from __future__ import annotations

import json
import logging
import random
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
import sqlalchemy.exc as sa_exc

from keel._outage import Outage
from keel.catalog import _schema
from keel.catalog._analyses import AnalysisCatalog
from keel.catalog._browse import BrowseCatalog
from keel.catalog._lean import LeanReads
from keel.catalog._migrations import MIGRATIONS, Migration, migrate, read_version
from keel.catalog._models import ModelCatalog
from keel.catalog._monitoring import MonitoringCatalog
from keel.catalog._records import DefinitionRecord, FeatureVersion, Materialization
from keel.errors import BackendError, ConfigError, ConflictError, MissingExtraError, NotFoundError, ValidationError

T = TypeVar("T")

_RETRIES = 200
#: Seconds to wait for a PostgreSQL connection (unless the URL sets ``connect_timeout``): a server that does not
#: answer is unavailable, not waited for.
CONNECT_TIMEOUT_SECONDS = 5
#: PostgreSQL cancels a statement running longer than this (unless the URL's ``options`` set ``statement_timeout``);
#: as long as the writers' ``lock_timeout``, so that no request waits forever on a lock or a stuck query.
STATEMENT_TIMEOUT_MS = 60_000
#: First key of the catalog's PostgreSQL advisory locks (the migration lock is a single key of its own).
_LOCK_SPACE = 7274


def utcnow() -> datetime:
    """Now, in UTC, with microseconds (the catalog's clock)."""
    return datetime.now(UTC)


def _as_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _to_store(value: datetime | None, what: str) -> datetime | None:
    """A timestamp as the catalog stores it: UTC (naive values are taken as UTC).

    SQLite keeps the wall-clock digits and drops the offset, so every value is converted to UTC first.
    """
    if value is not None and not isinstance(value, datetime):
        raise ValidationError(f"{what} must be a datetime or None, got {value!r}", field=what)
    return _as_utc(value)


def _json_safe(value: Any, what: str, field: str) -> None:
    """Refuse what JSON (and PostgreSQL's JSON type) cannot hold: NaN, infinities, non-JSON objects.

    SQLite would store ``NaN`` and PostgreSQL refuse it; refusing it here keeps both backends alike.
    """
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValidationError(
            f"{what} cannot be stored in the catalog: {exc}. Use JSON values only: None instead of NaN, "
            "strings for infinities, plain int/float/str/bool/list/dict",
            field=field,
        ) from exc


def _with_timeouts(url: sa.URL) -> sa.URL:
    """A PostgreSQL URL with Keel's connect and statement timeouts, unless it sets its own (``?connect_timeout=3``,
    ``?options=-c%20statement_timeout%3D5000``)."""
    query = dict(url.query)
    extra: dict[str, str] = {}
    if "connect_timeout" not in query:
        extra["connect_timeout"] = str(CONNECT_TIMEOUT_SECONDS)
    options = query.get("options", "")
    options = " ".join(options) if isinstance(options, tuple) else options
    if "statement_timeout" not in options:
        extra["options"] = f"{options} -c statement_timeout={STATEMENT_TIMEOUT_MS}".strip()
    return url.update_query_dict(extra) if extra else url


class SqlCatalog(ModelCatalog, MonitoringCatalog, AnalysisCatalog, BrowseCatalog):
    """Metadata of a Keel project in a SQL database.

    Args:
        url: a SQLAlchemy URL: ``sqlite:///path/catalog.db``, ``sqlite://`` (in memory),
            ``postgresql+psycopg://user@host/db`` (``?options=-csearch_path%3Dschema`` picks a schema).
        migrations: the schema migrations to run (tests pass a shorter list to build an older catalog).

    Version numbers (of definitions, ingested data, and later model versions) are allocated inside a write
    transaction guarded by a unique constraint: concurrent writers in separate processes get distinct,
    gap-free numbers; a writer that loses a race retries.
    """

    def __init__(self, url: str, *, migrations: tuple[Migration, ...] = MIGRATIONS) -> None:
        self.url = url
        self._outage = Outage(f"catalog {self.safe_url}", logging.getLogger("keel.catalog"))
        self._engine = self._create_engine(url)
        own = self.dialect == "sqlite" and not isinstance(self._engine.pool, sa.pool.StaticPool)
        self._lean = LeanReads(self._engine, guard=self._reading, own_connections=own)
        self._local = threading.local()
        try:
            with self._write() as conn:
                if self.dialect == "postgresql":  # one migrator at a time across processes
                    conn.exec_driver_sql("SELECT pg_advisory_xact_lock(72745501)")
                self.migrated_from = migrate(conn, self.safe_url, migrations)
        except sa_exc.DBAPIError as exc:
            self._engine.dispose()
            raise BackendError(f"cannot open the catalog at {self.safe_url}: {exc.orig}") from exc
        except BaseException:
            self._engine.dispose()
            raise

    # -- connection handling ---------------------------------------------------------------------------------
    @property
    def safe_url(self) -> str:
        """The URL with any password hidden."""
        try:
            return sa.make_url(self.url).render_as_string(hide_password=True)
        except Exception:
            return self.url

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._engine.dialect.name

    def _create_engine(self, url: str) -> sa.Engine:
        try:
            parsed = sa.make_url(url)
        except sa_exc.ArgumentError as exc:
            raise ConfigError(f"catalog URL {url!r} is not a valid database URL: {exc}") from exc
        backend = parsed.get_backend_name()
        if backend == "sqlite":
            return self._sqlite_engine(parsed)
        if backend == "postgresql":
            if parsed.drivername == "postgresql":
                parsed = parsed.set(drivername="postgresql+psycopg")
            try:
                import psycopg  # noqa: F401
            except ImportError as exc:
                raise MissingExtraError("psycopg", "postgres", "a PostgreSQL catalog") from exc
            # pool_pre_ping: a connection the server closed (a restart) is replaced before it is used.
            return sa.create_engine(_with_timeouts(parsed), pool_pre_ping=True, pool_size=5, max_overflow=5)
        raise ConfigError(f"catalog URL {url!r}: unsupported database {backend!r}; use sqlite:/// or postgresql://")

    @staticmethod
    def _sqlite_engine(parsed: sa.URL) -> sa.Engine:
        database = parsed.database or ""
        in_memory = database in ("", ":memory:")
        if in_memory:
            engine = sa.create_engine(
                "sqlite://", poolclass=sa.pool.StaticPool, connect_args={"check_same_thread": False}
            )
        else:
            Path(database).parent.mkdir(parents=True, exist_ok=True)
            engine = sa.create_engine(parsed, connect_args={"timeout": 60, "check_same_thread": False})

        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy's begin event emit BEGIN itself (pysqlite's own handling defers it).
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            if not in_memory:
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @sa.event.listens_for(engine, "begin")
        def _on_begin(conn: sa.Connection) -> None:
            # Writers take the write lock up front, so two writers never deadlock upgrading read locks.
            immediate = conn.get_execution_options().get("keel_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        with self._engine.connect() as conn:
            conn = conn.execution_options(keel_write=True)
            with conn.begin():
                if self.dialect == "postgresql":
                    conn.exec_driver_sql("SET LOCAL lock_timeout = '60s'")
                yield conn

    @contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        """A read transaction; a database failure becomes a :class:`BackendError` naming the catalog, and while
        the database is unavailable reads fail at once (one a second tries it again)."""
        with self._reading(), self._engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """The guard of every read, in a transaction or on the driver (:class:`LeanReads`): refused at once during
        an outage, a database failure turned into the catalog's :class:`BackendError`."""
        outage = self._outage
        if outage.since and (refused := outage.refused()) is not None:
            raise refused
        try:
            yield
        except (sa_exc.DBAPIError, sa_exc.DisconnectionError) as exc:
            raise self._failure("reading", exc) from exc
        if outage.since:
            outage.recovered()

    def _failure(self, what: str, exc: sa_exc.DBAPIError | sa_exc.DisconnectionError) -> BackendError:
        """The error of a failed database call; one that means the database is unavailable (refused, closed,
        timed out) starts an outage: logged once, and calls fail at once until it answers again."""
        orig = getattr(exc, "orig", None) or exc
        unavailable = sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.DisconnectionError
        if isinstance(exc, unavailable) or getattr(exc, "connection_invalidated", False):
            self._outage.failed(orig)
        cause = " ".join(str(orig).split())
        return BackendError(f"catalog {self.safe_url}: {what} failed: {cause}")

    def _retrying(self, what: str, fn: Callable[[sa.Connection], T]) -> T:
        """Run ``fn`` in a write transaction, retrying when a concurrent writer took the same number."""
        outage = self._outage
        if outage.since and (refused := outage.refused()) is not None:
            raise refused
        last: Exception | None = None
        for attempt in range(_RETRIES):
            try:
                with self._write() as conn:
                    result = fn(conn)
                if outage.since:
                    outage.recovered()
                return result
            except sa_exc.IntegrityError as exc:  # lost a race for a version number
                last = exc
            except sa_exc.OperationalError as exc:  # database is locked / serialization failure
                last = exc
                if "locked" not in str(exc).lower() and "deadlock" not in str(exc).lower():
                    raise self._failure(what, exc) from exc
            except (sa_exc.DBAPIError, sa_exc.DisconnectionError) as exc:
                raise self._failure(what, exc) from exc
            time.sleep(random.uniform(0, 0.005 * min(attempt + 1, 20)))
        raise BackendError(f"catalog {self.safe_url}: {what} failed after {_RETRIES} attempts: {last}") from last

    def _serialize(self, conn: sa.Connection, *key: str) -> None:
        """Queue writers of the same numbered sequence (PostgreSQL) instead of letting them collide and retry.

        SQLite needs nothing: ``BEGIN IMMEDIATE`` already admits one writer at a time. The unique constraint
        and the retry loop stay as the guarantee; this lock only keeps many concurrent writers from
        retrying over and over.
        """
        if self.dialect == "postgresql":
            lock = zlib.crc32("\x00".join(key).encode()) - 2**31  # pg_advisory_xact_lock(int, int) takes int4
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:space, :lock)"), {"space": _LOCK_SPACE, "lock": lock})

    def schema_version(self) -> int:
        """The schema version stored in the catalog."""
        with self._read() as conn:
            return read_version(conn) or 0

    def close(self) -> None:
        """Release every pooled connection."""
        self._lean.close()
        self._engine.dispose()

    # -- definitions -----------------------------------------------------------------------------------------
    @staticmethod
    def _definition(row: sa.Row[Any]) -> DefinitionRecord:
        return DefinitionRecord(
            kind=row.kind,
            name=row.name,
            version=row.version,
            hash=row.hash,
            spec=row.spec,
            status=row.status,
            created_at=_as_utc(row.created_at) or utcnow(),
        )

    def current_definitions(self, kind: str | None = None) -> dict[tuple[str, str], DefinitionRecord]:
        """The latest version of every definition (removed ones included, flagged by ``status``)."""
        d = _schema.definitions
        latest = (
            sa.select(d.c.kind, d.c.name, sa.func.max(d.c.version).label("version"))
            .group_by(d.c.kind, d.c.name)
            .subquery()
        )
        query = sa.select(d).join(
            latest,
            (d.c.kind == latest.c.kind) & (d.c.name == latest.c.name) & (d.c.version == latest.c.version),
        )
        if kind is not None:
            query = query.where(d.c.kind == kind)
        with self._read() as conn:
            rows = conn.execute(query).all()
        return {(r.kind, r.name): self._definition(r) for r in rows}

    def definition_history(self, kind: str, name: str) -> list[DefinitionRecord]:
        """Every version of one definition, oldest first."""
        d = _schema.definitions
        with self._read() as conn:
            rows = conn.execute(sa.select(d).where(d.c.kind == kind, d.c.name == name).order_by(d.c.version)).all()
        return [self._definition(r) for r in rows]

    def record_definitions(
        self, changes: list[tuple[str, str, str, dict[str, Any] | None, str]]
    ) -> list[DefinitionRecord]:
        """Append a new version for each ``(kind, name, hash, spec, status)``, all in one transaction.

        A change whose hash equals the current version's (and whose status is the same) is skipped, so that
        two processes applying the same definitions record them once.
        """
        d = _schema.definitions
        for kind, name, _hash, spec, _status in changes:
            _json_safe(spec, f"the spec of {kind} {name!r}", "spec")

        def write(conn: sa.Connection) -> list[DefinitionRecord]:
            self._serialize(conn, "definitions")
            now = utcnow()
            written: list[DefinitionRecord] = []
            for kind, name, hash_, spec, status in changes:
                current = conn.execute(
                    sa.select(d.c.version, d.c.hash, d.c.status)
                    .where(d.c.kind == kind, d.c.name == name)
                    .order_by(d.c.version.desc())
                    .limit(1)
                ).first()
                if current is not None and current.hash == hash_ and current.status == status:
                    continue
                if current is None and status == "removed":
                    continue
                version = (current.version if current is not None else 0) + 1
                conn.execute(
                    sa.insert(d).values(
                        kind=kind,
                        name=name,
                        version=version,
                        hash=hash_,
                        spec=spec,
                        status=status,
                        created_at=now,
                    )
                )
                written.append(DefinitionRecord(kind, name, version, hash_, spec, status, now))
            return written

        return self._retrying("recording definitions", write)

    # -- ingested feature versions ---------------------------------------------------------------------------
    @staticmethod
    def _feature_version(row: sa.Row[Any]) -> FeatureVersion:
        return FeatureVersion(
            view=row.view,
            version=row.version,
            definition_version=row.definition_version,
            definition_hash=row.definition_hash,
            location=row.location,
            files=list(row.files),
            row_count=int(row.row_count),
            event_time_min=_as_utc(row.event_time_min),
            event_time_max=_as_utc(row.event_time_max),
            data_digest=row.data_digest,
            columns=dict(row.columns),
            statistics=dict(row.statistics),
            has_duplicates=bool(row.has_duplicates),
            created_at=_as_utc(row.created_at) or utcnow(),
            validation=dict(row.validation) if row.validation is not None else None,
        )

    def add_feature_version(
        self,
        *,
        view: str,
        definition_version: int,
        definition_hash: str,
        location: str,
        files: list[dict[str, Any]],
        row_count: int,
        event_time_min: datetime | None,
        event_time_max: datetime | None,
        data_digest: str,
        columns: dict[str, Any],
        statistics: dict[str, Any],
        has_duplicates: bool,
        skip_if_latest_digest: bool = True,
        expect_latest: int | None = None,
        validation: dict[str, Any] | None = None,
    ) -> tuple[FeatureVersion, bool]:
        """Record a new ingested version with the next number; returns ``(version, created)``.

        With ``expect_latest`` (a version number, 0 for none), the write happens only if the latest version is
        still that one: a version built on top of another (a push) never silently drops a concurrent one; a
        :class:`ConflictError` says to rebuild on the new latest.

        With ``skip_if_latest_digest``, data identical to the latest version's (same digest and definition)
        records nothing and returns the latest version with ``created=False``.
        """
        fv = _schema.feature_versions
        event_time_min = _to_store(event_time_min, "event_time_min")
        event_time_max = _to_store(event_time_max, "event_time_max")
        for what, value in (("files", files), ("columns", columns), ("statistics", statistics)):
            _json_safe(value, f"the {what} of a version of feature view {view!r}", what)
        if validation is not None:
            _json_safe(validation, f"the validation of a version of feature view {view!r}", "validation")

        def write(conn: sa.Connection) -> tuple[FeatureVersion, bool]:
            self._serialize(conn, "feature_versions", view)
            latest = conn.execute(sa.select(fv).where(fv.c.view == view).order_by(fv.c.version.desc()).limit(1)).first()
            if (
                skip_if_latest_digest
                and latest is not None
                and latest.data_digest == data_digest
                and latest.definition_hash == definition_hash
            ):
                return self._feature_version(latest), False
            found = latest.version if latest is not None else 0
            if expect_latest is not None and found != expect_latest:
                raise ConflictError(
                    f"feature view {view!r}: version {found} was recorded meanwhile (expected the latest to be "
                    f"{expect_latest}); rebuild on top of it"
                )
            version = found + 1
            conn.execute(
                sa.insert(fv).values(
                    view=view,
                    version=version,
                    definition_version=definition_version,
                    definition_hash=definition_hash,
                    location=location,
                    files=files,
                    row_count=row_count,
                    event_time_min=event_time_min,
                    event_time_max=event_time_max,
                    data_digest=data_digest,
                    columns=columns,
                    statistics=statistics,
                    has_duplicates=has_duplicates,
                    created_at=utcnow(),
                    validation=validation,
                )
            )
            row = conn.execute(sa.select(fv).where(fv.c.view == view, fv.c.version == version)).one()
            return self._feature_version(row), True

        return self._retrying(f"recording a version of feature view {view!r}", write)

    def feature_versions(self, view: str) -> list[FeatureVersion]:
        """Every ingested version of ``view``, oldest first."""
        fv = _schema.feature_versions
        with self._read() as conn:
            rows = conn.execute(sa.select(fv).where(fv.c.view == view).order_by(fv.c.version)).all()
        return [self._feature_version(r) for r in rows]

    def feature_version(self, view: str, version: int | None = None) -> FeatureVersion:
        """One ingested version (the latest when ``version`` is None); :class:`NotFoundError` otherwise."""
        fv = _schema.feature_versions
        query = sa.select(fv).where(fv.c.view == view)
        query = query.where(fv.c.version == version) if version is not None else query
        with self._read() as conn:
            row = conn.execute(query.order_by(fv.c.version.desc()).limit(1)).first()
        if row is None:
            if version is None:
                raise NotFoundError(
                    f"feature view {view!r} has no ingested data yet; run `keel ingest {view}` "
                    f"(or project.ingest({view!r})) first"
                )
            known = [v.version for v in self.feature_versions(view)]
            raise NotFoundError(f"feature view {view!r} has no version {version}; known versions: {known or 'none'}")
        return self._feature_version(row)

    # -- materializations ------------------------------------------------------------------------------------
    @staticmethod
    def _materialization(row: sa.Row[Any]) -> Materialization:
        return Materialization(
            view=row.view,
            store=row.store,
            version=row.version,
            start=_as_utc(row.start),
            end=_as_utc(row.end) or utcnow(),
            row_count=int(row.row_count),
            seconds=float(row.seconds),
            created_at=_as_utc(row.created_at) or utcnow(),
        )

    def add_materialization(
        self,
        *,
        view: str,
        store: str,
        version: int,
        start: datetime | None,
        end: datetime,
        row_count: int,
        seconds: float,
    ) -> Materialization:
        """Record that ``view``'s ``version`` was written to ``store`` for event times in ``(start, end]``."""
        m = _schema.materializations
        values = {
            "view": view,
            "store": store,
            "version": version,
            "start": _to_store(start, "start"),
            "end": _to_store(end, "end"),
            "row_count": row_count,
            "seconds": seconds,
            "created_at": utcnow(),
        }

        def write(conn: sa.Connection) -> Materialization:
            conn.execute(sa.insert(m).values(**values))
            row = conn.execute(
                sa.select(m).where(m.c.view == view, m.c.store == store).order_by(m.c.id.desc()).limit(1)
            ).one()
            return self._materialization(row)

        return self._retrying(f"recording a materialization of feature view {view!r}", write)

    def last_materialization(self, view: str, store: str) -> Materialization | None:
        """The latest materialization of ``view`` into ``store``, or ``None``."""
        m = _schema.materializations
        with self._read() as conn:
            row = conn.execute(
                sa.select(m).where(m.c.view == view, m.c.store == store).order_by(m.c.id.desc()).limit(1)
            ).first()
        return self._materialization(row) if row is not None else None

    def materializations(self, view: str | None = None, store: str | None = None) -> list[Materialization]:
        """Materializations, newest first, optionally of one view and/or one store."""
        m = _schema.materializations
        query = sa.select(m)
        if view is not None:
            query = query.where(m.c.view == view)
        if store is not None:
            query = query.where(m.c.store == store)
        with self._read() as conn:
            rows = conn.execute(query.order_by(m.c.id.desc())).all()
        return [self._materialization(r) for r in rows]
