"""Which process owns a piece of unfinished work, and whether that process is certainly gone.

Work that outlives a crash — a training run recorded as ``running``, an online store generation being written —
records its owner: the host, the process id and what tells that process apart from a later one given the same id
(its start time since boot, the boot it belongs to, its pid namespace). Another process may then settle the work
once the owner is *certainly* dead: on the same machine and pid namespace, no live process has that id and start
time (a killed process waiting to be reaped counts as dead); on the same host name and machine id, the machine
has restarted since. Anything else (another host, another container's namespace, a platform without ``/proc``
giving less) is "not known to be dead", and the work is left alone.

Example:
    >>> me = ProcessOwner.current()
    >>> me.is_dead()
    False
    >>> ProcessOwner.from_dict(me.to_dict()) == me
    True
"""

from __future__ import annotations

import os
import socket
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["ProcessOwner"]


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read().strip() or None
    except OSError:
        return None


def _stat(pid: int) -> tuple[str, int] | None:
    """``(state, start time in clock ticks since boot)`` of a process from ``/proc``, ``None`` without it."""
    text = _read(f"/proc/{pid}/stat")
    if text is None:
        return None
    # The command name (field 2) is in parentheses and may hold spaces and parentheses itself.
    fields = text[text.rfind(")") + 2 :].split()
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None


def _namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


@dataclass(frozen=True)
class ProcessOwner:
    """The identity of one process, as recorded beside the work it owns.

    Attributes:
        host: the host name.
        pid: the process id.
        started: its start time in clock ticks since boot (Linux), ``None`` elsewhere.
        boot: the kernel's boot id (Linux), ``None`` elsewhere.
        machine: the machine id (``/etc/machine-id``), ``None`` when absent.
        namespace: its pid namespace (Linux), ``None`` elsewhere.
    """

    host: str
    pid: int
    started: int | None = None
    boot: str | None = None
    machine: str | None = None
    namespace: str | None = None

    @classmethod
    def current(cls) -> ProcessOwner:
        """This process."""
        pid = os.getpid()
        stat = _stat(pid)
        return cls(
            host=socket.gethostname(),
            pid=pid,
            started=None if stat is None else stat[1],
            boot=_read("/proc/sys/kernel/random/boot_id"),
            machine=_read("/etc/machine-id"),
            namespace=_namespace(),
        )

    def to_dict(self) -> dict[str, Any]:
        """The identity as JSON-ready values (what catalogs and stores keep)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> ProcessOwner | None:
        """The identity :meth:`to_dict` gave, or ``None`` for anything else (an older record, damage)."""
        if not isinstance(data, dict):
            return None
        host, pid = data.get("host"), data.get("pid")
        if not isinstance(host, str) or type(pid) is not int:
            return None
        started = data.get("started")

        def text(name: str) -> str | None:
            value = data.get(name)
            return value if isinstance(value, str) else None

        return cls(
            host,
            pid,
            started if type(started) is int else None,
            text("boot"),
            text("machine"),
            text("namespace"),
        )

    def describe(self) -> str:
        """How messages name the process: ``pid 4242 on host-1``."""
        return f"pid {self.pid} on {self.host}"

    def is_dead(self) -> bool:
        """Whether this process has certainly ended (see the module's docstring); ``False`` when unsure."""
        me = ProcessOwner.current()
        if self.host != me.host:
            return False
        if self.boot != me.boot:
            # Another boot of the same machine: everything that ran before the restart is gone.
            return bool(self.boot and me.boot and self.machine and self.machine == me.machine)
        if self.namespace != me.namespace:
            return False  # another container's processes: their ids mean nothing here
        if self.pid == me.pid:
            return self.started != me.started
        stat = _stat(self.pid)
        if stat is not None:
            state, started = stat
            return state in ("Z", "X") or (self.started is not None and started != self.started)
        if os.path.isdir("/proc/self"):
            return True  # /proc works and has no such process
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except OSError:  # exists, owned by someone else
            return False
        return False
