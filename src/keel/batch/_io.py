"""Streaming input (Parquet by row groups, CSV by blocks) and atomic output, local or through fsspec."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from keel.errors import NotFoundError, ValidationError

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

    def fingerprint(self) -> dict[str, Any]:
        return {"path": self.uri, "size": self.size, "mtime": self.mtime}


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
    """
    import fsspec
    import pyarrow.parquet as pq

    kind = _kind(uri)
    fs, path = fsspec.core.url_to_fs(uri)
    if not fs.exists(path):
        raise NotFoundError(f"no input file at {uri}")
    info = fs.info(path)
    size = int(info.get("size") or 0)
    mtime_value = info.get("mtime", info.get("LastModified", info.get("updated")))
    mtime = None if mtime_value is None else str(mtime_value)
    try:
        if kind == "parquet":
            with fs.open(path, "rb") as f:
                meta = pq.ParquetFile(f)
                return InputFile(
                    uri, fs, path, kind, list(meta.schema_arrow.names), size, mtime, meta.metadata.num_rows
                )
        with fs.open(path, "rb") as f:
            reader = _csv_reader(f, path, None)
            columns = list(reader.schema.names)
        return InputFile(uri, fs, path, kind, columns, size, mtime, None)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise ValidationError(f"cannot read {kind} input {uri}: {exc}", field="input") from exc


def _csv_reader(f: Any, path: str, columns: list[str] | None) -> Any:
    import pyarrow.csv as pcsv

    compression = "gzip" if path.endswith(".gz") else "bz2" if path.endswith(".bz2") else None
    if compression:
        import pyarrow as pa

        f = pa.CompressedInputStream(f, compression)
    convert = pcsv.ConvertOptions(include_columns=columns) if columns else None
    return pcsv.open_csv(f, read_options=pcsv.ReadOptions(block_size=8 << 20), convert_options=convert)


def iter_chunks(source: InputFile, columns: list[str], chunk_rows: int) -> Iterator[pa.Table]:
    """The input's ``columns`` in consecutive tables of ``chunk_rows`` rows (the last may be shorter).

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
            reader = _csv_reader(f, source.path, columns)
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
            raise ValidationError(f"cannot read input {source.uri}: {exc}", field="input") from exc
        if held or not produced:
            yield pa.Table.from_batches(buffer, schema=buffer[0].schema if buffer else schema)


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


def write_parquet_atomic(fs: Any, path: str, table: pa.Table) -> None:
    """Write ``table`` to ``path`` under a temporary name, then rename it into place."""
    import pyarrow.parquet as pq

    tmp = temp_name(path)
    with fs.open(tmp, "wb") as f:
        pq.write_table(table, f)
    replace(fs, tmp, path)


def temp_name(path: str) -> str:
    head, _, name = path.rpartition("/")
    return f"{head}/.{name}.{uuid.uuid4().hex[:8]}.tmp" if head else f".{name}.{uuid.uuid4().hex[:8]}.tmp"


def is_local(fs: Any) -> bool:
    protocol = fs.protocol
    return protocol in ("file", "local") or (isinstance(protocol, tuple) and "file" in protocol)


def replace(fs: Any, src: str, dst: str) -> None:
    """Rename ``src`` to ``dst`` (atomic on a local disk; the best the filesystem offers elsewhere)."""
    if is_local(fs):
        os.replace(src, dst)
    else:
        if fs.exists(dst):
            fs.rm(dst)
        fs.mv(src, dst)
