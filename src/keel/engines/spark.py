"""The Spark engine: every engine operation as Spark jobs, with the local engine's results.

Data stays in Spark: sources and versions are read by Spark's executors, results are written by them, and the
driver sees row counts, statistics and digests — never the rows (an in-memory entity table of a notebook
comes in through Arrow and its join goes back through Arrow; ``latest_per_entity`` streams bounded batches).

How the local engine's definitions are kept (see :mod:`keel.engines._base`):

- **Sequence numbers.** Spark has no row number that survives its readers, so :data:`SEQ` is built from where
  each row was read: Parquet rows by ``_metadata.row_index`` within their file; CSV rows by their position
  (``monotonically_increasing_id``) within their input split; rows of a Spark frame by their position within
  their partition. Parquet files whose footers the driver can read (up to a few hundred) are read one by one,
  each row numbered by its file's offset (the counts of the files before it) plus its row index: no pass is
  needed. Otherwise one cheap pass counts the rows of each file, split or partition; the driver orders them
  (files in the order given, a folder's files by path, splits by offset) and adds up the counts; a row's number
  is its unit's offset plus its position in it. Exact, and nothing but a small table of counts is collected.
- **Normalisation** is compiled to Spark SQL by :mod:`keel.engines._spark_normalise`: the checks, their order and
  their messages are those of the local engine's (:mod:`keel.engines._normalise`).
- **Ingest** reads the source once: the normalised rows are written, and a row failing a check fails the write
  (a pass of its own then finds the first such row, for the local engine's error, and what was written is
  removed); the digest, duplicates and statistics are then jobs over the written files, run side by side.
- **Ties** on event time go to the latest created time (a missing one loses), then to the largest sequence
  number. The point-in-time join takes, per entity row, the latest row with ``max_by`` over the rows it meets:
  an in-memory entity table is broadcast to the feature rows; an entity table at rest meets them in a join on
  the keys within the TTL; without a TTL, an as-of window over entity and feature rows together does the work
  without pairing rows at all. The latest value per entity is one aggregate (``max_by``).
- **The digest** (:mod:`keel.engines._digest`) and the **statistics** (:mod:`keel.engines._statistics`) are Spark
  SQL aggregates (:mod:`keel.engines._spark_statistics`): the digest is built on Spark's ``xxhash64``; counts,
  bounds and moments are exact; quantiles of many rows come from a uniform sample, with a stated bound.

Spark's ``AnalysisException`` for an absent column, and casts that fail, are
:class:`~keel.errors.ValidationError`; everything else (a missing path, a file that is not Parquet, an executor
lost) is :class:`~keel.errors.BackendError` (see :class:`~keel.engines.EngineBase`).
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import os
import shutil
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import reduce
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from keel.engines._base import (
    PARTITION_ROWS,
    ROW,
    SEQ,
    TS,
    Data,
    EngineBase,
    EngineFrame,
    Files,
    Ingested,
    LatestSink,
    Normalisation,
    PackageSource,
    PointInTimeSource,
    Scoring,
    Written,
    WrittenFile,
)
from keel.engines._normalise import NaiveTimestampWarning
from keel.engines._spark_normalise import Plan, compile_rules
from keel.engines._spark_session import quiet_pandas_warning
from keel.engines._spark_statistics import ROWS, hexdigest, statistics_jobs, statistics_values
from keel.errors import BackendError, KeelError, ValidationError

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.types import DataType

    from keel.engines._conditions import Condition, Counted
    from keel.engines._profiles import ColumnSummary
    from keel.engines._windows import Window, WindowCounts

#: A TTL at least this long keeps every value any timestamp (years 1 to 9999) can see: it is no TTL at all.
UNBOUNDED_TTL = timedelta(days=366 * 10_000)
#: The message a task fails with when a row fails a normalisation check (the error is then found and raised).
_CHECK_FAILED = "keel: a row failed a normalisation check"
#: Parquet sources of at most this many files are read file by file, their rows placed by their footers' counts.
_UNION_FILES = 256
#: A version's duplicates are counted month by month, one task a month, when no month has more rows than this.
_MONTH_TASK_ROWS = 50_000_000

#: Spark's error conditions that mean the data does not fit the query (see :class:`~keel.engines.EngineBase`).
VALIDATION_CONDITIONS = frozenset(
    {
        "UNRESOLVED_COLUMN",
        "UNRESOLVED_FIELD",
        "FIELD_NOT_FOUND",
        "DATATYPE_MISMATCH",
        "CAST_INVALID_INPUT",
        "CAST_OVERFLOW",
        "INCOMPATIBLE_COLUMN_TYPE",
        "USER_RAISED_EXCEPTION",
    }
)

log = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_WRITE_OPTIONS = {
    "mapreduce.fileoutputcommitter.marksuccessfuljobs": "false",  # no _SUCCESS file
    # Every sequence number is distinct: a dictionary can never encode it, and trying costs the write time.
    f"parquet.enable.dictionary#{SEQ}": "false",
}
# Internal columns; user columns never start with ``__keel``.
_UNIT, _UNIT_PART, _POSITION = "__keel_unit", "__keel_unit_part", "__keel_position"


def _col(name: str) -> Column:
    """A column by its exact name (dots and backticks are part of the name, not a path)."""
    from pyspark.sql import functions as F

    return F.col(_quoted(name))


def _quoted(name: str) -> str:
    """A column name quoted for Spark SQL text."""
    return "`" + name.replace("`", "``") + "`"


def _micros(value: datetime) -> int:
    """Microseconds since the epoch of ``value`` (naive: taken as UTC)."""
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value
    return (value - _EPOCH) // timedelta(microseconds=1)


def _timestamp(micros: int) -> Column:
    from pyspark.sql import functions as F

    return F.timestamp_micros(F.lit(micros))


def _datetime(micros: int | None) -> datetime | None:
    return None if micros is None else _EPOCH + timedelta(microseconds=int(micros))


@dataclass
class _Source:
    """A source to ingest, with the columns that place each row in source order.

    Attributes:
        frame: the source's columns plus, when ``units``, ``__keel_unit``/``__keel_unit_part`` (the file,
            split or partition a row was read from) and ``__keel_position`` (its place in it); otherwise
            ``__keel_position`` is already the row's index in the source.
        uris: the files in the order given (to order the units), when read from files.
        units: whether positions are relative to a unit.
        persist: whether the frame must be kept between passes (positions that a second read may not repeat).
        rows: the row count, when known without a pass.
        in_memory: whether the rows came from an Arrow table (small: written as one file).
        nanoseconds: the Parquet nanosecond timestamp columns (read as counts), with whether they are zoned.
    """

    frame: DataFrame
    uris: tuple[str, ...] = ()
    units: bool = True
    persist: bool = True
    rows: int | None = None
    in_memory: bool = False
    nanoseconds: dict[str, bool] = field(default_factory=dict)


class SparkEngine(EngineBase):
    """Heavy data operations on Spark: local (``local[*]``), a standalone cluster (``spark://host:port``) or
    Spark Connect (``sc://host:port``).

    The session is started on first use, not here: building the engine (``Project.open``) stays fast. Every
    engine of the process shares one session (:mod:`keel.engines._spark_session`).

    Args:
        master: where Spark runs.
        conf: Spark settings for the session (``spark.executor.memory`` ...).
        app_name: the application's name in Spark's UI.
        filesystems: fsspec filesystems of the offline store (unused: Spark reads through Hadoop's).
    """

    name = "spark"

    def __init__(
        self,
        master: str = "local[*]",
        conf: dict[str, str] | None = None,
        app_name: str = "keel",
        filesystems: list[Any] | None = None,
    ) -> None:
        self.master = master
        self.conf = dict(conf or {})
        self.app_name = app_name
        self._filesystems = list(filesystems or [])

    @property
    def spark(self) -> SparkSession:
        """The process's Spark session (started on first use)."""
        from keel.engines._spark_session import spark_session

        return spark_session(self.master, self.app_name, self.conf)

    def _error_type(self, exc: Exception) -> type[KeelError]:
        condition = _condition(exc)
        if condition is not None and condition.split(".")[0] in VALIDATION_CONDITIONS:
            return ValidationError
        return BackendError

    # -- reading ---------------------------------------------------------------------------------------------------
    def _frame(self, data: Data) -> DataFrame:
        """``data`` as a Spark frame: files read by Spark, an Arrow table sent to it, a frame as it is."""
        import pyarrow as pa

        if isinstance(data, Files):
            return self._read_files(data)
        if isinstance(data, pa.Table):
            return self._from_arrow(data)
        if _is_frame(data):
            frame: DataFrame = data
            return frame
        raise ValidationError(
            f"{self.description}: data must be Files, a pyarrow Table or a Spark DataFrame, not {type(data).__name__}"
        )

    def _read_files(
        self, files: Files, *, nanoseconds_as_counts: bool = False, text: tuple[str, ...] = ()
    ) -> DataFrame:
        """Files as a Spark frame. Parquet nanosecond timestamps, which Spark reads as counts of nanoseconds, are
        made timestamps again (truncated to microseconds) unless ``nanoseconds_as_counts``; CSV ``text`` columns
        are read as strings, as they are written."""
        from pyspark.sql import functions as F

        if not files.uris:
            raise ValidationError(f"{self.description}: {files.label}: no files to read")
        paths = [_spark_path(uri) for uri in files.uris]
        if files.format == "parquet":
            # Partition folders (month=2024-01/) are not columns: the files hold every column themselves.
            frame = self.spark.read.option("recursiveFileLookup", "true").parquet(*paths)
            listed = frame.inputFiles()
            nanoseconds = {} if nanoseconds_as_counts or not listed else _nanosecond_columns(listed[0])
            for name, zoned in nanoseconds.items():
                micros = F.timestamp_micros(F.expr(f"div({_quoted(name)}, 1000)"))
                frame = frame.withColumn(name, micros if zoned else micros.cast("timestamp_ntz"))
            return frame
        if files.format == "csv":
            return self._read_csv(paths, dict(files.options), text)
        raise ValidationError(f"{self.description}: {files.label}: unknown format {files.format!r}")

    def _read_csv(self, paths: list[str], options: dict[str, str], text: tuple[str, ...] = ()) -> DataFrame:
        """CSV with types inferred by Spark, except timestamps and the ``text`` columns, which stay text: the
        normalisation reads timestamps as ISO 8601 and knows which carried a time zone (Spark's inference would
        not say). Dates stay dates, as the local engine reads them."""
        from pyspark.sql.types import StringType, StructField, StructType, TimestampNTZType, TimestampType

        options = {"header": "true", **options}
        if "delim" in options:
            options["sep"] = options.pop("delim")
        options["recursiveFileLookup"] = "true"
        inferred = self.spark.read.options(**options).option("inferSchema", "true").csv(paths).schema
        schema = StructType(
            [
                StructField(
                    f.name,
                    StringType()
                    if isinstance(f.dataType, TimestampType | TimestampNTZType) or f.name in text
                    else f.dataType,
                    True,
                )
                for f in inferred.fields
            ]
        )
        return self.spark.read.options(**options).schema(schema).csv(paths)

    def _from_arrow(self, table: pa.Table, *, round_up: tuple[str, ...] = ()) -> DataFrame:
        """An Arrow table as a Spark frame; naive timestamps stay naive (``TIMESTAMP_NTZ``)."""
        from pyspark.sql.pandas.types import from_arrow_type
        from pyspark.sql.types import StructField, StructType

        table = _spark_ready(table, round_up=round_up)
        schema = StructType(
            [StructField(f.name, from_arrow_type(f.type, prefer_timestamp_ntz=True), True) for f in table.schema]
        )
        return self.spark.createDataFrame(table, schema=schema)

    def _read_version(self, src: PointInTimeSource, *, ranked: bool = False) -> DataFrame:
        """A version's files; ``ranked`` adds each row's file position and row number (``__keel_file``,
        ``__keel_row_index``), which break ties in versions written without :data:`SEQ`."""
        from pyspark.sql import functions as F

        if not src.paths:
            raise BackendError(f"{self.description}: feature view {src.view!r}: the version lists no files")
        reader = self.spark.read.option("recursiveFileLookup", "true")
        if not ranked:
            return reader.parquet(*[_spark_path(p) for p in src.paths])
        parts = [
            reader.parquet(_spark_path(path)).select(
                "*", F.lit(i).alias("__keel_file"), F.col("_metadata.row_index").alias("__keel_row_index")
            )
            for i, path in enumerate(src.paths)
        ]
        return reduce(lambda a, b: a.unionByName(b), parts)

    # -- ingest ----------------------------------------------------------------------------------------------------
    def _ingest(
        self,
        data: Data,
        rules: Normalisation,
        into: str,
        *,
        first_sequence: int,
        unless_digest: str | None,
        partition_rows: int,
    ) -> Ingested:
        """Normalise, check, describe and write in one pass over the source, then read the written files back
        for what needs a pass of its own (the digest, duplicates, the most frequent values).

        The checks and statistics are aggregates observed while the write runs (``DataFrame.observe``), so the
        source is read once. A failed check is therefore known once the files are written: they are removed
        before the error is raised, as they are when the digest shows the data unchanged.
        """
        from pyspark import StorageLevel

        if _exists(into):
            raise BackendError(f"{self.description}: {into!r} already exists; a version is written to a new folder")
        source = self._positioned(data, rules)
        present = [c for c in source.frame.columns if not c.startswith("__keel_")]
        missing = [c for c in dict.fromkeys(rules.columns) if c not in present]
        if missing:
            raise ValidationError(
                f"feature view {rules.view!r}: column(s) {missing} missing from {rules.source}; "
                f"it has: {', '.join(present)}",
                field=missing[0],
            )
        plan = compile_rules(rules, source.frame.select(*[_col(c) for c in present]).schema, source.nanoseconds)
        internal = [c for c in source.frame.columns if c.startswith("__keel_")]
        raw = source.frame.select(*[_col(c) for c in dict.fromkeys(rules.columns)], *internal)
        if source.persist:
            raw = raw.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            rows, found = self._write_checked(raw, source, plan, into, first_sequence, partition_rows)
        except BaseException:
            _remove(into)
            raise
        finally:
            if source.persist:
                raw.unpersist()
        try:
            return self._described(into, plan, rows, found, unless_digest)
        except BaseException:
            _remove(into)
            raise

    def _write_checked(
        self, raw: DataFrame, source: _Source, plan: Plan, into: str, first_sequence: int, partition_rows: int
    ) -> tuple[int, dict[str, Any]]:
        """Write the normalised rows under ``into``; raise the first failed check. Returns the row count and what
        was observed while writing (whether text timestamps were naive).

        The checks cost the write almost nothing: a row that fails one makes its task raise (``raise_error``), and
        only then does one pass of its own find the first failing row in source order, for the same error as the
        local engine's. (Observing aggregates on the write would cost more: Spark evaluates them without generated
        code.) Only the naive-timestamp flags, which warn rather than fail, are observed, and only when a column
        of text timestamps has them.
        """
        from pyspark.sql import Observation
        from pyspark.sql import functions as F

        rules = plan.rules
        numbered, rows = self._numbered(raw, source, first_sequence)
        if rows == 0:
            raise ValidationError(f"feature view {rules.view!r}: {rules.source} has no rows; nothing ingested")
        seq = F.col(SEQ)
        flags = plan.flags()

        def value_at(column: str, at: int) -> Any:
            row = numbered.where(seq == at).select(_col(column)).limit(1).toArrow()
            return row.column(0)[0].as_py()

        def first_error() -> ValidationError | None:
            checked = numbered.select(*[v.alias(k) for k, v in flags.items()], seq).agg(*plan.aggregates(seq))
            return plan.first_error(checked.collect()[0].asDict(), first_sequence, value_at)

        if not plan.writable:  # a problem in the schema: only the checks before it may fail first; nothing is written
            error = first_error()
            assert error is not None
            raise error
        guarded = seq
        checks = plan.check_flags()
        if checks:
            failed = reduce(lambda a, b: a | b, checks.values())
            guarded = F.when(failed, F.raise_error(F.lit(_CHECK_FAILED))).otherwise(seq)
        naive = plan.naive_flags()
        normal = numbered.select(*plan.values(), guarded.alias(SEQ), *[v.alias(k) for k, v in naive.items()])
        observation = Observation("keel_ingest") if naive else None
        if observation is not None:
            normal = normal.observe(observation, *plan.naive_aggregates())
        stored = _nullable(normal.select(*[_col(c) for c in rules.columns], seq))
        try:
            self._write_version(stored, rules, into, partitioned=rows > partition_rows, one_file=source.in_memory)
        except Exception as exc:
            if _CHECK_FAILED not in str(exc):
                raise
            error = first_error()
            if error is None:  # the failing row cannot be found again: report the failure as it came
                raise
            raise error from None
        return rows, dict(observation.get) if observation is not None else {}

    def _described(
        self, into: str, plan: Plan, rows: int, found: dict[str, Any], unless_digest: str | None
    ) -> Ingested:
        """What was written under ``into``: its digest, duplicates and statistics, by jobs over the written files
        run side by side (see :mod:`keel.engines._spark_statistics`), with what was observed while writing."""
        rules = plan.rules
        key_types = plan.key_types()
        dtypes = rules.dtypes(key_types)
        version = self._read_folder(into).select(*[_col(c) for c in dtypes], _col(SEQ))
        done = _together(
            {
                "duplicates": lambda: self._version_duplicates(into, version, [*rules.join_keys, rules.timestamp]),
                **statistics_jobs(version, dtypes, rows=rows, digest=True),
            }
        )
        counted = int(done["exact"][ROWS])
        if counted != rows:
            raise BackendError(
                f"{self.description}: {rows:,} rows were read from {rules.source} but {counted:,} were written to "
                f"{into}; nothing ingested"
            )
        digest = hexdigest(done["exact"], rows, dtypes)
        written: Written | None = None
        statistics: dict[str, dict[str, Any]] = {}
        if digest == unless_digest:
            _remove(into)
        else:
            statistics = statistics_values(done, dtypes, rows)
            written = self._written(into)
        noticed = tuple(plan.warnings(found))
        for message in noticed:  # as the local engine does: to the caller's warning filters and the log
            warnings.warn(message, NaiveTimestampWarning, stacklevel=4)
            log.warning(message)
        timestamp = list(dtypes).index(rules.timestamp)
        return Ingested(
            written=written,
            rows=rows,
            key_types=key_types,
            event_time_min=_datetime(done["exact"][f"__keel_s{timestamp}_min"]),
            event_time_max=_datetime(done["exact"][f"__keel_s{timestamp}_max"]),
            duplicates=done["duplicates"],
            statistics=statistics,
            digest=digest,
            warnings=noticed,
        )

    def _positioned(self, data: Data, rules: Normalisation) -> _Source:
        """The source with the columns that place each row (see :class:`_Source`)."""
        import pyarrow as pa
        from pyspark.sql import functions as F

        if isinstance(data, pa.Table):
            indexed = data.append_column(_POSITION, pa.array(range(data.num_rows), pa.int64()))
            frame = self._from_arrow(indexed, round_up=(rules.timestamp,))
            return _Source(frame, units=False, persist=False, rows=data.num_rows, in_memory=True)
        if isinstance(data, Files):
            read = self._read_files(data, nanoseconds_as_counts=True)
            files = read.inputFiles() if data.format == "parquet" else []
            nanoseconds = _nanosecond_columns(files[0]) if files else {}
            if len(files) == 1:  # one Parquet file: the row number is the position
                frame = read.select("*", F.col("_metadata.row_index").alias(_POSITION))
                rows = _footer_rows(files[0])
                return _Source(frame, units=False, persist=False, rows=rows, nanoseconds=nanoseconds)
            counted = self._counted_parquet(read, files, data.uris) if data.format == "parquet" else None
            if counted is not None:
                return counted
            if data.format == "parquet":
                position = F.col("_metadata.row_index")
                part = F.lit(0).cast("bigint")
            else:  # a CSV split's rows are consecutive in its partition: their ids are consecutive too
                position = F.monotonically_increasing_id()
                part = F.col("_metadata.file_block_start")
            frame = read.select(
                "*", F.col("_metadata.file_path").alias(_UNIT), part.alias(_UNIT_PART), position.alias(_POSITION)
            )
            # Parquet row numbers are the same at every read; the ids of CSV rows are kept by persisting the rows.
            persist = data.format != "parquet"
            return _Source(frame, uris=data.uris, persist=persist, nanoseconds=nanoseconds)
        if _is_frame(data):
            frame = data.select(
                "*",
                F.lit("").alias(_UNIT),
                F.spark_partition_id().cast("bigint").alias(_UNIT_PART),
                F.monotonically_increasing_id().alias(_POSITION),
            )
            return _Source(frame, persist=True)
        self._frame(data)  # raises the error naming what data may be
        raise AssertionError("unreachable")

    def _counted_parquet(self, read: DataFrame, files: list[str], uris: tuple[str, ...]) -> _Source | None:
        """Parquet files whose row counts their footers give (read here): each file read on its own with the
        row's place in the source already known (its file's offset plus its row index), so no pass counts the
        rows and no row carries its file's path. ``None`` when a footer cannot be read from here (a store only
        Spark reaches) or the files are too many for one plan."""
        from pyspark.sql import functions as F

        if len(files) > _UNION_FILES:
            return None
        ordered = sorted(files, key=lambda f: _file_rank(f, uris))
        counts = [_footer_rows(f) for f in ordered]
        if any(n is None for n in counts):
            return None
        parts = []
        offset = 0
        for path, rows in zip(ordered, counts, strict=True):
            assert rows is not None
            one = self.spark.read.schema(read.schema).parquet(path)
            parts.append(one.select("*", (F.col("_metadata.row_index") + F.lit(offset)).alias(_POSITION)))
            offset += rows
        frame = reduce(lambda a, b: a.unionByName(b), parts)
        nanoseconds = _nanosecond_columns(ordered[0])
        return _Source(frame, units=False, persist=False, rows=offset, nanoseconds=nanoseconds)

    def _numbered(self, raw: DataFrame, source: _Source, first_sequence: int) -> tuple[DataFrame, int]:
        """``raw`` with :data:`SEQ` (its unit's offset plus its position in the unit), and its row count."""
        import pyarrow as pa
        from pyspark.sql import functions as F

        position = F.col(_POSITION)
        if not source.units:
            rows = source.rows if source.rows is not None else raw.count()
            return raw.withColumn(SEQ, position + F.lit(first_sequence)).drop(_POSITION), rows
        counts = (
            raw.groupBy(_UNIT, _UNIT_PART)
            .agg(F.count(F.lit(1)).alias("rows"), F.min(_POSITION).alias("first"))
            .collect()
        )
        ranked = sorted(counts, key=lambda r: (*_file_rank(r[_UNIT], source.uris), r[_UNIT_PART]))
        units, parts, deltas = [], [], []
        offset = first_sequence
        for unit in ranked:
            units.append(unit[_UNIT])
            parts.append(unit[_UNIT_PART])
            deltas.append(offset - int(unit["first"]))
            offset += int(unit["rows"])
        rows = offset - first_sequence
        internal = [_UNIT, _UNIT_PART, _POSITION]
        if len(ranked) <= 1:
            delta = deltas[0] if deltas else first_sequence
            return raw.withColumn(SEQ, position + F.lit(delta)).drop(*internal), rows
        table = pa.table(
            {_UNIT: pa.array(units, pa.string()), _UNIT_PART: pa.array(parts, pa.int64()), "__keel_delta": deltas}
        )
        offsets = self.spark.createDataFrame(table)
        joined = raw.join(F.broadcast(offsets), on=[_UNIT, _UNIT_PART])
        return joined.withColumn(SEQ, position + F.col("__keel_delta")).drop(*internal, "__keel_delta"), rows

    @staticmethod
    def _duplicates(frame: DataFrame, columns: list[str]) -> int:
        """Rows minus distinct (keys, event time), in one pass."""
        from pyspark.sql import functions as F

        groups = frame.groupBy(*[_col(c) for c in columns]).agg(F.count(F.lit(1)).alias("n"))
        row = groups.agg(F.sum(F.col("n") - 1).alias("d")).collect()[0]
        return int(row["d"] or 0)

    def _version_duplicates(self, into: str, version: DataFrame, columns: list[str]) -> int:
        """:meth:`_duplicates` of the version just written under ``into``, without a shuffle when it can be.

        Rows that share their keys and event time share their month, so each month folder is counted on its
        own by one task that reads all its files: no row crosses the network, and the months run in parallel.
        That needs the months' sizes (from the local files' footers) and none too large for one task; otherwise
        (a store only Spark reaches, a huge month) the rows are grouped across the cluster as usual.
        """
        from pyspark.sql import functions as F

        months = _month_rows(into)
        if months is None or not months or max(months.values()) > _MONTH_TASK_ROWS:
            return self._duplicates(version, columns)
        counted = []
        for folder in months:
            month = self.spark.read.parquet(_spark_path(folder)).coalesce(1)  # one task: no exchange below
            groups = month.groupBy(*[_col(c) for c in columns]).agg(F.count(F.lit(1)).alias("n"))
            counted.append(groups.agg(F.sum(F.col("n") - 1).alias("d")))
        rows = reduce(lambda a, b: a.unionAll(b), counted).collect()
        return sum(int(r["d"] or 0) for r in rows)

    def _write_version(
        self, frame: DataFrame, rules: Normalisation, into: str, *, partitioned: bool, one_file: bool
    ) -> None:
        """Files directly under ``into`` (``one_file``: a single one), or with ``partitioned`` one folder per month
        of event time (UTC): each task writes the months it holds (Spark sorts its rows by month first).

        No shuffle: the write runs in the pass that reads the source, and its aggregates are observed in that
        one stage, where each task counts once.
        """
        from pyspark.sql import functions as F

        path = _spark_path(into)
        if not partitioned:
            (frame.coalesce(1) if one_file else frame).write.options(**_WRITE_OPTIONS).parquet(path)
        else:
            # Spark names partition folders after the column; a feature may already be called "month".
            month = "month" if "month" not in frame.columns else "__keel_month"
            monthly = frame.withColumn(month, F.date_format(_col(rules.timestamp), "yyyy-MM"))
            monthly.write.options(**_WRITE_OPTIONS).partitionBy(month).parquet(path)
            if month != "month":
                _rename_partitions(into, month, "month")

    def _read_folder(self, folder: str) -> DataFrame:
        """The Parquet files under ``folder``, partition folders not read as columns."""
        return self.spark.read.option("recursiveFileLookup", "true").parquet(_spark_path(folder))

    def _written(self, into: str) -> Written:
        """Every data file under ``into``: relative path, rows (from its footer) and SHA-256.

        Local folders are read here; elsewhere the executors hash the files and Spark reads the footers, so
        nothing but the digests crosses to the driver.
        """
        local = _local_path(into)
        if local is not None:
            return Written(folder=into, files=tuple(_local_files(local)))
        from pyspark.sql import functions as F

        base = _spark_path(into).rstrip("/")
        hashes = (
            self.spark.read.format("binaryFile")
            .option("recursiveFileLookup", "true")
            .option("pathGlobFilter", "*.parquet")
            .load(base)
            .select(F.col("path"), F.sha2(F.col("content"), 256).alias("sha256"))
            .collect()
        )
        counts = (
            self.spark.read.option("recursiveFileLookup", "true")
            .parquet(base)
            .groupBy(F.col("_metadata.file_path").alias("path"))
            .count()
            .collect()
        )
        rows = {_canonical_spark(r["path"]): int(r["count"]) for r in counts}
        root = _canonical_user(base)
        files = [
            WrittenFile(
                path=_canonical_spark(r["path"])[len(root) + 1 :],
                rows=rows.get(_canonical_spark(r["path"]), 0),
                sha256=r["sha256"],
            )
            for r in hashes
        ]
        return Written(folder=into, files=tuple(sorted(files, key=lambda f: f.path)))

    # -- statistics ------------------------------------------------------------------------------------------------
    def _column_statistics(self, data: Data, dtypes: dict[str, str]) -> dict[str, dict[str, Any]]:
        frame = self._frame(data)
        columns = [*dtypes, *([SEQ] if SEQ in frame.columns and SEQ not in dtypes else [])]
        done = _together(statistics_jobs(frame.select(*[_col(c) for c in columns]), dtypes))
        return statistics_values(done, dtypes, int(done["exact"][ROWS]))

    def _profile(
        self, data: Data, kinds: dict[str, str], *, grid: Sequence[float], bins: int
    ) -> dict[str, ColumnSummary]:
        from keel.engines._profiles import check_kinds
        from keel.engines._spark_statistics import profile

        frame = self._frame(data)
        check_kinds(kinds, frame.columns)
        columns = [*kinds, *([SEQ] if SEQ in frame.columns and SEQ not in kinds else [])]
        return profile(frame.select(*[_col(c) for c in columns]), kinds, grid, bins)

    def _count_where(self, data: Data, conditions: Mapping[str, Condition]) -> dict[str, Counted]:
        """One aggregate job: per condition, the rows where it holds and the smallest sequence number of them."""
        from pyspark.sql import functions as F
        from pyspark.sql.types import DoubleType, FloatType

        from keel.engines._conditions import Counted, check_columns, spark_column

        frame = self._frame(data)
        present = list(frame.columns)
        check_columns(conditions, present)
        floats = frozenset(f.name for f in frame.schema.fields if isinstance(f.dataType, DoubleType | FloatType))
        aggregates = [F.count(F.lit(1)).alias("rows")]
        for i, condition in enumerate(conditions.values()):
            holds = spark_column(condition, floats)
            aggregates.append(F.count(F.when(holds, 1)).alias(f"n{i}"))
            first = F.min(F.when(holds, _col(SEQ))) if SEQ in present else F.lit(None).cast("bigint")
            aggregates.append(first.alias(f"f{i}"))
        found = frame.agg(*aggregates).collect()[0]
        rows = int(found["rows"])
        return {
            name: Counted(rows, int(found[f"n{i}"]), None if found[f"f{i}"] is None else int(found[f"f{i}"]))
            for i, name in enumerate(conditions)
        }

    def _window_counts(
        self, data: Data, timestamp: str, window: Window, buckets: Mapping[str, Sequence[Condition]]
    ) -> WindowCounts:
        """One aggregation: each row's window and, per column, the first bucket condition it meets, exploded to
        (window, column, bucket) and counted."""
        from pyspark.sql import functions as F
        from pyspark.sql.types import DoubleType, FloatType

        from keel.engines._conditions import spark_column
        from keel.engines._windows import WindowCounts, check_window_columns

        frame = self._frame(data)
        check_window_columns(list(frame.columns), timestamp, buckets)
        floats = frozenset(f.name for f in frame.schema.fields if isinstance(f.dataType, DoubleType | FloatType))
        pairs = []
        for i, conditions in enumerate(buckets.values()):
            bucket = F.lit(len(conditions))
            for k in reversed(range(len(conditions))):  # the first condition met wins
                bucket = F.when(spark_column(conditions[k], floats), F.lit(k)).otherwise(bucket)
            pairs.append(F.struct(F.lit(i).alias("c"), bucket.cast("int").alias("b")))
        exploded = frame.where(_col(timestamp).isNotNull()).select(
            window.spark_index(timestamp).alias("w"), F.explode(F.array(*pairs)).alias("p")
        )
        found = exploded.groupBy("w", "p.c", "p.b").count().collect()
        rows = [(int(r["w"]), int(r["c"]), int(r["b"]), int(r["count"])) for r in found]
        return WindowCounts.from_rows(window, {n: len(c) for n, c in buckets.items()}, rows)

    def _count_duplicates(self, data: Data, keys: list[str], timestamp: str) -> int:
        return self._duplicates(self._frame(data), [*keys, timestamp])

    # -- point-in-time join ----------------------------------------------------------------------------------------
    def _point_in_time_join(self, entities: pa.Table, sources: list[PointInTimeSource]) -> pa.Table:
        frame = self._from_arrow(entities)
        joined = self._small_join(frame, ROW, sources, timestamp=TS)
        columns = [ROW, *(name for src in sources for _, name in src.features)]
        table = joined.select(*[_col(c) for c in columns]).toArrow()
        return table.sort_by(ROW)

    def _join_to(
        self,
        entities: Data,
        sources: list[PointInTimeSource],
        *,
        timestamp: str,
        key_types: dict[str, str],
        into: str | None,
    ) -> Written | EngineFrame:
        """Every entity row with all its columns as they are, followed by the features. The join itself uses the
        entity time as UTC instants and the keys cast to ``key_types``, in hidden columns dropped at the end."""
        import pyarrow as pa

        small = isinstance(entities, pa.Table)
        if small:  # in memory: numbered here, joined by broadcasting it
            entities = entities.append_column("__keel_entity", pa.array(range(entities.num_rows), pa.int64()))
        frame = self._frame(entities)
        present = [c for c in frame.columns if not c.startswith("__keel_")]
        for column in [timestamp, *key_types]:
            if column not in present:
                raise ValidationError(
                    f"entity table lacks column {column!r}; it has: {', '.join(present)}", field=column
                )
        keys = {key: f"__keel_key{i}" for i, key in enumerate(key_types)}
        hidden = [_entity_time(frame, timestamp).alias("__keel_at")]
        for key, dtype in key_types.items():
            target = _type_of("bigint" if dtype == "int64" else "string")
            hidden.append(_converted_key(frame, key, target, f"{dtype} keys").alias(keys[key]))
        frame = frame.select("*", *hidden)
        if small:
            frame = self._small_join(frame, "__keel_entity", sources, timestamp="__keel_at", key_columns=keys)
        else:
            for src in sources:
                join = self._windowed_join if _within_ttl(src) else self._as_of
                frame = join(frame, src, timestamp="__keel_at", key_columns=keys)
        frame = frame.drop("__keel_at", "__keel_entity", *keys.values())
        if into is None:
            return frame
        if _exists(into):
            raise BackendError(f"{self.description}: {into!r} already exists; the result is written to a new folder")
        frame.write.options(**_WRITE_OPTIONS).parquet(_spark_path(into))
        return self._written(into)

    def _small_join(
        self,
        entities: DataFrame,
        row: str,
        sources: list[PointInTimeSource],
        *,
        timestamp: str,
        key_columns: dict[str, str] | None = None,
    ) -> DataFrame:
        """The point-in-time join of a small entity frame (one that came from memory), numbered by ``row``.

        Per source: the entity rows are broadcast to the tasks reading the feature rows, each feature row meets
        the entity rows of its keys whose time is at or after its own (and within the TTL), and each entity
        row keeps the latest of those (``max_by``, combined in each task before anything is shuffled). The
        entity rows are then joined to each source's latest values by their number. The work grows with the
        pairs that meet, as for a hand-written join: for a large entity frame, see :meth:`_as_of`.

        ``key_columns`` names the entity column of a join key when it is not the key's own name.
        """
        from pyspark.sql import functions as F

        named = key_columns or {}
        out = entities
        for src in sources:
            feats = self._read_version(src, ranked=src.deduplicate and src.sequence is None)
            types = {f.name: f.dataType for f in feats.select(*[_col(k) for k in src.join_keys]).schema.fields}
            keys = [f"__keel_k{i}" for i in range(len(src.join_keys))]
            side = entities.select(
                _col(row).alias("__keel_e"),
                _col(timestamp).alias("__keel_at"),
                *[
                    _converted_key(entities, named.get(k, k), types[k], "the feature view's keys", name=k).alias(
                        keys[i]
                    )
                    for i, k in enumerate(src.join_keys)
                ],
            )
            ft = _col(src.timestamp)
            rows = feats.select(
                *[_col(k).alias(keys[i]) for i, k in enumerate(src.join_keys)],
                ft.alias("__keel_t"),
                _tie_order(src).alias("__keel_order"),
                F.struct(*[_col(stored).alias(f"__keel_x{j}") for j, (stored, _) in enumerate(src.features)]).alias(
                    "__keel_f"
                ),
            )
            meet = reduce(lambda a, b: a & b, [rows[k] == side[k] for k in keys]) & (
                rows["__keel_t"] <= side["__keel_at"]
            )
            if src.ttl is not None and src.ttl < UNBOUNDED_TTL:
                ttl = src.ttl // timedelta(microseconds=1)
                meet = meet & (F.unix_micros(rows["__keel_t"]) >= F.unix_micros(side["__keel_at"]) - F.lit(ttl))
            pairs = rows.join(F.broadcast(side), on=meet)
            latest = pairs.groupBy("__keel_e").agg(F.max_by("__keel_f", "__keel_order").alias("__keel_l"))
            values = latest.select(
                F.col("__keel_e").alias(row),
                *[F.col(f"__keel_l.__keel_x{j}").alias(name) for j, (_, name) in enumerate(src.features)],
            )
            out = out.join(values, on=row, how="left")
        return out

    def _windowed_join(
        self, entities: DataFrame, src: PointInTimeSource, *, timestamp: str, key_columns: dict[str, str] | None = None
    ) -> DataFrame:
        """``entities`` with ``src``'s features, for a source with a TTL: each entity row meets the feature rows
        of its keys in ``[time - TTL, time]`` (a join on the keys, the window a condition of it) and keeps the
        latest of them (``max_by``). The aggregate groups by the keys and a row number, so it runs where the join
        left the rows: one shuffle in all, the join's. The TTL bounds the rows an entity row meets; without one,
        :meth:`_as_of`, whose work does not grow with the history.
        """
        from pyspark.sql import functions as F

        named = key_columns or {}
        feats = self._read_version(src, ranked=src.deduplicate and src.sequence is None)
        types = {f.name: f.dataType for f in feats.select(*[_col(k) for k in src.join_keys]).schema.fields}
        keys = [f"__keel_k{i}" for i in range(len(src.join_keys))]
        mine = [f"__keel_fk{i}" for i in range(len(src.join_keys))]
        # numbered in the one read of the entity rows: the join and the aggregate see the same numbers
        side = entities.select(
            F.struct(*[_col(c) for c in entities.columns]).alias("__keel_e"),
            *[
                _converted_key(entities, named.get(k, k), types[k], "the feature view's keys", name=k).alias(keys[i])
                for i, k in enumerate(src.join_keys)
            ],
            _col(timestamp).alias("__keel_at"),
            F.monotonically_increasing_id().alias("__keel_rid"),
        )
        rows = feats.select(
            *[_col(k).alias(mine[i]) for i, k in enumerate(src.join_keys)],
            _col(src.timestamp).alias("__keel_t"),
            _tie_order(src).alias("__keel_order"),
            F.struct(*[_col(stored).alias(f"__keel_x{j}") for j, (stored, _) in enumerate(src.features)]).alias(
                "__keel_f"
            ),
        )
        assert src.ttl is not None
        ttl = src.ttl // timedelta(microseconds=1)
        meet = reduce(lambda a, b: a & b, [side[k] == rows[m] for k, m in zip(keys, mine, strict=True)])
        meet = meet & (rows["__keel_t"] <= side["__keel_at"])
        meet = meet & (F.unix_micros(rows["__keel_t"]) >= F.unix_micros(side["__keel_at"]) - F.lit(ttl))
        latest = (
            side.join(rows, on=meet, how="left")
            .groupBy(*keys, "__keel_rid")
            .agg(F.first("__keel_e").alias("__keel_e"), F.max_by("__keel_f", "__keel_order").alias("__keel_l"))
        )
        outputs = [F.col(f"__keel_l.__keel_x{j}").alias(name) for j, (_, name) in enumerate(src.features)]
        return latest.select("__keel_e.*", *outputs)

    def _as_of(
        self, entities: DataFrame, src: PointInTimeSource, *, timestamp: str, key_columns: dict[str, str] | None = None
    ) -> DataFrame:
        """``entities`` with ``src``'s features: per entity row, the source's latest row of the same keys at or
        before its time (within the TTL), ties broken by created time then sequence.

        An as-of join as one window: entity rows and feature rows are put together, partitioned by the keys and
        ordered by time (a feature row before an entity row of the same time); an entity row takes the last
        feature row seen so far. The work grows with the rows, not with the pairs of rows that meet: an entity
        frame of any size against feature views of any history. ``key_columns`` as for :meth:`_small_join`.
        """
        from pyspark.sql import Window
        from pyspark.sql import functions as F

        named = key_columns or {}
        dedupe = src.deduplicate
        feats = self._read_version(src, ranked=dedupe and src.sequence is None)
        keys = [f"__keel_k{i}" for i in range(len(src.join_keys))]
        types = {f.name: f.dataType for f in feats.select(*[_col(k) for k in src.join_keys]).schema.fields}
        payload = F.struct(
            _col(src.timestamp).alias("__keel_t"),
            *[_col(stored).alias(f"__keel_x{j}") for j, (stored, _) in enumerate(src.features)],
        )
        feature_columns = [_col(k).alias(keys[i]) for i, k in enumerate(src.join_keys)]
        feature_columns += [_col(src.timestamp).alias("__keel_t"), F.lit(0).alias("__keel_o")]
        if dedupe:
            created = _col(src.created_timestamp) if src.created_timestamp else F.lit(None).cast("timestamp")
            tie = _col(src.sequence) if src.sequence else F.struct("__keel_file", "__keel_row_index")
            feature_columns += [created.alias("__keel_c"), tie.alias("__keel_s")]
        feature_rows = feats.select(*feature_columns, payload.alias("__keel_f"))
        feature_rows = feature_rows.where(reduce(lambda a, b: a & b, [F.col(k).isNotNull() for k in keys]))
        entity_rows = entities.select(
            *[
                _converted_key(entities, named.get(k, k), types[k], "the feature view's keys", name=k).alias(keys[i])
                for i, k in enumerate(src.join_keys)
            ],
            _col(timestamp).alias("__keel_t"),
            F.lit(1).alias("__keel_o"),
            F.struct(*[_col(c) for c in entities.columns]).alias("__keel_e"),
        )
        both = feature_rows.unionByName(entity_rows, allowMissingColumns=True)
        order = [F.col("__keel_t"), F.col("__keel_o")]
        if dedupe:
            order += [F.col("__keel_c").asc_nulls_first(), F.col("__keel_s").asc_nulls_first()]
        window = Window.partitionBy(*keys).orderBy(*order).rowsBetween(Window.unboundedPreceding, Window.currentRow)
        seen = both.select(
            "__keel_e", "__keel_t", "__keel_o", F.last("__keel_f", ignorenulls=True).over(window).alias("__keel_l")
        ).where(F.col("__keel_o") == 1)
        fresh: Column | None = None
        if src.ttl is not None and src.ttl < UNBOUNDED_TTL:
            ttl = src.ttl // timedelta(microseconds=1)
            fresh = F.unix_micros(F.col("__keel_l.__keel_t")) >= F.unix_micros(F.col("__keel_t")) - F.lit(ttl)
        outputs = []
        for j, (_, name) in enumerate(src.features):
            value = F.col(f"__keel_l.__keel_x{j}")
            outputs.append((value if fresh is None else F.when(fresh, value)).alias(name))
        return seen.select("__keel_e.*", *outputs)

    # -- latest value per entity -----------------------------------------------------------------------------------
    def _latest(self, src: PointInTimeSource, start: datetime | None, end: datetime) -> DataFrame:
        """Per entity, the row with the latest event time in ``(start, end]``, ties broken as in the join."""
        from pyspark.sql import functions as F

        frame = self._read_version(src, ranked=src.deduplicate and src.sequence is None)
        ts = _col(src.timestamp)
        window = ts <= _timestamp(_micros(end))
        if start is not None:
            window = window & (ts > _timestamp(_micros(start)))
        columns = list(dict.fromkeys([*src.join_keys, src.timestamp, *(stored for stored, _ in src.features)]))
        latest = F.max_by(F.struct(*[_col(c) for c in columns]), _tie_order(src))
        return (
            frame.where(window)
            .groupBy(*[_col(k) for k in src.join_keys])
            .agg(latest.alias("__keel_r"))
            .select("__keel_r.*")
        )

    def _latest_per_entity(
        self, src: PointInTimeSource, *, start: datetime | None, end: datetime, batch_rows: int
    ) -> Iterator[pa.RecordBatch]:
        """The latest rows, brought to the driver partition by partition as Arrow batches of at most
        ``batch_rows`` rows, serialised by the executors (one row of Spark's each). The driver holds a partition
        while its batches are read and the next one, computed meanwhile; never the whole result."""
        import pyarrow as pa

        if batch_rows < 1:
            raise ValidationError(f"batch_rows must be at least 1, got {batch_rows}", field="batch_rows")
        with quiet_pandas_warning():
            chunks = self._latest(src, start, end).mapInArrow(_ipc_chunks(batch_rows), "batch binary")
        for row in chunks.toLocalIterator(prefetchPartitions=True):
            yield from pa.ipc.open_stream(pa.py_buffer(row[0])).read_all().to_batches()

    def _write_latest(
        self,
        src: PointInTimeSource,
        *,
        start: datetime | None,
        end: datetime,
        sink: LatestSink,
        batch_rows: int,
        on_progress: Callable[[int], None] | None,
    ) -> tuple[int, int]:
        """A sink the workers can reach is written by them, each partition in batches of at most ``batch_rows``
        (nothing passes through the driver; progress is told once, at the end); any other sink by this
        process, batch by batch (:meth:`EngineBase._write_latest`)."""
        from pyspark.sql import functions as F

        from keel.engines._spark_score import carried_error

        if not sink.distributed:
            return super()._write_latest(
                src, start=start, end=end, sink=sink, batch_rows=batch_rows, on_progress=on_progress
            )
        if batch_rows < 1:
            raise ValidationError(f"batch_rows must be at least 1, got {batch_rows}", field="batch_rows")
        with quiet_pandas_warning():
            counts = self._latest(src, start, end).mapInArrow(_sink_writes(sink, batch_rows), "rows long, applied long")
        try:
            total = counts.agg(F.sum("rows").alias("rows"), F.sum("applied").alias("applied")).collect()[0]
        except Exception as exc:
            carried = carried_error(exc)
            if carried is not None:
                raise carried from exc
            raise
        rows, applied = int(total["rows"] or 0), int(total["applied"] or 0)
        if on_progress is not None:
            on_progress(rows)
        return rows, applied

    def _stale_entities(
        self,
        old: PointInTimeSource,
        new: PointInTimeSource,
        *,
        start: datetime | None,
        end: datetime,
        new_end: datetime,
    ) -> int:
        from pyspark.sql import functions as F

        def last_time(src: PointInTimeSource, name: str, end: datetime) -> DataFrame:
            frame = self._read_version(src)
            ts = _col(src.timestamp)
            window = ts <= _timestamp(_micros(end))
            if start is not None:
                window = window & (ts > _timestamp(_micros(start)))
            keys = [_col(k).alias(f"__keel_k{i}") for i, k in enumerate(src.join_keys)]
            return frame.where(window).groupBy(*keys).agg(F.max(ts).alias(name))

        keys = [f"__keel_k{i}" for i in range(len(old.join_keys))]
        both = last_time(old, "__keel_old", end).join(last_time(new, "__keel_new", new_end), on=keys, how="left")
        stale = F.col("__keel_new").isNull() | (F.col("__keel_new") < F.col("__keel_old"))
        return int(both.where(stale).count())

    # -- scoring ---------------------------------------------------------------------------------------------------
    def _score(self, data: Data, package: PackageSource, into: str, *, scoring: Scoring) -> Written:
        from keel.engines._spark_score import score_frame

        if isinstance(data, Files) and data.format == "csv":  # a string feature's column read as the text it is
            text = tuple(f.name for f in package.load().schema.features if f.dtype == "string")
            frame = self._read_files(data, text=text)
        else:
            frame = self._frame(data)
        written = score_frame(self.spark, frame, package, into, scoring)
        assert isinstance(written, Written)  # a folder was given: the files written, not a frame
        return written


# -- helpers -------------------------------------------------------------------------------------------------------
def _is_frame(data: Any) -> bool:
    """Whether ``data`` is a Spark frame (classic or Spark Connect), without importing PySpark needlessly."""
    if "pyspark" not in type(data).__module__:
        return False
    from pyspark.sql import DataFrame

    return isinstance(data, DataFrame)


def _condition(exc: BaseException) -> str | None:
    """Spark's error condition (``UNRESOLVED_COLUMN.WITH_SUGGESTION`` ...), if the exception has one."""
    for method in ("getCondition", "getErrorClass"):
        get = getattr(exc, method, None)
        if callable(get):
            try:
                condition = get()
            except Exception:
                continue
            if condition:
                return str(condition)
    return None


def _nullable(frame: DataFrame) -> DataFrame:
    """``frame`` with every column nullable, so that its Parquet files declare every column optional as
    pyarrow's and DuckDB's do (a version's files are read together whichever engine wrote them).

    Spark folds away anything that merely looks nullable (``try_add(x, 0)``, ``CASE WHEN true``); a condition
    on the sequence number that always holds is kept.
    """
    from pyspark.sql import functions as F

    if all(f.nullable for f in frame.schema.fields):
        return frame
    always = F.col(SEQ) >= F.lit(-(2**63))
    return frame.select(
        *[_col(f.name) if f.nullable else F.when(always, _col(f.name)).alias(f.name) for f in frame.schema.fields]
    )


def _within_ttl(src: PointInTimeSource) -> bool:
    """Whether ``src`` keeps values only for a while (a TTL shorter than the calendar)."""
    return src.ttl is not None and src.ttl < UNBOUNDED_TTL


def _tie_order(src: PointInTimeSource) -> Column:
    """What orders a source's rows, the latest last: event time, then created time (a missing one first),
    then the sequence number (or, in versions without one, the file's position and the row's)."""
    from pyspark.sql import functions as F

    ts = _col(src.timestamp)
    if not src.deduplicate:  # no two rows share keys and event time
        return ts
    created = _col(src.created_timestamp) if src.created_timestamp else F.lit(None).cast("timestamp")
    tie = _col(src.sequence) if src.sequence else F.struct("__keel_file", "__keel_row_index")
    return F.struct(ts, created, tie)  # a struct compares field by field, a null before any value


def _type_of(name: str) -> DataType:
    from pyspark.sql.types import LongType, StringType

    return LongType() if name == "bigint" else StringType()


def _entity_time(frame: DataFrame, name: str) -> Column:
    """The entity time column as UTC instants: zoned values as they are, naive ones (and dates) taken as UTC,
    ISO 8601 text parsed."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import DateType, StringType, TimestampNTZType, TimestampType

    dtype = frame.select(_col(name)).schema.fields[0].dataType
    x = _col(name)
    if isinstance(dtype, TimestampType):
        return x
    if isinstance(dtype, TimestampNTZType | DateType):
        return x.cast("timestamp")
    if isinstance(dtype, StringType):
        parsed = x.try_cast("timestamp")
        message = F.concat(F.lit(f"entity timestamp column {name!r}: "), x, F.lit(" is not an ISO 8601 timestamp"))
        return F.when(x.isNotNull() & parsed.isNull(), F.raise_error(message)).otherwise(parsed)
    raise ValidationError(f"entity timestamp column {name!r} holds {dtype.simpleString()}, not timestamps", field=name)


def _converted_key(frame: DataFrame, column: str, target: DataType, what: str, *, name: str | None = None) -> Column:
    """The key ``column`` as ``target``; a value that does not convert stops the job with an error naming the
    key (``name``, when the column is a hidden copy of it)."""
    from pyspark.sql import functions as F

    name = name or column
    source = frame.select(_col(column)).schema.fields[0].dataType
    x = _col(column)
    if source == target:
        return x
    converted = x.try_cast(target)
    message = F.concat(
        F.lit(f"join key {name!r}: the entity value '"), x.cast("string"), F.lit(f"' cannot be compared with {what}")
    )
    return F.when(x.isNotNull() & converted.isNull(), F.raise_error(message)).otherwise(converted)


def _spark_ready(table: pa.Table, *, round_up: tuple[str, ...] = ()) -> pa.Table:
    """``table`` in types Spark takes from Arrow: dictionaries decoded, unsigned integers widened (``uint64``
    as Spark reads it from Parquet, ``DECIMAL(20, 0)``), timestamps in microseconds (the columns named in
    ``round_up`` rounded up, as event times are; others truncated)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.types as pat

    widen = {
        pa.uint8(): pa.int16(),
        pa.uint16(): pa.int32(),
        pa.uint32(): pa.int64(),
        pa.uint64(): pa.decimal128(20, 0),
    }
    columns = []
    for name, column in zip(table.column_names, table.columns, strict=True):
        t = column.type
        if isinstance(t, pa.DictionaryType):
            column = pc.cast(column, t.value_type)
            t = column.type
        if t in widen:
            column = pc.cast(column, widen[t])
        elif pat.is_float16(t):
            column = pc.cast(column, pa.float32())
        elif pat.is_date64(t):
            column = pc.cast(column, pa.date32())
        elif isinstance(t, pa.TimestampType) and t.unit == "ns":
            if name in round_up:  # an event is never placed before the moment it happened
                column = pc.ceil_temporal(column, unit="microsecond")
            column = pc.cast(column, pa.timestamp("us", tz=t.tz), safe=False)
        columns.append(column)
    return pa.table(columns, names=table.column_names)


# -- what the Python workers run -----------------------------------------------------------------------------------
def _bounded(batches: Iterator[pa.RecordBatch], batch_rows: int) -> Iterator[pa.Table]:
    """``batches`` regrouped as tables of exactly ``batch_rows`` rows (the last one fewer), each one chunk."""
    import pyarrow as pa

    pending: list[pa.RecordBatch] = []
    size = 0
    for batch in batches:
        offset = 0
        while offset < batch.num_rows:
            take = min(batch_rows - size, batch.num_rows - offset)
            pending.append(batch.slice(offset, take))
            size += take
            offset += take
            if size == batch_rows:
                yield pa.Table.from_batches(pending).combine_chunks()
                pending, size = [], 0
    if size:
        yield pa.Table.from_batches(pending).combine_chunks()


def _ipc_chunks(batch_rows: int) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The function each Python worker runs on a partition: its rows as Arrow IPC streams of at most
    ``batch_rows`` rows, one per output row."""

    def chunks(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa

        for table in _bounded(batches, batch_rows):
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
            yield pa.RecordBatch.from_pydict({"batch": pa.array([sink.getvalue().to_pybytes()], pa.binary())})

    return chunks


def _sink_writes(sink: LatestSink, batch_rows: int) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The function each Python worker runs on a partition: its rows written to ``sink`` in batches of at most
    ``batch_rows``, answering one row of counts. A Keel error the sink raises travels to the driver in the
    failure's text (:func:`keel.engines._spark_score.carry`)."""

    def writes(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa

        from keel.engines._spark_score import carry

        rows = applied = 0
        try:
            for table in _bounded(batches, batch_rows):
                rows += table.num_rows
                applied += sink.write(table)
        except KeelError as exc:
            raise RuntimeError(carry(exc)) from exc
        yield pa.RecordBatch.from_pydict(
            {"rows": pa.array([rows], pa.int64()), "applied": pa.array([applied], pa.int64())}
        )

    return writes


def _together(jobs: dict[str, Callable[[], Any]]) -> dict[str, Any]:
    """Run Spark jobs side by side (each from its own thread, as Spark allows): the cores one job leaves idle, at
    the end of a stage or while its driver works, run another's tasks. Their results, by name."""
    with ThreadPoolExecutor(len(jobs) or 1, thread_name_prefix="keel-spark") as pool:
        futures = {name: pool.submit(job) for name, job in jobs.items()}
        return {name: future.result() for name, future in futures.items()}


# -- paths and files -----------------------------------------------------------------------------------------------
def _spark_path(uri: str) -> str:
    """What Spark should read or write: local paths made absolute (Spark resolves relative ones against the
    directory its JVM started in), URIs as they are."""
    if "://" in uri or uri.startswith("file:"):
        return uri
    return os.path.abspath(uri)


def _local_path(uri: str) -> str | None:
    """The local path of ``uri``, or ``None`` when it lives elsewhere."""
    if uri.startswith("file:"):
        return urlsplit(uri).path or None
    if "://" in uri:
        return None
    return os.path.abspath(uri)


def _canonical_user(uri: str) -> str:
    """A path or URI as given by a user (not percent-encoded), in one comparable form."""
    if "://" not in uri and not uri.startswith("file:"):
        return "file://" + os.path.abspath(uri)
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    return f"{scheme}://{parts.netloc}{parts.path}"


def _canonical_spark(path: str) -> str:
    """A file path as Spark reports it (``file:/a%20b``, percent-encoded), in the form of :func:`_canonical_user`."""
    parts = urlsplit(path)
    return f"{parts.scheme.lower() or 'file'}://{parts.netloc}{unquote(parts.path)}"


def _file_rank(path: str, uris: tuple[str, ...]) -> tuple[int, str]:
    """Where a file Spark read comes in source order: the position of the URI that names it (a folder, a glob
    or the file itself), then its path."""
    file = _canonical_spark(path)
    for i, uri in enumerate(uris):
        given = _canonical_user(_spark_path(uri))
        if file == given or file.startswith(given.rstrip("/") + "/"):
            return i, file
        if any(c in given for c in "*?[") and fnmatch.fnmatchcase(file, given):
            return i, file
    return len(uris), file


def _local_files(root: str) -> Iterator[WrittenFile]:
    """The data files under a local folder, sorted by path; Hadoop's checksum files are removed."""
    import pyarrow.parquet as pq

    found = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(("_", ".")))
        for name in names:
            path = os.path.join(folder, name)
            if name.startswith(".") and name.endswith(".crc"):
                os.remove(path)  # Hadoop's local checksums: not part of the version
                continue
            if name.startswith(("_", ".")):
                continue
            found.append(path)
    for path in sorted(found):
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        rows = pq.ParquetFile(path).metadata.num_rows
        yield WrittenFile(path=os.path.relpath(path, root).replace(os.sep, "/"), rows=rows, sha256=digest.hexdigest())


def _exists(folder: str) -> bool:
    """Whether ``folder`` exists (through fsspec when not local; ``False`` when that cannot be told)."""
    local = _local_path(folder)
    if local is not None:
        return os.path.exists(local)
    from keel._files import open_filesystem

    try:
        fs, root, _ = open_filesystem(folder)
        return bool(fs.exists(root))
    except Exception:  # a scheme only Hadoop knows (s3a://): Spark itself refuses to overwrite
        return False


def _remove(folder: str) -> None:
    """Remove a folder this engine wrote (a failed or unneeded version); a folder elsewhere through fsspec."""
    local = _local_path(folder)
    if local is not None:
        shutil.rmtree(local, ignore_errors=True)
        return
    from keel._files import open_filesystem

    try:
        fs, root, _ = open_filesystem(folder)
        if fs.exists(root):
            fs.rm(root, recursive=True)
    except Exception as exc:  # the error being raised matters more than this clean-up
        log.warning("could not remove %s: %s", folder, exc)


def _nanosecond_columns(path: str) -> dict[str, bool]:
    """The nanosecond timestamp columns of a Parquet file (from its footer, read here), each with whether it
    has a time zone; empty when the footer cannot be read from here (a store only Spark reaches)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        local = _local_path(path) if path.startswith("file:") else None
        if local is not None:
            schema = pq.read_schema(unquote(local))
        else:
            from keel._files import open_filesystem

            fs, root, _ = open_filesystem(path)
            with fs.open(root, "rb") as f:
                schema = pq.read_schema(f)
    except Exception:
        return {}
    return {
        f.name: f.type.tz is not None for f in schema if isinstance(f.type, pa.TimestampType) and f.type.unit == "ns"
    }


def _footer_rows(path: str) -> int | None:
    """The row count in a local Parquet file's footer (``None`` for a remote one: Spark counts those)."""
    local = _local_path(path) if path.startswith("file:") else None
    if local is None:
        return None
    import pyarrow.parquet as pq

    rows: int = pq.ParquetFile(unquote(local)).metadata.num_rows
    return rows


def _month_rows(into: str) -> dict[str, int] | None:
    """The rows of each month folder of a local version (the version itself when it has none), from the files'
    footers; ``None`` when the version is not local."""
    import pyarrow.parquet as pq

    local = _local_path(into)
    if local is None:
        return None
    folders = [os.path.join(local, n) for n in sorted(os.listdir(local)) if n.startswith("month=")] or [local]
    out = {}
    for folder in folders:
        names = [n for n in os.listdir(folder) if n.endswith(".parquet") and not n.startswith(("_", "."))]
        out[folder] = sum(pq.ParquetFile(os.path.join(folder, n)).metadata.num_rows for n in names)
    return out


def _rename_partitions(into: str, written: str, wanted: str) -> None:
    """Rename partition folders ``<written>=…`` to ``<wanted>=…`` (local folders, or through fsspec)."""
    local = _local_path(into)
    if local is not None:
        for name in os.listdir(local):
            if name.startswith(f"{written}="):
                shutil.move(os.path.join(local, name), os.path.join(local, wanted + name[len(written) :]))
        return
    from keel._files import open_filesystem

    fs, root, _ = open_filesystem(into)
    for path in fs.ls(root, detail=False):
        name = path.rstrip("/").rsplit("/", 1)[-1]
        if name.startswith(f"{written}="):
            fs.mv(path, f"{root}/{wanted}{name[len(written) :]}", recursive=True)


__all__ = ["PARTITION_ROWS", "SparkEngine"]
