"""Versioned catalog schema: each migration moves the schema one version up, inside one transaction."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from keel.catalog import _schema
from keel.errors import BackendError, ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Migration:
    """One step: ``apply`` takes the schema from ``version - 1`` to ``version``."""

    version: int
    description: str
    apply: Callable[[sa.Connection], None]


def _create_v1(conn: sa.Connection) -> None:
    # Tables carry their indexes; never attach new Index objects to the shared metadata here (it would
    # accumulate across calls in one process).
    for table in (_schema.definitions, _schema.feature_versions):
        table.create(conn, checkfirst=True)


def _create_v2(conn: sa.Connection) -> None:
    _schema.materializations.create(conn, checkfirst=True)


def _create_v3(conn: sa.Connection) -> None:
    for table in (
        _schema.runs,
        _schema.model_versions,
        _schema.model_annotations,
        _schema.aliases,
        _schema.alias_history,
    ):
        table.create(conn, checkfirst=True)


def _create_v4(conn: sa.Connection) -> None:
    for table in (_schema.monitoring_reports, _schema.monitoring_events):
        table.create(conn, checkfirst=True)


def _add_v5(conn: sa.Connection) -> None:
    # A catalog created since holds the column already (its table is created from the current schema).
    table = _schema.feature_versions.name
    if "validation" not in {c["name"] for c in sa.inspect(conn).get_columns(table)}:
        kind = sa.JSON().compile(dialect=conn.dialect)
        conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN validation {kind}")


def _create_v6(conn: sa.Connection) -> None:
    _schema.model_analyses.create(conn, checkfirst=True)


def _add_v7(conn: sa.Connection) -> None:
    # A catalog created since holds the column already (its table is created from the current schema).
    table = _schema.runs.name
    if "owner" not in {c["name"] for c in sa.inspect(conn).get_columns(table)}:
        kind = sa.JSON().compile(dialect=conn.dialect)
        conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN owner {kind}")


#: Every migration, in order. Append to this list; never edit a released entry.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "definitions and ingested feature versions", _create_v1),
    Migration(2, "materializations into online stores", _create_v2),
    Migration(3, "training runs, model versions and aliases", _create_v3),
    Migration(4, "monitoring reports and the monitoring audit trail", _create_v4),
    Migration(5, "the validation results of each feature version", _add_v5),
    Migration(6, "analyses of model versions", _create_v6),
    Migration(7, "the process that owns each running run", _add_v7),
)


def latest_version(migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """The schema version this code writes."""
    return migrations[-1].version if migrations else 0


def read_version(conn: sa.Connection) -> int | None:
    """The stored schema version, or ``None`` for a database without a Keel catalog."""
    if not sa.inspect(conn).has_table(_schema.meta.name):
        return None
    value = conn.execute(sa.select(_schema.meta.c.value).where(_schema.meta.c.key == "schema_version")).scalar()
    return int(value) if value is not None else None


def migrate(conn: sa.Connection, url: str, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Bring the catalog behind ``conn`` to the latest schema, inside the caller's (write) transaction.

    Returns the version found before migrating (0 for a new catalog). A catalog written by a newer Keel is
    refused with a message that says to upgrade.
    """
    target = latest_version(migrations)
    found = read_version(conn)
    if found is None:
        stray = [t for t in sa.inspect(conn).get_table_names() if t.startswith("keel_")]
        if stray:
            raise ConfigError(
                f"the catalog at {url} has Keel tables ({', '.join(sorted(stray))}) but no schema version; "
                "it was not written by Keel or was damaged. Point 'catalog' in keel.yaml at a new database, "
                "or drop those tables."
            )
        _schema.meta.create(conn, checkfirst=True)
        conn.execute(sa.insert(_schema.meta).values(key="schema_version", value="0"))
        found = 0
    if found > target:
        raise ConfigError(
            f"the catalog at {url} has schema version {found}, newer than this Keel understands ({target}). "
            "Upgrade Keel (pip install -U keel) to open it."
        )
    for migration in migrations:
        if found < migration.version <= target:
            log.info("catalog %s: migrating to schema %d (%s)", url, migration.version, migration.description)
            try:
                migration.apply(conn)
            except Exception as exc:
                raise BackendError(
                    f"the catalog at {url}: migrating to schema version {migration.version} "
                    f"({migration.description}) failed: {exc}. Nothing was changed: the catalog is still at "
                    f"schema version {found}"
                ) from exc
            conn.execute(
                sa.update(_schema.meta)
                .where(_schema.meta.c.key == "schema_version")
                .values(value=str(migration.version))
            )
    return found
