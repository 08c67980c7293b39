"""A content digest of a table: identical data gives the identical digest, whatever produced it."""

from __future__ import annotations

import hashlib

import pyarrow as pa


class _HashSink:
    """A file-like sink that hashes what is written instead of keeping it."""

    def __init__(self) -> None:
        self.hash = hashlib.sha256()
        self.closed = False

    def write(self, data: bytes | memoryview) -> int:
        self.hash.update(data)
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def table_digest(table: pa.Table, batch_rows: int = 1 << 16) -> str:
    """SHA-256 of ``table``'s schema (names and types, without metadata) and rows, in order.

    The table is re-chunked into fixed-size batches first, so that the same rows read in different chunkings
    hash the same.
    """
    table = table.replace_schema_metadata(None).combine_chunks()
    sink = _HashSink()
    with pa.ipc.new_stream(pa.PythonFile(sink, mode="w"), table.schema) as writer:
        for batch in table.to_batches(max_chunksize=batch_rows):
            writer.write_batch(batch)
    return sink.hash.hexdigest()
