"""Materialization: the latest value per entity within the TTL, incremental runs, and online = offline at `now`.

The TTL-consistency guarantee: after ``materialize(end=now)``, an online read at ``now`` gives, for every
entity, exactly what ``historical_features`` gives for an entity row at ``now`` (same value, same nulls, same
tie-breaking, same TTL bound). Times are relative to the wall clock, one hour ahead of it, so that Redis, which
expires each entity at its event time plus the TTL, still holds every value the test reads.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from keel import DataFrameSource, Entity, FeatureView, Field, NotFoundError, ValidationError
from keel.online._values import us_from_datetime

CUSTOMER = Entity("customer", ["customer_id"])
TTL = timedelta(days=2)
US = timedelta(microseconds=1)
NOW = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
NOW_US = us_from_datetime(NOW)
SCHEMA = [Field("spend", "float64"), Field("orders", "int64"), Field("plan", "string")]
FEATURES = ["spend", "orders", "plan"]
REFS = [f"activity:{f}" for f in FEATURES]


def frame(rows: list[tuple[Any, ...]], *, created: bool = False) -> pd.DataFrame:
    """Rows of (customer_id, event_time, spend, orders, plan[, created])."""
    columns = ["customer_id", "event_time", "spend", "orders", "plan"] + (["created"] if created else [])
    df = pd.DataFrame(rows, columns=columns)
    df["event_time"] = pd.to_datetime(df["event_time"], utc=True).astype("datetime64[us, UTC]")
    if created:
        df["created"] = pd.to_datetime(df["created"], utc=True).astype("datetime64[us, UTC]")
    df["spend"] = df["spend"].astype("float64")
    df["orders"] = df["orders"].astype("Int64")
    df["plan"] = df["plan"].astype("object")
    return df


def activity(
    df: pd.DataFrame, *, name: str = "activity", ttl: timedelta | None = TTL, online: bool = True
) -> FeatureView:
    created = "created" if "created" in df.columns else None
    return FeatureView(
        name,
        entities=[CUSTOMER],
        source=DataFrameSource(df, created_timestamp=created),
        schema=SCHEMA,
        ttl=ttl,
        online=online,
    )


def setup(project: Any, df: pd.DataFrame, **kwargs: Any) -> FeatureView:
    view = activity(df, **kwargs)
    project.apply([CUSTOMER, view])
    project.ingest(view)
    return view


def plain(value: Any) -> Any:
    """A value as plain Python, every kind of missing as None (offline gives NaN and pd.NA, online None)."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def online_rows(project: Any, keys: list[Any], refs: list[str] = REFS, now_us: int = NOW_US) -> list[tuple[Any, ...]]:
    got = project.online.get(refs, [{"customer_id": k} for k in keys], now_us=now_us).to_dict()
    return [tuple(plain(v) for v in row) for row in zip(*got.values(), strict=True)]


def offline_rows(project: Any, keys: list[Any], refs: list[str] = REFS, at: datetime = NOW) -> list[tuple[Any, ...]]:
    entities = pd.DataFrame({"customer_id": keys, "ts": pd.Series([at] * len(keys), dtype="datetime64[us, UTC]")})
    out = project.historical_features(entities, refs).drop(columns=["customer_id", "ts"])
    return [tuple(plain(v) for v in row) for row in out.itertuples(index=False)]


def stored_event_times(project: Any, keys: list[Any], view: str = "activity") -> list[datetime | None]:
    """What the store itself holds (no TTL applied): each entity's event time, None when absent."""
    return project.online_store.read(view, [(k,) for k in keys], ["spend"]).event_times


# -- what one run writes -------------------------------------------------------------------------------------
def test_the_latest_value_per_entity_within_the_ttl_is_written(any_project: Any) -> None:
    project = any_project
    setup(
        project,
        frame(
            [
                (1, NOW - timedelta(days=1, hours=5), 1.0, 1, "a"),
                (1, NOW - timedelta(hours=3), 2.0, 2, "b"),  # 1's latest
                (2, NOW - TTL - timedelta(seconds=1), 3.0, 3, "c"),  # expired at NOW: never written
                (3, NOW - timedelta(hours=2), 4.0, None, None),  # 3's latest at NOW, with nulls
                (3, NOW + timedelta(minutes=1), 5.0, 5, "e"),  # after `end`: not yet
                (4, NOW, 6.0, 6, "f"),  # exactly at `end`: written
            ]
        ),
    )

    [result] = project.materialize(end=NOW)

    assert (result.view, result.version, result.rows, result.skipped, result.rebuilt) == ("activity", 1, 3, "", "")
    assert result.end == NOW and result.start is None
    assert online_rows(project, [1, 2, 3, 4, 5]) == [
        (2.0, 2, "b"),
        (None, None, None),
        (4.0, None, None),
        (6.0, 6, "f"),
        (None, None, None),
    ]
    assert stored_event_times(project, [1, 2, 3, 4]) == [
        NOW - timedelta(hours=3),
        None,
        NOW - timedelta(hours=2),
        NOW,
    ]


def test_the_ttl_bound_is_inclusive_as_in_offline_retrieval(project: Any) -> None:
    setup(
        project,
        frame(
            [
                (1, NOW - TTL, 1.0, 1, "exactly ttl old"),
                (2, NOW - TTL - US, 2.0, 2, "one microsecond too old"),
                (3, NOW - TTL + US, 3.0, 3, "one microsecond inside"),
            ]
        ),
    )
    [result] = project.materialize(end=NOW)

    assert result.rows == 2
    assert online_rows(project, [1, 2, 3]) == offline_rows(project, [1, 2, 3])
    assert [r[2] for r in online_rows(project, [1, 2, 3])] == ["exactly ttl old", None, "one microsecond inside"]
    # One microsecond later, the value exactly TTL old has expired, online as offline.
    assert online_rows(project, [1, 3], now_us=NOW_US + 1) == offline_rows(project, [1, 3], at=NOW + US)
    assert [r[2] for r in online_rows(project, [1, 3], now_us=NOW_US + 1)] == [None, "one microsecond inside"]


def test_a_view_without_ttl_writes_every_entitys_latest_value(project: Any) -> None:
    setup(project, frame([(1, "2001-01-01", 1.0, 1, "old"), (1, "2002-01-01", 2.0, 2, "older")]), ttl=None)

    [result] = project.materialize(end=NOW)

    assert result.rows == 1
    assert online_rows(project, [1]) == [(2.0, 2, "older")]


# -- incremental runs ----------------------------------------------------------------------------------------
def test_a_second_run_writes_only_later_event_times_then_reports_up_to_date(any_project: Any) -> None:
    project = any_project
    setup(
        project,
        frame(
            [
                (1, NOW - timedelta(hours=30), 1.0, 1, "a"),
                (2, NOW - timedelta(hours=20), 2.0, 2, "b"),
                (2, NOW - timedelta(hours=5), 3.0, 3, "c"),
                (3, NOW - timedelta(hours=1), 4.0, 4, "d"),
            ]
        ),
    )
    first_end = NOW - timedelta(hours=10)

    [first] = project.materialize(end=first_end)
    [second] = project.materialize(end=NOW)
    [third] = project.materialize(end=NOW)
    [fourth] = project.materialize()  # now (the wall clock) is before NOW: nothing new either

    assert (first.rows, first.start) == (2, None)
    assert (second.rows, second.start, second.end) == (2, first_end, NOW)  # 2's row at -5h and 3's at -1h
    assert third.rows == 0 and third.skipped.startswith("up to date (v1 written up to")
    assert fourth.rows == 0 and fourth.skipped.startswith("up to date")
    assert online_rows(project, [1, 2, 3]) == [(1.0, 1, "a"), (3.0, 3, "c"), (4.0, 4, "d")]
    records = project.catalog.materializations("activity", project.online_store_id)
    assert [(r.version, r.end, r.row_count) for r in records] == [(1, NOW, 2), (1, first_end, 2)]


def test_runs_record_per_store_so_another_store_starts_afresh(project_dir: Any, tmp_path: Any) -> None:
    import keel

    df = frame([(1, NOW - timedelta(hours=3), 1.0, 1, "a")])
    with keel.Project.open(project_dir) as project:
        setup(project, df)
        assert project.materialize(end=NOW)[0].rows == 1
        assert project.materialize(end=NOW)[0].skipped
    with keel.Project.open(project_dir, online=f"sqlite:///{tmp_path / 'other.db'}") as other:
        [result] = other.materialize(end=NOW)
        assert (result.rows, result.skipped) == (1, "")
        assert online_rows(other, [1]) == [(1.0, 1, "a")]


def test_a_new_ingested_version_is_materialized_from_the_ttl_again(any_project: Any) -> None:
    project = any_project
    rows = [(1, NOW - timedelta(hours=30), 1.0, 1, "a"), (2, NOW - timedelta(hours=20), 2.0, 2, "b")]
    setup(project, frame(rows))
    project.materialize(end=NOW)
    assert project.online.get(REFS, [{"customer_id": 1}]).versions == {"activity": 1}

    # v2 corrects 1's value at the same event time and adds a row for 3, older than the last run's end.
    project.ingest(
        activity(frame([(1, NOW - timedelta(hours=30), 10.0, 10, "a2"), rows[1], (3, NOW - TTL, 3.0, 3, "c")]))
    )
    [result] = project.materialize(end=NOW)

    assert (result.version, result.rows, result.start, result.skipped, result.rebuilt) == (2, 3, None, "", "")
    assert online_rows(project, [1, 2, 3]) == [(10.0, 10, "a2"), (2.0, 2, "b"), (3.0, 3, "c")]
    assert project.online.get(REFS, [{"customer_id": 1}], now_us=NOW_US).versions == {"activity": 2}
    assert project.materialize(end=NOW)[0].skipped.startswith("up to date (v2")


def test_a_new_version_lacking_rows_the_store_holds_rebuilds_the_view(any_project: Any) -> None:
    project = any_project
    setup(
        project,
        frame(
            [
                (1, NOW - timedelta(hours=30), 1.0, 1, "a"),
                (1, NOW - timedelta(hours=2), 9.0, 9, "wrong"),  # removed in v2: 1's latest moves back
                (2, NOW - timedelta(hours=20), 2.0, 2, "b"),  # entity 2 removed in v2
                (3, NOW - timedelta(hours=1), 3.0, 3, "c"),
            ]
        ),
    )
    project.materialize(end=NOW)

    project.ingest(
        activity(frame([(1, NOW - timedelta(hours=30), 1.0, 1, "a"), (3, NOW - timedelta(hours=1), 3.0, 3, "c")]))
    )
    [result] = project.materialize(end=NOW)

    assert result.version == 2 and result.rows == 2
    assert result.rebuilt == "2 entities of v1 have no row as recent in v2"
    assert (
        online_rows(project, [1, 2, 3])
        == offline_rows(project, [1, 2, 3])
        == [
            (1.0, 1, "a"),
            (None, None, None),
            (3.0, 3, "c"),
        ]
    )
    assert stored_event_times(project, [2]) == [None]
    assert "rebuilt" in str(result)


def test_a_new_version_first_written_in_an_explicit_window_is_reconciled_by_the_next_full_run(project: Any) -> None:
    setup(
        project,
        frame([(1, NOW - timedelta(hours=20), 1.0, 1, "only in v1"), (2, NOW - timedelta(hours=3), 2.0, 2, "b")]),
    )
    project.materialize(end=NOW)
    project.ingest(
        activity(frame([(2, NOW - timedelta(hours=3), 2.0, 2, "b"), (3, NOW - timedelta(hours=1), 3.0, 3, "c")]))
    )

    [window] = project.materialize(start=NOW - timedelta(hours=2), end=NOW)  # writes 3 only, rebuilds nothing
    [full] = project.materialize(end=NOW)

    assert (window.rows, window.rebuilt) == (1, "")
    assert full.rebuilt == "1 entity of v1 has no row as recent in v2"
    assert online_rows(project, [1, 2, 3]) == offline_rows(project, [1, 2, 3])
    assert stored_event_times(project, [1]) == [None]
    assert project.materialize(end=NOW)[0].skipped  # and from there on, incremental again


def test_a_new_version_with_a_changed_feature_type_rebuilds_the_view(project: Any) -> None:
    setup(project, frame([(1, NOW - timedelta(hours=3), 1.0, 1, "a")]))
    project.materialize(end=NOW)
    changed = FeatureView(
        "activity",
        entities=[CUSTOMER],
        source=DataFrameSource(frame([(1, NOW - timedelta(hours=3), 1.0, 7, "a")])),
        schema=[Field("spend", "float64"), Field("orders", "float64"), Field("plan", "string")],
        ttl=TTL,
    )
    project.apply([CUSTOMER, changed])
    project.ingest(changed)

    [result] = project.materialize(end=NOW)

    assert "'orders'" in result.rebuilt
    assert online_rows(project, [1]) == [(1.0, 7.0, "a")]


# -- which views, which window -------------------------------------------------------------------------------
def test_explicit_start_and_end_write_exactly_that_window(project: Any) -> None:
    setup(
        project,
        frame(
            [
                (1, NOW - timedelta(hours=10), 1.0, 1, "a"),  # before start: not written
                (2, NOW - timedelta(hours=5), 2.0, 2, "b"),
                (2, NOW - timedelta(hours=1), 3.0, 3, "c"),  # after end: not written
            ]
        ),
    )
    start, end = NOW - timedelta(hours=8), NOW - timedelta(hours=2)

    [result] = project.materialize(start=start, end=end)

    assert (result.rows, result.start, result.end) == (1, start, end)
    assert stored_event_times(project, [1, 2]) == [None, NOW - timedelta(hours=5)]
    # An explicit start ignores the records: the same window again is written again.
    assert project.materialize(start=start, end=end)[0].rows == 1
    assert project.catalog.last_materialization("activity", project.online_store_id).start == start


def test_a_run_after_an_explicit_window_writes_the_whole_ttl_window(project: Any) -> None:
    setup(
        project,
        frame(
            [
                (1, NOW - timedelta(hours=10), 1.0, 1, "a"),  # before the explicit window, within the TTL
                (2, NOW - timedelta(hours=5), 2.0, 2, "b"),
                (2, NOW - timedelta(hours=1), 3.0, 3, "c"),
            ]
        ),
    )
    project.materialize(start=NOW - timedelta(hours=8), end=NOW - timedelta(hours=2))

    [result] = project.materialize(end=NOW - timedelta(hours=2))  # not "up to date": 1 was never written
    [then] = project.materialize(end=NOW)

    assert (result.start, result.rows, result.skipped) == (None, 2, "")
    assert (then.start, then.rows) == (NOW - timedelta(hours=2), 1)
    assert online_rows(project, [1, 2]) == offline_rows(project, [1, 2]) == [(1.0, 1, "a"), (3.0, 3, "c")]
    records = project.catalog.materializations("activity", project.online_store_id)
    assert [r.start for r in records] == [None, None, NOW - timedelta(hours=8)]


def test_an_explicit_window_reaching_the_ttl_floor_is_continued_incrementally(project: Any) -> None:
    setup(project, frame([(1, NOW - timedelta(hours=10), 1.0, 1, "a"), (2, NOW - timedelta(hours=1), 2.0, 2, "b")]))

    project.materialize(start=NOW - 3 * TTL, end=NOW - timedelta(hours=2))
    [then] = project.materialize(end=NOW)

    assert (then.start, then.rows) == (NOW - timedelta(hours=2), 1)
    assert online_rows(project, [1, 2]) == [(1.0, 1, "a"), (2.0, 2, "b")]


def test_naive_start_and_end_are_utc(project: Any) -> None:
    setup(project, frame([(1, NOW - timedelta(hours=5), 1.0, 1, "a")]))
    naive_end = NOW.replace(tzinfo=None)

    [result] = project.materialize(start=naive_end - timedelta(hours=6), end=naive_end)

    assert result.end == NOW and result.start == NOW - timedelta(hours=6)
    assert result.rows == 1


@pytest.mark.parametrize(
    ("kwargs", "field", "message"),
    [
        ({"start": NOW, "end": NOW}, "start", "must be before end"),
        ({"start": NOW + timedelta(hours=1), "end": NOW}, "start", "must be before end"),
        ({"end": "2024-01-01"}, "end", "end must be a datetime"),
        ({"start": 5}, "start", "start must be a datetime"),
    ],
)
def test_bad_windows_are_refused(project: Any, kwargs: dict[str, Any], field: str, message: str) -> None:
    setup(project, frame([(1, NOW - timedelta(hours=5), 1.0, 1, "a")]))

    with pytest.raises(ValidationError, match=message) as caught:
        project.materialize(**kwargs)

    assert caught.value.field == field
    assert project.catalog.materializations("activity") == []


def test_views_not_online_or_not_ingested_are_skipped_unless_named(project: Any) -> None:
    df = frame([(1, NOW - timedelta(hours=5), 1.0, 1, "a")])
    offline_only = activity(df, name="offline_only", online=False)
    pending = activity(df, name="pending")
    setup(project, df)
    project.apply([CUSTOMER, activity(df), offline_only, pending])
    project.ingest(offline_only)

    results = project.materialize(end=NOW)

    assert [r.view for r in results] == ["activity"]
    assert stored_event_times(project, [1], view="offline_only") == [None]
    with pytest.raises(NotFoundError, match="'pending' has no ingested data"):
        project.materialize(["pending"], end=NOW)


# -- ties, composite keys ------------------------------------------------------------------------------------
def test_ties_on_event_time_go_to_the_latest_created_timestamp_as_offline(any_project: Any) -> None:
    project = any_project
    at = NOW - timedelta(hours=3)
    c0, c1 = NOW - timedelta(hours=2), NOW - timedelta(hours=1)
    setup(
        project,
        frame(
            [
                (1, at, 1.0, 1, "created later", c1),
                (1, at, 2.0, 2, "created earlier", c0),
                (2, at, 3.0, 3, "no created time", None),
                (2, at, 4.0, 4, "with a created time", c0),
                (2, at, 5.0, 5, "no created time either", None),
                (3, at, 6.0, 6, "same created, first", c0),
                (3, at, 7.0, 7, "same created, written last", c0),
            ],
            created=True,
        ),
    )

    project.materialize(end=NOW)

    assert online_rows(project, [1, 2, 3]) == offline_rows(project, [1, 2, 3])
    assert [r[2] for r in online_rows(project, [1, 2, 3])] == [
        "created later",
        "with a created time",
        "same created, written last",
    ]


def test_a_composite_key_view_is_materialized_and_read(any_project: Any) -> None:
    project = any_project
    store = Entity("store", ["store_id", "region"])
    df = pd.DataFrame(
        {
            "customer_id": [1, 1, 1],
            "store_id": [7, 7, 8],
            "region": ["eu", "us", "eu"],
            "event_time": pd.Series([NOW - timedelta(hours=h) for h in (3, 2, 1)], dtype="datetime64[us, UTC]"),
            "visits": [1, 2, 3],
        }
    )
    view = FeatureView(
        "visits", entities=[CUSTOMER, store], source=DataFrameSource(df), schema=[Field("visits", "int64")]
    )
    project.apply([CUSTOMER, store, view])
    project.ingest(view)

    [result] = project.materialize(end=NOW)

    rows = [{"customer_id": 1, "store_id": s, "region": r} for s, r in [(8, "eu"), (7, "us"), (7, "eu"), (8, "us")]]
    assert result.rows == 3
    assert project.online.get(["visits:visits"], rows, now_us=NOW_US).to_dict() == {"visits": [3, 2, 1, None]}


# -- the TTL-consistency guarantee ---------------------------------------------------------------------------
def random_activity(seed: int) -> tuple[pd.DataFrame, list[int]]:
    """Random rows around NOW: several per entity, some after NOW, some older than the TTL, ties with created
    times (some missing), nulls; plus entities whose latest value is exactly at, or just beyond, the TTL bound.

    Returns the rows (in random order) and the keys to read: every entity, unknown ones, repeats, shuffled.
    """
    rng = np.random.default_rng(seed)
    rows = []
    n = 80
    ttl_us = TTL // US
    for key in range(n):
        for _ in range(int(rng.integers(0, 6))):
            offset = int(rng.integers(-ttl_us // 4, 3 * ttl_us))  # from 12h ahead of NOW to 6 days before it
            offset -= offset % 3_600_000_000 if rng.random() < 0.5 else 0  # on the hour: event times tie often
            created = None if rng.random() < 0.3 else NOW - timedelta(hours=int(rng.integers(0, 3)))
            rows.append(
                (
                    key,
                    NOW - offset * US,
                    None if rng.random() < 0.1 else float(rng.normal()),
                    None if rng.random() < 0.1 else int(rng.integers(-5, 100)),
                    None if rng.random() < 0.1 else str(rng.choice(["basic", "pro", "team"])),
                    created,
                )
            )
    edges = [
        (n, NOW - TTL, 1.0, 1, "exactly ttl old", None),
        (n + 1, NOW - TTL - US, 2.0, 2, "just too old", None),
        (n + 2, NOW - TTL + US, 3.0, 3, "just inside", None),
        (n + 3, NOW, 4.0, 4, "exactly now", None),
        (n + 4, NOW + US, 5.0, 5, "just after now", None),
        (n + 4, NOW - TTL - timedelta(hours=1), 6.0, 6, "expired", None),
        (n + 5, NOW - TTL, None, None, None, None),  # the latest value is null: null, not an older value
        (n + 5, NOW - TTL - US, 7.0, 7, "older", None),
    ]
    rows += edges
    order = rng.permutation(len(rows))
    df = frame([rows[i] for i in order], created=True)
    keys = [*range(n + 6), -1, 10_000, *rng.integers(0, n, size=20).tolist()]
    rng.shuffle(keys)
    return df, [int(k) for k in keys]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_online_reads_at_now_equal_offline_retrieval_at_now(any_project: Any, seed: int) -> None:
    project = any_project
    df, keys = random_activity(seed)
    setup(project, df)

    project.materialize(end=NOW)

    online, offline = online_rows(project, keys), offline_rows(project, keys)
    assert online == offline
    assert sum(v is not None for row in online for v in row) > 30  # the comparison is not among nulls only
    by_key = dict(zip(keys, online, strict=True))
    assert [by_key[k][2] for k in range(80, 86)] == [
        "exactly ttl old",
        None,
        "just inside",
        "exactly now",
        None,
        None,
    ]


@pytest.mark.parametrize("seed", [4, 5])
def test_incremental_runs_give_what_one_run_gives(any_project: Any, seed: int) -> None:
    project = any_project
    df, keys = random_activity(seed)
    setup(project, df)

    for hours in (60, 30, 7, 1):
        project.materialize(end=NOW - timedelta(hours=hours))
    project.materialize(end=NOW)

    assert online_rows(project, keys) == offline_rows(project, keys)


def test_online_reads_later_in_time_expire_values_as_offline_does(project: Any) -> None:
    df, keys = random_activity(6)
    setup(project, df[df["event_time"] <= NOW])  # nothing after NOW: offline at a later time sees the same rows

    project.materialize(end=NOW)

    for hours in (1, 13, 40):
        later = NOW + timedelta(hours=hours)
        assert online_rows(project, keys, now_us=us_from_datetime(later)) == offline_rows(project, keys, at=later)


@pytest.mark.postgres
def test_incremental_runs_on_a_postgresql_catalog(project_dir: Any, postgres_url: str) -> None:
    import keel

    at = NOW - timedelta(hours=3, microseconds=7)  # microseconds survive the catalog's round trip
    with keel.Project.open(project_dir, catalog=postgres_url) as project:
        setup(project, frame([(1, NOW - timedelta(hours=5), 1.0, 1, "a"), (2, NOW - timedelta(hours=1), 2.0, 2, "b")]))

        first = project.materialize(end=at)
        second = project.materialize(end=at)
        third = project.materialize(end=NOW)

        assert [r.rows for r in (*first, *second, *third)] == [1, 0, 1]
        assert second[0].skipped and third[0].start == at
        [last, *_, oldest] = project.catalog.materializations("activity")
        assert (last.start, last.end, last.version) == (None, NOW, 1)  # None: complete up to its end
        assert (oldest.start, oldest.end) == (None, at)
        assert str(third[0]).startswith("activity: v1, 1 entities in ")
        assert online_rows(project, [1, 2]) == offline_rows(project, [1, 2])
