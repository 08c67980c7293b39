"""Invariant 1: ``historical_features`` agrees with a slow, obviously correct reference join on random data.

The reference looks at every feature row of the entity and keeps those with
``entity_ts - ttl <= event_time <= entity_ts``; of those, the winner is the latest event time, then the latest
created timestamp (a missing created timestamp loses to any present one), then the row that comes later in the
source. Its values (nulls included) are the answer; no candidate means null.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import keel
from keel import DataFrameSource, Entity, FeatureView, Field

T0 = datetime(2024, 3, 10, 2, tzinfo=UTC)  # New York moves to summer time at 07:00 UTC, within the span
HOUR = timedelta(hours=1)
ZONES = ("UTC", "America/New_York", "Asia/Kolkata")
KEYS_WITH_ROWS = 3  # customers 0..2 may have feature rows; 3 and 4 never do


@dataclass(frozen=True)
class FeatureRow:
    key: int
    event_time: datetime
    created: datetime | None
    values: dict[str, Any]


@dataclass(frozen=True)
class EntityRow:
    key: int
    ts: datetime  # aware, in its own zone


def reference_join(
    entity_rows: list[EntityRow], feature_rows: list[FeatureRow], ttl: timedelta | None, features: list[str]
) -> list[dict[str, Any]]:
    """For each entity row, the values of the winning feature row (or all None)."""
    answers = []
    for entity in entity_rows:
        ts = entity.ts.astimezone(UTC)
        best: tuple[Any, ...] | None = None
        best_row: FeatureRow | None = None
        for position, row in enumerate(feature_rows):
            if row.key != entity.key or row.event_time > ts:
                continue
            if ttl is not None and row.event_time < ts - ttl:
                continue
            created_rank = (0, T0) if row.created is None else (1, row.created)
            rank = (row.event_time, created_rank, position)
            if best is None or rank > best:
                best, best_row = rank, row
        answers.append({f: (best_row.values[f] if best_row is not None else None) for f in features})
    return answers


def is_missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def same(actual: Any, expected: Any) -> bool:
    if is_missing(expected):
        return is_missing(actual)
    return not is_missing(actual) and actual == expected


FEATURE_HOURS = 8  # feature rows fall on the hours 0..8: with up to 40 rows, event times tie often
created_times = st.one_of(st.none(), st.integers(0, 2).map(lambda c: T0 + c * HOUR))
spend_values = st.fixed_dictionaries(
    {"spend": st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False))}
)
profile_values = st.fixed_dictionaries(
    {
        "orders": st.one_of(st.none(), st.integers(-1000, 1000)),
        "plan": st.one_of(st.none(), st.sampled_from(["basic", "pro", "", "été"])),
    }
)


@st.composite
def feature_rows(draw: st.DrawFn, values: st.SearchStrategy[dict[str, Any]], with_created: bool) -> list[FeatureRow]:
    """Random rows, then deliberate ties: copies of some rows' (key, event time) with other values."""
    created = created_times if with_created else st.none()
    rows = draw(
        st.lists(
            st.builds(
                FeatureRow,
                key=st.integers(0, KEYS_WITH_ROWS - 1),
                event_time=st.integers(0, FEATURE_HOURS).map(lambda h: T0 + h * HOUR),
                created=created,
                values=values,
            ),
            min_size=1,
            max_size=30,
        )
    )
    for _ in range(draw(st.integers(1, 10))):
        twin = rows[draw(st.integers(0, len(rows) - 1))]
        tie = FeatureRow(twin.key, twin.event_time, draw(st.one_of(st.just(twin.created), created)), draw(values))
        rows.insert(draw(st.integers(0, len(rows))), tie)
    # "seq" tells every row apart, so a wrong tie break shows even when the tied values happen to be equal
    return [FeatureRow(r.key, r.event_time, r.created, {**r.values, "seq": i}) for i, r in enumerate(rows)]


activity_rows = feature_rows(spend_values, with_created=True)
profile_rows = feature_rows(profile_values, with_created=False)


@st.composite
def entity_frames(draw: st.DrawFn) -> tuple[list[EntityRow], list[int], bool]:
    """Entity rows (several zones, some duplicated), an index (duplicates allowed), and the column's form."""
    mixed_zones = draw(st.booleans())  # one zone per row in an object column, or one zone for the column
    column_zone = draw(st.sampled_from(ZONES))
    n = draw(st.integers(3, 30))
    rows = []
    for _ in range(n):
        hour = draw(st.integers(-1, FEATURE_HOURS + 4))
        minute = draw(st.sampled_from([0, 0, 30]))  # mostly on the hour: exactly on the TTL edge
        zone = draw(st.sampled_from(ZONES)) if mixed_zones else column_zone
        instant = pd.Timestamp(T0 + hour * HOUR + timedelta(minutes=minute)).tz_convert(zone)
        rows.append(EntityRow(draw(st.integers(0, KEYS_WITH_ROWS + 1)), instant.to_pydatetime()))
    if draw(st.booleans()):  # several entity rows with the same key and time
        rows.insert(draw(st.integers(0, len(rows))), rows[draw(st.integers(0, len(rows) - 1))])
    index = draw(st.lists(st.integers(-5, 40), min_size=len(rows), max_size=len(rows)))
    return rows, index, mixed_zones


def activity_frame(rows: list[FeatureRow]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": pd.Series([r.key for r in rows], dtype="int64"),
            "event_time": pd.Series([r.event_time for r in rows], dtype="datetime64[us, UTC]"),
            "created": pd.Series([r.created for r in rows], dtype="datetime64[us, UTC]"),
            "spend": pd.Series([r.values["spend"] for r in rows], dtype="float64"),
            "seq": pd.Series([r.values["seq"] for r in rows], dtype="int64"),
        }
    )


def profile_frame(rows: list[FeatureRow]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": pd.Series([r.key for r in rows], dtype="int64"),
            # stored in another zone than UTC: the store must compare instants, not wall clocks
            "updated_at": pd.Series([r.event_time for r in rows], dtype="datetime64[us, UTC]").dt.tz_convert(
                "Asia/Kolkata"
            ),
            "orders": pd.Series([r.values["orders"] for r in rows], dtype="Int64"),
            "plan": pd.Series([r.values["plan"] for r in rows], dtype=object),
            "seq": pd.Series([r.values["seq"] for r in rows], dtype="int64"),
        }
    )


def entity_frame(rows: list[EntityRow], index: list[int], mixed_zones: bool) -> pd.DataFrame:
    if mixed_zones:
        ts: pd.Series = pd.Series([pd.Timestamp(r.ts) for r in rows], dtype=object)
    else:
        ts = pd.Series(pd.DatetimeIndex([pd.Timestamp(r.ts) for r in rows]))
    return pd.DataFrame(
        {
            "customer_id": [r.key for r in rows],
            "ts": ts.array,
            "label": [f"row{i}" for i in range(len(rows))],
        },
        index=index,
    )


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    activity=activity_rows,
    profile=profile_rows,
    ttl_hours=st.integers(1, 6),
    entities=entity_frames(),
)
def test_historical_features_matches_the_reference_join(
    activity: list[FeatureRow],
    profile: list[FeatureRow],
    ttl_hours: int,
    entities: tuple[list[EntityRow], list[int], bool],
) -> None:
    entity_rows, index, mixed_zones = entities
    ttl = timedelta(hours=ttl_hours)
    customer = Entity("customer", ["customer_id"])
    activity_view = FeatureView(
        "activity",
        entities=[customer],
        source=DataFrameSource(activity_frame(activity), timestamp="event_time", created_timestamp="created"),
        schema=[Field("spend", "float64"), Field("seq", "int64")],
        ttl=ttl,
    )
    profile_view = FeatureView(
        "profile",
        entities=[customer],
        source=DataFrameSource(profile_frame(profile), timestamp="updated_at"),
        schema=[Field("orders", "int64"), Field("plan", "string"), Field("seq", "int64")],
        ttl=None,
    )
    entity_df = entity_frame(entity_rows, index, mixed_zones)
    original = entity_df.copy()

    with tempfile.TemporaryDirectory() as tmp, keel.Project.open(tmp) as project:
        project.apply([customer, activity_view, profile_view])
        project.ingest(activity_view)
        project.ingest(profile_view)
        out = project.historical_features(
            entity_df,
            ["activity:*", "profile:orders", "profile:plan", "profile:seq"],
            timestamp="ts",
            full_feature_names=True,
        )

    expected_activity = reference_join(entity_rows, activity, ttl, ["spend", "seq"])
    expected_profile = reference_join(entity_rows, profile, None, ["orders", "plan", "seq"])
    assert len(out) == len(entity_rows)
    assert list(out.index) == index
    pd.testing.assert_frame_equal(out[original.columns], original)
    for i in range(len(entity_rows)):
        expected = {
            **{f"activity__{f}": v for f, v in expected_activity[i].items()},
            **{f"profile__{f}": v for f, v in expected_profile[i].items()},
        }
        actual = {f: out[f].iloc[i] for f in expected}
        assert all(same(actual[f], expected[f]) for f in expected), (
            f"entity row {i} ({entity_rows[i]}): got {actual}, expected {expected}"
        )


def test_reference_join_applies_ttl_edges_and_tie_breaks() -> None:
    """The reference itself, on a hand-checked case (so that the property test compares against truth)."""
    rows = [
        FeatureRow(1, T0, None, {"v": "at the TTL edge"}),
        FeatureRow(1, T0 + HOUR, T0, {"v": "tie, created earlier"}),
        FeatureRow(1, T0 + HOUR, T0 + HOUR, {"v": "tie, created later"}),
        FeatureRow(1, T0 + HOUR, T0 + HOUR, {"v": "tie on both, later in the source"}),
        FeatureRow(1, T0 + HOUR, None, {"v": "tie, no created time"}),
        FeatureRow(1, T0 + 3 * HOUR, None, {"v": "in the future"}),
    ]
    entities = [
        EntityRow(1, T0 + 2 * HOUR),
        EntityRow(1, T0 - HOUR),
        EntityRow(2, T0 + 2 * HOUR),
    ]

    two_hours = reference_join(entities, rows, timedelta(hours=2), ["v"])
    forever = reference_join(entities, rows[:1], None, ["v"])
    one_hour_at_edge = reference_join([EntityRow(1, T0 + HOUR)], rows[:1], HOUR, ["v"])

    assert [a["v"] for a in two_hours] == ["tie on both, later in the source", None, None]
    assert [a["v"] for a in forever] == ["at the TTL edge", None, None]
    assert one_hour_at_edge == [{"v": "at the TTL edge"}]
