"""One suite, every catalog backend: SQLite in a file, SQLite in memory, PostgreSQL (the real server)."""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import sqlalchemy as sa
from _catalog_workers import run_processes

from keel.catalog import SqlCatalog, latest_version
from keel.errors import NotFoundError, ValidationError

WORKERS = 8
VERSIONS_PER_WORKER = 10


@pytest.fixture(params=["sqlite_file", "sqlite_memory", pytest.param("postgresql", marks=pytest.mark.postgres)])
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite_file":
        return f"sqlite:///{tmp_path / 'catalog.db'}"
    if request.param == "sqlite_memory":
        return "sqlite://"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture(params=["sqlite_file", pytest.param("postgresql", marks=pytest.mark.postgres)])
def shared_catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A catalog URL several processes can open (not in memory)."""
    if request.param == "sqlite_file":
        return f"sqlite:///{tmp_path / 'shared' / 'catalog.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def catalog(catalog_url: str) -> Iterator[SqlCatalog]:
    cat = SqlCatalog(catalog_url)
    yield cat
    cat.close()


@pytest.fixture
def workers(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The process targets, importable by name in 'spawn' children (which inherit sys.path)."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    return importlib.import_module("_catalog_workers")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _add(catalog: SqlCatalog, view: str = "activity", **overrides: Any) -> tuple[Any, bool]:
    values: dict[str, Any] = {
        "view": view,
        "definition_version": 1,
        "definition_hash": "a" * 64,
        "location": f"{view}/x",
        "files": [{"path": "part-0.parquet", "sha256": "f" * 64, "rows": 3}],
        "row_count": 3,
        "event_time_min": datetime(2024, 1, 1, tzinfo=UTC),
        "event_time_max": datetime(2024, 1, 31, tzinfo=UTC),
        "data_digest": _digest("data-1"),
        "columns": {"spend": "float64"},
        "statistics": {"spend": {"count": 3}},
        "has_duplicates": False,
    }
    values.update(overrides)
    result: tuple[Any, bool] = catalog.add_feature_version(**values)
    return result


# -- schema -------------------------------------------------------------------------------------------------
def test_new_catalog_is_migrated_to_the_latest_schema(catalog: SqlCatalog) -> None:
    assert catalog.migrated_from == 0
    assert catalog.schema_version() == latest_version()


def test_a_version_keeps_its_validation_results(catalog: SqlCatalog) -> None:
    results = {"policy": "warn", "rows": 3, "results": [{"describe": "spend >= 0", "passed": False, "failed": 1}]}

    added, _ = _add(catalog, validation=results)
    plain, _ = _add(catalog, "other")

    assert added.validation == results
    assert catalog.feature_version("activity").validation == results
    assert plain.validation is None


def test_a_catalog_from_before_validation_results_gets_the_column_and_keeps_its_versions(
    shared_catalog_url: str,
) -> None:
    from keel.catalog import MIGRATIONS

    old = SqlCatalog(shared_catalog_url, migrations=MIGRATIONS[:4])
    _add(old)
    old.close()
    engine = sa.create_engine(shared_catalog_url)
    with engine.begin() as conn:  # the table as schema v4 made it
        conn.exec_driver_sql("ALTER TABLE keel_feature_versions DROP COLUMN validation")
    engine.dispose()

    catalog = SqlCatalog(shared_catalog_url)

    assert catalog.migrated_from == 4
    assert catalog.feature_version("activity").validation is None
    assert _add(catalog, "other", validation={"policy": "strict"})[0].validation == {"policy": "strict"}
    catalog.close()


def test_reopened_catalog_keeps_its_data_and_is_not_migrated_again(shared_catalog_url: str) -> None:
    first = SqlCatalog(shared_catalog_url)
    _add(first)
    first.close()

    again = SqlCatalog(shared_catalog_url)

    assert again.migrated_from == latest_version()
    assert [v.version for v in again.feature_versions("activity")] == [1]
    again.close()


# -- definitions --------------------------------------------------------------------------------------------
def test_recording_a_new_definition_gives_version_1(catalog: SqlCatalog) -> None:
    written = catalog.record_definitions([("entity", "customer", "h1", {"join_keys": ["customer_id"]}, "active")])

    assert [(r.kind, r.name, r.version, r.hash, r.status) for r in written] == [
        ("entity", "customer", 1, "h1", "active")
    ]
    assert written[0].spec == {"join_keys": ["customer_id"]}
    assert written[0].active


def test_re_recording_an_unchanged_definition_writes_nothing(catalog: SqlCatalog) -> None:
    catalog.record_definitions([("entity", "customer", "h1", {"v": 1}, "active")])

    written = catalog.record_definitions([("entity", "customer", "h1", {"v": 1}, "active")])

    assert written == []
    assert [r.version for r in catalog.definition_history("entity", "customer")] == [1]


def test_a_changed_definition_gets_the_next_version(catalog: SqlCatalog) -> None:
    catalog.record_definitions([("feature_view", "activity", "h1", {"ttl": 1}, "active")])

    written = catalog.record_definitions([("feature_view", "activity", "h2", {"ttl": 2}, "active")])

    assert [(r.version, r.hash, r.spec) for r in written] == [(2, "h2", {"ttl": 2})]
    current = catalog.current_definitions()[("feature_view", "activity")]
    assert (current.version, current.hash, current.spec) == (2, "h2", {"ttl": 2})


def test_removing_a_definition_records_a_tombstone(catalog: SqlCatalog) -> None:
    catalog.record_definitions([("entity", "customer", "h1", {"v": 1}, "active")])

    written = catalog.record_definitions([("entity", "customer", "", None, "removed")])

    assert [(r.version, r.status, r.spec) for r in written] == [(2, "removed", None)]
    current = catalog.current_definitions()[("entity", "customer")]
    assert current.version == 2
    assert not current.active


def test_removing_an_unknown_or_already_removed_definition_writes_nothing(catalog: SqlCatalog) -> None:
    catalog.record_definitions([("entity", "customer", "h1", {"v": 1}, "active")])
    catalog.record_definitions([("entity", "customer", "", None, "removed")])

    again = catalog.record_definitions([("entity", "customer", "", None, "removed")])
    never_known = catalog.record_definitions([("entity", "ghost", "", None, "removed")])

    assert again == []
    assert never_known == []
    assert [r.version for r in catalog.definition_history("entity", "customer")] == [1, 2]
    assert ("entity", "ghost") not in catalog.current_definitions()


def test_re_adding_a_removed_definition_gets_the_next_version(catalog: SqlCatalog) -> None:
    catalog.record_definitions([("entity", "customer", "h1", {"v": 1}, "active")])
    catalog.record_definitions([("entity", "customer", "", None, "removed")])

    written = catalog.record_definitions([("entity", "customer", "h1", {"v": 1}, "active")])

    assert [(r.version, r.status) for r in written] == [(3, "active")]
    assert catalog.current_definitions()[("entity", "customer")].active


def test_current_definitions_holds_the_latest_version_of_each_filtered_by_kind(catalog: SqlCatalog) -> None:
    catalog.record_definitions(
        [
            ("entity", "customer", "c1", {"v": 1}, "active"),
            ("feature_view", "activity", "a1", {"v": 1}, "active"),
            ("feature_view", "orders", "o1", {"v": 1}, "active"),
        ]
    )
    catalog.record_definitions([("feature_view", "activity", "a2", {"v": 2}, "active")])

    every = catalog.current_definitions()
    views = catalog.current_definitions("feature_view")

    assert {key: rec.version for key, rec in every.items()} == {
        ("entity", "customer"): 1,
        ("feature_view", "activity"): 2,
        ("feature_view", "orders"): 1,
    }
    assert set(views) == {("feature_view", "activity"), ("feature_view", "orders")}
    assert views[("feature_view", "activity")].hash == "a2"


def test_definition_history_lists_every_version_oldest_first(catalog: SqlCatalog) -> None:
    catalog.record_definitions([("entity", "customer", "h1", {"v": 1}, "active")])
    catalog.record_definitions([("entity", "customer", "h2", {"v": 2}, "active")])
    catalog.record_definitions([("entity", "customer", "", None, "removed")])

    history = catalog.definition_history("entity", "customer")

    assert [(r.version, r.hash, r.status) for r in history] == [
        (1, "h1", "active"),
        (2, "h2", "active"),
        (3, "", "removed"),
    ]
    assert catalog.definition_history("entity", "nobody") == []


def test_record_definitions_with_a_non_json_spec_writes_none_of_the_batch(catalog: SqlCatalog) -> None:
    batch: list[tuple[str, str, str, dict[str, Any] | None, str]] = [
        ("entity", "customer", "h1", {"v": 1}, "active"),
        ("entity", "store", "h2", {"ttl": float("nan")}, "active"),
    ]

    with pytest.raises(ValidationError, match=r"spec of entity 'store'.*NaN"):
        catalog.record_definitions(batch)

    assert catalog.current_definitions() == {}


# -- ingested feature versions ------------------------------------------------------------------------------
def test_feature_versions_are_numbered_per_view_from_1(catalog: SqlCatalog) -> None:
    first, created_first = _add(catalog, "activity", data_digest=_digest("a"))
    second, created_second = _add(catalog, "activity", data_digest=_digest("b"))
    other, _ = _add(catalog, "orders", data_digest=_digest("a"))

    assert (first.version, second.version, other.version) == (1, 2, 1)
    assert created_first and created_second
    assert [v.version for v in catalog.feature_versions("activity")] == [1, 2]


def test_identical_digest_and_definition_as_the_latest_records_nothing(catalog: SqlCatalog) -> None:
    first, _ = _add(catalog, data_digest=_digest("same"))

    again, created = _add(catalog, data_digest=_digest("same"), location="activity/elsewhere")

    assert not created
    assert again == first
    assert len(catalog.feature_versions("activity")) == 1


def test_identical_digest_is_recorded_when_skipping_is_disabled(catalog: SqlCatalog) -> None:
    _add(catalog, data_digest=_digest("same"))

    again, created = _add(catalog, data_digest=_digest("same"), skip_if_latest_digest=False)

    assert created
    assert again.version == 2


def test_identical_digest_under_a_new_definition_is_a_new_version(catalog: SqlCatalog) -> None:
    _add(catalog, data_digest=_digest("same"), definition_hash="a" * 64)

    again, created = _add(catalog, data_digest=_digest("same"), definition_hash="b" * 64, definition_version=2)

    assert created
    assert (again.version, again.definition_version, again.definition_hash) == (2, 2, "b" * 64)


def test_data_identical_to_an_older_version_only_is_a_new_version(catalog: SqlCatalog) -> None:
    _add(catalog, data_digest=_digest("a"))
    _add(catalog, data_digest=_digest("b"))

    third, created = _add(catalog, data_digest=_digest("a"))

    assert created
    assert third.version == 3


def test_feature_version_is_the_latest_by_default_and_the_pinned_one_on_request(catalog: SqlCatalog) -> None:
    for name in ("a", "b", "c"):
        _add(catalog, data_digest=_digest(name))

    latest = catalog.feature_version("activity")
    pinned = catalog.feature_version("activity", 2)

    assert (latest.version, latest.data_digest) == (3, _digest("c"))
    assert (pinned.version, pinned.data_digest) == (2, _digest("b"))


def test_feature_version_of_a_view_without_data_says_to_ingest_it(catalog: SqlCatalog) -> None:
    with pytest.raises(NotFoundError, match=r"'activity' has no ingested data yet; run `keel ingest activity`"):
        catalog.feature_version("activity")


def test_feature_version_of_an_unknown_number_lists_the_known_ones(catalog: SqlCatalog) -> None:
    _add(catalog, data_digest=_digest("a"))
    _add(catalog, data_digest=_digest("b"))

    with pytest.raises(NotFoundError, match=r"'activity' has no version 7; known versions: \[1, 2\]"):
        catalog.feature_version("activity", 7)
    with pytest.raises(NotFoundError, match=r"'orders' has no version 1; known versions: none"):
        catalog.feature_version("orders", 1)


def test_feature_versions_of_an_unknown_view_is_empty(catalog: SqlCatalog) -> None:
    assert catalog.feature_versions("nothing") == []


def test_json_columns_round_trip_exactly(catalog: SqlCatalog) -> None:
    statistics = {
        "spend": {
            "count": 3,
            "nulls": 0,
            "min": -1.5,
            "max": 1e300,
            "mean": 0.1 + 0.2,
            "std": None,
            "quantiles": {"p05": -1.25, "p50": 0.0, "p95": 7.0},
            "max_int": 2**62,
        },
        "plan": {"top": [["basic", 2], ["prémium ✓", 1]], "distinct": 2, "flag": True},
        "empty": {},
    }
    files = [{"path": "month=2024-01/part-0.parquet", "sha256": "e" * 64, "rows": 2}]
    columns = {
        "join_keys": {"customer_id": "int64"},
        "timestamp": "event_time",
        "features": {"spend": "float64"},
    }

    _add(catalog, statistics=statistics, files=files, columns=columns)
    stored = catalog.feature_version("activity")

    assert stored.statistics == statistics
    assert stored.files == files
    assert stored.columns == columns
    assert stored.statistics["spend"]["mean"] == 0.1 + 0.2


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_statistics_are_refused_and_nothing_is_recorded(catalog: SqlCatalog, bad: float) -> None:
    with pytest.raises(ValidationError, match=r"statistics of a version of feature view 'activity'") as info:
        _add(catalog, statistics={"spend": {"std": bad}})

    assert info.value.field == "statistics"
    assert catalog.feature_versions("activity") == []


def test_timestamps_come_back_timezone_aware_in_utc(catalog: SqlCatalog) -> None:
    plus_two = timezone(timedelta(hours=2))
    before = datetime.now(UTC)

    version, _ = _add(
        catalog,
        event_time_min=datetime(2024, 3, 1, 12, 0, 0, 123456, tzinfo=plus_two),
        event_time_max=datetime(2024, 3, 2, 8, 30),  # naive: taken as UTC
    )
    (record,) = catalog.record_definitions([("entity", "customer", "h1", {}, "active")])
    stored = catalog.feature_version("activity")
    history = catalog.definition_history("entity", "customer")
    after = datetime.now(UTC)

    for value in (stored.event_time_min, stored.event_time_max, stored.created_at, history[0].created_at):
        assert value is not None
        assert value.utcoffset() == timedelta(0)
    assert stored.event_time_min == datetime(2024, 3, 1, 10, 0, 0, 123456, tzinfo=UTC)
    assert stored.event_time_max == datetime(2024, 3, 2, 8, 30, tzinfo=UTC)
    assert version.event_time_min == stored.event_time_min
    assert before - timedelta(seconds=1) <= stored.created_at <= after + timedelta(seconds=1)
    assert before - timedelta(seconds=1) <= history[0].created_at <= after + timedelta(seconds=1)
    assert record.created_at.utcoffset() == timedelta(0)


# -- concurrency (invariant 4): separate processes, not threads --------------------------------------------
def test_concurrent_processes_get_distinct_gap_free_version_numbers(
    shared_catalog_url: str, workers: ModuleType
) -> None:
    SqlCatalog(shared_catalog_url).close()

    payloads = run_processes(
        workers.add_versions, lambda w: (shared_catalog_url, w, VERSIONS_PER_WORKER), workers=WORKERS, timeout=120
    )

    returned = sorted(v for got in payloads.values() for v, _, _ in got)
    assert returned == list(range(1, WORKERS * VERSIONS_PER_WORKER + 1))
    assert all(created for got in payloads.values() for _, _, created in got)
    catalog = SqlCatalog(shared_catalog_url)
    stored = {v.version: v.data_digest for v in catalog.feature_versions("shared")}
    catalog.close()
    assert sorted(stored) == list(range(1, WORKERS * VERSIONS_PER_WORKER + 1))
    for got in payloads.values():  # each process's numbers point at its own rows
        for number, digest, _ in got:
            assert stored[number] == digest


def test_concurrent_processes_opening_a_new_catalog_migrate_it_and_record_a_definition_once(
    shared_catalog_url: str, workers: ModuleType
) -> None:
    payloads = run_processes(workers.open_and_record, lambda w: (shared_catalog_url, w), workers=WORKERS, timeout=120)

    migrated_from = sorted(found for found, _, _ in payloads.values())
    assert migrated_from == [0] + [latest_version()] * (WORKERS - 1)  # exactly one process migrated it
    assert {schema for _, schema, _ in payloads.values()} == {latest_version()}
    assert sorted(v for _, _, written in payloads.values() for v in written) == [1]  # recorded by one only
    catalog = SqlCatalog(shared_catalog_url)
    history = catalog.definition_history("entity", "customer")
    catalog.close()
    assert [r.version for r in history] == [1]
