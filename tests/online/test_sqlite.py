"""The SQLite online store: WAL concurrency across processes, its table layout, and its failure modes."""

from __future__ import annotations

import multiprocessing
import random
import sqlite3
import threading
import time
import traceback
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from keel.errors import BackendError, ConfigError
from keel.online import SqliteOnlineStore

T0 = datetime(2024, 3, 1, tzinfo=UTC)
EVENT = pa.timestamp("us", tz="UTC")
FEATURES = [f"f{i}" for i in range(8)]


def batch(ids: list[int] | np.ndarray, value: float, at: datetime = T0, features: list[str] = FEATURES) -> pa.Table:
    """Rows whose every feature holds ``value``: a reader can tell which batch a row came from."""
    n = len(ids)
    return pa.table(
        {
            "customer_id": pa.array(ids, pa.int64()),
            "event_time": pa.array([at] * n, EVENT),
            **{name: pa.array(np.full(n, value)) for name in features},
        }
    )


def write(store: SqliteOnlineStore, view: str, table: pa.Table, features: list[str] = FEATURES) -> int:
    return store.write_batch(view, table, keys=["customer_id"], features=features, timestamp="event_time")


@pytest.fixture
def uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'online.db'}"


# -- one writer, many readers, several processes

ENTITIES = 2_000


def _writer(uri: str, stop: Any, errors: Any, written: Any) -> None:
    try:
        store = SqliteOnlineStore(uri)
        ids = np.arange(ENTITIES)
        number = 0
        deadline = time.monotonic() + 2.5
        # At least a dozen batches, however loaded the machine: the readers must race several commits.
        while number < 12 or time.monotonic() < deadline:
            number += 1
            write(store, "v", batch(ids, float(number), T0 + timedelta(seconds=number)))
        written.value = number
        store.close()
    except BaseException:
        errors.put("writer: " + traceback.format_exc())
    finally:
        stop.set()


def _reader(uri: str, stop: Any, errors: Any, seen: Any) -> None:
    try:
        store = SqliteOnlineStore(uri)
        rng = random.Random()
        last = 0.0
        batches = set()
        while not stop.is_set():
            if rng.random() < 0.5:
                keys = [(rng.randrange(ENTITIES),) for _ in range(500)]
            else:
                keys = [(rng.randrange(ENTITIES),)]
            read = store.read("v", keys, FEATURES)
            cells = {value for column in read.values for value in column}
            if cells == {None}:  # the writer has not committed its first batch yet
                continue
            # One read is one snapshot: every feature of every entity comes from the same batch.
            assert len(cells) == 1, f"torn read: values from batches {sorted(cells)}"
            (value,) = cells
            assert value >= last, f"went back in time: batch {value} after {last}"
            assert set(read.event_us) == {int((T0 + timedelta(seconds=value)).timestamp() * 1_000_000)}
            last = value
            batches.add(value)
        seen.value = len(batches)
        store.close()
    except BaseException:
        errors.put("reader: " + traceback.format_exc())


def test_a_writer_process_and_reader_processes_never_block_nor_see_a_torn_batch(uri: str) -> None:
    SqliteOnlineStore(uri).close()  # create the file (and switch it to WAL) before the race starts
    spawn = multiprocessing.get_context("spawn")
    stop, errors = spawn.Event(), spawn.Queue()
    written, seen = spawn.Value("i", 0), [spawn.Value("i", 0) for _ in range(2)]
    processes = [spawn.Process(target=_reader, args=(uri, stop, errors, s)) for s in seen]
    processes.append(spawn.Process(target=_writer, args=(uri, stop, errors, written)))
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)

    failures = [errors.get() for _ in range(errors.qsize())] if not errors.empty() else []
    assert not failures, "\n".join(failures)
    assert [p.exitcode for p in processes] == [0, 0, 0]
    assert written.value > 10
    assert all(s.value > 1 for s in seen), "each reader saw several batches while the writer wrote"


def test_threads_share_a_store(uri: str) -> None:
    store = SqliteOnlineStore(uri)
    write(store, "v", batch(list(range(100)), 1.0))
    failures: list[BaseException] = []

    def read_many() -> None:
        try:
            for i in range(200):
                assert store.read("v", [(i % 100,), (1000,)], ["f0"]).to_dict() == {"f0": [1.0, None]}
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=read_many) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    store.close()
    assert not failures


# -- other connections change the view under a cached reader


def test_a_reader_follows_a_view_dropped_and_rewritten_by_another_store(uri: str) -> None:
    reader, writer = SqliteOnlineStore(uri), SqliteOnlineStore(uri)
    write(writer, "v", batch([1], 1.0))
    assert reader.read("v", [(1,)], ["f0"]).to_dict() == {"f0": [1.0]}  # plans and caches its statement

    writer.drop_view("v")
    strings = pa.table({"customer_id": [1], "event_time": pa.array([T0], EVENT), "f0": ["text"]})
    write(writer, "v", strings, ["f0"])

    assert reader.read("v", [(1,)], ["f0"]).to_dict() == {"f0": ["text"]}
    assert reader.read("v", [(1,), (2,)], ["f0"]).to_dict() == {"f0": ["text", None]}
    writer.drop_view("v")
    assert reader.read("v", [(1,)], ["f0"]).to_dict() == {"f0": [None]}


def test_a_reader_sees_a_feature_another_store_adds_later(uri: str) -> None:
    reader, writer = SqliteOnlineStore(uri), SqliteOnlineStore(uri)
    write(writer, "v", batch([1], 1.0, features=["f0"]), ["f0"])
    assert reader.read("v", [(1,)], ["f0", "f1"]).to_dict() == {"f0": [1.0], "f1": [None]}

    write(writer, "v", batch([1], 2.0, T0 + timedelta(1), features=["f0", "f1"]), ["f0", "f1"])

    assert reader.read("v", [(1,)], ["f0", "f1"]).to_dict() == {"f0": [2.0], "f1": [2.0]}


# -- layout and speed


def test_each_view_is_one_wide_typed_table_in_a_wal_database(uri: str, tmp_path: Path) -> None:
    store = SqliteOnlineStore(uri)
    table = pa.table(
        {
            "customer_id": [1],
            "event_time": pa.array([T0], EVENT),
            "n": [1],
            "x": [1.0],
            "flag": [True],
            "plan": ["a"],
            "seen": pa.array([T0], EVENT),
            "emb": pa.array([[1.0, 2.0]], pa.list_(pa.float64())),
        }
    )
    write(store, "v", table, ["n", "x", "flag", "plan", "seen", "emb"])
    name = store.table_of("v")
    store.close()

    raw = sqlite3.connect(tmp_path / "online.db")
    columns = {row[1]: (row[2], row[5]) for row in raw.execute(f'PRAGMA table_info("{name}")')}
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert columns == {
        "__keel_key": ("INTEGER", 1),  # the rowid: one b-tree lookup per key
        "__keel_event_us": ("INTEGER", 0),
        "n": ("INTEGER", 0),
        "x": ("REAL", 0),
        "flag": ("INTEGER", 0),
        "plan": ("TEXT", 0),
        "seen": ("INTEGER", 0),
        "emb": ("BLOB", 0),
    }
    stored = raw.execute(f'SELECT __keel_event_us, seen, emb FROM "{name}"').fetchone()
    assert stored == (int(T0.timestamp()) * 1_000_000,) * 2 + (np.array([1.0, 2.0], "<f8").tobytes(),)


def test_a_bulk_write_of_100k_rows_by_8_features_takes_well_under_seconds(uri: str) -> None:
    store = SqliteOnlineStore(uri)
    rng = np.random.default_rng(0)
    n = 100_000
    table = pa.table(
        {
            "customer_id": np.arange(n),
            "event_time": pa.array(np.full(n, int(T0.timestamp() * 1e6)), EVENT),
            **{name: rng.random(n) for name in FEATURES},
        }
    )

    started = time.perf_counter()
    assert write(store, "v", table) == n
    elapsed = time.perf_counter() - started

    assert elapsed < 3.0, f"100,000 rows took {elapsed:.2f}s"  # about 0.15s on a laptop
    assert store.read("v", [(n - 1,)], ["f7"]).to_dict() == {"f7": [table.column("f7")[n - 1].as_py()]}


def test_reads_larger_than_the_variable_limit_are_chunked_in_one_snapshot(uri: str) -> None:
    store = SqliteOnlineStore(uri)
    write(store, "v", batch(list(range(0, 1_000, 2)), 1.0))
    store._chunk = 64  # as if SQLite allowed only 64 variables per statement

    read = store.read("v", [(i,) for i in range(1_000)], ["f0"])

    assert list(read.column("f0")) == [1.0 if i % 2 == 0 else None for i in range(1_000)]


# -- failures


def test_an_in_memory_or_malformed_uri_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="memory://"):
        SqliteOnlineStore("sqlite:///:memory:")
    with pytest.raises(ConfigError, match=r"sqlite:///path/online\.db"):
        SqliteOnlineStore("sqlite:/online.db")


def test_a_file_that_is_not_a_database_is_a_backend_error_naming_the_store(tmp_path: Path) -> None:
    path = tmp_path / "online.db"
    path.write_bytes(b"this is not a database" * 100)

    with pytest.raises(BackendError, match=r"sqlite online store .*online\.db.*not a database"):
        SqliteOnlineStore(f"sqlite:///{path}")


def test_a_closed_store_refuses_to_work(uri: str) -> None:
    store = SqliteOnlineStore(uri)
    write(store, "v", batch([1], 1.0))
    store.close()

    with pytest.raises(BackendError, match="closed"):
        store.read("v", [(1,)], ["f0"])


def test_a_write_that_fails_leaves_the_view_as_it_was(uri: str, tmp_path: Path) -> None:
    store = SqliteOnlineStore(uri, timeout=0.1)
    write(store, "v", batch([1], 1.0))
    blocker = sqlite3.connect(tmp_path / "online.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock

    with pytest.raises(BackendError, match=r"view 'v': writing failed: database is locked.*write lock"):
        write(store, "v", batch([1, 2], 2.0, T0 + timedelta(1)))
    blocker.execute("ROLLBACK")

    assert store.read("v", [(1,), (2,)], ["f0"]).to_dict() == {"f0": [1.0, None]}
    assert write(store, "v", batch([1, 2], 2.0, T0 + timedelta(1))) == 2
