"""Private Redis and PostgreSQL servers that a test may stop, hang (SIGSTOP) and restart (a plain module on
``sys.path``, like ``_training_fixtures``).

The shared servers on 6379 and 5432 serve other test runs at the same time: outage tests never touch them.
Each server here runs on a free port of its own, with its data in a temporary folder, and is torn down by
:meth:`close` (a hung one is resumed first so that it can exit). The ``private_redis`` and ``private_postgres``
fixtures of ``tests/conftest.py`` start them, or skip when the server's programs are not installed.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
PG_BIN = Path(os.environ.get("KEEL_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
#: The OS user PostgreSQL runs as when the tests run as root (it refuses to run as root).
PG_USER = "postgres"


class ServiceUnavailable(Exception):
    """The server's programs are not installed here (the message says which and what to do)."""


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def _wait_for_port(port: int, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server on port {port} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


class PrivateRedis:
    """A ``redis-server`` of the test's own on a free port: :meth:`stop`, :meth:`hang`, :meth:`resume`,
    :meth:`start` again on the same port. Every write is appended to a file and synced, so a restarted server
    has the data it had when it stopped."""

    def __init__(self) -> None:
        if not Path(REDIS_SERVER).exists():
            raise ServiceUnavailable(f"{REDIS_SERVER} not found; install Redis to run the outage tests")
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="keel-redis-"))
        self.process: subprocess.Popen[bytes] | None = None
        self.hung = False

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                REDIS_SERVER,
                *("--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir), "--save", ""),
                *("--appendonly", "yes", "--appendfsync", "always"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for_port(self.port, 10, self.process)

    def stop(self) -> None:
        """Stop it (SIGKILL: a crash; its connections are closed by the system)."""
        if self.process is not None:
            self.resume()
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def hang(self) -> None:
        """Freeze it (SIGSTOP): the port still accepts connections, nothing answers."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)
        self.hung = True

    def resume(self) -> None:
        if self.process is not None and self.hung:
            self.process.send_signal(signal.SIGCONT)
        self.hung = False

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PrivatePostgres:
    """A PostgreSQL cluster of the test's own (``initdb`` in a temporary folder, run as the ``postgres`` OS user
    when the tests run as root), on a free port; :meth:`stop` and :meth:`start` restart it with its data."""

    def __init__(self) -> None:
        for tool in ("initdb", "pg_ctl"):
            if not (PG_BIN / tool).exists():
                raise ServiceUnavailable(f"{PG_BIN / tool} not found (KEEL_TEST_PG_BIN names PostgreSQL's bin folder)")
        self._as_user: list[str] = []
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            import pwd

            if shutil.which("runuser") is None:
                raise ServiceUnavailable("running as root without runuser to start the server as 'postgres'")
            try:
                pwd.getpwnam(PG_USER)
            except KeyError:
                raise ServiceUnavailable(f"running as root and no {PG_USER!r} user to run the server as") from None
            self._as_user = ["runuser", "-u", PG_USER, "--"]
        self.root = Path(tempfile.mkdtemp(prefix="keel-pg-"))
        if self._as_user:
            shutil.chown(self.root, PG_USER)
        self.data = self.root / "data"
        self.port = free_port()
        self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str) -> None:
        done = subprocess.run([*self._as_user, *command], capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {done.stdout}{done.stderr}")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.root / "log")
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", log, "-w", "start")
        _wait_for_port(self.port, 10)

    def stop(self) -> None:
        """A fast shutdown: every connection is terminated."""
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def close(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
