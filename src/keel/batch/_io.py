"""Streaming input (Parquet by row groups, CSV by blocks) and atomic output, local or through fsspec."""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from keel._files import atomic_open, is_local, protocol_of, storage_errors
from keel.errors import BackendError, NotFoundError, ValidationError

if TYPE_CHECKING:
    import pyarrow as pa

#: Rows per record batch asked of the Parquet reader (chunks are assembled from these).
_READ_BATCH = 65_536


@dataclass(frozen=True)
class InputFile:
    """An input table: where it is, what it holds, and a fingerprint that tells whether it changed."""

    uri: str
    fs: Any
    path: str
    kind: str  # "parquet" | "csv"
    columns: list[str]
    size: int
    mtime: str | None
    num_rows: int | None  # known up front for Parquet only
    row_groups: tuple[int, ...] = ()  # rows per row group (Parquet)
    schema: Any = None  # the columns' Arrow types (a CSV file's as inferred from its first block)

    def fingerprint(self) -> dict[str, Any]:
        return {"path": self.uri, "size": self.size, "mtime": self.mtime}

    def in_memory(self) -> bool:
        """Whether the file lives in this process's memory (``memory://``): other processes cannot read it."""
        return protocol_of(self.fs) == "memory"

    def slices_fit(self, chunk_rows: int) -> bool:
        """Whether chunks can be read by row groups on their own (:class:`RowSlice`) without reading much more
        than they hold: Parquet whose row groups are no longer than a chunk (a chunk then decodes at most its
        rows plus parts of two row groups)."""
        return self.kind == "parquet" and bool(self.row_groups) and max(self.row_groups) <= chunk_rows


def _kind(path: str) -> str:
    lower = path.lower()
    if lower.endswith((".parquet", ".pq")):
        return "parquet"
    if lower.endswith((".csv", ".csv.gz", ".csv.bz2")):
        return "csv"
    raise ValidationError(f"{path}: unsupported input type; use a .parquet or .csv file", field="input")


def open_input(uri: str) -> InputFile:
    """Describe the input at ``uri`` (a local path or an fsspec URI) without reading its rows.

    Raises:
        NotFoundError: no file there.
        ValidationError: not a Parquet or CSV file, or unreadable.
        BackendError: the storage holding it cannot be reached.
    """
    import fsspec
    import pyarrow.parquet as pq

    kind = _kind(uri)
    fs, path = fsspec.core.url_to_fs(uri)
    try:
        if not fs.exists(path):
            raise NotFoundError(f"no input file at {uri}")
        size, mtime = _stat(fs, path)
    except storage_errors() as exc:  # the storage itself failed (an S3 endpoint out of reach ...)
        raise BackendError(f"cannot look up the input {uri}: {exc}") from exc
    try:
        if kind == "parquet":
            with fs.open(path, "rb") as f:
                meta = pq.ParquetFile(f)
                groups = tuple(meta.metadata.row_group(i).num_rows for i in range(meta.metadata.num_row_groups))
                schema = meta.schema_arrow
                return InputFile(
                    uri, fs, path, kind, list(schema.names), size, mtime, meta.metadata.num_rows, groups, schema
                )
        with fs.open(path, "rb") as f:
            reader = _csv_reader(f, path, None)
            columns = list(reader.schema.names)
        return InputFile(uri, fs, path, kind, columns, size, mtime, None, schema=reader.schema)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise ValidationError(f"cannot read {kind} input {uri}: {exc}", field="input") from exc


def _stat(fs: Any, path: str) -> tuple[int, str | None]:
    """The file's size and modification time (as text; ``None`` when the filesystem gives none)."""
    info = fs.info(path)
    mtime = info.get("mtime", info.get("LastModified", info.get("updated")))
    return int(info.get("size") or 0), None if mtime is None else str(mtime)


def _csv_reader(f: Any, path: str, columns: list[str] | None, text: Sequence[str] = ()) -> Any:
    """A streaming CSV reader; the ``text`` columns are read as strings as they are written (a CSV file has no
    types: a string feature of digits, such as a postcode, stays the text it is, leading zeros included)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    compression = "gzip" if path.endswith(".gz") else "bz2" if path.endswith(".bz2") else None
    if compression:
        f = pa.CompressedInputStream(f, compression)
    options: dict[str, Any] = {}
    if columns:
        options["include_columns"] = columns
    if text:
        options["column_types"] = dict.fromkeys(text, pa.string())
    convert = pcsv.ConvertOptions(**options) if options else None
    return pcsv.open_csv(f, read_options=pcsv.ReadOptions(block_size=8 << 20), convert_options=convert)


def text_schema(source: InputFile, text: Sequence[str]) -> Any:
    """The input's Arrow schema as its chunks will have it: a CSV file's ``text`` columns as strings."""
    import pyarrow as pa

    if source.kind != "csv" or not text:
        return source.schema
    wanted = set(text)
    return pa.schema([pa.field(f.name, pa.string()) if f.name in wanted else f for f in source.schema])


def iter_chunks(source: InputFile, columns: list[str], chunk_rows: int, text: Sequence[str] = ()) -> Iterator[pa.Table]:
    """The input's ``columns`` in consecutive tables of ``chunk_rows`` rows (the last may be shorter); a CSV file's
    ``text`` columns are read as strings.

    Chunk ``i`` always holds rows ``[i * chunk_rows, (i + 1) * chunk_rows)``, whatever the file's row groups or
    blocks, so a resumed run sees the same chunks. An empty input gives one empty chunk.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    with source.fs.open(source.path, "rb") as f:
        if source.kind == "parquet":
            pf = pq.ParquetFile(f, pre_buffer=False)  # pre-buffering caches the whole file: memory would grow
            schema = pf.schema_arrow
            batches: Iterator[pa.RecordBatch] = pf.iter_batches(
                batch_size=min(chunk_rows, _READ_BATCH), columns=columns
            )
            schema = pa.schema([schema.field(c) for c in columns])
        else:
            reader = _csv_reader(f, source.path, columns, [c for c in text if c in columns])
            schema = reader.schema
            batches = iter(reader)
        buffer: list[pa.RecordBatch] = []
        held = 0
        produced = False
        try:
            for batch in batches:
                if batch.num_rows == 0:
                    continue
                buffer.append(batch)
                held += batch.num_rows
                while held >= chunk_rows:
                    table = pa.Table.from_batches(buffer, schema=batch.schema)
                    yield table.slice(0, chunk_rows)
                    produced = True
                    rest = table.slice(chunk_rows)
                    buffer, held = rest.to_batches(), rest.num_rows
        except (OSError, ValueError) as exc:
            if isinstance(exc, ValidationError):
                raise
            raise ValidationError(f"cannot read input {source.uri}: {_named(str(exc), source)}", field="input") from exc
        if held or not produced:
            yield pa.Table.from_batches(buffer, schema=buffer[0].schema if buffer else schema)


def _named(message: str, source: InputFile) -> str:
    """Arrow's CSV message with the column's name beside its number (``In CSV column #2 ('spend'): ...``)."""

    def name(found: re.Match[str]) -> str:
        i = int(found.group(1))
        return f"{found.group(0)} ({source.columns[i]!r})" if 0 <= i < len(source.columns) else found.group(0)

    return re.sub(r"CSV column #(\d+)", name, message) if source.kind == "csv" else message


@dataclass(frozen=True)
class RowSlice:
    """Rows ``[start, start + rows)`` of a Parquet input, read by whoever scores them (a worker process or a
    thread), so that no chunk's data crosses a process boundary.

    Attributes:
        uri: the input (a local path or an fsspec URI every scoring process can open).
        columns: the columns to read.
        start: the first row (0-based).
        rows: how many rows.
        size, mtime: the input's size and modification time when the run started; a reader refuses a file that
            no longer matches them (it was replaced while the run went on).
    """

    uri: str
    columns: tuple[str, ...]
    start: int
    rows: int
    size: int
    mtime: str | None


class SliceReader:
    """Reads :class:`RowSlice` s of Parquet inputs by their row groups, keeping each input open (one reader per
    thread: an open file is not shared between threads)."""

    def __init__(self) -> None:
        self._open: dict[str, tuple[Any, list[int], Any]] = {}

    def read(self, part: RowSlice) -> pa.Table:
        """The slice's rows and columns, as the whole file would give them.

        Raises:
            ValidationError: the input changed since the run started, or cannot be read.
        """
        pf, offsets, schema = self._file(part)
        columns = list(part.columns)
        if part.rows == 0:
            return schema.empty_table().select(columns)
        end = part.start + part.rows
        if end > offsets[-1]:
            raise ValidationError(
                f"{part.uri} has {offsets[-1]} rows, fewer than when the run started; re-run it", field="input"
            )
        first = bisect.bisect_right(offsets, part.start) - 1
        last = bisect.bisect_left(offsets, end)  # row groups first .. last-1 hold the slice
        try:
            table = pf.read_row_groups(list(range(first, last)), columns=columns, use_threads=False)
        except (OSError, ValueError) as exc:
            raise ValidationError(f"cannot read input {part.uri}: {exc}", field="input") from exc
        return table.slice(part.start - offsets[first], part.rows)

    def _file(self, part: RowSlice) -> tuple[Any, list[int], Any]:
        opened = self._open.get(part.uri)
        if opened is None:
            import fsspec
            import pyarrow.parquet as pq

            fs, path = fsspec.core.url_to_fs(part.uri)
            if _stat(fs, path) != (part.size, part.mtime):
                raise ValidationError(f"{part.uri} changed since the run started; re-run it", field="input")
            try:
                # a local file through Arrow's own reader; others through fsspec. No pre-buffering: it would
                # cache the whole file, and memory would grow with the input
                pf = pq.ParquetFile(path if is_local(fs) else fs.open(path, "rb"), pre_buffer=False)
            except (OSError, ValueError) as exc:
                raise ValidationError(f"cannot read input {part.uri}: {exc}", field="input") from exc
            meta = pf.metadata
            offsets = [0]
            for i in range(meta.num_row_groups):
                offsets.append(offsets[-1] + meta.row_group(i).num_rows)
            opened = self._open[part.uri] = (pf, offsets, pf.schema_arrow)
        return opened

    def close(self) -> None:
        for pf, _, _ in self._open.values():
            pf.close()
        self._open.clear()


def to_ipc(table: pa.Table) -> bytes:
    """``table`` as Arrow IPC stream bytes (only its own rows, even for a slice)."""
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def from_ipc(data: bytes) -> pa.Table:
    import pyarrow as pa

    with pa.ipc.open_stream(pa.py_buffer(data)) as reader:
        return reader.read_all()


def write_parquet_atomic(fs: Any, path: str, table: pa.Table, **options: Any) -> None:
    """Write ``table`` to ``path`` atomically (see :mod:`keel._files`; ``options``: those of
    ``pyarrow.parquet.write_table``)."""
    import pyarrow.parquet as pq

    with atomic_open(fs, path, makedirs=False) as f:
        pq.write_table(table, f, **options)
