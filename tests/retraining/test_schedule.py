"""``keel monitor --every``: checks on a fixed period, failures survive, SIGTERM stops cleanly."""

from __future__ import annotations

import os
import signal
import threading
import time
from datetime import timedelta

import pytest

from keel.errors import ValidationError
from keel.retraining import Schedule


def test_runs_until_max_runs_and_keeps_the_last_result() -> None:
    calls: list[float] = []

    def check() -> int:
        calls.append(time.monotonic())
        return len(calls)

    schedule = Schedule(timedelta(milliseconds=20), check, max_runs=3)
    assert schedule.run() == 3
    assert schedule.last == 3 and schedule.failures == 0
    assert calls[2] - calls[0] >= 0.035  # it waited between checks


def test_a_failing_check_is_counted_and_the_schedule_goes_on() -> None:
    outcomes = iter([RuntimeError("catalog down"), None, None])

    def check() -> None:
        outcome = next(outcomes)
        if outcome is not None:
            raise outcome

    schedule = Schedule(timedelta(milliseconds=5), check, max_runs=3)
    assert schedule.run() == 3
    assert schedule.failures == 1


def test_sigterm_stops_after_the_current_check_without_waiting_for_the_next_tick() -> None:
    finished: list[bool] = []

    def check() -> None:
        time.sleep(0.2)  # SIGTERM arrives during this check
        finished.append(True)

    schedule = Schedule(timedelta(hours=1), check)
    threading.Timer(0.05, os.kill, args=(os.getpid(), signal.SIGTERM)).start()
    previous = signal.getsignal(signal.SIGTERM)
    started = time.monotonic()
    assert schedule.run() == 1
    assert finished == [True]  # the check in progress completed
    assert time.monotonic() - started < 30  # and the hour-long wait was skipped
    assert signal.getsignal(signal.SIGTERM) is previous  # handlers restored


def test_a_period_must_be_positive() -> None:
    for period in (timedelta(0), timedelta(seconds=-1)):
        with pytest.raises(ValidationError, match="positive") as caught:
            Schedule(period, lambda: None)
        assert caught.value.field == "every"
