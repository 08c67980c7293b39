"""A real standalone Spark cluster for tests: one master and one worker, started from the PySpark install.

:func:`start_cluster` launches ``spark-class org.apache.spark.deploy.master.Master`` and
``…deploy.worker.Worker spark://…`` as two child processes (each the leader of its own process group, so that
the executors and Python workers the worker starts go down with it), waits until the master reports the worker
alive, and returns a :class:`SparkCluster` whose :meth:`~SparkCluster.stop` ends everything. Only 127.0.0.1 is
bound or contacted: ``SPARK_LOCAL_IP`` and ``--host`` pin every listener there, and the readiness poll bypasses
any HTTP proxy of the environment.

The process management lives here, apart from the fixture (``tests/e2e/conftest.py``), so that a script or a
benchmark can start the same cluster. A plain module on ``sys.path`` like ``_training_fixtures``.

Example:
    >>> with start_cluster(tmp_path) as cluster:  # doctest: +SKIP
    ...     subprocess.run([sys.executable, "job.py", cluster.master_url], check=True)
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

HOST = "127.0.0.1"
#: Heap of the master's and the worker's own JVMs (Spark's default is 1g each; they only keep bookkeeping).
DAEMON_MEMORY = "512m"
#: How long a cold JVM pair may take to come up and register on a busy 2-core machine.
START_TIMEOUT_S = 120.0
#: How long a process group gets to exit after SIGTERM before it is killed.
STOP_TIMEOUT_S = 15.0
LOG_TAIL_LINES = 40


class ClusterUnavailable(RuntimeError):
    """What a cluster needs is missing on this machine (PySpark, a ``java`` binary, an executable
    ``spark-class``): the caller skips, or fails where services are required."""


class ClusterStartError(RuntimeError):
    """The cluster's processes started but did not become a working cluster in time (the message holds the
    log tails)."""


def spark_home() -> Path:
    """The PySpark package folder, which holds ``bin/spark-class`` and ``jars/``.

    Raises:
        ClusterUnavailable: PySpark is not installed, or its ``bin/spark-class`` is absent or not executable.
    """
    try:
        import pyspark
    except ImportError as exc:
        raise ClusterUnavailable(f"pyspark is not installed ({exc}); `pip install keel[spark]` installs it") from exc
    home = Path(pyspark.__file__).resolve().parent
    launcher = home / "bin" / "spark-class"
    if not launcher.is_file():
        raise ClusterUnavailable(f"{launcher} does not exist: this PySpark install cannot start a cluster")
    if not os.access(launcher, os.X_OK):
        raise ClusterUnavailable(f"{launcher} is not executable (chmod +x it, or reinstall pyspark)")
    return home


def java_binary() -> str:
    """The ``java`` that ``spark-class`` will run: ``$JAVA_HOME/bin/java``, else the one on ``PATH``.

    Raises:
        ClusterUnavailable: there is none.
    """
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if os.access(candidate, os.X_OK):
            return str(candidate)
        raise ClusterUnavailable(f"JAVA_HOME={java_home} holds no executable bin/java")
    found = shutil.which("java")
    if found is None:
        raise ClusterUnavailable("no `java` on PATH and JAVA_HOME is not set; Spark needs Java 17 or 21")
    return found


def free_port() -> int:
    """A TCP port of 127.0.0.1 that is free now (the OS's choice; released before it is used)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class SparkCluster:
    """A running standalone cluster: its URLs, its folders and its two process groups.

    Attributes:
        master_url: ``spark://127.0.0.1:<port>``, what ``SparkSession.builder.master`` takes.
        webui_url: the master's web UI (``/json/`` gives its state).
        work_dir: the worker's folder (``SPARK_WORKER_DIR``): executors' stdout/stderr per application.
        log_dir: the master's and the worker's logs (``master.log``, ``worker.log``).
        env: the environment the daemons run with; a driver should run with the same (``PYSPARK_PYTHON``,
            ``SPARK_LOCAL_IP``, ``SPARK_HOME`` ...).
        processes: ``master`` and ``worker``, each the leader of its own process group.
    """

    master_url: str
    webui_url: str
    work_dir: Path
    log_dir: Path
    env: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def state(self) -> dict[str, Any]:
        """The master's state as its web UI gives it (``aliveworkers``, ``workers``, ``activeapps`` ...)."""
        return _get_json(f"{self.webui_url}/json/")

    def log_tails(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last ``lines`` of the master's and worker's logs and of every executor's stderr, for messages."""
        parts = []
        files = [self.log_dir / f"{name}.log" for name in self.processes]
        files += sorted(self.work_dir.glob("*/*/stderr"))
        for path in files:
            parts.append(f"--- {path} (last {lines} lines) ---\n{_tail(path, lines)}")
        return "\n".join(parts)

    def stop(self) -> None:
        """End the worker then the master, each with its whole process group (executors, Python workers).

        SIGTERM first (the worker's shutdown hook kills its executors), SIGKILL for whatever is left after
        :data:`STOP_TIMEOUT_S`. Safe to call twice.
        """
        for name in ("worker", "master"):
            proc = self.processes.get(name)
            if proc is not None:
                _end_group(proc)

    def __enter__(self) -> SparkCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def cluster_environment(home: Path, root: Path) -> dict[str, str]:
    """The environment of the daemons (and of a driver that talks to them): everything on 127.0.0.1, the
    executors' Python workers on this interpreter, private folders, no developer's Spark configuration."""
    conf_dir = root / "conf"  # empty: a developer's spark-defaults.conf or spark-env.sh never applies
    work_dir, log_dir = root / "work", root / "logs"
    for folder in (conf_dir, work_dir, log_dir):
        folder.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(
        {
            "SPARK_HOME": str(home),
            "SPARK_CONF_DIR": str(conf_dir),
            "SPARK_LOCAL_IP": HOST,
            "SPARK_MASTER_HOST": HOST,
            "SPARK_PUBLIC_DNS": HOST,
            # Without it, executors start their Python workers with the system's `python3`, which has
            # neither pyspark's dependencies (pandas, pyarrow) nor Keel.
            "PYSPARK_PYTHON": sys.executable,
            "PYSPARK_DRIVER_PYTHON": sys.executable,
            "SPARK_WORKER_DIR": str(work_dir),
            "SPARK_LOG_DIR": str(log_dir),
            "SPARK_NO_DAEMONIZE": "1",
            "SPARK_DAEMON_MEMORY": DAEMON_MEMORY,
            # Spark 4 masters open a REST submission server on the fixed port 6066 by default: two clusters
            # (two test runs) would contend for it, and nothing here submits over REST.
            "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false",
        }
    )
    return env


def start_cluster(
    root: Path, *, cores: int = 2, memory: str = "2g", timeout_s: float = START_TIMEOUT_S
) -> SparkCluster:
    """Start a master and one worker with ``cores`` and ``memory`` under the folder ``root``; return when the
    worker has registered with the master.

    Raises:
        ClusterUnavailable: PySpark or Java is missing.
        ClusterStartError: a process exited, or the worker was not alive within ``timeout_s``; the message holds
            the log tails. Whatever was started is stopped before it is raised.
    """
    home = spark_home()
    java_binary()
    root.mkdir(parents=True, exist_ok=True)
    env = cluster_environment(home, root)
    master_port, master_ui, worker_ui = free_port(), free_port(), free_port()
    cluster = SparkCluster(
        master_url=f"spark://{HOST}:{master_port}",
        webui_url=f"http://{HOST}:{master_ui}",
        work_dir=Path(env["SPARK_WORKER_DIR"]),
        log_dir=Path(env["SPARK_LOG_DIR"]),
        env=env,
    )
    launcher = str(home / "bin" / "spark-class")
    try:
        cluster.processes["master"] = _spawn(
            [
                launcher,
                "org.apache.spark.deploy.master.Master",
                "--host",
                HOST,
                "--port",
                str(master_port),
                "--webui-port",
                str(master_ui),
            ],
            env,
            cluster.log_dir / "master.log",
        )
        cluster.processes["worker"] = _spawn(
            [
                launcher,
                "org.apache.spark.deploy.worker.Worker",
                cluster.master_url,
                "--host",
                HOST,
                "--cores",
                str(cores),
                "--memory",
                memory,
                "--webui-port",
                str(worker_ui),
                "--work-dir",
                str(cluster.work_dir),
            ],
            env,
            cluster.log_dir / "worker.log",
        )
        _wait_for_worker(cluster, timeout_s)
    except BaseException:
        cluster.stop()
        raise
    atexit.register(cluster.stop)  # an interpreter that exits without tearing its fixtures down still stops it
    return cluster


def _spawn(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    # A new session makes the process the leader of its own group: killpg then reaches the JVM spark-class
    # execs, the executor JVMs the worker forks and their Python workers, and nothing of the test run's.
    out: IO[bytes]
    with log.open("ab") as out:
        return subprocess.Popen(
            cmd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )


def _die_with_parent() -> None:
    """In the child before exec (Linux): have the kernel send SIGTERM when the process that started the
    cluster dies, even by SIGKILL, where no teardown or atexit runs; the JVM then stops its executors."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _wait_for_worker(cluster: SparkCluster, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last_error = "no answer yet"
    while time.monotonic() < deadline:
        for name, proc in cluster.processes.items():
            if proc.poll() is not None:
                raise ClusterStartError(
                    f"the Spark {name} exited with code {proc.returncode} before the cluster was up\n"
                    f"{cluster.log_tails()}"
                )
        try:
            state = cluster.state()
            if int(state.get("aliveworkers", 0)) >= 1:
                return
            last_error = f"master answered, aliveworkers={state.get('aliveworkers')}"
        except (OSError, ValueError) as exc:  # not listening yet, or half-started
            last_error = f"{type(exc).__name__}: {exc}"
        time.sleep(0.5)
    raise ClusterStartError(
        f"no Spark worker registered with {cluster.master_url} within {timeout_s:.0f}s "
        f"(last poll of {cluster.webui_url}/json/: {last_error})\n{cluster.log_tails()}"
    )


def _get_json(url: str) -> dict[str, Any]:
    # An empty ProxyHandler: a developer's http_proxy must not route a 127.0.0.1 request elsewhere.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=5) as response:
        data: dict[str, Any] = json.loads(response.read().decode())
    return data


def _end_group(proc: subprocess.Popen[bytes]) -> None:
    pgid = proc.pid  # the leader of its own session: its pid is the group's id, even after it exits
    for sig, wait_s in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.2)  # reaps the leader, our child
            if proc.poll() is not None and not _group_alive(pgid):
                return


def _group_alive(pgid: int) -> bool:
    """Whether a live (not zombie) process is left in the group: executors are reparented when the worker
    exits, and a zombie nobody has reaped yet still answers a signal."""
    proc_fs = Path("/proc")
    if not proc_fs.is_dir():  # not Linux: a signal 0 says whether any member is left
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for stat in proc_fs.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended while we looked
        state, group = fields[0], int(fields[2])
        if group == pgid and state not in ("Z", "X"):
            return True
    return False


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(unreadable: {exc})"
    return "\n".join(text.splitlines()[-lines:])
