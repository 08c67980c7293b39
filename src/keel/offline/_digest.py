"""A content digest of a table: identical data gives the identical digest, whatever produced it."""

from __future__ import annotations

import hashlib

import pyarrow as pa
import pyarrow.compute as pc


class _HashSink:
    """A file-like sink that hashes what is written instead of keeping it."""

    def __init__(self, hash_: hashlib._Hash) -> None:
        self.hash = hash_
        self.closed = False

    def write(self, data: bytes | memoryview) -> int:
        self.hash.update(data)
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def _filler(t: pa.DataType) -> pa.Scalar:
    """A fixed non-null value of type ``t`` to stand in for nulls."""
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return pa.scalar([], type=t)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return pa.scalar("", type=t)
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return pa.scalar(b"", type=t)
    if pa.types.is_boolean(t):
        return pa.scalar(False, type=t)
    return pa.scalar(0, type=t)


def _type_name(t: pa.DataType) -> str:
    """The type's name without the name of a list's item field (Parquet calls it "element", Arrow "item")."""
    if isinstance(t, pa.ListType | pa.LargeListType):
        kind = "list" if isinstance(t, pa.ListType) else "large_list"
        return f"{kind}<{_type_name(t.value_type)}>"
    return str(t)


def _parts(name: str, column: pa.ChunkedArray) -> list[tuple[str, pa.ChunkedArray]]:
    """``column`` as null-free pieces whose bytes depend on its content only.

    What lies under a null slot depends on how an array was produced (a NaN from pandas, a zero from Parquet):
    a column with nulls becomes its validity (one byte a row) and its values with nulls filled; a list column
    becomes its lengths and its flattened items (treated the same way).
    """
    parts: list[tuple[str, pa.ChunkedArray]] = []
    if column.null_count and not pa.types.is_null(column.type):
        parts.append((f"{name}:valid", pc.cast(pc.is_valid(column), pa.uint8())))
        column = pc.fill_null(column, _filler(column.type))
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        parts.append((f"{name}:length", pc.list_value_length(column)))
        parts += _parts(f"{name}:item", pc.list_flatten(column))
    elif pa.types.is_boolean(column.type):  # bytes, not bits: no padding bits of unknown value
        parts.append((name, pc.cast(column, pa.uint8())))
    else:
        parts.append((name, column))
    return parts


def table_digest(table: pa.Table, batch_rows: int = 1 << 16) -> str:
    """SHA-256 of ``table``'s schema (names and types, without metadata) and rows, in order.

    Null slots are canonicalised and every column is re-chunked into fixed-size batches, so that the same rows
    read from different sources, or in different chunkings, hash the same.
    """
    digest = hashlib.sha256()
    for name, t in zip(table.column_names, table.schema.types, strict=True):
        digest.update(f"{len(name)}:{name}:{_type_name(t)};".encode())
    sink = _HashSink(digest)
    for name, column in zip(table.column_names, table.columns, strict=True):
        for part, values in _parts(name, column):
            piece = pa.table({part: values}).combine_chunks()
            with pa.ipc.new_stream(pa.PythonFile(sink, mode="w"), piece.schema) as writer:
                for batch in piece.to_batches(max_chunksize=batch_rows):
                    writer.write_batch(batch)
    return digest.hexdigest()
