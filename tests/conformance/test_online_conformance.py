"""One specification of the online store, run on every backend: memory, SQLite and the real Redis server."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pyarrow as pa
import pytest

from _processes import dead_owner
from keel.errors import BackendError, ConflictError, KeelError, ValidationError
from keel.online import MemoryOnlineStore, OnlineStore, RedisOnlineStore, SqliteOnlineStore

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
EVENT = pa.timestamp("us", tz="UTC")

OpenStore = Callable[..., OnlineStore]


def redis_url_on_test_db(url: str) -> str:
    """The server's URL on database 15, away from anything a developer keeps in database 0."""
    return urlunsplit(urlsplit(url)._replace(path="/15"))


def drop_redis_keys(url: str, pattern: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        doomed = list(client.scan_iter(match=pattern, count=1_000))
        for start in range(0, len(doomed), 1_000):
            client.unlink(*doomed[start : start + 1_000])
    finally:
        client.close()


@pytest.fixture(params=["memory", "sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenStore]:
    """Opens stores of one backend, all at the same place; ``open_store("x")`` gets another prefix.

    Every prefix starts with a token unique to the test, so Redis keys are the test's own and are removed
    afterwards.
    """
    token = f"kt{uuid.uuid4().hex[:12]}"
    cls: type[OnlineStore]
    if request.param == "memory":
        cls, uri = MemoryOnlineStore, f"memory://{token}"
    elif request.param == "sqlite":
        cls, uri = SqliteOnlineStore, f"sqlite:///{tmp_path / 'online.db'}"
    else:
        cls, uri = RedisOnlineStore, redis_url_on_test_db(request.getfixturevalue("redis_server"))
    opened: list[OnlineStore] = []

    def open_(suffix: str = "") -> OnlineStore:
        store = cls(uri, prefix=token + suffix)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()
    if request.param == "redis":
        drop_redis_keys(uri, f"{token}*")
    elif request.param == "memory":
        from keel.online import _memory

        _memory._SPACES.pop(uri, None)
        _memory._GENERATIONS.pop(uri, None)


@pytest.fixture
def store(open_store: OpenStore) -> OnlineStore:
    return open_store()


def rows(
    ids: list[Any] | pa.Array,
    at: datetime | list[datetime] = T0,
    *,
    key: str = "customer_id",
    **features: Any,
) -> pa.Table:
    """A table of key, event time and features (plain lists, or (values, arrow type) pairs)."""
    times = at if isinstance(at, list) else [at] * len(ids)
    columns: dict[str, Any] = {key: ids, "event_time": pa.array(times, EVENT)}
    for name, values in features.items():
        columns[name] = pa.array(values[0], values[1]) if isinstance(values, tuple) else values
    return pa.table(columns)


def write(store: OnlineStore, view: str, table: pa.Table, features: list[str], **kwargs: Any) -> int:
    keys = kwargs.pop("keys", ["customer_id"])
    return store.write_batch(view, table, keys=keys, features=features, timestamp="event_time", **kwargs)


def values(store: OnlineStore, view: str, ids: list[Any], features: list[str]) -> dict[str, list[Any]]:
    return store.read(view, [(i,) for i in ids], features).to_dict()


# -- round trips


def test_every_dtype_round_trips_with_nulls(store: OnlineStore) -> None:
    stamp = datetime(2023, 12, 31, 23, 59, 59, 123456, tzinfo=UTC)
    table = rows(
        [1, 2, 3],
        n=([7, None, -(2**63)], pa.int64()),
        x=([1.25, None, float("nan")], pa.float64()),
        flag=([True, None, False], pa.bool_()),
        plan=(["pro", None, "ünïcødé ✓"], pa.string()),
        seen=([stamp, None, datetime(1969, 7, 20, tzinfo=UTC)], EVENT),
        emb=([[0.5, -1.0, 1e300], None, []], pa.list_(pa.float64())),
    )
    features = ["n", "x", "flag", "plan", "seen", "emb"]

    assert write(store, "v", table, features) == 3
    read = store.read("v", [(1,), (2,), (3,)], features)

    assert read.to_dict() == {
        "n": [7, None, -(2**63)],
        "x": [1.25, None, None],  # NaN is stored as null
        "flag": [True, None, False],
        "plan": ["pro", None, "ünïcødé ✓"],
        "seen": [stamp, None, datetime(1969, 7, 20, tzinfo=UTC)],
        "emb": [[0.5, -1.0, 1e300], None, []],
    }
    assert [type(v) for v in read.column("flag") if v is not None] == [bool, bool]
    assert all(v.tzinfo is not None and v.utcoffset() == timedelta(0) for v in read.column("seen") if v)
    assert read.event_times == [T0, T0, T0]
    assert list(read.event_us) == [int(T0.timestamp()) * 1_000_000] * 3


def test_chunked_and_sliced_tables_with_many_features_round_trip(store: OnlineStore) -> None:
    def part(ids: list[int], emb: list[Any], last: list[Any]) -> pa.Table:
        wide = {f"x{i}": [float(i)] * len(ids) for i in range(10)}
        return rows(ids, emb=(emb, pa.list_(pa.float64())), **wide, last=(last, pa.string()))

    table = pa.concat_tables([part([1, 2], [[1.0], [2.0, 2.5]], ["a", None]), part([3, 4], [None, [4.0]], [None, "d"])])
    features = ["emb", *[f"x{i}" for i in range(10)], "last"]

    assert write(store, "v", table.slice(1, 3), features) == 3

    read = store.read("v", [(1,), (2,), (3,), (4,)], ["last", "emb", "x9"])
    assert read.to_dict() == {
        "last": [None, None, None, "d"],
        "emb": [None, [2.0, 2.5], None, [4.0]],
        "x9": [None, 9.0, 9.0, 9.0],
    }


def test_one_entity_read_gives_the_same_values_as_a_many_entity_read(store: OnlineStore) -> None:
    features = ["x", "flag", "seen", "emb"]
    write(
        store,
        "v",
        rows([1], x=[2.5], flag=[False], seen=([T0], EVENT), emb=([[1.0, 2.0]], pa.list_(pa.float64()))),
        features,
    )

    one = store.read("v", [(1,)], features)
    many = store.read("v", [(1,), (1,)], features)

    assert one.to_dict() == {name: column[:1] for name, column in many.to_dict().items()}
    assert one.to_dict() == {"x": [2.5], "flag": [False], "seen": [T0], "emb": [[1.0, 2.0]]}


def test_results_follow_the_request_order_and_unknown_entities_read_none(store: OnlineStore) -> None:
    write(store, "v", rows([10, 20, 30], spend=[1.0, 2.0, 3.0]), ["spend"])

    read = store.read("v", [(30,), (99,), (10,), (30,), (20,)], ["spend"])

    assert read.to_dict() == {"spend": [3.0, None, 1.0, 3.0, 2.0]}
    assert read.event_times == [T0, None, T0, T0, T0]
    assert len(read) == 5


def test_an_unknown_view_or_entity_reads_none(store: OnlineStore) -> None:
    assert store.read("nothing_here", [(1,), (2,)], ["a", "b"]).to_dict() == {
        "a": [None] * 2,
        "b": [None] * 2,
    }
    assert store.read("nothing_here", [(1,)], ["a"]).event_times == [None]
    write(store, "v", rows([1], a=[1.0]), ["a"])
    assert store.read("v", [(2,)], ["a"]).to_dict() == {"a": [None]}


def test_reading_no_entities_or_no_features_is_empty(store: OnlineStore) -> None:
    write(store, "v", rows([1], a=[1.0]), ["a"])

    assert store.read("v", [], ["a"]).to_dict() == {"a": []}
    nothing = store.read("v", [(1,), (2,)], [])
    assert nothing.to_dict() == {}
    assert nothing.event_times == [T0, None]


def test_string_keys(store: OnlineStore) -> None:
    ids = ["alice", "bob:smith", "42", "", "名前"]
    write(store, "v", rows(ids, key="user", score=[1, 2, 3, 4, 5]), ["score"], keys=["user"])

    read = store.read("v", [("名前",), ("",), ("42",), ("nobody",), ("bob:smith",)], ["score"])

    assert read.to_dict() == {"score": [5, 4, 3, None, 2]}


def test_composite_keys_of_an_int_and_a_string(store: OnlineStore) -> None:
    table = pa.table(
        {
            "store_id": [1, 1, 2, 12],
            "region": ["eu", 'u",s', "eu", ""],
            "event_time": pa.array([T0] * 4, EVENT),
            "sales": [10.0, 20.0, 30.0, 40.0],
        }
    )
    keys = ["store_id", "region"]
    assert write(store, "v", table, ["sales"], keys=keys) == 4

    read = store.read("v", [(2, "eu"), (1, 'u",s'), (1, "eu"), (12, ""), (1, ""), (21, "eu")], ["sales"])

    assert read.to_dict() == {"sales": [30.0, 20.0, 10.0, 40.0, None, None]}
    assert store.read("v", [(12, "")], ["sales"]).to_dict() == {"sales": [40.0]}


def test_key_values_may_be_numpy_integers(store: OnlineStore) -> None:
    write(store, "v", rows([5], a=[1.5]), ["a"])

    assert store.read("v", [(np.int64(5),)], ["a"]).to_dict() == {"a": [1.5]}
    assert store.read("v", [(np.int32(5),), (np.int64(6),)], ["a"]).to_dict() == {"a": [1.5, None]}


# -- the newer-event-time rule


def test_an_older_write_is_ignored_and_an_equal_time_overwrites(store: OnlineStore) -> None:
    later = T0 + timedelta(hours=1)
    assert write(store, "v", rows([1, 2], at=later, a=[1.0, 2.0]), ["a"]) == 2

    assert write(store, "v", rows([1, 2], at=[T0, later], a=[-1.0, 20.0]), ["a"]) == 1

    read = store.read("v", [(1,), (2,)], ["a"])
    assert read.to_dict() == {"a": [1.0, 20.0]}
    assert read.event_times == [later, later]


def test_a_newer_write_replaces_the_stored_values(store: OnlineStore) -> None:
    write(store, "v", rows([1], a=[1.0], b=["old"]), ["a", "b"])

    write(store, "v", rows([1], at=T0 + timedelta(seconds=1), a=[None], b=["new"]), ["a", "b"])

    assert values(store, "v", [1], ["a", "b"]) == {"a": [None], "b": ["new"]}


def test_within_one_batch_the_newest_row_per_key_wins_and_later_rows_win_ties(store: OnlineStore) -> None:
    times = [T0 + timedelta(minutes=2), T0, T0 + timedelta(minutes=1), T0, T0]
    table = rows([1, 1, 1, 2, 2], at=times, a=[3.0, 1.0, 2.0, 10.0, 11.0])

    write(store, "v", table, ["a"])

    read = store.read("v", [(1,), (2,)], ["a"])
    assert read.to_dict() == {"a": [3.0, 11.0]}
    assert read.event_times == [T0 + timedelta(minutes=2), T0]


def test_a_write_replaces_the_whole_row(store: OnlineStore) -> None:
    write(store, "v", rows([1, 2], a=[1.0, 2.0], b=[10, 20]), ["a", "b"])

    write(store, "v", rows([1], at=T0 + timedelta(days=1), a=[5.0]), ["a"])

    assert values(store, "v", [1, 2], ["a", "b"]) == {"a": [5.0, 2.0], "b": [None, 20]}


def test_event_times_of_any_unit_and_naive_times_count_as_utc(store: OnlineStore) -> None:
    naive_ns = pa.array([datetime(2024, 3, 1, 12, 0, 0, 1)], pa.timestamp("ns"))
    table = pa.table({"customer_id": [1], "event_time": naive_ns, "a": [1.0]})

    write(store, "v", table, ["a"])

    assert store.read("v", [(1,)], ["a"]).event_times == [datetime(2024, 3, 1, 12, 0, 0, 1, tzinfo=UTC)]


# -- schema evolution


def test_features_added_by_a_later_write_are_stored(store: OnlineStore) -> None:
    write(store, "v", rows([1, 2], a=[1.0, 2.0]), ["a"])
    assert values(store, "v", [1], ["a", "b"]) == {"a": [1.0], "b": [None]}

    write(store, "v", rows([1], at=T0 + timedelta(hours=1), a=[1.5], b=["x"]), ["a", "b"])

    assert values(store, "v", [1, 2], ["b", "a"]) == {"b": ["x", None], "a": [1.5, 2.0]}
    assert store.read("v", [(1,)], ["b"]).to_dict() == {"b": ["x"]}


def test_features_never_written_read_none(store: OnlineStore) -> None:
    write(store, "v", rows([1], a=[1.0]), ["a"])

    assert values(store, "v", [1, 3], ["zz", "a", "yy"]) == {
        "zz": [None, None],
        "a": [1.0, None],
        "yy": [None] * 2,
    }
    assert store.read("v", [(1,)], ["zz"]).event_times == [T0]


def test_an_all_null_column_takes_the_stored_dtype(store: OnlineStore) -> None:
    write(store, "v", rows([1], a=[1.0]), ["a"])

    write(store, "v", rows([1], at=T0 + timedelta(1), a=pa.nulls(1)), ["a"])

    assert values(store, "v", [1], ["a"]) == {"a": [None]}


def test_changing_a_feature_dtype_or_the_keys_is_a_conflict(store: OnlineStore) -> None:
    write(store, "v", rows([1], a=[1.0]), ["a"])

    with pytest.raises(ConflictError, match=r"'a' is stored as float64.*string.*drop the view"):
        write(store, "v", rows([2], a=["text"]), ["a"])
    with pytest.raises(ConflictError, match="keyed by customer_id"):
        write(store, "v", rows(["x"], a=[1.0]), ["a"])
    assert values(store, "v", [1, 2], ["a"]) == {"a": [1.0, None]}


def test_writing_an_empty_batch_writes_nothing(store: OnlineStore) -> None:
    empty = rows(pa.array([], pa.int64()), a=([], pa.float64()))

    assert write(store, "v", empty, ["a"]) == 0
    assert values(store, "v", [1], ["a"]) == {"a": [None]}


# -- dropping and isolation


def test_drop_view_forgets_everything_and_the_view_can_be_written_again(store: OnlineStore) -> None:
    write(store, "v", rows([1, 2], a=[1.0, 2.0]), ["a"])
    write(store, "w", rows([1], a=[9.0]), ["a"])

    store.drop_view("v")

    assert values(store, "v", [1, 2], ["a"]) == {"a": [None, None]}
    assert values(store, "w", [1], ["a"]) == {"a": [9.0]}
    write(store, "v", rows([1], a=["now a string"]), ["a"])  # a fresh view: no dtype conflict
    assert values(store, "v", [1, 2], ["a"]) == {"a": ["now a string", None]}
    store.drop_view("v")
    store.drop_view("v")  # dropping an absent view is fine


def test_views_are_isolated(store: OnlineStore) -> None:
    write(store, "v", rows([1], a=[1.0]), ["a"])
    write(store, "w", rows([1], at=T0 + timedelta(1), a=[2.0]), ["a"])

    assert values(store, "v", [1], ["a"]) == {"a": [1.0]}
    assert values(store, "w", [1], ["a"]) == {"a": [2.0]}
    assert write(store, "v", rows([1], a=[3.0]), ["a"]) == 1  # w's newer event time is not v's


def test_prefixes_are_isolated(open_store: OpenStore) -> None:
    ours, theirs = open_store(), open_store("-other")
    write(ours, "v", rows([1], a=[1.0]), ["a"])
    write(theirs, "v", rows([1, 2], a=["x", "y"]), ["a"])  # same view name, other dtype: no conflict

    assert values(ours, "v", [1, 2], ["a"]) == {"a": [1.0, None]}
    ours.drop_view("v")
    assert values(theirs, "v", [1, 2], ["a"]) == {"a": ["x", "y"]}


def test_stores_opened_on_the_same_uri_share_data(open_store: OpenStore) -> None:
    first, second = open_store(), open_store()
    write(first, "v", rows([1], a=[1.0]), ["a"])
    assert values(second, "v", [1], ["a"]) == {"a": [1.0]}

    write(second, "v", rows([1], at=T0 + timedelta(1), a=[2.0], b=[True]), ["a", "b"])

    assert values(first, "v", [1], ["a", "b"]) == {"a": [2.0], "b": [True]}


def test_many_keys_in_one_read(store: OnlineStore) -> None:
    n = 25_000
    ids = np.arange(n, dtype=np.int64) * 2  # even ids exist, odd ones do not
    table = pa.table(
        {
            "customer_id": ids,
            "event_time": pa.array(np.full(n, int(T0.timestamp() * 1e6)), EVENT),
            "a": ids.astype(np.float64),
            "b": pa.array([str(i) for i in ids.tolist()]),
        }
    )
    assert write(store, "v", table, ["a", "b"]) == n

    wanted = [int(i) for i in np.random.default_rng(7).permutation(2 * n)[:12_000]]
    read = store.read("v", [(i,) for i in wanted], ["a", "b"])

    assert list(read.column("a")) == [float(i) if i % 2 == 0 else None for i in wanted]
    assert list(read.column("b")) == [str(i) if i % 2 == 0 else None for i in wanted]
    assert values(store, "v", wanted[:5000], ["a"]) == {"a": [float(i) if i % 2 == 0 else None for i in wanted[:5000]]}


# -- bad input


def test_invalid_rows_are_refused_naming_the_problem(store: OnlineStore) -> None:
    good = rows([1, 2], a=[1.0, 2.0])
    with pytest.raises(ValidationError, match="'missing' is missing"):
        write(store, "v", good, ["missing"])
    with pytest.raises(ValidationError, match="key column 'customer_id' is null at row 1") as null_key:
        write(store, "v", rows([1, None], a=[1.0, 2.0]), ["a"])
    assert null_key.value.row == 1
    with pytest.raises(ValidationError, match="event-time column 'event_time' is null at row 0"):
        write(store, "v", rows([1], at=[None], a=[1.0]), ["a"])  # type: ignore[list-item]
    with pytest.raises(ValidationError, match="keys must be integers or strings"):
        write(store, "v", rows([1.5], a=[1.0]), ["a"])
    with pytest.raises(ValidationError, match="feature view name 'bad name' is invalid"):
        write(store, "bad name", good, ["a"])
    with pytest.raises(ValidationError, match="null inside the list at row 1"):
        write(store, "v", rows([1, 2], e=([[1.0], [2.0, None]], pa.list_(pa.float64()))), ["e"])
    with pytest.raises(ValidationError, match="entirely null and has no type"):
        write(store, "v", rows([1], a=pa.nulls(1)), ["a"])
    with pytest.raises(ValidationError, match="ttl must be a positive timedelta"):
        write(store, "v", good, ["a"], ttl=timedelta(0))
    with pytest.raises(ValidationError, match="appear more than once"):
        write(store, "v", good, ["customer_id"])
    with pytest.raises(ValidationError, match="pass a tuple of key values"):
        store.read("v", [1], ["a"])  # type: ignore[list-item]
    with pytest.raises(ValidationError, match="invalid"):
        store.drop_view("v:*")
    assert values(store, "v", [1], ["a"]) == {"a": [None]}  # nothing was half-written


# -- generations: a view's data replaced whole, atomically


def test_a_generation_stays_invisible_until_published_then_replaces_the_view_whole(store: OnlineStore) -> None:
    write(store, "v", rows([1, 2], a=[1.0, 2.0]), ["a"])
    generation = store.begin_generation("v")
    write(store, "v", rows([2, 3], at=T0 - timedelta(1), a=[20.0, 30.0]), ["a"], generation=generation)

    assert values(store, "v", [1, 2, 3], ["a"]) == {"a": [1.0, 2.0, None]}
    assert store.hidden_generations("v") == [generation]

    store.publish_generation("v", generation)

    # Entity 1 is gone, and 2 holds the new (older) row: the generation replaced the data, it was not merged.
    assert values(store, "v", [1, 2, 3], ["a"]) == {"a": [None, 20.0, 30.0]}
    assert store.hidden_generations("v") == []
    assert write(store, "v", rows([1], a=[5.0]), ["a"]) == 1  # later writes go to the new data
    assert values(store, "v", [1, 2], ["a"]) == {"a": [5.0, 20.0]}


def test_a_generation_may_change_the_keys_and_the_feature_types(store: OnlineStore) -> None:
    write(store, "v", rows([1], a=[1.0]), ["a"])
    generation = store.begin_generation("v")
    write(store, "v", rows(["x"], key="code", a=["text"]), ["a"], keys=["code"], generation=generation)
    store.publish_generation("v", generation)

    assert values(store, "v", ["x"], ["a"]) == {"a": ["text"]}
    with pytest.raises(ConflictError):
        write(store, "v", rows([1], a=[1.0]), ["a"])


def test_each_published_generation_replaces_the_previous_one(store: OnlineStore) -> None:
    for round_ in range(3):
        generation = store.begin_generation("v")
        write(store, "v", rows([round_, 10], a=[float(round_), float(round_)]), ["a"], generation=generation)
        store.publish_generation("v", generation)

    assert values(store, "v", [0, 1, 2, 10], ["a"]) == {"a": [None, None, 2.0, 2.0]}
    assert store.hidden_generations("v") == []


def test_publishing_an_empty_generation_empties_the_view(store: OnlineStore) -> None:
    write(store, "v", rows([1], a=[1.0]), ["a"])
    generation = store.begin_generation("v")

    store.publish_generation("v", generation)

    assert values(store, "v", [1], ["a"]) == {"a": [None]}
    write(store, "v", rows([1], a=["any type again"]), ["a"])
    assert values(store, "v", [1], ["a"]) == {"a": ["any type again"]}


def test_a_discarded_generation_leaves_the_view_as_it_was_and_refuses_more_work(store: OnlineStore) -> None:
    write(store, "v", rows([1], a=[1.0]), ["a"])
    generation = store.begin_generation("v")
    write(store, "v", rows([1, 2], a=[9.0, 9.0]), ["a"], generation=generation)

    store.discard_generation("v", generation)
    store.discard_generation("v", generation)  # twice is harmless

    assert values(store, "v", [1, 2], ["a"]) == {"a": [1.0, None]}
    assert store.hidden_generations("v") == []
    with pytest.raises(ConflictError, match=f"generation {generation} is not being written"):
        write(store, "v", rows([1], a=[2.0]), ["a"], generation=generation)
    with pytest.raises(ConflictError, match=f"generation {generation} is not being written"):
        store.publish_generation("v", generation)


def test_a_published_generation_cannot_be_published_again_nor_discarded(store: OnlineStore) -> None:
    generation = store.begin_generation("v")
    write(store, "v", rows([1], a=[1.0]), ["a"], generation=generation)
    store.publish_generation("v", generation)

    with pytest.raises(ConflictError):
        store.publish_generation("v", generation)
    store.discard_generation("v", generation)  # not unpublished: nothing happens

    assert values(store, "v", [1], ["a"]) == {"a": [1.0]}


def test_generations_are_per_view_and_dropping_the_view_removes_them(store: OnlineStore) -> None:
    ours, theirs = store.begin_generation("v"), store.begin_generation("w")
    write(store, "v", rows([1], a=[1.0]), ["a"], generation=ours)

    store.drop_view("v")

    assert store.hidden_generations("v") == []
    assert store.hidden_generations("w") == [theirs]
    with pytest.raises(ConflictError):
        store.publish_generation("v", ours)
    with pytest.raises(ConflictError):
        store.publish_generation("w", ours)  # another view's generation


def test_malformed_generation_ids_are_refused(store: OnlineStore) -> None:
    for bad in ("", "g1", "0123456789ABCDEF", "0123456789abcdef\n", "../../etc", 7):
        with pytest.raises(ValidationError, match="generation"):
            store.publish_generation("v", bad)  # type: ignore[arg-type]
        with pytest.raises(ValidationError, match="generation"):
            write(store, "v", rows([1], a=[1.0]), ["a"], generation=bad)


def test_a_generation_left_by_a_dead_process_is_removed_by_the_next_begin(store: OnlineStore) -> None:
    """A writer that died before publishing (its process is gone) leaves the old data serving; the next
    ``begin_generation`` of the view removes its leftover, and leaves a live writer's alone."""
    write(store, "v", rows([1], a=[1.0]), ["a"])
    leftover = store._begin_generation("v", dead_owner())  # as that process would have, before it died
    write(store, "v", rows([1, 2], a=[8.0, 8.0]), ["a"], generation=leftover)
    at_work = store.begin_generation("v")  # this process: alive

    assert store.hidden_generations("v") == [at_work]
    assert values(store, "v", [1, 2], ["a"]) == {"a": [1.0, None]}
    with pytest.raises(ConflictError):
        write(store, "v", rows([1], a=[2.0]), ["a"], generation=leftover)
    assert sorted([at_work, store.begin_generation("v")]) == store.hidden_generations("v")


def test_sweeping_removes_the_generations_of_dead_writers_only(store: OnlineStore) -> None:
    from keel._process import ProcessOwner

    at_work = store._begin_generation("v", ProcessOwner.current().to_dict())
    leftover = store._begin_generation("v", dead_owner())

    assert store.sweep_generations("v") == [leftover]
    assert store.hidden_generations("v") == [at_work]
    assert store.sweep_generations("v") == []


def test_readers_see_the_old_data_or_the_new_never_nothing_while_generations_are_published(
    open_store: OpenStore,
) -> None:
    """A reader (another store on the same data) reads while a writer replaces the view again and again: every
    read is entirely one published generation's values."""
    import threading

    writer, reader = open_store(), open_store()
    ids = list(range(200))
    write(writer, "v", rows(ids, a=[0.0] * len(ids)), ["a"])
    done = threading.Event()
    seen: set[tuple[Any, ...]] = set()

    def read() -> None:
        while not done.is_set():
            got = reader.read("v", [(i,) for i in ids], ["a"]).column("a")
            seen.add(tuple(set(got)))
            one = reader.read("v", [(7,)], ["a"]).column("a")
            seen.add(tuple(one))

    thread = threading.Thread(target=read)
    thread.start()
    try:
        for round_ in range(1, 16):
            generation = writer.begin_generation("v")
            for start in range(0, len(ids), 50):  # several batches: a reader would see a half-written generation
                part = ids[start : start + 50]
                write(writer, "v", rows(part, a=[float(round_)] * len(part)), ["a"], generation=generation)
            writer.publish_generation("v", generation)
    finally:
        done.set()
        thread.join()

    assert seen  # the reader did read
    assert all(len(values) == 1 and values[0] is not None for values in seen), sorted(seen, key=str)[:5]
    assert values(reader, "v", [0, 199], ["a"]) == {"a": [15.0, 15.0]}


# -- backend failures: one error, naming the store, the view and the action


@pytest.fixture(params=["sqlite", "redis"])
def failing_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OnlineStore]:
    """A store of each backend with storage behind it, whose storage then fails: a SQLite file overwritten
    with garbage under the open store, a Redis URL at a port nothing listens on."""
    store: OnlineStore
    if request.param == "sqlite":
        path = tmp_path / "online.db"
        store = SqliteOnlineStore(f"sqlite:///{path}")
        write(store, "v", rows([1], a=[1.0]), ["a"])
        import sqlite3

        checkpoint = sqlite3.connect(path)  # move the WAL into the file, so that the damage is what is read
        checkpoint.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        checkpoint.close()
        path.write_bytes(b"not a database! " * (path.stat().st_size // 16))
    else:
        store = RedisOnlineStore("redis://127.0.0.1:1/15?socket_connect_timeout=1")
    yield store
    store.close()


@pytest.mark.parametrize(
    ("action", "call"),
    [
        ("reading", lambda s: s.read("v", [(1,), (2,)], ["a"])),
        ("reading", lambda s: s.read("v", [(1,)], ["a"])),
        ("writing", lambda s: write(s, "v", rows([1, 2], a=[1.0, 2.0]), ["a"])),
        ("dropping the view", lambda s: s.drop_view("v")),
    ],
)
def test_a_failing_backend_raises_a_backend_error_naming_the_store_the_view_and_the_action(
    failing_store: OnlineStore, action: str, call: Callable[[OnlineStore], Any]
) -> None:
    with pytest.raises(BackendError) as err:
        call(failing_store)

    assert str(err.value).startswith(f"{failing_store.description}: view 'v': {action} failed: ")
    cause = err.value.__cause__
    assert cause is not None and not isinstance(cause, KeelError)  # the library's own exception, chained


def test_bad_input_is_a_validation_error_even_when_the_backend_fails(failing_store: OnlineStore) -> None:
    with pytest.raises(ValidationError, match="'missing' is missing"):
        write(failing_store, "v", rows([1], a=[1.0]), ["missing"])
    with pytest.raises(ValidationError, match="feature view name 'bad name' is invalid"):
        failing_store.drop_view("bad name")
