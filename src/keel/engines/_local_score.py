"""The local engine's ``score``: stream the input in bounded batches through the package, into one Parquet file.

The package is loaded (and verified) once; the input is read batch by batch (Parquet by row groups, CSV by
blocks) and each batch's output is appended to the file as soon as it is scored, so memory holds one batch
whatever the input's size. The file is written under a temporary name and appears whole; its SHA-256 is taken
from the bytes as they are written.

This is the operation the two engines share the contract of; the local engine's parallel, resumable path over
many cores is still :mod:`keel.batch`.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from keel._files import atomic_open, open_filesystem
from keel.engines._base import Files, PackageSource, Scoring, Written, WrittenFile
from keel.engines._scoring import ScoringPlan, gather
from keel.errors import ValidationError

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["OUTPUT_FILE", "score_files"]

#: The name of the one file the local engine writes under the output folder.
OUTPUT_FILE = "part-0.parquet"


def score_files(
    data: Files | pa.Table, package: PackageSource, into: str, scoring: Scoring, *, batch_rows: int = 65_536
) -> Written:
    """Score every row of ``data`` with ``package`` and write the output as one Parquet file under ``into``.

    The output keeps the input's row order: ``scoring.id_column`` (when given), ``prediction``, and with
    ``scoring.probabilities`` a classifier's ``proba_<class>`` columns — the columns batch scoring writes.

    Args:
        data: Parquet or CSV files (read in the order given), or an Arrow table.
        package: the package by reference; loaded and verified once.
        into: the output folder (a local path or an fsspec URI); it must be empty or absent.
        scoring: the id column, probabilities and request columns.
        batch_rows: rows scored at a time (memory is bounded by it).

    Returns:
        The one file written (``part-0.parquet``), with its rows and SHA-256.

    Raises:
        IntegrityError: the package's bytes do not match its digest.
        ValidationError: the id column or a feature column is missing (checked before any row is scored), a
            value does not fit its feature (named with its input row), the input cannot be read, or ``into``
            already holds files.
    """
    import pyarrow.parquet as pq

    if isinstance(batch_rows, bool) or not isinstance(batch_rows, int) or batch_rows < 1:
        raise ValidationError(f"batch_rows must be a positive integer, got {batch_rows!r}", field="batch_rows")
    loaded = package.load()
    # a CSV file has no types: a string feature's column is read as the text it is (digits stay text)
    source = _Source.of(data, text=tuple(f.name for f in loaded.schema.features if f.dtype == "string"))
    plan = ScoringPlan.of(loaded, source.schema, scoring, what=source.label)
    fs, root, _ = open_filesystem(into)
    _refuse_files(fs, root, into)
    rows = 0
    with atomic_open(fs, f"{root}/{OUTPUT_FILE}") as target:
        sink = _Digesting(target)
        with pq.ParquetWriter(sink, plan.schema) as writer:
            for table in gather(source.batches(plan.columns, batch_rows), batch_rows):
                scored = plan.score(loaded, table, first_row=rows)
                if scored.schema != plan.schema:  # a later file's id column of another type than the first's
                    scored = _as_first(scored, plan)
                writer.write_table(scored, row_group_size=batch_rows)
                rows += table.num_rows
    return Written(into, (WrittenFile(OUTPUT_FILE, rows, sink.hexdigest()),))


def _as_first(scored: pa.Table, plan: ScoringPlan) -> pa.Table:
    try:
        return scored.cast(plan.schema)
    except (ValueError, NotImplementedError) as exc:
        raise ValidationError(
            f"the id column {plan.id_column!r} is {plan.schema.field(0).type} in the first file but "
            f"{scored.schema.field(0).type} in a later one: {exc}",
            field=plan.id_column,
        ) from exc


def _refuse_files(fs: Any, root: str, into: str) -> None:
    """Scoring never mixes its output with files already there (another run's would be read as its own)."""
    if fs.exists(root) and (not fs.isdir(root) or fs.ls(root, detail=False)):
        raise ValidationError(f"{into} already exists and is not an empty folder; score into a new one", field="into")


class _Digesting:
    """A write-only binary file that passes every byte to ``target`` and hashes it on the way (the Parquet
    writer writes sequentially, so the digest is the file's)."""

    def __init__(self, target: Any) -> None:
        self._target = target
        self._sha = hashlib.sha256()
        self._position = 0
        self.closed = False

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self._sha.update(view)
        self._target.write(view)
        self._position += view.nbytes
        return view.nbytes

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        self._target.flush()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True  # the target is the atomic file's: it is closed (and published) by its owner

    def hexdigest(self) -> str:
        return self._sha.hexdigest()


class _Source:
    """The input: its schema (read without reading rows, for the checks) and its batches."""

    def __init__(self, data: Files | pa.Table, schema: pa.Schema, label: str, text: tuple[str, ...] = ()) -> None:
        self.data = data
        self.schema = schema
        self.label = label
        self.text = text

    @classmethod
    def of(cls, data: Files | pa.Table, *, text: tuple[str, ...] = ()) -> _Source:
        """The input; a CSV file's ``text`` columns are read as strings."""
        import pyarrow as pa

        if isinstance(data, pa.Table):
            return cls(data, data.schema, "the input table")
        if not isinstance(data, Files):
            raise ValidationError(
                f"the local engine scores files or an Arrow table, got {type(data).__name__}", field="data"
            )
        if not data.uris:
            raise ValidationError(f"{data.label}: no files to score", field="data")
        with _reading(data.label):
            first = next(_file_schemas(data, data.uris[:1], text))
        return cls(data, first, data.label, text)

    def batches(self, columns: list[str], rows: int) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa

        if isinstance(self.data, pa.Table):
            yield from self.data.select(columns).to_batches(max_chunksize=rows)
            return
        files = self.data
        for uri in files.uris:
            with _reading(f"{files.format} file {uri!r}"), _open(uri) as f:
                yield from _file_batches(files, uri, f, columns, rows, self.text)


@contextlib.contextmanager
def _reading(what: str) -> Iterator[None]:
    """Reading failures (not Parquet, a bad CSV block, a file gone) as a ValidationError naming the input."""
    try:
        yield
    except ValidationError:
        raise
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise ValidationError(f"cannot read {what}: {exc}", field="data") from exc


def _open(uri: str) -> Any:
    fs, path, _ = open_filesystem(uri)
    return fs.open(path, "rb")


def _file_schemas(files: Files, uris: tuple[str, ...], text: tuple[str, ...] = ()) -> Iterator[pa.Schema]:
    import pyarrow.parquet as pq

    for uri in uris:
        with _open(uri) as f:
            if files.format == "parquet":
                yield pq.ParquetFile(f).schema_arrow
            else:
                yield _csv_reader(files, f, text).schema


def _file_batches(
    files: Files, uri: str, f: Any, columns: list[str], rows: int, text: tuple[str, ...] = ()
) -> Iterator[pa.RecordBatch]:
    """One file's ``columns``, in order; a file lacking one is refused, naming it."""
    import pyarrow.parquet as pq

    if files.format == "parquet":
        pf = pq.ParquetFile(f, pre_buffer=False)  # pre-buffering would cache the whole file: memory would grow
        _check_columns(uri, pf.schema_arrow.names, columns)
        yield from pf.iter_batches(batch_size=rows, columns=columns)
        return
    reader = _csv_reader(files, f, text)
    _check_columns(uri, reader.schema.names, columns)
    for batch in reader:
        yield batch.select(columns)


def _check_columns(uri: str, names: list[str], columns: list[str]) -> None:
    missing = [c for c in columns if c not in names]
    if missing:
        raise ValidationError(f"{uri} lacks column(s) {missing} that the first file has", field=missing[0])


def _csv_reader(files: Files, f: Any, text: tuple[str, ...] = ()) -> Any:
    """A streaming CSV reader with the files' options (``delimiter``, ``header``: ``true``/``false``); without a
    header the columns are named ``_c0``, ``_c1`` ... as Spark names them. The ``text`` columns (of a file with a
    header) are read as strings."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    options = dict(files.options)
    header = options.get("header", "true").lower() != "false"
    read = pcsv.ReadOptions(block_size=8 << 20, autogenerate_column_names=not header)
    parse = pcsv.ParseOptions(delimiter=options.get("delimiter", ","))
    convert = pcsv.ConvertOptions(column_types=dict.fromkeys(text, pa.string())) if text and header else None
    reader = pcsv.open_csv(f, read_options=read, parse_options=parse, convert_options=convert)
    if header:
        return reader
    return _Renamed(reader)


class _Renamed:
    """A CSV reader without a header, its columns named as Spark names them (``_c0`` ...)."""

    def __init__(self, reader: Any) -> None:
        import pyarrow as pa

        self._reader = reader
        self.schema = pa.schema([f.with_name(f"_c{i}") for i, f in enumerate(reader.schema)])

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa

        for batch in self._reader:
            yield pa.RecordBatch.from_arrays(batch.columns, schema=self.schema)
