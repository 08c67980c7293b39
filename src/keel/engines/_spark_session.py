"""The Spark session of this process: started once, on first use, with the settings Keel's results depend on.

Spark allows one ``SparkContext`` per process, so every :class:`~keel.engines.spark.SparkEngine` of the process
shares one session (a session already started by the user is reused, not replaced). Whatever started it, four
runtime settings are always applied, because results depend on them:

- ``spark.sql.session.timeZone=UTC``: timestamps are instants, rendered and bucketed (``month=YYYY-MM``) in UTC;
- ``spark.sql.parquet.outputTimestampType=TIMESTAMP_MICROS``: Keel's Parquet timestamps are microseconds, which
  every reader (pyarrow, DuckDB, Spark itself) reads back as ``timestamp[us, tz=UTC]``;
- ``spark.sql.execution.arrow.pyspark.enabled=true``: tables cross between Python and the JVM as Arrow;
- ``spark.sql.legacy.parquet.nanosAsLong=true``: Parquet nanosecond timestamps (pandas' default) are read as
  counts of nanoseconds, which the engine converts, instead of failing the read.

A local JVM (``local[*]``, ``spark://host:port``) is started with its own output sent to a log file in the
temporary folder (:func:`log_path`): the JVM prints start-up notes on its console that no logging setting
silences (``WARNING: Using incubator modules``), and a library must not write on its caller's terminal.
With a local master, Spark's Python workers are given this process's ``sys.path`` (:func:`_share_sys_path`).
``sc://host:port`` connects to a Spark Connect server instead; nothing starts locally.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from keel.errors import BackendError, MissingExtraError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

#: Settings Keel's results depend on: applied to every session the engine uses, even one it did not start.
REQUIRED_CONF: dict[str, str] = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    # Spark has no nanosecond timestamps and refuses the Parquet files pandas writes by default; read as counts
    # of nanoseconds, the engine converts them itself (rounding event times up, as the local engine does).
    "spark.sql.legacy.parquet.nanosAsLong": "true",
}

#: Settings of a session Keel starts, unless the configuration says otherwise.
DEFAULT_CONF: dict[str, str] = {
    "spark.ui.showConsoleProgress": "false",  # the progress bar is written on the console
}

#: Settings that make Keel's jobs faster, applied to any session the engine uses where they still have Spark's
#: default value (``None``: unset): a setting the user chose is kept.
TUNING_CONF: dict[str, tuple[str, str]] = {
    # A version's month partitions are written by each task with a file open per month it holds, instead of
    # sorting its rows by month first (a task holds few months; beyond 8, Spark sorts as before).
    "spark.sql.maxConcurrentOutputFileWriters": ("0", "8"),
}

#: The JVM's log: errors only, on its console (which is the log file, see the module docstring).
LOG4J2_PROPERTIES = """\
rootLogger.level = error
rootLogger.appenderRef.console.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex
"""

_lock = threading.Lock()
_session: SparkSession | None = None


def _folder() -> str:
    """This user's folder of Spark logs in the temporary folder."""
    folder = os.path.join(tempfile.gettempdir(), f"keel-spark-{os.getuid() if hasattr(os, 'getuid') else 'user'}")
    os.makedirs(folder, exist_ok=True)
    return folder


def log_path() -> str:
    """Where the JVM this process starts writes its console output and log."""
    return os.path.join(_folder(), f"{os.getpid()}.log")


@contextlib.contextmanager
def quiet_pandas_warning() -> Iterator[None]:
    """Silence PySpark's warning that it does not fully support pandas 3 yet.

    PySpark raises it when imported and again on every Arrow function (``mapInArrow``). Keel moves data
    between Python and Spark as Arrow tables, never as pandas frames, so the warning does not concern it.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*does not yet fully support pandas", category=FutureWarning)
        yield


def import_pyspark() -> None:
    """Import PySpark, or raise :class:`~keel.errors.MissingExtraError` naming the ``spark`` extra."""
    try:
        with quiet_pandas_warning():
            import pyspark.sql
            import pyspark.sql.functions

            with contextlib.suppress(
                ImportError
            ):  # where the warning is raised (else at first use); not in every build
                import pyspark.testing.utils  # noqa: F401
    except ImportError as exc:
        raise MissingExtraError("pyspark", "spark", "the Spark engine (engine: spark)") from exc
    _quiet_query_context_loggers()


def _quiet_query_context_loggers() -> None:
    """PySpark logs every analysis error it raises, with the JVM's stack trace, on the console (ERROR, JSON);
    the engine raises it as a Keel error that says the same, so the log line is noise on the user's terminal."""
    from pyspark.logger import PySparkLogger

    for name in ("DataFrameQueryContextLogger", "SQLQueryContextLogger"):
        PySparkLogger.getLogger(name).setLevel(logging.CRITICAL)


def spark_session(
    master: str = "local[*]", app_name: str = "keel", conf: Mapping[str, str] | None = None
) -> SparkSession:
    """The process's Spark session: the active one if there is one, else a new one started with these settings.

    Args:
        master: ``local[*]``, ``local[N]``, ``spark://host:port`` (a standalone cluster) or ``sc://host:port``
            (Spark Connect).
        app_name: the application's name in Spark's UI and logs.
        conf: Spark settings (``spark.executor.memory`` ...), applied when the session starts; the settings of
            :data:`REQUIRED_CONF` win over them.

    Raises:
        MissingExtraError: PySpark is not installed.
        BackendError: no Java runtime to start Spark with, or Spark failed to start (the message names the log).
    """
    import_pyspark()
    global _session
    with _lock:
        session = _session if _session is not None and _running(_session) else _existing()
        if session is None:
            session = _start(master, app_name, dict(conf or {}))
        for key, value in REQUIRED_CONF.items():
            if session.conf.get(key, None) != value:
                session.conf.set(key, value)
        for key, (default, value) in TUNING_CONF.items():
            if session.conf.get(key, None) in (None, default):
                session.conf.set(key, value)
        _share_sys_path(session)
        _session = session
        return session


def _running(session: SparkSession) -> bool:
    stopped = getattr(session, "is_stopped", None)  # Spark Connect
    if stopped is not None:
        return not stopped
    return getattr(getattr(session, "_sc", None), "_jsc", None) is not None


def _existing() -> SparkSession | None:
    """A session the user started in this process (Spark allows one context per process)."""
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    if SparkContext._active_spark_context is None:
        return None
    return SparkSession.builder.getOrCreate()


def _start(master: str, app_name: str, conf: dict[str, str]) -> SparkSession:
    from pyspark.sql import SparkSession

    settings = {**DEFAULT_CONF, **conf, **REQUIRED_CONF}
    if master.startswith("sc://"):
        builder = SparkSession.builder.remote(master).appName(app_name)
        for key, value in settings.items():
            builder = builder.config(key, value)
        try:
            return builder.getOrCreate()
        except Exception as exc:
            raise BackendError(f"cannot connect to the Spark Connect server {master!r}: {exc}") from exc
    _check_java()
    # Spark's Python workers otherwise run whatever ``python3`` is on the PATH, which may lack Keel or pyarrow;
    # and a host name that resolves to a remote address makes a local Spark wait on network timeouts.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    logfile = log_path()
    properties = os.path.join(_folder(), f"log4j2-{os.getpid()}.properties")
    with open(properties, "w") as f:
        f.write(LOG4J2_PROPERTIES)
    option = f"-Dlog4j2.configurationFile=file:{properties}"
    settings["spark.driver.extraJavaOptions"] = " ".join(
        part for part in (settings.get("spark.driver.extraJavaOptions", ""), option) if part
    )
    from pyspark import SparkConf, SparkContext
    from pyspark.java_gateway import launch_gateway

    spark_conf = SparkConf().setMaster(master).setAppName(app_name).setAll(list(settings.items()))
    try:
        with open(logfile, "ab") as out:  # the JVM keeps its own copy of the file descriptor
            gateway = launch_gateway(spark_conf, popen_kwargs={"stdout": out, "stderr": out})  # type: ignore[no-untyped-call]
        context = SparkContext(conf=spark_conf, gateway=gateway)
    except Exception as exc:
        raise BackendError(
            f"Spark failed to start (master {master!r}): {exc}; Spark 4 needs Java 17 or later; "
            f"the JVM's output is in {logfile}"
        ) from exc
    context.setLogLevel("ERROR")
    log.debug("Spark %s started (master %s); its log is %s", context.version, master, logfile)
    return SparkSession(context)


def _share_sys_path(session: SparkSession) -> None:
    """Give a local session's Python workers this process's ``sys.path`` (before what they had), so that a worker
    unpickles what the driver pickled by reference: Keel itself when it runs from a source folder, a sink or a
    function of the caller's own modules.

    Spark hands a context's ``environment`` to every Python function when the function is planned, so this
    holds whoever started the session, for the jobs planned from now on.
    """
    context = getattr(session, "_sc", None)  # None on Spark Connect: its workers are the server's
    if context is None or not str(context.master).startswith("local"):
        return
    paths = [os.getcwd() if p == "" else p for p in sys.path if p == "" or os.path.exists(p)]
    had = context.environment.get("PYTHONPATH", "")
    wanted = os.pathsep.join(dict.fromkeys([*paths, *filter(None, had.split(os.pathsep))]))
    if wanted != had:  # unchanged, it keeps the workers Spark already started for it
        context.environment["PYTHONPATH"] = wanted


def _check_java() -> None:
    home = os.environ.get("JAVA_HOME")
    if home and os.path.exists(os.path.join(home, "bin", "java")):
        return
    if shutil.which("java"):
        return
    raise BackendError(
        "the Spark engine needs a Java runtime (Java 17 or later) and none was found: install one "
        "(e.g. apt-get install openjdk-17-jre-headless) and put it on the PATH or set JAVA_HOME"
    )


def stop_session() -> None:
    """Stop the session Keel uses, if any (tests; a long-lived process keeps it)."""
    global _session
    with _lock:
        if _session is not None:
            _session.stop()
        _session = None
