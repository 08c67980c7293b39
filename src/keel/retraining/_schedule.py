"""Run a check on a fixed period until stopped: ``keel monitor --every 1h``.

Ticks are anchored to the start, so a slow check does not make the schedule drift; a tick missed while a
check ran long is skipped, not run twice. SIGTERM and SIGINT ask the loop to stop: a check in progress
finishes (its report and audit events are written whole), then the loop returns instead of waiting for the
next tick.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from types import FrameType
from typing import Any

from keel.errors import ValidationError

log = logging.getLogger(__name__)

__all__ = ["Schedule"]


class Schedule:
    """Call ``check`` now and then every ``every`` until :meth:`stop` (or SIGTERM/SIGINT) is received.

    Args:
        every: the period.
        check: one check; its return value is kept as :attr:`last` (an exception is logged, counted in
            :attr:`failures`, and the schedule goes on).
        max_runs: stop after this many checks (None: never).

    Raises:
        ValidationError: ``every`` is not a positive duration.
    """

    def __init__(self, every: timedelta, check: Callable[[], Any], *, max_runs: int | None = None) -> None:
        if not isinstance(every, timedelta) or every <= timedelta(0):
            raise ValidationError(f"the period must be a positive duration, got {every!r}", field="every")
        self.every = every.total_seconds()
        self.check = check
        self.max_runs = max_runs
        self.runs = 0
        self.failures = 0
        self.last: Any = None
        self._stop = threading.Event()

    def stop(self, *_args: object) -> None:
        """Ask the loop to end after the current check (safe from a signal handler)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        log.warning("received %s: stopping after the current check", signal.Signals(signum).name)
        self.stop()

    def run(self) -> int:
        """Loop until stopped; returns how many checks ran. Installs signal handlers in the main thread."""
        previous: dict[signal.Signals, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, self._handle)
        try:
            started = time.monotonic()
            while not self._stop.is_set():
                try:
                    self.last = self.check()
                except Exception:
                    self.failures += 1
                    log.exception("scheduled check failed; the schedule goes on")
                self.runs += 1
                if self.max_runs is not None and self.runs >= self.max_runs:
                    break
                elapsed = time.monotonic() - started
                next_tick = (int(elapsed // self.every) + 1) * self.every  # skip ticks missed by a long check
                self._stop.wait(next_tick - elapsed)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return self.runs
