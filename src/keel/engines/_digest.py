"""The content digest of a table: the same for the same rows, whatever their order, chunking or engine.

An ingested version is named by its digest and compared by it ("the same data again"), so the local engine
(one process) and the Spark engine (many worker processes, each seeing some partitions) must compute the same
one. It is therefore a **multiset hash**: every row is hashed to 256 bits (four 64-bit lanes) and the lanes are
summed modulo 2**64 over the rows. Addition does not care about order or grouping, so partial sums from any
partitioning combine into the whole by :meth:`RowDigest.merge`. The digest is the SHA-256 of a header (the
definition's kind, each column's name and Keel dtype in order, the row count) and the four lane sums.

How a row is hashed (the definition :data:`DIGEST_KIND` names; changing any of it changes every digest):

1. Each value becomes a 64-bit *word* by its meaning, not its physical form: ``int64`` as itself (narrower
   integers widened first), ``float64`` by its IEEE bits with ``-0.0`` made ``0.0`` and NaN made null,
   ``bool`` as 0 or 1, ``timestamp`` as microseconds since the epoch in UTC (any unit or zone converted first),
   ``string`` by SipHash-2-4 of its UTF-8 bytes (:func:`pandas.util.hash_array` with a fixed key: stable across
   processes and machines, unlike :func:`hash`), ``list[float64]`` by the sum of its items' hashes, each mixed
   with its position in the list, plus a hash of its length (a NaN item counts as a null item).
2. The word of column ``i`` is mixed with a key of ``i`` (splitmix64's finaliser: a bijection, so distinct
   64-bit values never collide), giving ``u``; each lane adds ``u`` times its own odd multiplier for ``i``.
   A null adds no ``u`` but a per-column, per-lane constant instead, which no value's four products match.
3. Each lane is finalised again; the four results are the row's hash.

The constants are the first eight bytes of SHA-256 of their names (:func:`_constant`): nothing up the sleeve.

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
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from pandas.util import hash_array

from keel.errors import ValidationError

__all__ = ["DIGEST_KIND", "RowDigest", "partial_state", "table_digest"]

#: The definition of the digest, recorded in the catalog beside it: a new definition gets a new kind.
DIGEST_KIND = "rows-v1"

#: The Keel dtypes a digest knows.
DTYPES = ("int64", "float64", "bool", "string", "timestamp", "list[float64]")

#: (rows, lane 0, lane 1, lane 2, lane 3): what a partition contributes, lanes in ``[0, 2**64)``.
State = tuple[int, int, int, int, int]

U64 = npt.NDArray[np.uint64]

_LANES = 4
_MASK = 2**64 - 1
#: Rows hashed at a time: the working arrays stay in the CPU's cache, and memory stays bounded.
_SLICE_ROWS = 65_536
#: SipHash key of strings; exactly 16 bytes, as :func:`pandas.util.hash_array` requires.
_STRING_KEY = "keel-rows-v1-str"
#: The word of a null item of a list: a NaN's bits, which no item has once NaN counts as null.
_NULL_ITEM = np.uint64(0x7FF8_0000_0000_0000)
_UTC_US = pa.timestamp("us", tz="UTC")
_ITEMS = pa.large_list(pa.float64())


def _constant(*name: object) -> int:
    """A 64-bit constant of the definition: the first eight bytes of SHA-256 of its name."""
    text = " ".join(map(str, (DIGEST_KIND, *name)))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def _lanes(*name: object, odd: bool = False) -> U64:
    """One constant per lane, as a column ``(4, 1)`` that broadcasts over a slice's rows."""
    values = [_constant(*name, lane) | int(odd) for lane in range(_LANES)]
    return np.array(values, dtype=np.uint64).reshape(_LANES, 1)


_ROW_START = _lanes("row")
_POSITION_KEY = np.uint64(_constant("list item position"))
_LENGTH_KEY = np.uint64(_constant("list length"))


def _mix(x: U64) -> U64:
    """splitmix64's finaliser, in place: a bijection of 64-bit words that spreads every bit over all of them."""
    t = x >> 30
    x ^= t
    x *= np.uint64(0xBF58476D1CE4E5B9)
    np.right_shift(x, 27, out=t)
    x ^= t
    x *= np.uint64(0x94D049BB133111EB)
    np.right_shift(x, 31, out=t)
    x ^= t
    return x


class _Column:
    """One column's place in the definition: its name, dtype and the constants of its position."""

    def __init__(self, position: int, name: str, dtype: str) -> None:
        self.name = name
        self.dtype = dtype
        self.key = np.uint64(_constant("column", position))
        self.multipliers = _lanes("multiplier", position, odd=True)  # odd: u -> u * m is a bijection
        self.null = _lanes("null", position)
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
        self._sums = [0] * _LANES

    @property
    def state(self) -> State:
        """The rows seen and the four lane sums: what another process's :meth:`merge` adds."""
        lane0, lane1, lane2, lane3 = self._sums
        return (self._rows, lane0, lane1, lane2, lane3)

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
            ValueError: ``state`` is not five integers with lanes in ``[0, 2**64)``.
        """
        rows, *sums = state
        if len(sums) != _LANES or rows < 0 or any(not 0 <= s <= _MASK for s in sums):
            raise ValueError(f"not a digest state (rows, four lanes in [0, 2**64)): {state!r}")
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

    def _hash(self, part: pa.RecordBatch | pa.Table) -> U64:
        """The four lane sums of one slice's rows."""
        rows = np.empty((_LANES, part.num_rows), dtype=np.uint64)
        rows[:] = _ROW_START
        product = np.empty_like(rows)
        for column in self._columns:
            values = part.column(column.name)
            if isinstance(values, pa.ChunkedArray):
                values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
            try:
                words, valid = _words(column, _cast(column, values))
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
                raise ValidationError(
                    f"cannot digest column {column.name!r} as {column.dtype}: {exc}", field=column.name
                ) from exc
            u = _mix(words ^ column.key)
            if valid is not None:
                np.multiply(u, valid, out=u)  # a null adds no value ...
            np.multiply(column.multipliers, u, out=product)
            rows += product
            if valid is not None:  # ... but its own constants (a multiply: ``np.add(where=)`` is ten times slower)
                np.multiply(column.null, ~valid, out=product)
                rows += product
        sums: U64 = _mix(rows).sum(axis=1, dtype=np.uint64)
        return sums


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


def _words(column: _Column, values: pa.Array) -> tuple[U64, npt.NDArray[np.bool_] | None]:
    """Each value's 64-bit word, and which values are not null (``None``: all of them)."""
    n = len(values)
    if pa.types.is_null(values.type):
        return np.zeros(n, dtype=np.uint64), np.zeros(n, dtype=np.bool_)
    if column.dtype == "string":
        return _string_words(column, values)
    if column.dtype == "float64":
        return _float_words(values)
    valid = _validity(values)
    if column.dtype == "list[float64]":
        return _list_words(values), valid
    filled = values.fill_null(False if column.dtype == "bool" else 0) if values.null_count else values
    array = filled.to_numpy(zero_copy_only=False)
    if column.dtype == "bool":
        return array.astype(np.uint64), valid
    return array.view(np.int64).view(np.uint64), valid  # int64; timestamp: microseconds since the epoch


def _float_words(values: pa.Array) -> tuple[U64, npt.NDArray[np.bool_] | None]:
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


def _string_words(column: _Column, values: pa.Array) -> tuple[U64, npt.NDArray[np.bool_] | None]:
    """Strings hashed by SipHash of their UTF-8 bytes, each distinct value once when few are distinct."""
    if pa.types.is_dictionary(values.type) and len(values.dictionary) > len(values):
        values = values.dictionary_decode()  # a slice of a large dictionary: cheaper to hash its own values
    valid = _validity(values)
    if column.distinct and not pa.types.is_dictionary(values.type):
        filled = values.fill_null("") if values.null_count else values
        return _siphash(filled.to_numpy(zero_copy_only=False)), valid
    encoded = values if pa.types.is_dictionary(values.type) else pc.dictionary_encode(values)
    dictionary = encoded.dictionary
    # Hashing a dictionary costs more than hashing the values directly when they are mostly distinct: remember
    # that, and hash the column's next slices directly (the words are the same either way).
    column.distinct = len(dictionary) > len(values) // 2 and len(values) > 1_000
    filled_dictionary = dictionary.fill_null("") if dictionary.null_count else dictionary
    # One more entry, so that a null index (taken as 0) never runs off the end of an empty dictionary.
    hashes = np.append(_siphash(filled_dictionary.to_numpy(zero_copy_only=False)), np.uint64(0))
    indices = encoded.indices.fill_null(0).to_numpy(zero_copy_only=False)
    words = hashes[indices]  # null indices are masked by ``valid``
    if dictionary.null_count:  # a dictionary may hold a null entry: its values are null too
        dictionary_valid = np.append(dictionary.is_valid().to_numpy(zero_copy_only=False), False)
        valid = dictionary_valid[indices] if valid is None else valid & dictionary_valid[indices]
    return words, valid


def _siphash(strings: npt.NDArray[Any]) -> U64:
    words: U64 = hash_array(np.asarray(strings, dtype=object), hash_key=_STRING_KEY, categorize=False)
    return words


def _list_words(values: pa.Array) -> U64:
    """A list's word: the sum of its items' hashes, each mixed with its position, plus its length's hash."""
    offsets = values.offsets.to_numpy(zero_copy_only=False).astype(np.int64)
    first, last = int(offsets[0]), int(offsets[-1])
    bits, item_valid = _float_words(values.values.slice(first, last - first))
    if item_valid is not None:
        bits[~item_valid] = _NULL_ITEM
    lengths = np.diff(offsets)
    starts = offsets[:-1] - first
    positions = np.arange(len(bits), dtype=np.uint64) - np.repeat(starts, lengths).astype(np.uint64)
    # Mix the item first: a position's key could otherwise cancel a particular difference of two items' bits.
    hashed = _mix(_mix(bits) ^ _mix(positions ^ _POSITION_KEY))
    running = np.zeros(len(hashed) + 1, dtype=np.uint64)
    np.cumsum(hashed, out=running[1:])
    sums: U64 = running[offsets[1:] - first] - running[starts]  # wraps modulo 2**64, as the sums did
    return sums + _mix(lengths.astype(np.uint64) ^ _LENGTH_KEY)


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
