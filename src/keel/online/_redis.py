"""The Redis online store: one string key per (prefix, view, entity) holding a packed row.

Keys: ``{prefix}:{view}:{encoded key}`` per entity, and a hash ``{prefix}:{view}`` with the view's metadata
(``keys``: the key columns; ``dtype:{feature}``: each feature's dtype; ``layout:{id}``: the fields of each
row layout). Neither prefixes nor view names may contain ``:``, so namespaces never overlap.

A row is packed with :mod:`struct`, little-endian (no pickle: decoding never runs code)::

    int64 event time (epoch µs) | uint64 layout id | null bitmap | fixed-width fields | variable-width bytes

Fixed-width fields: int64 and timestamp (epoch µs) as ``q``, float64 as ``d``, bool as ``?``; strings (UTF-8)
and lists (packed float64) as a ``uint32`` byte length whose bytes follow, in field order. The layout id is a
hash of the layout's fields, so a layout is immutable and readers cache it forever; a write with other
features simply uses another layout. Event time first lets the write script compare event times without
knowing the layout.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from itertools import repeat
from operator import itemgetter
from typing import Any

from keel.errors import BackendError, MissingExtraError
from keel.online._batch import Batch, ViewSchema, list_blobs
from keel.online._keys import encode_key, encode_keys
from keel.online._store import OnlineRead, OnlineStore, empty_read
from keel.online._values import datetime_from_us, floats_from_bytes

__all__ = ["RedisOnlineStore"]

_CODES = {"int64": "q", "float64": "d", "bool": "?", "timestamp": "q", "string": "I", "list[float64]": "I"}
_FILL = {"int64": 0, "float64": 0.0, "bool": False, "timestamp": 0}
_HEADER = struct.Struct("<qQ")
_WRITE_CHUNK = 1_000  # rows per script call: bounds how long one call holds the server
_CHUNKS_PER_ROUND_TRIP = 20
_READ_CHUNK = 10_000  # keys per MGET; larger reads send several MGETs in one pipeline

# Upsert with the newer-event-time rule, atomically per key. ARGV[1] is the stride: 1 (value) or 2 (value,
# expire-at in epoch ms). The first 8 bytes of a value are its event time (signed little-endian µs); Lua
# numbers are doubles, exact for event times up to year 2255.
_UPSERT = """
local stride = tonumber(ARGV[1])
local written = 0
for i = 1, #KEYS do
  local value = ARGV[2 + (i - 1) * stride]
  local old = redis.call('GET', KEYS[i])
  if (not old) or struct.unpack('<i8', old) <= struct.unpack('<i8', value) then
    redis.call('SET', KEYS[i], value)
    if stride == 2 then
      redis.call('PEXPIREAT', KEYS[i], ARGV[3 + (i - 1) * stride])
    end
    written = written + 1
  end
end
return written
"""


class _Layout:
    """How the rows of one set of (feature, dtype) fields are packed and unpacked."""

    def __init__(self, fields: tuple[tuple[str, str], ...]) -> None:
        self.fields = fields
        self.json = json.dumps([list(f) for f in fields], separators=(",", ":"))
        self.id_bytes = hashlib.blake2b(self.json.encode(), digest_size=8).digest()
        self.id = int.from_bytes(self.id_bytes, "little")
        self.index = {name: i for i, (name, _) in enumerate(fields)}
        self.bitmap_size = max(1, (len(fields) + 7) // 8)
        self.struct = struct.Struct(f"<qQ{self.bitmap_size}s" + "".join(_CODES[d] for _, d in fields))
        self.zero = bytes(self.bitmap_size)
        self.var = tuple(
            (i, floats_from_bytes if d == "list[float64]" else bytes.decode)
            for i, (_, d) in enumerate(fields)
            if d in ("string", "list[float64]")
        )
        self.timestamps = tuple(i for i, (_, d) in enumerate(fields) if d == "timestamp")
        # Rows of these layouts are complete once unpacked: no bytes to slice, nothing to convert.
        self.plain = not self.var and not self.timestamps

    def unpack(self, buf: bytes) -> Sequence[Any]:
        """``(event_us, layout id, bitmap, field values..., None)``; the trailing ``None`` serves features the
        layout lacks."""
        row = self.struct.unpack_from(buf)
        bitmap = row[2]
        if self.plain and bitmap == self.zero:
            return (*row, None)
        values = list(row)
        values.append(None)
        if bitmap != self.zero:
            for i in range(len(self.fields)):
                if bitmap[i >> 3] >> (i & 7) & 1:
                    values[3 + i] = None
        offset = self.struct.size
        for i, convert in self.var:
            length = row[3 + i]
            if values[3 + i] is not None:
                values[3 + i] = convert(buf[offset : offset + length])
            offset += length
        for i in self.timestamps:
            if values[3 + i] is not None:
                values[3 + i] = datetime_from_us(values[3 + i])
        return values

    def reader(self, names: tuple[str, ...]) -> Callable[[bytes], tuple[Any, ...]]:
        """A function from a packed row to ``(event_us, *values of names)``."""
        absent = 3 + len(self.fields)  # the trailing None of unpack()
        positions = [3 + self.index[n] if n in self.index else absent for n in names]
        unpack = self.unpack
        if not positions:
            return lambda buf: (unpack(buf)[0],)
        pick = itemgetter(0, *positions)
        if self.plain and absent not in positions:
            # The common case (fixed-width fields only, all asked for): one unpack, no copy, unless a null bit
            # is set.
            unpack_from, zero = self.struct.unpack_from, self.zero

            def read(buf: bytes) -> tuple[Any, ...]:
                row = unpack_from(buf)
                return pick(row) if row[2] == zero else pick(unpack(buf))  # type: ignore[no-any-return]

            return read
        return lambda buf: pick(unpack(buf))

    def pack(self, batch: Batch) -> list[bytes]:
        """Every row of ``batch`` (whose features are this layout's fields), packed."""
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        n = batch.num_rows
        fixed: list[Sequence[Any]] = []
        variable: list[list[bytes]] = []
        nulls: dict[int, Any] = {}  # field index -> numpy mask of its null rows
        for i, (_, dtype) in enumerate(self.fields):
            col = batch.column(i)
            if col.null_count:
                nulls[i] = col.is_null().to_numpy(zero_copy_only=False)
            if dtype in _FILL:
                if dtype == "timestamp":
                    col = col.cast(pa.int64())
                if col.null_count:
                    col = pc.fill_null(col, _FILL[dtype])
                fixed.append(col.to_numpy(zero_copy_only=False).tolist())
                continue
            if dtype == "string":
                blobs = [b"" if s is None else s.encode() for s in col.to_pylist()]
            else:
                blobs = [b"" if b is None else b for b in list_blobs(col)]
            fixed.append([len(b) for b in blobs])
            variable.append(blobs)
        if nulls:
            # One row of the null bitmap per entity, bit i for field i (little bit order, as unpack reads it).
            bits = np.zeros((n, len(self.fields)), dtype=bool)
            for i, mask in nulls.items():
                bits[:, i] = mask
            flat = np.packbits(bits, axis=1, bitorder="little").tobytes()
            size = self.bitmap_size
            bitmaps: Iterator[bytes] | list[bytes] = [flat[j * size : (j + 1) * size] for j in range(n)]
        else:
            bitmaps = repeat(self.zero, n)
        rows = list(map(self.struct.pack, batch.event_us, repeat(self.id, n), bitmaps, *fixed))
        if variable:
            rows = list(map(b"".join, zip(rows, *variable, strict=True)))
        return rows


class RedisOnlineStore(OnlineStore):
    """Online store in Redis: ``redis://host:port/db`` (``rediss://`` for TLS); needs ``keel[redis]``.

    Reads are one ``GET``/``MGET`` round trip; writes run a server-side script per chunk of rows that applies
    the newer-event-time rule atomically per key, several chunks per round trip. With a ``ttl``, each entity
    expires at its event time plus the TTL (``PEXPIREAT``).

    Args:
        uri: a redis-py URL (``redis://[:password@]host:port/db``; options such as ``?socket_timeout=5``).
        prefix: namespace of this project's keys in the database.
    """

    kind = "redis"

    def __init__(self, uri: str, *, prefix: str = "keel") -> None:
        super().__init__(uri, prefix=prefix)
        try:
            import redis
        except ImportError as exc:
            raise MissingExtraError("redis", "redis", "a Redis online store") from exc
        try:
            # Any: redis-py's annotations (bytes | str for every reply) do not know decode_responses=False.
            self._client: Any = redis.Redis.from_url(uri)
        except (ValueError, redis.RedisError) as exc:
            raise BackendError(f"{self.description}: invalid Redis URL: {exc}") from exc
        self._upsert = self._client.register_script(_UPSERT)
        #: layout id bytes -> layout; layouts are content-addressed, so entries never go stale
        self._layouts: dict[bytes, _Layout] = {}
        self._readers: dict[tuple[bytes, tuple[str, ...]], Callable[[bytes], tuple[Any, ...]]] = {}

    def _meta_key(self, view: str) -> str:
        return f"{self.prefix}:{view}"

    # -- writes
    def _stored_schema(self, view: str) -> ViewSchema | None:
        meta = self._client.hgetall(self._meta_key(view))
        if b"keys" not in meta:
            return None
        keys = tuple((str(n), str(d)) for n, d in json.loads(meta[b"keys"]))
        dtypes = {field[6:].decode(): value.decode() for field, value in meta.items() if field.startswith(b"dtype:")}
        return ViewSchema(keys, dtypes)

    def _register(self, batch: Batch) -> _Layout:
        """Check the batch against the view's schema, record its keys, new dtypes and layout, and return the
        layout. A concurrent writer that recorded other types first makes this write a conflict."""
        view = batch.view
        stored = self._stored_schema(view)
        schema, added = batch.bind(stored)
        layout = self._layout_of(batch)
        meta = self._meta_key(view)
        pipe = self._client.pipeline(transaction=False)
        pipe.hsetnx(meta, "keys", json.dumps([list(k) for k in schema.keys]))
        for name in added:
            pipe.hsetnx(meta, f"dtype:{name}", schema.dtypes[name])
        pipe.hset(meta, f"layout:{layout.id_bytes.hex()}", layout.json)
        results = pipe.execute()
        if (stored is None and not results[0]) or not all(results[1 : 1 + len(added)]):
            batch.bind(self._stored_schema(view))  # raises ConflictError when the other writer's types differ
        return layout

    def _write(self, batch: Batch, ttl: timedelta | None) -> int:
        view = batch.view
        layout = self._register(batch)
        if not batch.num_rows:
            return 0
        rows = layout.pack(batch)
        base = f"{self.prefix}:{view}:"
        keys = [f"{base}{k}" for k in batch.keys]
        expire_ms = None
        if ttl is not None:
            ttl_ms = ttl // timedelta(milliseconds=1)
            expire_ms = [us // 1000 + ttl_ms for us in batch.event_us]
        written = 0
        pipe = self._client.pipeline(transaction=False)
        pending = 0
        for start in range(0, len(keys), _WRITE_CHUNK):
            stop = start + _WRITE_CHUNK
            args: list[Any]
            if expire_ms is None:
                args = [1, *rows[start:stop]]
            else:
                args = [2]
                for value, at in zip(rows[start:stop], expire_ms[start:stop], strict=True):
                    args += (value, at)
            self._upsert(keys=keys[start:stop], args=args, client=pipe)
            pending += 1
            if pending == _CHUNKS_PER_ROUND_TRIP:
                written += sum(pipe.execute())
                pending = 0
        if pending:
            written += sum(pipe.execute())
        return written

    def _layout_of(self, batch: Batch) -> _Layout:
        fields = tuple((name, batch.dtype(i)) for i, name in enumerate(batch.features))
        layout = _Layout(fields)
        return self._layouts.setdefault(layout.id_bytes, layout)

    # -- reads
    def _reader(self, view: str, layout_id: bytes, names: tuple[str, ...]) -> Callable[[bytes], tuple[Any, ...]] | None:
        layout = self._layouts.get(layout_id)
        if layout is None:
            text = self._client.hget(self._meta_key(view), f"layout:{layout_id.hex()}")
            if text is None:  # the view is being dropped: its rows read as unknown
                return None
            found = _Layout(tuple((str(n), str(d)) for n, d in json.loads(text)))
            if found.id_bytes != layout_id:
                raise BackendError(
                    f"{self.description}: view {view!r}: layout {layout_id.hex()} does not match its fields; "
                    "the metadata hash was changed outside Keel: drop the view and write it again"
                )
            layout = self._layouts.setdefault(layout_id, found)
        reader = self._readers[(layout_id, names)] = layout.reader(names)
        return reader

    def _read(self, view: str, entity_keys: Sequence[tuple[Any, ...]], features: Sequence[str]) -> OnlineRead:
        """One round trip: ``GET`` for one entity, ``MGET`` for more."""
        names = features if type(features) is tuple else tuple(features)
        n = len(entity_keys)
        base = f"{self.prefix}:{view}:"
        if n == 1:
            key = entity_keys[0]
            if type(key) is tuple and len(key) == 1 and (type(key[0]) is int or type(key[0]) is str):
                raw: list[bytes | None] = [self._client.get(f"{base}{key[0]}")]
            else:
                raw = [self._client.get(f"{base}{encode_key(key)}")]
        elif n == 0:
            return empty_read(names, 0)
        else:
            keys = [f"{base}{k}" for k in encode_keys(entity_keys)]
            if n <= _READ_CHUNK:
                raw = self._client.mget(keys)
            else:
                pipe = self._client.pipeline(transaction=False)
                for start in range(0, n, _READ_CHUNK):
                    pipe.mget(keys[start : start + _READ_CHUNK])
                raw = [value for chunk in pipe.execute() for value in chunk]
        missing = (None,) * (len(names) + 1)
        readers = self._readers
        rows = []
        last_layout: bytes | None = None
        reader: Callable[[bytes], tuple[Any, ...]] | None = None
        try:
            for buf in raw:
                if buf is None:
                    rows.append(missing)
                    continue
                layout_id = buf[8:16]
                if layout_id != last_layout:  # rows of one view almost always share one layout
                    reader = readers.get((layout_id, names)) or self._reader(view, layout_id, names)
                    last_layout = layout_id
                rows.append(missing if reader is None else reader(buf))
        except struct.error as exc:
            raise self._failure(view, "decoding a stored row", exc) from exc
        columns: list[Sequence[Any]] = list(zip(*rows, strict=True))
        event_us = columns[0]
        del columns[0]
        return OnlineRead(names, event_us, columns)

    # -- dropping
    def _drop_view(self, view: str) -> None:
        """Scans the view's keys (``SCAN`` + ``UNLINK``), without blocking the server."""
        doomed: list[bytes] = []
        for key in self._client.scan_iter(match=f"{self.prefix}:{view}:*", count=1_000):
            doomed.append(key)
            if len(doomed) == 1_000:
                self._client.unlink(*doomed)
                doomed = []
        if doomed:
            self._client.unlink(*doomed)
        self._client.unlink(self._meta_key(view))

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()
