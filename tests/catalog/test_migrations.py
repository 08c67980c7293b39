"""The catalog's schema is versioned: older catalogs are migrated, newer or foreign ones refused."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from keel.catalog import MIGRATIONS, Migration, SqlCatalog, latest_version
from keel.errors import BackendError, ConfigError


@pytest.fixture(params=["sqlite_file", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite_file":
        return f"sqlite:///{tmp_path / 'catalog.db'}"
    pg: str = request.getfixturevalue("postgres_url")
    return pg


def _tables(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return set(sa.inspect(conn).get_table_names())
    finally:
        engine.dispose()


def _adds_extra_table(calls: list[int]) -> Callable[[sa.Connection], None]:
    def apply(conn: sa.Connection) -> None:
        calls.append(1)
        conn.exec_driver_sql("CREATE TABLE keel_extra (id INTEGER PRIMARY KEY, note TEXT)")

    return apply


def test_a_catalog_built_by_no_migrations_is_migrated_when_reopened(url: str) -> None:
    old = SqlCatalog(url, migrations=MIGRATIONS[:0])
    old_version = old.schema_version()
    old.close()
    assert old_version == 0
    assert "keel_definitions" not in _tables(url)

    catalog = SqlCatalog(url)

    assert catalog.migrated_from == 0
    assert catalog.schema_version() == latest_version()
    assert catalog.record_definitions([("entity", "customer", "h", {}, "active")])[0].version == 1
    catalog.close()


def test_a_new_migration_runs_once_and_keeps_existing_data(url: str) -> None:
    first = SqlCatalog(url)
    first.record_definitions([("entity", "customer", "h", {"v": 1}, "active")])
    first.close()
    calls: list[int] = []
    longer = (*MIGRATIONS, Migration(latest_version() + 1, "an extra table", _adds_extra_table(calls)))

    migrated = SqlCatalog(url, migrations=longer)
    migrated_from = migrated.migrated_from
    migrated.close()
    reopened = SqlCatalog(url, migrations=longer)

    assert migrated_from == latest_version()
    assert reopened.migrated_from == latest_version() + 1
    assert reopened.schema_version() == latest_version() + 1
    assert calls == [1]
    assert "keel_extra" in _tables(url)
    assert [r.version for r in reopened.definition_history("entity", "customer")] == [1]
    reopened.close()


def test_a_failing_migration_leaves_the_catalog_at_its_old_version(url: str) -> None:
    SqlCatalog(url).close()

    def half_done(conn: sa.Connection) -> None:
        conn.exec_driver_sql("CREATE TABLE keel_half (id INTEGER PRIMARY KEY)")
        raise RuntimeError("disk full")

    broken = (*MIGRATIONS, Migration(latest_version() + 1, "a broken step", half_done))

    with pytest.raises(BackendError) as info:
        SqlCatalog(url, migrations=broken)

    message = str(info.value)
    assert f"schema version {latest_version() + 1} (a broken step) failed: disk full" in message
    assert f"still at schema version {latest_version()}" in message
    assert "keel_half" not in _tables(url)
    catalog = SqlCatalog(url)
    assert catalog.schema_version() == latest_version()
    catalog.close()


def test_a_catalog_newer_than_the_code_is_refused_with_advice_to_upgrade(url: str) -> None:
    newer = (*MIGRATIONS, Migration(latest_version() + 1, "from the future", _adds_extra_table([])))
    SqlCatalog(url, migrations=newer).close()

    with pytest.raises(ConfigError) as info:
        SqlCatalog(url)

    message = str(info.value)
    assert f"schema version {latest_version() + 1}, newer than this Keel understands ({latest_version()})" in message
    assert "Upgrade Keel (pip install -U keel)" in message


def test_stray_keel_tables_without_a_schema_version_are_refused_and_left_alone(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE keel_definitions (id INTEGER PRIMARY KEY)")
        conn.exec_driver_sql("CREATE TABLE keel_runs (id INTEGER PRIMARY KEY)")
    engine.dispose()

    with pytest.raises(ConfigError) as info:
        SqlCatalog(url)

    message = str(info.value)
    assert "has Keel tables (keel_definitions, keel_runs) but no schema version" in message
    assert "Point 'catalog' in keel.yaml at a new database, or drop those tables" in message
    assert _tables(url) == {"keel_definitions", "keel_runs"}


def test_a_database_with_other_tables_only_becomes_a_catalog(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE customers (id INTEGER PRIMARY KEY)")
    engine.dispose()

    catalog = SqlCatalog(url)

    assert catalog.migrated_from == 0
    assert catalog.schema_version() == latest_version()
    assert "customers" in _tables(url)
    catalog.close()


def test_runs_recorded_before_owners_were_kept_get_none_and_are_never_failed_for_it(url: str) -> None:
    import uuid

    old = SqlCatalog(url, migrations=MIGRATIONS[:6])
    run_id = uuid.uuid4().hex
    old.start_run(run_id=run_id, spec="churn", spec_snapshot={}, params={})
    old.close()
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # the table as schema version 6 created it: no owner column
        conn.exec_driver_sql("ALTER TABLE keel_runs DROP COLUMN owner")
    engine.dispose()

    catalog = SqlCatalog(url)

    assert catalog.migrated_from == 6
    assert "owner" in {c["name"] for c in sa.inspect(catalog._engine).get_columns("keel_runs")}
    assert catalog.run(run_id).owner is None
    assert catalog.fail_dead_runs() == []
    assert catalog.run(run_id).status == "running"
    catalog.close()
