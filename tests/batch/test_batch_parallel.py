"""Parallel batch scoring: threads of this process, worker processes, the switch between them, and inputs read by
row groups where they are scored. Every path gives the package's predictions, in input order (invariant 2)."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

import keel
from _training_fixtures import build_project
from keel.batch import ROW_COLUMN
from keel.batch import _io as batch_io
from keel.batch import _lanes as batch_lanes
from keel.batch import _runner as batch_runner
from keel.batch import _worker as batch_worker
from keel.errors import ValidationError
from keel.models import ModelPackage
from keel.training import TrainingSpec

STRINGS = "churn@champion"  # a string feature among its inputs: scored in worker processes
NUMERIC = "spend@champion"  # numeric inputs only: scored on threads of the calling process


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[keel.Project, pd.DataFrame]]:
    root = tmp_path_factory.mktemp("parallel") / "project"
    root.mkdir()
    project, labels = build_project(root)
    for name, features, model in [
        ("churn", ["activity:*", "profile:age"], LogisticRegression(max_iter=500)),
        ("spend", ["activity:spend", "activity:orders", "profile:age"], HistGradientBoostingClassifier(max_iter=20)),
    ]:
        spec = TrainingSpec(
            name, labels=labels[["customer_id", "ts", "churned"]], label="churned", features=features, model=model
        )
        version = project.models.register(project.train(spec))
        project.models.set_alias(name, "champion", version.version)
    package = project.models.load(STRINGS)
    rows = project.historical_features(labels[["customer_id", "ts"]], package.feature_refs, timestamp="ts")
    yield project, rows
    project.close()


@pytest.fixture
def project(setup: tuple[keel.Project, pd.DataFrame]) -> keel.Project:
    return setup[0]


@pytest.fixture
def rows(setup: tuple[keel.Project, pd.DataFrame]) -> pd.DataFrame:
    return setup[1]


def write(frame: pd.DataFrame, path: Path, row_group: int = 30) -> Path:
    """Row groups shorter than the chunks and not aligned with them: chunks are read by row groups."""
    frame.to_parquet(path, index=False, row_group_size=row_group)
    return path


def check(out_path: Path, project: keel.Project, model: str, frame: pd.DataFrame, chunk_rows: int) -> pd.DataFrame:
    """The output equals the package's predictions row for row, in input order, probabilities included."""
    package: ModelPackage = project.models.load(model)
    out = pd.read_parquet(out_path)
    assert list(out[ROW_COLUMN]) == list(range(len(frame)))
    np.testing.assert_array_equal(out["prediction"].to_numpy(), package.predict(frame))
    proba = out[[f"proba_{c}" for c in package.classes or []]].to_numpy()
    chunked = np.vstack(
        [package.predict_proba(frame.iloc[i : i + chunk_rows]) for i in range(0, len(frame), chunk_rows)]
    )
    np.testing.assert_array_equal(proba, chunked)
    return out


class Spy:
    """Records the chunks scored in this process (threads included); worker processes do not see it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, before: Any = None) -> None:
        self.indices: list[int] = []
        self.kinds: set[str] = set()
        self._lock = threading.Lock()
        original = batch_worker.Scorer.score

        def score(scorer: batch_worker.Scorer, index: int, start: int, data: Any) -> Any:
            with self._lock:
                self.indices.append(index)
                self.kinds.add(type(data).__name__)
            if before is not None:
                before(index)
            return original(scorer, index, start, data)

        monkeypatch.setattr(batch_worker.Scorer, "score", score)


class Pools:
    """Captures the worker pools a run starts."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.started: list[batch_lanes.Pool] = []
        original = batch_lanes.Pool.__init__

        def init(pool: batch_lanes.Pool, *args: Any, **kwargs: Any) -> None:
            original(pool, *args, **kwargs)
            self.started.append(pool)

        monkeypatch.setattr(batch_lanes.Pool, "__init__", init)


# -- threads of this process ----------------------------------------------------------------------------------
@pytest.mark.parametrize("row_group", [30, 70])  # read by row groups where scored / streamed by this process
def test_numeric_inputs_are_scored_on_threads_without_processes(
    project: keel.Project, rows: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, row_group: int
) -> None:
    source = write(rows, tmp_path / "in.parquet", row_group)
    spy = Spy(monkeypatch)
    pools = Pools(monkeypatch)
    threads: set[str] = set()
    original = batch_lanes.Threads.submit

    def submit(lanes: batch_lanes.Threads, *args: Any) -> Any:
        future = original(lanes, *args)
        future.add_done_callback(lambda _: threads.add(threading.current_thread().name))
        return future

    monkeypatch.setattr(batch_lanes.Threads, "submit", submit)
    result = project.predict_batch(NUMERIC, source, tmp_path / "out.parquet", workers=2, chunk_rows=50)
    assert result.ok and (result.rows, result.chunks) == (240, 5)
    check(tmp_path / "out.parquet", project, NUMERIC, rows, 50)
    assert sorted(spy.indices) == [0, 1, 2, 3, 4] and not pools.started
    assert spy.kinds == ({"RowSlice"} if row_group == 30 else {"Table"})
    assert threads and all(name.startswith("keel-batch") for name in threads)


def test_threads_share_the_cores_and_leave_the_limits_as_they_were(
    project: keel.Project, rows: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sklearn.utils._openmp_helpers import _openmp_effective_n_threads
    from threadpoolctl import threadpool_info

    def blas() -> set[int]:
        return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}

    seen: list[tuple[int, set[int]]] = []
    Spy(monkeypatch, before=lambda index: seen.append((_openmp_effective_n_threads(), blas())))
    cores = os.cpu_count() or 1
    source = write(rows, tmp_path / "in.parquet")
    with threadpool_limits(cores, user_api="openmp"), threadpool_limits(cores, user_api="blas"):
        before = (_openmp_effective_n_threads(), blas())
        result = project.predict_batch(NUMERIC, source, tmp_path / "out.parquet", workers=2, chunk_rows=50)
        assert (_openmp_effective_n_threads(), blas()) == before  # this thread's and the process's, restored
    assert result.ok and len(seen) == 5
    share = max(1, cores // 2)
    assert all(omp == share and blas_threads <= {share} for omp, blas_threads in seen)


def test_threads_and_one_worker_give_the_same_output(project: keel.Project, rows: pd.DataFrame, tmp_path: Path) -> None:
    source = write(rows, tmp_path / "in.parquet")
    project.predict_batch(NUMERIC, source, tmp_path / "one.parquet", chunk_rows=40)
    project.predict_batch(NUMERIC, source, tmp_path / "two.parquet", workers=2, chunk_rows=40)
    project.predict_batch(NUMERIC, source, tmp_path / "three.parquet", workers=3, chunk_rows=40)
    one = pd.read_parquet(tmp_path / "one.parquet")
    assert one.equals(pd.read_parquet(tmp_path / "two.parquet"))
    assert one.equals(pd.read_parquet(tmp_path / "three.parquet"))


def test_fewer_chunks_than_workers_start_no_process(
    project: keel.Project, rows: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pools = Pools(monkeypatch)
    source = write(rows, tmp_path / "in.parquet")
    result = project.predict_batch(STRINGS, source, tmp_path / "out.parquet", workers=4, chunk_rows=100)
    assert result.ok and result.chunks == 3 and not pools.started
    check(tmp_path / "out.parquet", project, STRINGS, rows, 100)


# -- worker processes -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("row_group", [30, 70])  # read by the workers / streamed here, sent as Arrow IPC
def test_worker_processes_read_their_row_groups_and_keep_the_order(
    project: keel.Project, rows: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, row_group: int
) -> None:
    monkeypatch.setattr(batch_lanes, "LOCAL_UNTIL_READY", False)  # the processes score every chunk
    spy = Spy(monkeypatch)
    pools = Pools(monkeypatch)
    sent: list[Any] = []
    original = batch_lanes.Pool.submit

    def submit(pool: batch_lanes.Pool, index: int, start: int, data: Any) -> Any:
        sent.append(data)
        return original(pool, index, start, data)

    monkeypatch.setattr(batch_lanes.Pool, "submit", submit)
    source = write(rows, tmp_path / "in.parquet", row_group)
    result = project.predict_batch(STRINGS, source, tmp_path / "out.parquet", workers=2, chunk_rows=50)
    assert result.ok and result.rows == 240
    check(tmp_path / "out.parquet", project, STRINGS, rows, 50)
    assert len(pools.started) == 1 and spy.indices == []  # nothing scored in this process
    if row_group == 30:  # the processes were given row ranges, not data
        assert all(isinstance(r, batch_io.RowSlice) for r in sent)
        assert [(r.start, r.rows) for r in sent] == [(0, 50), (50, 50), (100, 50), (150, 50), (200, 40)]
    else:
        assert [r.num_rows for r in sent] == [50, 50, 50, 50, 40] and all(isinstance(r, pa.Table) for r in sent)


def test_this_process_scores_until_the_workers_are_ready_then_hands_over(
    project: keel.Project, rows: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pools = Pools(monkeypatch)

    def hold(index: int) -> None:  # this process's chunks finish only once the workers are up
        assert pools.started[0].ready.wait(120)

    spy = Spy(monkeypatch, before=hold)
    source = write(rows, tmp_path / "in.parquet", row_group=10)
    output = tmp_path / "out.parquet"
    result = project.predict_batch(STRINGS, source, output, workers=2, chunk_rows=10)
    assert result.ok and (result.rows, result.chunks) == (240, 24)
    out = check(output, project, STRINGS, rows, 10)
    local = sorted(spy.indices)
    assert local and local == list(range(len(local)))  # the first chunks, here
    assert len(local) < 24  # the rest in the worker processes
    serial = project.predict_batch(STRINGS, source, tmp_path / "serial.parquet", chunk_rows=10)
    assert serial.ok and out.equals(pd.read_parquet(tmp_path / "serial.parquet"))


def test_workers_that_cannot_start_leave_the_work_to_this_process(
    project: keel.Project,
    rows: pd.DataFrame,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    pools = Pools(monkeypatch)
    real = batch_runner.ModelSource

    def wrong_digest(**kwargs: Any) -> batch_worker.ModelSource:
        return real(**{**kwargs, "digest": "0" * 64})  # the workers' initializer fails: no such artifact

    monkeypatch.setattr(batch_runner, "ModelSource", wrong_digest)

    def hold(index: int) -> None:  # until the workers have failed
        pool = pools.started[0]
        for _ in range(1200):
            if pool.failure is not None:
                return
            threading.Event().wait(0.1)

    spy = Spy(monkeypatch, before=hold)
    source = write(rows, tmp_path / "in.parquet")
    with caplog.at_level(logging.WARNING, logger="keel.batch"):
        result = project.predict_batch(STRINGS, source, tmp_path / "out.parquet", workers=2, chunk_rows=50)
    assert result.ok and sorted(spy.indices) == [0, 1, 2, 3, 4]
    assert pools.started[0].failure is not None and not pools.started[0].ready.is_set()
    assert "did not start" in caplog.text
    check(tmp_path / "out.parquet", project, STRINGS, rows, 50)


def test_a_resumed_run_with_workers_reads_only_the_missing_chunks(
    project: keel.Project, rows: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = write(rows, tmp_path / "in.parquet")
    output = tmp_path / "out.parquet"

    def interrupt(done: int, total: int | None) -> None:
        if done >= 100:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        project.predict_batch(NUMERIC, source, output, workers=2, chunk_rows=50, on_progress=interrupt)
    assert not output.exists() and not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    done = sorted(json.loads((tmp_path / "out.parquet.manifest.json").read_text())["chunks"])
    assert len(done) >= 2
    spy = Spy(monkeypatch)
    result = project.predict_batch(NUMERIC, source, output, workers=2, chunk_rows=50)
    assert result.ok and result.chunks_resumed == len(done)
    assert sorted(spy.indices) == [i for i in range(5) if str(i) not in done]
    check(output, project, NUMERIC, rows, 50)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.parquet", "out.parquet"]


def test_a_failing_chunk_read_by_row_groups_is_reported_with_its_rows(
    project: keel.Project, rows: pd.DataFrame, tmp_path: Path
) -> None:
    frame = rows.copy()
    frame.loc[123, "spend"] = np.inf  # a value no model takes, in one chunk
    source = write(frame, tmp_path / "in.parquet")
    result = project.predict_batch(NUMERIC, source, tmp_path / "out.parquet", workers=2, chunk_rows=50)
    [failure] = result.failures
    assert (failure.chunk, failure.start_row, failure.end_row) == (2, 100, 150)
    assert "input row 123" in failure.error
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert list(out[ROW_COLUMN]) == [i for i in range(240) if not 100 <= i < 150]


# -- reading by row groups ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("start", "count"), [(0, 30), (0, 50), (25, 50), (29, 2), (200, 40), (239, 1), (0, 240)])
def test_a_row_slice_reads_exactly_its_rows(rows: pd.DataFrame, tmp_path: Path, start: int, count: int) -> None:
    source = batch_io.open_input(str(write(rows, tmp_path / "in.parquet")))
    assert source.row_groups == (30,) * 8 and source.slices_fit(30) and not source.slices_fit(29)
    columns = ("customer_id", "spend", "plan")
    part = batch_io.RowSlice(source.path, columns, start, count, source.size, source.mtime)
    reader = batch_io.SliceReader()
    table = reader.read(part)
    assert table.equals(pq.read_table(source.path, columns=list(columns)).slice(start, count))
    empty = reader.read(batch_io.RowSlice(source.path, columns, 0, 0, source.size, source.mtime))
    assert empty.num_rows == 0 and empty.schema == table.schema
    reader.close()


def test_a_row_slice_of_a_changed_file_is_refused(rows: pd.DataFrame, tmp_path: Path) -> None:
    path = write(rows, tmp_path / "in.parquet")
    source = batch_io.open_input(str(path))
    write(rows.iloc[:100], path)
    os.utime(path, (1, 1))
    with pytest.raises(ValidationError, match="changed since the run started"):
        batch_io.SliceReader().read(batch_io.RowSlice(source.path, ("spend",), 0, 10, source.size, source.mtime))


def test_long_row_groups_are_streamed_by_this_process(rows: pd.DataFrame, tmp_path: Path) -> None:
    table = pa.Table.from_pandas(rows, preserve_index=False)
    pq.write_table(table, tmp_path / "in.parquet", row_group_size=240)
    source = batch_io.open_input(str(tmp_path / "in.parquet"))
    assert source.row_groups == (240,) and not source.slices_fit(50) and source.slices_fit(240)
