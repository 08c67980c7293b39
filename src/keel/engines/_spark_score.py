"""The Spark engine's ``score``: a model package mapped over a DataFrame's Arrow batches in Spark's Python workers.

The driver loads the package once (verifying it: a tampered package is refused before any job runs), checks the
frame's columns against the package's input schema and computes the output's schema from the package (the
prediction's type, the class labels); no row is scored there. The package *reference* travels to the workers in
the function's closure: with ``artifacts_uri`` when every worker reads the same store, else with the package's
bytes (Spark broadcasts a large closure by itself). Each Python worker process loads and verifies the package
once (:meth:`PackageRef.load <keel.models.PackageRef.load>` keeps it per process) and keeps it across the tasks
it runs, Spark reusing its Python workers (``spark.python.worker.reuse``, on by default).

Each Arrow batch of a partition (gathered with others when asked) is turned into the package's input
(:meth:`ModelPackage.arrow_columns <keel.models.ModelPackage.arrow_columns>`, the conversion batch scoring uses)
and scored by :meth:`ModelPackage.score <keel.models.ModelPackage.score>`: the numbers are those of
``package.predict`` on the same rows, bit for bit.

A Keel error raised in a worker (a value the package refuses) fails the job; the driver finds it in Spark's
error and raises the same Keel error, with the package's message.

pyspark is imported inside the functions: ``import keel`` never imports it.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import json
import re
import sys
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from keel._files import open_filesystem
from keel.engines._base import PackageSource, Scoring, Written, WrittenFile
from keel.engines._scoring import ScoringPlan, gather
from keel.errors import BackendError, KeelError, ValidationError

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["carried_error", "score_frame"]

#: How a Keel error crosses from a worker to the driver inside Spark's error text: base64 of a JSON object.
_CARRIED = re.compile(r"__keel_error__:([A-Za-z0-9+/=]+):")


def score_frame(
    spark: SparkSession,
    frame: DataFrame,
    package: PackageSource,
    into: str | None,
    scoring: Scoring,
    *,
    batch_rows: int | None = None,
) -> Written | DataFrame:
    """Score every row of ``frame`` with ``package`` in Spark's Python workers.

    The output has ``scoring.id_column`` (when given), ``prediction`` and, with ``scoring.probabilities``, a
    classifier's ``proba_<class>`` columns — the columns batch scoring writes. Row order is not kept: keep an id
    column to join the predictions back.

    Args:
        spark: the session.
        frame: the rows to score; it holds the package's feature columns (and the id column).
        package: the package by reference (a :class:`keel.models.PackageRef`).
        into: the folder to write the output to as Parquet (it must be empty or absent); ``None`` returns the
            output as a DataFrame instead, computed when it is used (a failure then surfaces as Spark's error).
        scoring: the id column, probabilities and request columns.
        batch_rows: score Spark's Arrow batches gathered into calls of at least this many rows; ``None`` (the
            default) scores each batch as Spark hands it over (``spark.sql.execution.arrow.maxRecordsPerBatch``,
            10,000 rows by default). Measured on local[2] with a HistGradientBoosting package (100 trees, 20
            features, 1,000,000 rows): calls of 10,000, 50,000 and 100,000 rows cost the same CPU time within
            2% (scoring costs the same per row from about 5,000 rows a call), so nothing is gathered unless
            asked; a model with a large fixed cost per call may gain from it.

    Returns:
        :class:`Written`: every Parquet file written under ``into`` (path relative to it, rows, SHA-256; Spark's
        ``_SUCCESS`` marker and checksum files are not listed); or the output DataFrame when ``into`` is None.

    Raises:
        IntegrityError: the package's bytes do not match its digest (before any job runs).
        ValidationError: the id column or a feature column is missing, or a feature column is of a type no
            feature accepts (before any job runs); a value the package refuses (the package's message); ``into``
            already holds files.
    """
    from pyspark.sql import functions as F

    if batch_rows is not None and (isinstance(batch_rows, bool) or not isinstance(batch_rows, int) or batch_rows < 1):
        raise ValidationError(f"batch_rows must be a positive integer or None, got {batch_rows!r}", field="batch_rows")
    loaded = package.load()  # verified here first: a tampered package never reaches a worker
    read = {*loaded.feature_names, *scoring.request, *([scoring.id_column] if scoring.id_column else [])}
    plan = ScoringPlan.of(loaded, _arrow_schema(spark, frame, read), scoring, what="the input frame")
    _ship_functions_by_value(plan)
    score = functools.partial(_score_partition, _shippable(spark, package), plan, batch_rows)
    selected = frame.select(*[F.col(_quoted(c)) for c in plan.columns])
    with warnings.catch_warnings():
        # PySpark checks the pandas version even for mapInArrow, which hands Arrow batches over without pandas
        warnings.filterwarnings("ignore", "PySpark does not yet fully support pandas", FutureWarning)
        output = selected.mapInArrow(score, _spark_schema(frame, plan))
    if into is None:
        return output
    fs, root, _ = open_filesystem(into)
    if fs.exists(root) and (not fs.isdir(root) or fs.ls(root, detail=False)):
        raise ValidationError(f"{into} already exists and is not an empty folder; score into a new one", field="into")
    try:
        # append: the folder may exist, empty (checked above); Spark's own default refuses any existing folder
        output.write.mode("append").parquet(into)
    except Exception as exc:
        carried = carried_error(exc)
        if carried is not None:
            raise carried from exc
        raise
    return _written(fs, root, into)


def _score_partition(
    package: PackageSource, plan: ScoringPlan, batch_rows: int | None, batches: Iterator[pa.RecordBatch]
) -> Iterator[pa.RecordBatch]:
    """In a Python worker: one partition's output batches (the package loaded once per process)."""
    import pyarrow as pa

    try:
        loaded = package.load()
        tables = gather(batches, batch_rows) if batch_rows else (pa.Table.from_batches([b]) for b in batches)
        for table in tables:
            yield from plan.score(loaded, table).to_batches()
    except KeelError as exc:
        raise RuntimeError(carry(exc)) from exc


def carry(exc: KeelError) -> str:
    """``exc`` as text that survives Spark's error reporting, for :func:`carried_error` on the driver."""
    from keel import errors as keel_errors

    # the nearest class of the error tree (a subclass defined elsewhere, such as keel.models.InputValuesError, is
    # raised on the driver as the class of the tree it derives from)
    kind = next(c for c in type(exc).__mro__ if getattr(keel_errors, c.__name__, None) is c)
    fields: dict[str, Any] = {"type": kind.__name__, "message": str(exc)}
    if isinstance(exc, ValidationError):
        fields.update(field=exc.field, row=exc.row)
    encoded = base64.b64encode(json.dumps(fields).encode("utf-8")).decode("ascii")
    return f"{exc} __keel_error__:{encoded}:"


def carried_error(exc: BaseException) -> KeelError | None:
    """The Keel error a worker raised (see :func:`carry`), found in the text of Spark's job failure ``exc``."""
    from keel import errors as keel_errors

    found = _CARRIED.search(str(exc))
    if found is None:
        return None
    try:
        fields = json.loads(base64.b64decode(found.group(1)))
    except ValueError:
        return None
    kind = getattr(keel_errors, str(fields.get("type")), None)
    message = str(fields.get("message"))
    if isinstance(kind, type) and issubclass(kind, ValidationError):
        return kind(message, field=fields.get("field"), row=fields.get("row"))
    if isinstance(kind, type) and issubclass(kind, KeelError) and kind is not keel_errors.MissingExtraError:
        return kind(message)
    return BackendError(message)


def _shippable(spark: SparkSession, package: PackageSource) -> PackageSource:
    """The reference the workers get: as it is when they read its artifact store, else carrying the bytes.

    A local path is read by every worker of a local master only: on a cluster the package's verified bytes
    travel instead (Spark broadcasts a closure over a megabyte).
    """
    uri = getattr(package, "artifacts_uri", None)
    if not isinstance(uri, str) or str(spark.sparkContext.master).startswith("local"):
        return package  # no store named, or workers on this machine: shipped as it is
    _, _, local = open_filesystem(uri)
    read_bytes = getattr(package, "read_bytes", None)
    if not local or read_bytes is None or not _is_dataclass_instance(package):
        return package  # an object store or a shared filesystem URI: every worker opens it
    ref: Any = package  # a PackageRef: a frozen dataclass
    shipped: PackageSource = dataclasses.replace(ref, artifacts_uri=None, blob=read_bytes())  # verified bytes
    return shipped


def _is_dataclass_instance(value: Any) -> bool:
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


def _ship_functions_by_value(plan: ScoringPlan) -> None:
    """Have the on-demand views' functions pickled by value: they live in the project's modules, which Keel
    imports from the project's folder while it reads the definitions, and which a worker cannot import."""
    for step in plan.on_demand:
        pickle_by_value(step.view.function)


def pickle_by_value(function: Any) -> None:
    """Have ``function``'s module pickled by value when Spark ships it to workers: a user's module (a project's, a
    test's) that Keel imported from a folder a worker cannot import from. Keel's and PySpark's own modules are
    imported by the workers as usual."""
    from pyspark import cloudpickle

    module = sys.modules.get(getattr(function, "__module__", "") or "")
    if module is not None and not module.__name__.startswith(("keel.", "pyspark.")) and module.__name__ != "keel":
        cloudpickle.register_pickle_by_value(module)  # type: ignore[no-untyped-call]


def _arrow_schema(spark: SparkSession, frame: DataFrame, read: set[str]) -> pa.Schema:
    """``frame``'s columns with the Arrow types Spark hands the ``read`` ones to Python with (the others are
    not read: null-typed, so that a column Arrow cannot carry does not matter unless it is read).

    Raises:
        ValidationError: a column that is read is of a type Arrow cannot carry.
    """
    import pyarrow as pa
    from pyspark.sql.pandas.types import to_arrow_type

    zone = spark.conf.get("spark.sql.session.timeZone")
    fields = []
    for field in frame.schema.fields:
        kind = pa.null()
        if field.name in read:
            try:
                kind = to_arrow_type(field.dataType, timezone=zone)
            except Exception as exc:  # PySpark raises its own error types for unsupported ones
                raise ValidationError(
                    f"column {field.name!r} of the input frame is of Spark type {field.dataType.simpleString()}, "
                    f"which cannot be scored: {exc}",
                    field=field.name,
                ) from exc
        fields.append(pa.field(field.name, kind))
    return pa.schema(fields)


def _spark_schema(frame: DataFrame, plan: ScoringPlan) -> Any:
    """The output's Spark schema: the id column's own field, then the prediction and probabilities."""
    from pyspark.sql.pandas.types import from_arrow_type
    from pyspark.sql.types import StructField, StructType

    fields = [
        frame.schema[f.name] if f.name == plan.id_column else StructField(f.name, from_arrow_type(f.type))
        for f in plan.schema
    ]
    return StructType(fields)


def _quoted(column: str) -> str:
    """A column name as Spark's column parser takes it literally (dots and spaces included)."""
    return "`" + column.replace("`", "``") + "`"


def _written(fs: Any, root: str, into: str) -> Written:
    """The Parquet files Spark wrote under ``root``: their rows from the footers and their SHA-256 (read once
    here, streamed; never their rows)."""
    import pyarrow.parquet as pq

    files = []
    for path in sorted(fs.find(root)):
        relative = path[len(root) :].lstrip("/")
        if any(part.startswith(("_", ".")) for part in relative.split("/")):
            continue  # _SUCCESS, .crc checksums, _temporary leftovers
        sha = hashlib.sha256()
        with fs.open(path, "rb") as f:
            rows = pq.ParquetFile(f).metadata.num_rows
            f.seek(0)
            for block in iter(functools.partial(f.read, 8 << 20), b""):
                sha.update(block)
        files.append(WrittenFile(relative, int(rows), sha.hexdigest()))
    return Written(into, tuple(files))
