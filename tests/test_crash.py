"""Crash injection, bounded: ``bench/crash.py`` kills Keel's writing operations with ``SIGKILL`` at random points
of a small project and checks what it leaves: no half-visible version or alias, every artifact verifying, no run
left ``running``, online readers seeing the old values or the new (never none), a resumed batch equal to an
uninterrupted one, the prediction log within its promise, and every re-run succeeding.

A dozen kills here; ``python bench/crash.py`` runs more than a hundred on larger data (see the README's
"Crash safety").
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def crash() -> ModuleType:
    """``bench/crash.py``, imported by name: its child processes import it by name too."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module("crash")


def _kill_and_check(
    crash: ModuleType, tmp_path: Path, kills: dict[str, int], redis_url: str | None = None
) -> list[Any]:
    lines: list[dict[str, Any]] = crash.run(
        list(kills),
        kills=kills,
        sizes=crash.Sizes.tiny(),
        seed=16,
        redis_url=redis_url,
        folder=tmp_path,
        emit=lambda line: None,
        measure_runs=1,
    )
    *workloads, total = lines
    assert [line["bench"] for line in workloads] == [f"crash.{op}" for op in kills]
    for line in workloads:
        op = line["bench"]
        assert line["kills"] == kills[op[6:]], op
        assert (op, line["corrupt_states"], line["corrupt_examples"]) == (op, 0, [])
        assert line["reruns_succeeded"] == line["kills"], op
    assert total["kills"] == sum(kills.values()) and total["corrupt_states"] == 0
    return workloads


def test_killed_writers_leave_no_corrupt_state_and_their_reruns_succeed(crash: ModuleType, tmp_path: Path) -> None:
    kills = {"ingest": 1, "train": 2, "register": 1, "alias": 1, "batch": 2, "log": 1, "materialize.sqlite": 3}

    workloads = _kill_and_check(crash, tmp_path, kills)

    by_op = {line["bench"][6:]: line for line in workloads}
    assert by_op["batch"]["checks"]["resumed_output_equal"] is True
    assert by_op["materialize.sqlite"]["checks"]["concurrent_reads"] > 0
    assert by_op["materialize.sqlite"]["checks"]["no_hidden_generation_left"] is True


@pytest.mark.redis
def test_killed_materializations_into_redis_keep_serving_the_old_values_or_the_new(
    crash: ModuleType, tmp_path: Path, redis_server: str
) -> None:
    [line] = _kill_and_check(crash, tmp_path, {"materialize.redis": 2}, redis_url=redis_server)

    assert line["checks"]["concurrent_reads"] > 0
    assert line["checks"]["no_hidden_generation_left"] is True
