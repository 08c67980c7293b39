"""The Redis online store: one string key per (prefix, view, entity) holding a packed row.

Keys: ``{prefix}:{view}:{encoded key}`` per entity, and a hash ``{prefix}:{view}`` with the view's metadata
(``keys``: the key columns; ``dtype:{feature}``: each feature's dtype; ``layout:{id}``: the fields of each
row layout). Neither prefixes nor view names may contain ``:`` or ``@``, so namespaces never overlap.

Generations (a view's data replaced whole, see :meth:`OnlineStore.begin_generation`): generation ``G``'s rows
are ``{prefix}:{view}@G:{encoded key}`` and its metadata the hash ``{prefix}:{view}@G`` (``keys``, ``dtype:*``;
layouts stay in ``{prefix}:{view}``, for every generation). The string ``{prefix}:{view}@`` names the live
generation; without it, the live data is the plain layout above. The hash ``{prefix}:{view}@gens`` lists the
unpublished generations (``G`` -> owner process, ``G:touched`` -> last write, ms) and the replaced ones not yet
removed (``G`` -> ``retired``; ``-`` for the plain layout). Publishing is one script: check ``G`` is listed,
point ``{prefix}:{view}@`` at it, mark the replaced generation retired; its keys are removed afterwards.

A read sends the pointer in the same ``MGET`` as the rows of the generation it last saw live: one round trip,
atomic, so the rows are those of the generation live at that instant; when the pointer moved, it reads again
from the new one. Writes carry a guard the write script checks before writing: for the live data, the
generation it resolved must still be live (else it resolves again and rewrites the batch there); for an
unpublished one, it must still be listed. Retired data is removed only after the switch, so no reader or
writer that passed its check ever meets a half-removed generation.

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
import logging
import struct
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from itertools import repeat
from operator import itemgetter
from typing import Any

from keel._outage import Outage
from keel.errors import BackendError, ConflictError, MissingExtraError
from keel.online._batch import Batch, ViewSchema, list_blobs
from keel.online._keys import encode_key, encode_keys
from keel.online._redis_client import redis_client, unavailable_errors
from keel.online._store import OnlineRead, OnlineStore, abandoned, empty_read, new_generation, now_ms
from keel.online._values import datetime_from_us, floats_from_bytes

__all__ = ["RedisOnlineStore"]

_CODES = {"int64": "q", "float64": "d", "bool": "?", "timestamp": "q", "string": "I", "list[float64]": "I"}
_FILL = {"int64": 0, "float64": 0.0, "bool": False, "timestamp": 0}
_HEADER = struct.Struct("<qQ")
_WRITE_CHUNK = 1_000  # rows per script call: bounds how long one call holds the server
_CHUNKS_PER_ROUND_TRIP = 20
_READ_CHUNK = 10_000  # keys per MGET; larger reads send several MGETs in one pipeline

# The guard every write script checks first, returning -1 when it fails. KEYS[1] is the guard's key; ARGV[1]
# is '=G': the pointer KEYS[1] must name generation G ('=' alone: no pointer, the plain layout is live), or
# '?G': the hash KEYS[1] must list the unpublished generation G, whose last write time becomes ARGV[2] (ms).
_GUARD = """
local guard = ARGV[1]
local generation = string.sub(guard, 2)
if string.sub(guard, 1, 1) == '=' then
  if (redis.call('GET', KEYS[1]) or '') ~= generation then return -1 end
else
  if redis.call('HEXISTS', KEYS[1], generation) == 0 then return -1 end
  redis.call('HSET', KEYS[1], generation .. ':touched', ARGV[2])
end
"""

# Upsert with the newer-event-time rule, atomically per key, behind the guard. KEYS[2..] are the rows' keys;
# ARGV[3] is the stride: 1 (value) or 2 (value, expire-at in epoch ms). The first 8 bytes of a value are its
# event time (signed little-endian µs); Lua numbers are doubles, exact for event times up to year 2255.
_UPSERT = (
    _GUARD
    + """
local stride = tonumber(ARGV[3])
local written = 0
for i = 2, #KEYS do
  local value = ARGV[4 + (i - 2) * stride]
  local old = redis.call('GET', KEYS[i])
  if (not old) or struct.unpack('<i8', old) <= struct.unpack('<i8', value) then
    redis.call('SET', KEYS[i], value)
    if stride == 2 then
      redis.call('PEXPIREAT', KEYS[i], ARGV[5 + (i - 2) * stride])
    end
    written = written + 1
  end
end
return written
"""
)

# Record a batch's schema and layout behind the guard: KEYS[2] is the generation's metadata hash, KEYS[3] the
# view's (layouts); ARGV[3] the key columns, ARGV[4] and ARGV[5] the layout's field and fields, then pairs of
# dtype field and dtype. Returns whether each HSETNX set its field (keys first).
_REGISTER = (
    _GUARD
    + """
local set = {redis.call('HSETNX', KEYS[2], 'keys', ARGV[3])}
for i = 6, #ARGV, 2 do
  set[#set + 1] = redis.call('HSETNX', KEYS[2], ARGV[i], ARGV[i + 1])
end
redis.call('HSET', KEYS[3], ARGV[4], ARGV[5])
return set
"""
)

# Publish: KEYS[1] the pointer, KEYS[2] the generations hash, ARGV[1] the generation. Returns the replaced
# generation ('-': the plain layout), marked retired, or nil when ARGV[1] is not an unpublished generation.
_PUBLISH = """
local listed = redis.call('HGET', KEYS[2], ARGV[1])
if (not listed) or listed == 'retired' then return false end
local old = redis.call('GET', KEYS[1]) or '-'
redis.call('SET', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1], ARGV[1] .. ':touched')
redis.call('HSET', KEYS[2], old, 'retired')
return old
"""
_RETIRED = b"retired"
_PLAIN = "-"  # the plain layout's name in the generations hash
#: Attempts of a read or write whose generation keeps being replaced under it.
_ATTEMPTS = 5


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

    A Redis that does not answer within a second (``?socket_timeout=`` and ``?socket_connect_timeout=`` in the
    URL change it) fails the call with a :class:`~keel.errors.BackendError`; while it stays unavailable, calls
    fail at once but for one a second that tries it again, and the log says once when the outage started and
    once when it ended (:class:`keel._outage.Outage`).

    Args:
        uri: a redis-py URL (``redis://[:password@]host:port/db``; options such as ``?socket_timeout=0.5``).
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
            self._client: Any = redis_client(uri)
        except (ValueError, redis.RedisError) as exc:
            raise BackendError(f"{self.description}: invalid Redis URL: {exc}") from exc
        self._unavailable = unavailable_errors()
        self._outage = Outage(
            self.description, logging.getLogger("keel.online"), consequence="its reads and writes fail at once"
        )
        self._upsert = self._client.register_script(_UPSERT)
        self._register_script = self._client.register_script(_REGISTER)
        self._publish = self._client.register_script(_PUBLISH)
        #: view -> the generation last seen live ("": the plain layout); every read checks it
        self._live: dict[str, str] = {}
        #: layout id bytes -> layout; layouts are content-addressed, so entries never go stale
        self._layouts: dict[bytes, _Layout] = {}
        self._readers: dict[tuple[bytes, tuple[str, ...]], Callable[[bytes], tuple[Any, ...]]] = {}

    # -- key names (see the module's docstring)
    def _meta_key(self, view: str, generation: str = "") -> str:
        return f"{self.prefix}:{view}@{generation}" if generation else f"{self.prefix}:{view}"

    def _rows_base(self, view: str, generation: str) -> str:
        return f"{self.prefix}:{view}@{generation}:" if generation else f"{self.prefix}:{view}:"

    def _pointer_key(self, view: str) -> str:
        return f"{self.prefix}:{view}@"

    def _generations_key(self, view: str) -> str:
        return f"{self.prefix}:{view}@gens"

    # -- writes
    def _stored_schema(self, view: str, generation: str) -> ViewSchema | None:
        meta = self._client.hgetall(self._meta_key(view, generation))
        if b"keys" not in meta:
            return None
        keys = tuple((str(n), str(d)) for n, d in json.loads(meta[b"keys"]))
        dtypes = {field[6:].decode(): value.decode() for field, value in meta.items() if field.startswith(b"dtype:")}
        return ViewSchema(keys, dtypes)

    def _register(self, batch: Batch, generation: str, guard: tuple[str, str]) -> _Layout | None:
        """Check the batch against the generation's schema, record its keys, new dtypes and layout, and return
        the layout (``None``: the guard failed). A concurrent writer that recorded other types first makes this
        write a conflict."""
        view = batch.view
        stored = self._stored_schema(view, generation)
        schema, added = batch.bind(stored)
        layout = self._layout_of(batch)
        args: list[Any] = [guard[1], now_ms(), json.dumps([list(k) for k in schema.keys])]
        args += [f"layout:{layout.id_bytes.hex()}", layout.json]
        for name in added:
            args += [f"dtype:{name}", schema.dtypes[name]]
        keys = [guard[0], self._meta_key(view, generation), self._meta_key(view)]
        results = self._register_script(keys=keys, args=args)
        if results == -1:
            return None
        if (stored is None and not results[0]) or not all(results[1 : 1 + len(added)]):
            batch.bind(self._stored_schema(view, generation))  # a ConflictError when the other writer's types differ
        return layout

    def _write(self, batch: Batch, ttl: timedelta | None) -> int:
        view, generation = batch.view, batch.generation
        if generation is not None:
            written = self._write_to(batch, ttl, generation, (self._generations_key(view), f"?{generation}"))
            if written is None:
                raise self._unknown_generation(view, generation)
            return written
        pointer = self._pointer_key(view)
        for _attempt in range(_ATTEMPTS):
            live = self._client.get(pointer)
            generation = "" if live is None else live.decode()
            written = self._write_to(batch, ttl, generation, (pointer, f"={generation}"))
            if written is not None:
                return written
            # The view switched to another generation meanwhile: what was written went with the old one.
        raise ConflictError(
            f"{self.description}: view {view!r}: its data was replaced {_ATTEMPTS} times during one write; write again"
        )

    def _write_to(self, batch: Batch, ttl: timedelta | None, generation: str, guard: tuple[str, str]) -> int | None:
        """Write the batch to ``generation`` behind ``guard``; ``None`` when the guard failed."""
        layout = self._register(batch, generation, guard)
        if layout is None:
            return None
        if not batch.num_rows:
            return 0
        rows = layout.pack(batch)
        base = self._rows_base(batch.view, generation)
        keys = [f"{base}{k}" for k in batch.keys]
        expire_ms = None
        if ttl is not None:
            ttl_ms = ttl // timedelta(milliseconds=1)
            expire_ms = [us // 1000 + ttl_ms for us in batch.event_us]
        written = 0
        pipe = self._client.pipeline(transaction=False)
        pending = 0
        head = [guard[1], now_ms()]
        for start in range(0, len(keys), _WRITE_CHUNK):
            stop = start + _WRITE_CHUNK
            args: list[Any]
            if expire_ms is None:
                args = [*head, 1, *rows[start:stop]]
            else:
                args = [*head, 2]
                for value, at in zip(rows[start:stop], expire_ms[start:stop], strict=True):
                    args += (value, at)
            self._upsert(keys=[guard[0], *keys[start:stop]], args=args, client=pipe)
            pending += 1
            if pending == _CHUNKS_PER_ROUND_TRIP or stop >= len(keys):
                counts = pipe.execute()
                if -1 in counts:
                    return None
                written += sum(counts)
                pending = 0
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
        """One round trip: one ``MGET`` of the view's pointer and the rows (several in one pipeline for very
        many rows), again from the new generation when the pointer moved since the last read."""
        names = features if type(features) is tuple else tuple(features)
        n = len(entity_keys)
        if n == 1:
            key = entity_keys[0]
            if type(key) is tuple and len(key) == 1 and (type(key[0]) is int or type(key[0]) is str):
                encoded: list[int | str] = [key[0]]
            else:
                encoded = [encode_key(key)]
        elif n == 0:
            return empty_read(names, 0)
        else:
            encoded = encode_keys(entity_keys)
        pointer = self._pointer_key(view)
        generation = self._live.get(view, "")
        for _attempt in range(_ATTEMPTS):
            base = self._rows_base(view, generation)
            if n <= _READ_CHUNK:
                keys = [pointer]
                keys += [f"{base}{k}" for k in encoded]
                raw: list[bytes | None] = self._client.mget(keys)
                seen = {raw[0]}
                del raw[0]
            else:
                pipe = self._client.pipeline(transaction=False)
                for start in range(0, n, _READ_CHUNK):
                    pipe.mget([pointer, *(f"{base}{k}" for k in encoded[start : start + _READ_CHUNK])])
                chunks = pipe.execute()
                seen = {chunk[0] for chunk in chunks}
                raw = [value for chunk in chunks for value in chunk[1:]]
            live = seen.pop()
            now_live = "" if live is None else live.decode()
            if not seen and now_live == generation:
                break
            generation = self._live[view] = now_live  # replaced since the last read: read the new one
        else:
            raise BackendError(
                f"{self.description}: view {view!r}: its data was replaced {_ATTEMPTS} times during one read"
            )
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
    def _unlink_matching(self, pattern: str) -> None:
        """Remove the keys matching ``pattern`` (``SCAN`` + ``UNLINK``), without blocking the server."""
        doomed: list[bytes] = []
        for key in self._client.scan_iter(match=pattern, count=1_000):
            doomed.append(key)
            if len(doomed) == 1_000:
                self._client.unlink(*doomed)
                doomed = []
        if doomed:
            self._client.unlink(*doomed)

    def _drop_view(self, view: str) -> None:
        """Scans the view's keys (``SCAN`` + ``UNLINK``), without blocking the server."""
        # The generations hash and the pointer first: from then on writers' guards fail (or write the plain layout).
        self._client.unlink(self._generations_key(view), self._pointer_key(view))
        self._unlink_matching(f"{self.prefix}:{view}@*")
        self._unlink_matching(f"{self.prefix}:{view}:*")
        self._client.unlink(self._meta_key(view))
        self._live.pop(view, None)

    # -- generations
    def _remove_generation(self, view: str, generation: str) -> None:
        """Remove an unpublished or retired generation: unlisted first (its writers' guards fail from then on),
        then its rows and metadata."""
        listed = self._generations_key(view)
        if generation == _PLAIN:
            self._unlink_matching(f"{self.prefix}:{view}:*")
            meta = self._meta_key(view)
            stale = [f for f in self._client.hkeys(meta) if f == b"keys" or f.startswith(b"dtype:")]
            if stale:
                self._client.hdel(meta, *stale)  # the layouts stay: every generation's rows use them
        else:
            self._client.hdel(listed, generation, f"{generation}:touched")
            self._unlink_matching(f"{self._rows_base(view, generation)}*")
            self._client.unlink(self._meta_key(view, generation))
        self._client.hdel(listed, generation)

    def _listed(self, view: str) -> dict[str, tuple[bytes, int | None]]:
        """The generations hash: generation -> (owner JSON or ``retired``, last write in ms or ``None``)."""
        entries = self._client.hgetall(self._generations_key(view))
        listed: dict[str, tuple[bytes, int | None]] = {}
        for field, value in entries.items():
            name = field.decode()
            if ":" in name:
                continue
            touched = entries.get(f"{name}:touched".encode())
            listed[name] = (value, int(touched) if touched is not None and touched.isdigit() else None)
        return listed

    def _sweep_generations(self, view: str) -> list[str]:
        now = now_ms()
        swept = []
        for name, (value, touched) in self._listed(view).items():
            if value != _RETIRED:  # retired data is a publisher's to remove, or a dead one's left behind
                try:
                    recorded = json.loads(value)
                except ValueError:
                    recorded = None
                if not abandoned(recorded, touched, now):
                    continue
            self._remove_generation(view, name)
            swept.append(name)
        return swept

    def _begin_generation(self, view: str, owner: dict[str, Any]) -> str:
        self._sweep_generations(view)
        now = now_ms()
        generation = new_generation()
        self._client.hset(
            self._generations_key(view), mapping={generation: json.dumps(owner), f"{generation}:touched": now}
        )
        return generation

    def _publish_generation(self, view: str, generation: str) -> None:
        replaced = self._publish(keys=[self._pointer_key(view), self._generations_key(view)], args=[generation])
        if replaced is None:
            raise self._unknown_generation(view, generation)
        self._live[view] = generation
        self._remove_generation(view, replaced.decode())

    def _discard_generation(self, view: str, generation: str) -> None:
        listed = self._client.hget(self._generations_key(view), generation)
        if listed is not None and listed != _RETIRED:
            self._remove_generation(view, generation)

    def _hidden_generations(self, view: str) -> list[str]:
        return list(self._listed(view))

    # -- outages: every public call goes through the guard
    def _guarded(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``call(*args, **kwargs)``, refused at once while Redis is out, reporting to the outage tracker."""
        outage = self._outage
        if outage.since and (refused := outage.refused()) is not None:
            raise refused
        try:
            result = call(*args, **kwargs)
        except BackendError as exc:
            if isinstance(exc.__cause__, self._unavailable):
                outage.failed(exc.__cause__)
            raise
        if outage.since:
            outage.recovered()
        return result

    def read(self, view: str, entity_keys: Sequence[tuple[Any, ...]], features: Sequence[str]) -> OnlineRead:
        """:meth:`OnlineStore.read`, failing at once while Redis is out."""
        result: OnlineRead = self._guarded(super().read, view, entity_keys, features)
        return result

    def write_batch(self, *args: Any, **kwargs: Any) -> int:
        """:meth:`OnlineStore.write_batch`, failing at once while Redis is out."""
        written: int = self._guarded(super().write_batch, *args, **kwargs)
        return written

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()
