"""The prediction log: every prediction appended off the response path to Parquet files in the offline store,
with the layout and columns monitoring reads; rotation by size and time; no partial file ever visible; the
reader's filters."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from sklearn.linear_model import Ridge
from threadpoolctl import threadpool_limits

import keel
from _training_fixtures import build_project, push_fresh_online, register_churn_versions
from keel.prediction_log import LogLayout, PredictionLog
from keel.prediction_log import _writer as plog
from keel.training import TrainingSpec

CUSTOMERS = 8
REFS = ["activity:spend", "activity:orders", "activity:plan", "activity:active", "activity:since", "profile:age"]
PART = r"part-\d{8}T\d{6}-\d+-[0-9a-f]{8}\.parquet"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A project with ``churn`` v1 and v2 (classifiers) and ``spend`` v1 (a regressor), fresh online rows."""
    with threadpool_limits(1):
        proj, labels = build_project(tmp_path_factory.mktemp("log") / "project", name="logtest")
        register_churn_versions(proj, labels)
        regression = TrainingSpec(
            "amount",
            labels=labels[["customer_id", "ts", "amount"]],
            label="amount",
            features=["activity:spend", "activity:orders", "profile:age"],
            model=Ridge(),
            task="regression",
        )
        proj.models.register(proj.train(regression))
    push_fresh_online(proj, CUSTOMERS)
    root = proj.root
    proj.close()
    return root


@pytest.fixture
def project(served: Path, tmp_path: Path) -> Iterator[keel.Project]:
    """The served project with an offline store of its own for this test's log (features are read online)."""
    with keel.Project.open(served, offline=str(tmp_path / "offline")) as proj:
        yield proj


def open_with(served: Path, tmp_path: Path, **log: Any) -> keel.Project:
    return keel.Project.open(served, offline=str(tmp_path / "offline"), prediction_log=log)


def post(client: TestClient, records: list[dict[str, Any]], name: str = "churn", **headers: str) -> Any:
    response = client.post(f"/v1/models/{name}/predict", json={"records": records}, headers=headers)
    assert response.status_code == 200, response.text
    return response


def log_files(project: keel.Project, pattern: str = "*.parquet") -> list[Path]:
    root = Path(project.config.offline) / "_prediction_log"
    return sorted(p for p in root.rglob(pattern) if p.is_file())


# -- rows, values and types ----------------------------------------------------------------------------------
def test_every_record_is_logged_with_its_scored_inputs_after_a_clean_shutdown(project: keel.Project) -> None:
    looked_up = project.online_features(REFS, [{"customer_id": 1}, {"customer_id": 2}]).to_frame()
    raw = {"spend": None, "orders": 4, "plan": "team", "active": False, "since": "2023-05-01T00:00:00Z", "age": 33}
    before = datetime.now(UTC)
    with TestClient(project.prediction_app(["churn:1"])) as c:
        first = post(c, [{"customer_id": 1}, {"customer_id": 2, "plan": "pro", "orders": 7}], **{"X-Request-ID": "r-1"})
        second = post(c, [raw], **{"X-Request-ID": "r-2"})
        assert not log_files(project)  # nothing visible while the file is open
    after = datetime.now(UTC)

    files = log_files(project)
    assert len(files) == 1
    relative = files[0].relative_to(Path(project.config.offline))
    assert relative.parts[:4] == ("_prediction_log", "model=churn", "version=1", f"{before:%Y-%m-%d}")
    assert pd.Series([relative.name]).str.fullmatch(PART).all()
    assert str(os.getpid()) in relative.name
    schema = pq.read_schema(files[0])
    assert [(f.name, f.type) for f in schema] == [
        ("request_id", pa.string()),
        ("record", pa.int32()),
        ("predicted_at", pa.timestamp("us", tz="UTC")),
        ("model", pa.string()),
        ("version", pa.int32()),
        ("key.customer_id", pa.int64()),
        ("feature.spend", pa.float64()),
        ("feature.orders", pa.int64()),
        ("feature.plan", pa.string()),
        ("feature.active", pa.bool_()),
        ("feature.since", pa.timestamp("us", tz="UTC")),
        ("feature.age", pa.int64()),
        ("prediction", pa.int64()),
        ("proba.0", pa.float64()),
        ("proba.1", pa.float64()),
    ]

    rows = project.predictions("churn")
    assert len(rows) == 3
    assert rows["request_id"].tolist() == ["r-1", "r-1", "r-2"]
    assert rows["record"].tolist() == [0, 1, 0]
    assert rows["model"].tolist() == ["churn"] * 3 and rows["version"].tolist() == [1] * 3
    assert ((rows["predicted_at"] >= before) & (rows["predicted_at"] <= after)).all()
    assert rows["key.customer_id"].tolist()[:2] == [1, 2] and pd.isna(rows["key.customer_id"].iloc[2])
    # Record 0: every value as read online; record 1: online values with its explicit overrides.
    for column in ("spend", "orders", "plan", "active", "since", "age"):
        expected = looked_up[column].tolist()
        expected[1] = {"plan": "pro", "orders": 7}.get(column, expected[1])
        got = rows[f"feature.{column}"].tolist()[:2]
        assert [None if pd.isna(v) else v for v in got] == [None if pd.isna(v) else v for v in expected], column
    # Record 2: raw values only, a null kept null (before imputation).
    assert pd.isna(rows.at[2, "feature.spend"])
    assert rows.at[2, "feature.plan"] == "team" and rows.at[2, "feature.orders"] == 4
    assert not rows.at[2, "feature.active"] and rows.at[2, "feature.age"] == 33
    assert rows.at[2, "feature.since"] == pd.Timestamp("2023-05-01", tz="UTC")
    answers = first.json(), second.json()
    predictions = answers[0]["predictions"] + answers[1]["predictions"]
    probabilities = answers[0]["probabilities"] + answers[1]["probabilities"]
    assert rows["prediction"].tolist() == predictions
    for cls in ("0", "1"):
        assert rows[f"proba.{cls}"].tolist() == [p[cls] for p in probabilities]


def test_a_regressor_logs_a_float_prediction_and_no_probabilities(project: keel.Project) -> None:
    app = project.prediction_app(["amount:1"])
    with TestClient(app) as c:
        answer = post(c, [{"customer_id": 3}, {"customer_id": 4, "spend": 12.5}], name="amount").json()
    assert app.state.metrics.registry.get_sample_value("keel_prediction_log_rows_total") == 2

    rows = project.predictions("amount")
    assert rows["prediction"].dtype == np.float64
    assert rows["prediction"].tolist() == answer["predictions"]
    assert rows.at[1, "feature.spend"] == 12.5
    assert not [c for c in rows.columns if c.startswith("proba.")]
    assert [c for c in rows.columns if c.startswith("feature.")] == ["feature.spend", "feature.orders", "feature.age"]


def test_cache_hits_are_logged_too(project: keel.Project) -> None:
    with TestClient(project.prediction_app(["churn:1"], cache_size=8)) as c:
        post(c, [{"customer_id": 5}])
        post(c, [{"customer_id": 5}])
        assert 'keel_prediction_cache_total{result="hit"} 1.0' in c.get("/metrics").text
    rows = project.predictions("churn")
    assert len(rows) == 2 and rows["prediction"].nunique() == 1 and rows["request_id"].nunique() == 2


def test_the_log_can_be_turned_off(served: Path, tmp_path: Path) -> None:
    with (
        open_with(served, tmp_path, enabled=False) as project,
        TestClient(project.prediction_app(["churn:1"])) as c,
    ):
        post(c, [{"customer_id": 1}])
        assert c.app.state.prediction_log is None  # type: ignore[attr-defined]
    assert not (Path(project.config.offline) / "_prediction_log").exists()


# -- off the response path -----------------------------------------------------------------------------------
def test_the_handler_only_enqueues_the_writer_thread_writes(
    project: keel.Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    writers: list[str] = []
    convert, add = plog._table, plog._File.add

    def blocked_table(entry: Any) -> Any:
        writers.append(threading.current_thread().name)
        assert release.wait(10), "the test never released the writer"
        return convert(entry)

    def recorded_add(self: Any, table: Any) -> None:
        writers.append(threading.current_thread().name)
        add(self, table)

    monkeypatch.setattr(plog, "_table", blocked_table)
    monkeypatch.setattr(plog._File, "add", recorded_add)
    with TestClient(project.prediction_app(["churn:1"])) as c:
        # The writer is stuck converting the first request: the answers come anyway.
        for i in range(3):
            post(c, [{"customer_id": i}])
        assert not log_files(project, "*")
        release.set()
    assert len(project.predictions("churn")) == 3
    assert writers and set(writers) == {"keel-prediction-log"}


def test_a_full_queue_drops_rows_counts_them_and_never_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    convert = plog._table
    monkeypatch.setattr(plog, "_table", lambda entry: (release.wait(10), convert(entry))[1])
    dropped: list[int] = []
    log = PredictionLog(str(tmp_path / "log"), max_queue_rows=3, on_dropped=dropped.append)
    entry = (LAYOUT, datetime.now(UTC), [{"id": 1}] * 2, {"x": [1.0, 2.0]}, {"predictions": [0.5, 0.25]})
    try:
        assert log.append(entry[0], "a", *entry[1:])  # taken by the writer, which then blocks
        deadline = time.monotonic() + 5
        while log._queue:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert log.append(entry[0], "b", *entry[1:])  # 2 rows waiting
        started = time.perf_counter()
        assert not log.append(entry[0], "c", *entry[1:])  # 4 > 3: dropped, at once
        assert time.perf_counter() - started < 1
        assert dropped == [2] and log.rows_dropped == 2
    finally:
        release.set()
        log.close()
    table = pq.read_table(next((tmp_path / "log").rglob("*.parquet")))
    assert table.column("request_id").to_pylist() == ["a", "a", "b", "b"]


LAYOUT = LogLayout("m", 1, (("id", "int64"),), (("x", "float64"),), "float64", ())


# -- files: rotation, concurrency, crashes -------------------------------------------------------------------
def test_files_rotate_by_size(served: Path, tmp_path: Path) -> None:
    with open_with(served, tmp_path, max_bytes=1, linger_seconds=0) as project:  # each request converted alone
        with TestClient(project.prediction_app(["churn:1"])) as c:
            for i in range(3):
                post(c, [{"customer_id": i}, {"customer_id": i + 1}])
                # One request at a time: requests queued together are converted (and written) together, which
                # on a loaded machine would put two of them in one file.
                deadline = time.monotonic() + 30
                while len(log_files(project)) < i + 1:  # each file is over 1 byte once written: closed at once
                    log = c.app.state.prediction_log
                    seen = (
                        f"{len(log_files(project))} files, {log.rows_written} rows written, {log.rows_dropped} dropped"
                    )
                    assert time.monotonic() < deadline, f"the files were not rotated by size ({seen})"
                    time.sleep(0.02)
        files = log_files(project)
        assert len(files) == 3
        assert [pq.read_metadata(f).num_rows for f in files] == [2, 2, 2]
        assert len(project.predictions("churn")) == 6


def test_files_rotate_by_time(served: Path, tmp_path: Path) -> None:
    with open_with(served, tmp_path, max_seconds=0.3) as project:
        with TestClient(project.prediction_app(["churn:1"])) as c:
            post(c, [{"customer_id": 1}])
            deadline = time.monotonic() + 10
            while not log_files(project):  # published by the writer alone, while the service runs
                assert time.monotonic() < deadline, "the file was not closed after max_seconds"
                time.sleep(0.05)
            post(c, [{"customer_id": 2}])
        files = log_files(project)
        assert len(files) == 2 and len(set(files)) == 2
        assert [pq.read_metadata(f).num_rows for f in files] == [1, 1]
        assert not log_files(project, ".*.tmp")


def test_two_app_instances_write_their_own_files(project: keel.Project) -> None:
    with (
        TestClient(project.prediction_app(["churn:1"])) as one,
        TestClient(project.prediction_app(["churn:1"])) as two,
    ):
        threads = [
            threading.Thread(
                target=lambda c=c, n=n: [
                    post(c, [{"customer_id": i}], **{"X-Request-ID": f"{n}{i}"}) for i in range(20)
                ]
            )
            for c, n in ((one, "a"), (two, "b"))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    files = log_files(project)
    assert len(files) == 2 and files[0].name != files[1].name
    rows = project.predictions("churn")
    assert sorted(rows["request_id"]) == sorted([f"a{i}" for i in range(20)] + [f"b{i}" for i in range(20)])


CRASHING_WRITER = textwrap.dedent(
    """
    import os, sys, time
    from datetime import UTC, datetime
    from keel.prediction_log import LogLayout, PredictionLog

    layout = LogLayout("m", 1, (("id", "int64"),), (("x", "float64"),), "float64", ())
    log = PredictionLog(sys.argv[1], row_group_rows=1)
    for i in range(5):
        log.append(layout, f"r{i}", datetime.now(UTC), [{"id": i}], {"x": [1.0]}, {"predictions": [0.5]})
    deadline = time.monotonic() + 10
    while not any(f.rows for f in log._files.values()):  # rows on disk, in the open file
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os._exit(3)  # a crash mid-file (rows handed to it): no close, no atexit
    """
)


def test_a_crash_mid_file_leaves_no_visible_partial_file(project: keel.Project) -> None:
    root = Path(project.config.offline) / "_prediction_log"
    done = subprocess.run(
        [sys.executable, "-c", CRASHING_WRITER, str(root)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 3, done.stderr
    leftovers = [p for p in root.rglob("*") if p.is_file()]
    assert leftovers and all(p.name.startswith(".part-") and p.name.endswith(".parquet.tmp") for p in leftovers)
    assert not log_files(project)
    assert project.predictions("m").empty


def test_the_next_writer_removes_the_temporary_files_of_crashed_writers_once_stale(project: keel.Project) -> None:
    root = Path(project.config.offline) / "_prediction_log"
    crashed = subprocess.run(
        [sys.executable, "-c", CRASHING_WRITER, str(root)], capture_output=True, text=True, timeout=60
    )
    assert crashed.returncode == 3, crashed.stderr
    [stale] = list(root.rglob(".part-*.parquet.tmp"))
    two_hours_ago = time.time() - 2 * 3600
    os.utime(stale, (two_hours_ago, two_hours_ago))
    recent = stale.with_name(".part-20240101T000000-1-0123abcd.parquet.tmp")  # a writer maybe still at work
    recent.write_bytes(b"PAR1")

    log = PredictionLog(str(root))
    layout = LogLayout("m", 1, (("id", "int64"),), (("x", "float64"),), "float64", ())
    log.append(layout, "after", datetime.now(UTC), [{"id": 1}], {"x": [1.0]}, {"predictions": [0.5]})
    log.close()

    assert not stale.exists()
    assert recent.exists()
    assert list(project.predictions("m")["request_id"]) == ["after"]


# -- the reader ----------------------------------------------------------------------------------------------
def test_the_reader_filters_by_version_and_time(project: keel.Project) -> None:
    empty = project.predictions("churn")
    assert empty.empty and list(empty.columns) == [
        "request_id",
        "record",
        "predicted_at",
        "model",
        "version",
        "prediction",
    ]

    with TestClient(project.prediction_app(["churn:1"])) as c:
        post(c, [{"customer_id": 1}, {"customer_id": 2}])
    middle = datetime.now(UTC)
    time.sleep(0.01)
    with TestClient(project.prediction_app(["churn:2"])) as c:
        post(c, [{"customer_id": 3}])
    end = datetime.now(UTC) + timedelta(seconds=1)

    every = project.predictions("churn")
    assert every["version"].tolist() == [1, 1, 2]
    assert project.predictions("churn", version=1)["key.customer_id"].tolist() == [1, 2]
    assert project.predictions("churn", version=2)["key.customer_id"].tolist() == [3]
    assert project.predictions("churn", end=middle)["version"].tolist() == [1, 1]
    assert project.predictions("churn", start=middle)["version"].tolist() == [2]
    naive = middle.astimezone(UTC).replace(tzinfo=None)  # naive datetimes are UTC
    assert project.predictions("churn", start=naive, end=end)["version"].tolist() == [2]
    assert project.predictions("churn", version=1, start=middle).empty
    assert project.predictions("churn", start=end, end=middle).empty
    assert project.predictions("fraud").empty
    assert every["predicted_at"].dtype == "datetime64[us, UTC]"


def test_requests_gathered_by_the_linger_are_written_together_in_order(served: Path, tmp_path: Path) -> None:
    with open_with(served, tmp_path, linger_seconds=5.0) as project:
        app = project.prediction_app(["churn:1"])
        with TestClient(app) as c:
            for i in range(4):
                post(c, [{"customer_id": i}, {"customer_id": 10 + i}], **{"X-Request-ID": f"r{i}"})
            assert app.state.prediction_log.flush(timeout=10)  # a flush does not wait for the linger
            assert not log_files(project, ".*.tmp")
        files = log_files(project)
        assert len(files) == 1 and pq.read_metadata(files[0]).num_row_groups == 1  # one conversion, one write
        log = project.predictions("churn")
    assert log["request_id"].tolist() == ["r0", "r0", "r1", "r1", "r2", "r2", "r3", "r3"]
    assert log["record"].tolist() == [0, 1] * 4
    assert log["key.customer_id"].tolist() == [0, 10, 1, 11, 2, 12, 3, 13]


def test_rows_that_cannot_be_logged_are_counted_with_the_true_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dropped: list[int] = []
    log = PredictionLog(str(tmp_path / "log"), max_queue_rows=1_000, on_dropped=dropped.append)
    now = datetime.now(UTC)
    try:
        with caplog.at_level("WARNING", logger="keel"):
            assert log.append(LAYOUT, "good", now, [{"id": 1}], {"x": [1.0]}, {"predictions": [0.5]})
            assert log.append(LAYOUT, "bad", now, [{"id": 2**64}], {"x": [1.0]}, {"predictions": [0.5]})  # no int64
            assert log.flush()
    finally:
        log.close()
    assert dropped == [1] and log.rows_dropped == 1 and log.rows_written == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("cannot turn request bad into rows" in w for w in warnings), warnings
    assert not any("queue is full" in w for w in warnings)
