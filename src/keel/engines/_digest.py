"""The content digest of a table: the same for the same rows, whatever their order, chunking or engine.

An ingested version is named by its digest and compared by it ("the same data again"), so the local engine
(NumPy, one process) and the Spark engine (SQL expressions in the JVM, many executors) must compute the same
one. It is therefore a **multiset hash**: every row is hashed to 128 bits (two 64-bit lanes) and the lanes are
summed modulo 2**64 over the rows. Addition does not care about order or grouping, so partial sums from any
partitioning combine into the whole by :meth:`RowDigest.merge`. The digest is the SHA-256 of a header (the
definition's kind, each column's name and Keel dtype in order, the row count) and the two lane sums.

The hash is **XXH64**, exactly as Spark's ``xxhash64`` SQL function computes it, so that Spark evaluates the
digest with its own generated code (no Python worker sees a row) and this module reproduces it bit for bit
(:func:`hash_long`, :func:`hash_int` vectorised with NumPy; strings by the ``xxhash`` library). How a row is
hashed (the definition :data:`DIGEST_KIND` names; changing any of it changes every digest):

1. Column ``i`` (0-based, in the order of the dtypes) has the seed ``s_i = XXH64(int32 i, seed 42)``. Each value
   becomes a 64-bit *word* ``w_i`` by its meaning, not its physical form, hashed with that seed: ``int64`` and
   ``timestamp`` (microseconds since the epoch in UTC, any unit or zone converted first) as an 8-byte integer,
   ``float64`` by its IEEE bits with ``-0.0`` made ``0.0`` and NaN made null, ``bool`` as a 4-byte 0 or 1,
   ``string`` as its UTF-8 bytes, ``list[float64]`` as its length (4 bytes) followed by each item's bits in
   order, each hashed with the previous result as seed (a null or NaN item is NaN's canonical bits; a null
   list has length -1). A null value's word is ``s_i`` itself. In Spark: ``xxhash64(i, column)``.
2. The row's first lane is the words chained: ``h = XXH64(w_n-1, … XXH64(w_1, XXH64(w_0, 42)))``, in Spark
   ``xxhash64(w_0, …, w_n-1)``; its second lane is ``XXH64(h, 42)``.

Example:
    >>> import pyarrow as pa
    >>> dtypes = {"id": "int64", "x": "float64"}
    >>> a = pa.table({"id": [1, 2, 3], "x": [0.5, None, -0.0]})
    >>> b = pa.table({"id": [3, 1, 2], "x": [0.0, 0.5, float("nan")]})
    >>> table_digest(a, dtypes) == table_digest(b, dtypes)
    True
    >>> whole = RowDigest(dtypes)
    >>> whole.merge(partial_state(a.slice(0, 1), dtypes))  # what one worker saw
    >>> whole.merge(partial_state(a.slice(1), dtypes))  # what another saw
    >>> whole.hexdigest() == table_digest(a, dtypes)
    True
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from keel.errors import ValidationError

__all__ = ["DIGEST_KIND", "LANES", "RowDigest", "column_seed", "hash_int", "hash_long", "partial_state", "table_digest"]

#: The definition of the digest, recorded in the catalog beside it: a new definition gets a new kind.
DIGEST_KIND = "rows-v2"

#: The Keel dtypes a digest knows.
DTYPES = ("int64", "float64", "bool", "string", "timestamp", "list[float64]")

#: The lanes each row is hashed to.
LANES = 2

#: (rows, lane 0, lane 1): what a partition contributes, lanes in ``[0, 2**64)``.
State = tuple[int, ...]

U64 = npt.NDArray[np.uint64]

_MASK = 2**64 - 1
#: The seed Spark's ``xxhash64`` starts from.
SPARK_SEED = 42
#: Rows hashed at a time: the working arrays stay in the CPU's cache, and memory stays bounded.
_SLICE_ROWS = 65_536
#: The bits of a null or NaN item of a list: Java's canonical NaN, as ``Double.doubleToLongBits`` gives it.
_NAN_BITS = np.uint64(0x7FF8_0000_0000_0000)
_UTC_US = pa.timestamp("us", tz="UTC")
_ITEMS = pa.large_list(pa.float64())

_P1 = np.uint64(0x9E3779B185EBCA87)
_P2 = np.uint64(0xC2B2AE3D27D4EB4F)
_P3 = np.uint64(0x165667B19E3779F9)
_P4 = np.uint64(0x85EBCA77C2B2AE63)
_P5 = np.uint64(0x27D4EB2F165667C5)


def _rotl(x: U64, r: int) -> U64:
    out: U64 = (x << np.uint64(r)) | (x >> np.uint64(64 - r))
    return out


def _avalanche(h: U64) -> U64:
    h = h ^ (h >> np.uint64(33))
    h *= _P2
    h ^= h >> np.uint64(29)
    h *= _P3
    h ^= h >> np.uint64(32)
    return h


def hash_long(values: U64, seed: U64 | np.uint64, *, out: U64 | None = None) -> U64:
    """XXH64 of each 8-byte little-endian integer with its seed (Spark's ``XXH64.hashLong``), vectorised.

    The steps run in place, in ``out`` when given (it may be ``values`` itself, not ``seed``): one array and one
    scratch array instead of a new array per step.
    """
    with np.errstate(over="ignore"):
        h = np.multiply(values, _P2, out=out)
        scratch = np.empty_like(h)
        _rotl_in_place(h, 31, scratch)
        h *= _P1
        h ^= np.add(seed, _P5 + np.uint64(8), out=scratch) if isinstance(seed, np.ndarray) else seed + (_P5 + 8)
        _rotl_in_place(h, 27, scratch)
        h *= _P1
        h += _P4
        for shift, prime in ((33, _P2), (29, _P3)):
            np.right_shift(h, np.uint64(shift), out=scratch)
            h ^= scratch
            h *= prime
        np.right_shift(h, np.uint64(32), out=scratch)
        h ^= scratch
        return h


def _rotl_in_place(x: U64, r: int, scratch: U64) -> None:
    np.right_shift(x, np.uint64(64 - r), out=scratch)
    np.left_shift(x, np.uint64(r), out=x)
    x |= scratch


def hash_int(values: U64, seed: U64 | np.uint64) -> U64:
    """XXH64 of each 4-byte little-endian integer (the low 32 bits of ``values``) with its seed (Spark's
    ``XXH64.hashInt``), vectorised."""
    with np.errstate(over="ignore"):
        h = seed + (_P5 + np.uint64(4))
        h = h ^ ((values & np.uint64(0xFFFF_FFFF)) * _P1)
        h = _rotl(h, 23) * _P2 + _P3
        return _avalanche(h)


def column_seed(position: int) -> int:
    """The seed of the words of column ``position``: Spark's ``xxhash64(position)``, as an unsigned integer."""
    return int(hash_int(np.array([position], np.uint64), np.uint64(SPARK_SEED))[0])


class _Column:
    """One column's place in the definition: its name, dtype and seed."""

    def __init__(self, position: int, name: str, dtype: str) -> None:
        self.name = name
        self.dtype = dtype
        self.seed = np.uint64(column_seed(position))
        #: A string column seen to have mostly distinct values is hashed directly, not by its dictionary.
        self.distinct = False


class RowDigest:
    """Accumulates the order-independent digest of rows with the given Keel dtypes.

    Feed it batches in any order and grouping with :meth:`update`, or other processes' partial states with
    :meth:`merge`; :meth:`hexdigest` is the same for the same multiset of rows.

    Args:
        dtypes: column name -> Keel dtype (``int64``, ``float64``, ``bool``, ``string``, ``timestamp``,
            ``list[float64]``); the order of the dict is the order of the columns, and part of the digest.

    Raises:
        ValidationError: a dtype the digest does not know.
    """

    def __init__(self, dtypes: dict[str, str]) -> None:
        for name, dtype in dtypes.items():
            if dtype not in DTYPES:
                raise ValidationError(
                    f"cannot digest column {name!r} of dtype {dtype!r}: the digest knows {', '.join(DTYPES)}",
                    field=name,
                )
        self._columns = [_Column(i, name, dtype) for i, (name, dtype) in enumerate(dtypes.items())]
        self._rows = 0
        self._sums = [0] * LANES

    @property
    def state(self) -> State:
        """The rows seen and the lane sums: what another process's :meth:`merge` adds."""
        return (self._rows, *self._sums)

    def update(self, batch: pa.RecordBatch | pa.Table) -> None:
        """Add the rows of ``batch``; its columns are found by name, others (``__keel_seq``) are ignored.

        Raises:
            ValidationError: a column is missing, or holds values that are not of its Keel dtype.
        """
        missing = [c.name for c in self._columns if c.name not in batch.schema.names]
        if missing:
            raise ValidationError(
                f"cannot digest the rows: column(s) {', '.join(map(repr, missing))} missing "
                f"(the rows have {', '.join(map(repr, batch.schema.names)) or 'no columns'})",
                field=missing[0],
            )
        sums = self._sums
        for start in range(0, batch.num_rows, _SLICE_ROWS):
            lanes = self._hash(batch.slice(start, _SLICE_ROWS))
            sums = [(s + int(lane)) & _MASK for s, lane in zip(sums, lanes, strict=True)]
        # Only now: a batch refused half way leaves the state as it was.
        self._sums = sums
        self._rows += batch.num_rows

    def merge(self, state: State) -> None:
        """Add another partial :attr:`state` (from another process or partition).

        Raises:
            ValueError: ``state`` is not the row count and :data:`LANES` lanes in ``[0, 2**64)``.
        """
        rows, *sums = state
        if len(sums) != LANES or rows < 0 or any(not 0 <= s <= _MASK for s in sums):
            raise ValueError(f"not a digest state (rows, {LANES} lanes in [0, 2**64)): {state!r}")
        self._rows += int(rows)
        self._sums = [(a + int(b)) & _MASK for a, b in zip(self._sums, sums, strict=True)]

    def hexdigest(self) -> str:
        """The digest: SHA-256 (64 lowercase hex characters) of the header and the lane sums."""
        header = {
            "kind": DIGEST_KIND,
            "columns": [[c.name, c.dtype] for c in self._columns],
            "rows": self._rows,
        }
        text = json.dumps(header, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
        sums = b"".join(s.to_bytes(8, "big") for s in self._sums)
        return hashlib.sha256(text.encode() + b"\n" + sums).hexdigest()

    def _hash(self, part: pa.RecordBatch | pa.Table) -> list[int]:
        """The lane sums of one slice's rows."""
        h = np.full(part.num_rows, SPARK_SEED, dtype=np.uint64)
        for column in self._columns:
            values = part.column(column.name)
            if isinstance(values, pa.ChunkedArray):
                values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
            try:
                words = _words(column, _cast(column, values))
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
                raise ValidationError(
                    f"cannot digest column {column.name!r} as {column.dtype}: {exc}", field=column.name
                ) from exc
            h = hash_long(words, h, out=words)  # the words are not needed after this
        second = hash_long(h, np.uint64(SPARK_SEED))
        return [int(h.sum(dtype=np.uint64)), int(second.sum(dtype=np.uint64))]


def _cast(column: _Column, values: pa.Array) -> pa.Array:
    """``values`` as the one Arrow type each dtype is hashed from, refusing a type of another meaning."""
    t = values.type
    if pa.types.is_null(t):
        return values  # all null: no value to convert
    if column.dtype == "int64" and pa.types.is_integer(t):
        return values.cast(pa.int64())
    if column.dtype == "float64" and (pa.types.is_floating(t) or pa.types.is_integer(t)):
        return values.cast(pa.float64())
    if column.dtype == "bool" and pa.types.is_boolean(t):
        return values
    if column.dtype == "timestamp" and pa.types.is_timestamp(t):
        return values.cast(_UTC_US)  # safe: a finer value than a microsecond is refused, not truncated
    if column.dtype == "string" and (_is_text(t) or (pa.types.is_dictionary(t) and _is_text(t.value_type))):
        return values
    if column.dtype == "list[float64]" and _is_list(t):
        value_type = t.value_type
        if pa.types.is_floating(value_type) or pa.types.is_integer(value_type) or pa.types.is_null(value_type):
            if pa.types.is_list_view(t) or pa.types.is_large_list_view(t):
                values = _contiguous(values)
            return values.cast(_ITEMS)
    raise ValidationError(
        f"cannot digest column {column.name!r}: it holds {t}, which is not Keel's {column.dtype}",
        field=column.name,
    )


def _is_text(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t))


def _is_list(t: pa.DataType) -> bool:
    return bool(
        pa.types.is_list(t)
        or pa.types.is_large_list(t)
        or pa.types.is_fixed_size_list(t)
        or pa.types.is_list_view(t)
        or pa.types.is_large_list_view(t)
    )


def _contiguous(views: pa.Array) -> pa.Array:
    """A list view as a list of the same values.

    Arrow's own cast (pyarrow 26) ignores the views' sizes and drops the last list (apache/arrow#50994).
    """
    lengths = pc.list_value_length(views).fill_null(0).to_numpy(zero_copy_only=False)
    offsets = np.concatenate([np.zeros(1, dtype=np.int64), np.cumsum(lengths, dtype=np.int64)])
    return pa.LargeListArray.from_arrays(pa.array(offsets), pc.list_flatten(views), mask=views.is_null())


def _words(column: _Column, values: pa.Array) -> U64:
    """Each value's 64-bit word: XXH64 of the value with the column's seed, the seed itself for a null."""
    n = len(values)
    seed = column.seed
    if pa.types.is_null(values.type):
        if column.dtype == "list[float64]":  # a null list's word is its length, -1, hashed
            return hash_int(np.full(n, 2**64 - 1, dtype=np.uint64), seed)
        return np.full(n, seed, dtype=np.uint64)
    if column.dtype == "string":
        return _string_words(column, values)
    if column.dtype == "list[float64]":
        return _list_words(seed, values)
    if column.dtype == "float64":
        bits, valid = _float_bits(values)
        words = hash_long(bits, seed)
    elif column.dtype == "bool":
        valid = _validity(values)
        filled = values.fill_null(False) if values.null_count else values
        words = hash_int(filled.to_numpy(zero_copy_only=False).astype(np.uint64), seed)
    else:  # int64; timestamp: microseconds since the epoch
        valid = _validity(values)
        filled = values.fill_null(0) if values.null_count else values
        words = hash_long(filled.to_numpy(zero_copy_only=False).view(np.uint64), seed)
    if valid is not None:
        words[~valid] = seed
    return words


def _float_bits(values: pa.Array) -> tuple[U64, npt.NDArray[np.bool_] | None]:
    """Floats by their bits, with one zero and NaN as null."""
    valid = _validity(values)
    # Adding 0.0 turns -0.0 into 0.0: the two zeros are one value.
    canonical = (values.fill_null(0.0) if values.null_count else values).to_numpy(zero_copy_only=False) + 0.0
    nan = np.isnan(canonical)
    if nan.any():
        valid = ~nan if valid is None else valid & ~nan
    return canonical.view(np.uint64), valid


def _validity(values: pa.Array) -> npt.NDArray[np.bool_] | None:
    if not values.null_count:
        return None
    return values.is_valid().to_numpy(zero_copy_only=False)  # type: ignore[no-any-return]


def _string_words(column: _Column, values: pa.Array) -> U64:
    """Strings hashed by XXH64 of their UTF-8 bytes, each distinct value once when few are distinct."""
    seed = int(column.seed)
    if pa.types.is_dictionary(values.type) and len(values.dictionary) > len(values):
        values = values.dictionary_decode()  # a slice of a large dictionary: cheaper to hash its own values
    if column.distinct and not pa.types.is_dictionary(values.type):
        return _xxh64(values, seed)
    encoded = values if pa.types.is_dictionary(values.type) else pc.dictionary_encode(values)
    # Encoding costs more than it saves when the values are mostly distinct: remember that, and hash the
    # column's next slices directly (the words are the same either way).
    column.distinct = len(encoded.dictionary) > len(values) // 2 and len(values) > 1_000
    # One more entry, for null indices: the null word.
    hashes = np.append(_xxh64(encoded.dictionary, seed), np.uint64(seed))
    indices = encoded.indices.fill_null(len(encoded.dictionary)).to_numpy(zero_copy_only=False)
    words: U64 = hashes[indices]
    return words


def _xxh64(strings: pa.Array, seed: int) -> U64:
    """XXH64 of each string's UTF-8 bytes with ``seed``; a null's word is ``seed``."""
    hash_ = xxhash.xxh64_intdigest
    return np.fromiter(
        (seed if s is None else hash_(s.encode(), seed) for s in strings.to_pylist()),
        dtype=np.uint64,
        count=len(strings),
    )


def _list_words(seed: np.uint64, values: pa.Array) -> U64:
    """A list's word: XXH64 of its length (-1 for a null list), then of each item's bits in order."""
    offsets = values.offsets.to_numpy(zero_copy_only=False).astype(np.int64)
    first, last = int(offsets[0]), int(offsets[-1])
    bits, item_valid = _float_bits(values.values.slice(first, last - first))
    if item_valid is not None:
        bits[~item_valid] = _NAN_BITS
    lengths = np.diff(offsets)
    valid = _validity(values)
    if valid is not None:
        lengths = np.where(valid, lengths, -1)
    words = hash_int(lengths.astype(np.uint64), seed)  # -1: its low 32 bits, as Spark hashes an int
    starts = offsets[:-1] - first
    for position in range(int(lengths.max(initial=0))):
        rows = np.flatnonzero(lengths > position)
        words[rows] = hash_long(bits[starts[rows] + position], words[rows])
    return words


def partial_state(batch: pa.RecordBatch | pa.Table, dtypes: dict[str, str]) -> State:
    """The digest state of ``batch`` alone: what a worker process returns for :meth:`RowDigest.merge`."""
    digest = RowDigest(dtypes)
    digest.update(batch)
    return digest.state


def table_digest(table: pa.Table, dtypes: dict[str, str]) -> str:
    """The digest of ``table``'s rows, with the columns and dtypes of ``dtypes``.

    Example:
        >>> import pyarrow as pa
        >>> table_digest(pa.table({"n": [1, 2]}), {"n": "int64"}) == table_digest(
        ...     pa.table({"n": [2, 1]}), {"n": "int64"}
        ... )
        True
    """
    digest = RowDigest(dtypes)
    digest.update(table)
    return digest.hexdigest()
