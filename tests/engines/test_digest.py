"""The content digest of a table: the same rows give the same digest, whatever their order, chunking, physical
types or the process that hashed them; any change of the rows or of their columns gives another."""

from __future__ import annotations

import hashlib
import math
import struct
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from keel.engines import _digest
from keel.engines._digest import DIGEST_KIND, RowDigest, partial_state, table_digest
from keel.errors import ValidationError

UTC_US = pa.timestamp("us", tz="UTC")
T0 = datetime(2024, 1, 1, tzinfo=UTC)
NAN = float("nan")

ARROW_TYPES = {
    "int64": pa.int64(),
    "timestamp": UTC_US,
    "float64": pa.float64(),
    "string": pa.string(),
    "bool": pa.bool_(),
    "list[float64]": pa.list_(pa.float64()),
}
DTYPES = {
    "user": "int64",
    "at": "timestamp",
    "amount": "float64",
    "country": "string",
    "active": "bool",
    "embedding": "list[float64]",
}


def rows_table(n: int = 12) -> pa.Table:
    """A table of every dtype, with a null in each column, a NaN and an empty list."""
    return pa.table(
        {
            "user": pa.array([i % 5 if i != 3 else None for i in range(n)], pa.int64()),
            "at": pa.array([T0 + timedelta(minutes=7 * i) for i in range(n)], UTC_US),
            "amount": pa.array([None if i == 4 else NAN if i == 5 else i / 4 - 1 for i in range(n)], pa.float64()),
            "country": pa.array([None if i == 6 else ["fr", "de", "ßü", ""][i % 4] for i in range(n)]),
            "active": pa.array([None if i == 7 else i % 3 == 0 for i in range(n)]),
            "embedding": pa.array(
                [None if i == 8 else [] if i == 9 else [i * 0.5, None, -1.0][: 1 + i % 3] for i in range(n)],
                pa.list_(pa.float64()),
            ),
        }
    )


def digest(table: pa.Table | pa.RecordBatch, dtypes: dict[str, str] = DTYPES) -> str:
    d = RowDigest(dtypes)
    d.update(table)
    return d.hexdigest()


def one(column: pa.Array, dtype: str) -> str:
    """The digest of a one-column table."""
    return digest(pa.table({"c": column}), {"c": dtype})


# -- what stays the same --------------------------------------------------------------------------------------
def test_the_digest_of_a_fixed_table_is_pinned() -> None:
    # Pinned on purpose: every stored version is named and compared by this digest. A change of the definition
    # (a constant, the mixing, the header, how a type is read) makes all stored data look changed; such a
    # change needs a new DIGEST_KIND, not a new value here.
    table = pa.table(
        {
            "user": pa.array([1, None, -(2**63)], pa.int64()),
            "at": pa.array([T0, T0 + timedelta(microseconds=1), None], UTC_US),
            "amount": [0.5, NAN, None],
            "country": ["fr", None, "ßü"],
            "active": [True, False, None],
            "embedding": pa.array([[1.0, None], [], None], pa.list_(pa.float64())),
        }
    )

    assert DIGEST_KIND == "rows-v2"
    assert digest(table) == "15e1f648a04e10fa6f7055003c57e83d95da32702a73f5a00c778e86b72c2091"


def test_the_hashes_are_xxh64_of_the_values_little_endian_bytes() -> None:
    rng = np.random.default_rng(3)
    values = rng.integers(0, 2**64 - 1, size=300, dtype=np.uint64, endpoint=True)
    seeds = rng.integers(0, 2**64 - 1, size=300, dtype=np.uint64, endpoint=True)

    longs = _digest.hash_long(values, seeds)
    ints = _digest.hash_int(values, seeds)

    for value, seed, long_, int_ in zip(values.tolist(), seeds.tolist(), longs.tolist(), ints.tolist(), strict=True):
        assert long_ == xxhash.xxh64_intdigest(value.to_bytes(8, "little"), seed)
        assert int_ == xxhash.xxh64_intdigest((value & 0xFFFF_FFFF).to_bytes(4, "little"), seed)


def test_a_digest_follows_the_definition_worked_by_hand() -> None:
    def xxh(data: bytes, seed: int) -> int:
        return xxhash.xxh64_intdigest(data, seed)

    def i32(n: int) -> bytes:
        return (n & 0xFFFF_FFFF).to_bytes(4, "little")

    def i64(n: int) -> bytes:
        return (n & (2**64 - 1)).to_bytes(8, "little")

    dtypes = {"k": "int64", "s": "string", "x": "float64", "l": "list[float64]"}
    rows = [(7, "ab", None, [1.5, None]), (-1, None, -0.0, None)]
    seeds = [xxh(i32(i), 42) for i in range(4)]
    sums = [0, 0]
    for k, text, x, items in rows:
        words = [xxh(i64(k), seeds[0])]
        words.append(seeds[1] if text is None else xxh(text.encode(), seeds[1]))
        words.append(seeds[2] if x is None else xxh(struct.pack("<d", x + 0.0), seeds[2]))
        word = xxh(i32(-1 if items is None else len(items)), seeds[3])
        for item in items or []:
            word = xxh(struct.pack("<d", item) if item is not None else i64(0x7FF8_0000_0000_0000), word)
        words.append(word)
        h = 42
        for w in words:
            h = xxh(i64(w), h)
        sums = [(sums[0] + h) % 2**64, (sums[1] + xxh(i64(h), 42)) % 2**64]
    header = (
        '{"columns":[["k","int64"],["s","string"],["x","float64"],["l","list[float64]"]],"kind":"rows-v2","rows":2}'
    )
    expected = hashlib.sha256(header.encode() + b"\n" + b"".join(v.to_bytes(8, "big") for v in sums)).hexdigest()
    table = pa.table(
        {
            "k": pa.array([r[0] for r in rows], pa.int64()),
            "s": pa.array([r[1] for r in rows], pa.string()),
            "x": pa.array([r[2] for r in rows], pa.float64()),
            "l": pa.array([r[3] for r in rows], pa.list_(pa.float64())),
        }
    )

    assert table_digest(table, dtypes) == expected


def test_the_same_rows_in_another_order_have_the_same_digest() -> None:
    table = rows_table()
    reversed_rows = table.take(list(range(table.num_rows))[::-1])
    shuffled = table.take(np.random.default_rng(1).permutation(table.num_rows))

    assert digest(reversed_rows) == digest(table)
    assert digest(shuffled) == digest(table)


@pytest.mark.parametrize("chunk", [1, 2, 5, 100])
def test_the_same_rows_in_other_chunks_have_the_same_digest(chunk: int) -> None:
    table = rows_table()
    chunked = pa.Table.from_batches(table.to_batches(max_chunksize=chunk))
    # Columns chunked differently from each other, as a table built column by column can be.
    arrays = [column.combine_chunks() for column in table.columns]
    uneven = pa.table(
        {
            name: pa.chunked_array([a.slice(0, 3), a.slice(3, 1), a.slice(4)]) if i % 2 else a
            for i, (name, a) in enumerate(zip(table.column_names, arrays, strict=True))
        }
    )

    assert digest(chunked) == digest(table)
    assert digest(uneven) == digest(table)
    assert digest(table.combine_chunks().to_batches()[0]) == digest(table)  # a record batch as well


@pytest.mark.parametrize("slice_rows", [1, 3, 7])
def test_the_digest_does_not_depend_on_how_many_rows_are_hashed_at_a_time(
    slice_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = digest(rows_table(40))
    monkeypatch.setattr(_digest, "_SLICE_ROWS", slice_rows)

    assert digest(rows_table(40)) == expected


def test_mostly_distinct_strings_are_hashed_as_repeated_ones_are(monkeypatch: pytest.MonkeyPatch) -> None:
    # Mostly distinct strings are hashed one by one rather than through a dictionary: the words are the same.
    strings = [None if i % 7 == 0 else f"key-{i % 3_000}" for i in range(6_000)]
    table = pa.table({"s": strings})
    whole = digest(table, {"s": "string"})  # one slice: through a dictionary
    monkeypatch.setattr(_digest, "_SLICE_ROWS", 2_000)  # the first slice finds them distinct, the next follow

    assert digest(table, {"s": "string"}) == whole
    assert digest(table.take(np.random.default_rng(2).permutation(6_000)), {"s": "string"}) == whole


def test_rows_read_back_from_parquet_have_the_same_digest(tmp_path: Path) -> None:
    table = rows_table()
    path = tmp_path / "rows.parquet"
    pq.write_table(table, path, row_group_size=5)

    assert digest(pq.read_table(path)) == digest(table)
    # Strings read as dictionaries, as a Parquet reader may hand them over.
    assert digest(pq.read_table(path, read_dictionary=["country"])) == digest(table)


def test_rows_written_by_spark_with_int96_timestamps_have_the_same_digest(tmp_path: Path) -> None:
    # Spark's default Parquet timestamps (INT96) read back as naive nanoseconds.
    table = rows_table()
    path = tmp_path / "spark.parquet"
    pq.write_table(table, path, use_deprecated_int96_timestamps=True)
    back = pq.read_table(path)

    assert back.schema.field("at").type == pa.timestamp("ns")
    assert digest(back) == digest(table)


def test_merging_the_partial_states_of_any_split_gives_the_whole_digest() -> None:
    table = rows_table(30)
    whole = digest(table)

    for cuts in ([], [0], [30], [1, 2, 3], [7, 19], [10, 10, 29]):
        bounds = [0, *cuts, table.num_rows]
        merged = RowDigest(DTYPES)
        for start, stop in pairwise(bounds):
            merged.merge(partial_state(table.slice(start, stop - start), DTYPES))
        assert merged.hexdigest() == whole, cuts


def test_the_state_is_the_row_count_and_two_lanes_of_plain_integers() -> None:
    state = partial_state(rows_table(), DTYPES)

    assert len(state) == 3
    assert all(type(x) is int for x in state)
    assert state[0] == 12
    assert all(0 <= lane < 2**64 for lane in state[1:])
    assert partial_state(rows_table().slice(0, 0), DTYPES) == (0, 0, 0)


def test_other_columns_such_as_the_sequence_are_ignored() -> None:
    table = rows_table()
    with_seq = table.append_column("__keel_seq", pa.array(range(100, 112), pa.int64()))

    assert digest(with_seq) == digest(table)
    assert digest(with_seq.select(["__keel_seq", *reversed(table.column_names)])) == digest(table)


def test_table_digest_is_the_digest_of_one_update() -> None:
    assert table_digest(rows_table(), DTYPES) == digest(rows_table())


# -- values by meaning, not by representation -----------------------------------------------------------------
def test_nan_is_null_and_the_two_zeros_are_one_value() -> None:
    assert one(pa.array([1.5, NAN]), "float64") == one(pa.array([1.5, None]), "float64")
    assert one(pa.array([-0.0]), "float64") == one(pa.array([0.0]), "float64")


def test_narrower_integers_are_the_same_values_as_int64() -> None:
    assert one(pa.array([1, -2, None], pa.int32()), "int64") == one(pa.array([1, -2, None], pa.int64()), "int64")
    assert one(pa.array([7], pa.uint8()), "int64") == one(pa.array([7], pa.int64()), "int64")
    assert one(pa.array([1, 2], pa.int64()), "float64") == one(pa.array([1.0, 2.0]), "float64")


@pytest.mark.parametrize(
    "type_",
    [pa.large_string(), pa.string_view(), pa.dictionary(pa.int8(), pa.string())],
    ids=str,
)
def test_every_arrow_string_type_is_the_same_strings(type_: pa.DataType) -> None:
    values = ["a", "b", None, "a", "été"]

    assert one(pa.array(values).cast(type_), "string") == one(pa.array(values, pa.string()), "string")


def test_a_null_entry_of_a_dictionary_is_a_null_string() -> None:
    dictionary = pa.DictionaryArray.from_arrays(pa.array([0, 1, 0]), pa.array([None, "x"]))

    assert one(dictionary, "string") == one(pa.array([None, "x", None]), "string")


def test_timestamps_are_instants_whatever_their_zone_or_unit() -> None:
    instants = [T0, T0 + timedelta(hours=5, microseconds=3), None]
    utc = pa.array(instants, UTC_US)
    paris = pa.array(instants, pa.timestamp("us", tz="UTC")).cast(pa.timestamp("us", tz="Europe/Paris"))
    nanoseconds = pa.array(instants, pa.timestamp("ns", tz="UTC"))
    naive = pa.array([None if t is None else t.replace(tzinfo=None) for t in instants], pa.timestamp("us"))

    assert one(paris, "timestamp") == one(utc, "timestamp")
    assert one(nanoseconds, "timestamp") == one(utc, "timestamp")
    assert one(naive, "timestamp") == one(utc, "timestamp")  # naive values are UTC, as normalisation takes them
    tokyo = datetime(2024, 1, 1, 9, tzinfo=ZoneInfo("Asia/Tokyo"))  # the same instant as T0
    assert one(pa.array([tokyo], pa.timestamp("us", tz="Asia/Tokyo")), "timestamp") == one(
        pa.array([T0], UTC_US), "timestamp"
    )


def test_a_timestamp_finer_than_a_microsecond_is_refused_not_truncated() -> None:
    finer = pa.array([1_000_000_001], pa.timestamp("ns", tz="UTC"))

    with pytest.raises(ValidationError, match="'c'"):
        one(finer, "timestamp")


@pytest.mark.parametrize(
    "type_",
    [pa.large_list(pa.float64()), pa.list_(pa.float32()), pa.list_view(pa.float64()), pa.large_list_view(pa.int64())],
    ids=str,
)
def test_every_arrow_list_type_is_the_same_lists(type_: pa.DataType) -> None:
    values = [[1.0, 2.0], None, [], [3.0, None]]

    assert one(pa.array(values, type_), "list[float64]") == one(
        pa.array(values, pa.list_(pa.float64())), "list[float64]"
    )


def test_fixed_size_lists_are_the_same_lists() -> None:
    values = [[1.0, 2.0], None, [3.0, 4.0]]
    fixed = pa.array(values, pa.list_(pa.float64(), 2))

    assert one(fixed, "list[float64]") == one(pa.array(values, pa.list_(pa.float64())), "list[float64]")


def test_list_views_that_share_or_skip_values_are_read_by_their_sizes() -> None:
    views = pa.LargeListViewArray.from_arrays([2, 0, 1], [1, 2, 0], pa.array([1.0, 2.0, 3.0]))

    assert one(views, "list[float64]") == one(pa.array([[3.0], [1.0, 2.0], []]), "list[float64]")


def test_lists_nan_items_are_null_items_and_empty_null_and_nan_lists_differ() -> None:
    lists = pa.list_(pa.float64())

    def of(value: list[float | None] | None) -> str:
        return one(pa.array([value], lists), "list[float64]")

    assert of([NAN]) == of([None])
    assert of([-0.0, 1.0]) == of([0.0, 1.0])
    assert len({of([]), of(None), of([None]), of([0.0]), of([None, None])}) == 5
    assert of([1.0, 2.0]) != of([2.0, 1.0])  # items in order
    assert of([1.0]) != of([1.0, None])


# -- what changes it ------------------------------------------------------------------------------------------
def with_value(table: pa.Table, column: str, row: int, value: object) -> pa.Table:
    values = table.column(column).to_pylist()
    values[row] = value
    i = table.column_names.index(column)
    return table.set_column(i, column, pa.array(values, table.schema.field(column).type))


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("user", 4),
        ("at", T0 - timedelta(microseconds=1)),
        ("amount", 0.25 + 1e-15),
        ("country", "fR"),
        ("active", False),
        ("embedding", [0.5]),
    ],
)
def test_changing_one_value_changes_the_digest(column: str, value: object) -> None:
    table = rows_table()

    assert digest(with_value(table, column, 0, value)) != digest(table)


@pytest.mark.parametrize("column", list(DTYPES))
def test_turning_a_value_into_null_changes_the_digest(column: str) -> None:
    table = rows_table()

    assert digest(with_value(table, column, 0, None)) != digest(table)


@pytest.mark.parametrize(
    ("dtype", "values"),
    [
        ("int64", [0, -1, 1]),
        ("float64", [0.0, math.inf, -math.inf]),
        ("bool", [False, True]),
        ("string", ["", "None", "null"]),
        ("timestamp", [datetime(1970, 1, 1, tzinfo=UTC)]),
        ("list[float64]", [[], [None]]),
    ],
)
def test_a_null_differs_from_every_value(dtype: str, values: list[object]) -> None:
    type_ = ARROW_TYPES[dtype]
    null = one(pa.array([None], type_), dtype)

    assert one(pa.array([None], pa.null()), dtype) == null  # a column of nulls only, as Arrow may type it
    for value in values:
        assert one(pa.array([value], type_), dtype) != null, value


def test_a_null_is_the_column_seed_which_the_value_zero_does_not_hash_to() -> None:
    # A null's word is its column's seed; a value hashes to the seed only by a 64-bit accident.
    seed = np.uint64(_digest.column_seed(0))

    assert _digest.hash_long(np.array([0], np.uint64), seed)[0] != seed
    assert one(pa.array([0], pa.int64()), "int64") != one(pa.array([None], pa.int64()), "int64")


def test_swapping_two_values_between_columns_changes_the_digest() -> None:
    dtypes = {"a": "int64", "b": "int64"}

    assert digest(pa.table({"a": [1], "b": [2]}), dtypes) != digest(pa.table({"a": [2], "b": [1]}), dtypes)


def test_swapping_two_values_between_rows_changes_the_digest() -> None:
    # The rows (1, x), (2, y) are not the rows (1, y), (2, x), though every column holds the same values.
    dtypes = {"k": "int64", "v": "string"}
    before = pa.table({"k": [1, 2], "v": ["x", "y"]})
    after = pa.table({"k": [1, 2], "v": ["y", "x"]})

    assert digest(before, dtypes) != digest(after, dtypes)


def test_renaming_reordering_or_retyping_a_column_changes_the_digest() -> None:
    table = rows_table()
    renamed = table.rename_columns(["customer", *table.column_names[1:]])
    customer = {"customer" if name == "user" else name: dtype for name, dtype in DTYPES.items()}
    reordered = dict(reversed(DTYPES.items()))
    as_float = {**DTYPES, "user": "float64"}

    assert digest(renamed, customer) != digest(table)
    assert digest(table, reordered) != digest(table)
    assert digest(table, as_float) != digest(table)


def test_adding_or_removing_a_row_changes_the_digest_even_a_duplicate() -> None:
    table = rows_table()

    assert digest(pa.concat_tables([table, table.slice(0, 1)])) != digest(table)
    assert digest(table.slice(1)) != digest(table)


def test_the_empty_table_has_a_digest_of_its_columns() -> None:
    empty = rows_table().slice(0, 0)

    assert digest(empty) == digest(empty)
    assert digest(empty) != digest(rows_table(1))
    assert digest(empty, {"user": "int64"}) != digest(empty)
    assert len(RowDigest({}).hexdigest()) == 64


# -- what is refused ------------------------------------------------------------------------------------------
def test_a_missing_column_is_refused_by_name() -> None:
    with pytest.raises(ValidationError, match="'embedding'"):
        digest(rows_table().drop_columns(["embedding"]))


def test_values_of_another_type_are_refused_not_converted() -> None:
    with pytest.raises(ValidationError, match=r"'c'.*string"):
        one(pa.array(["1", "2"]), "int64")
    with pytest.raises(ValidationError, match="'c'"):
        one(pa.array([1, 2]), "string")


def test_a_batch_refused_half_way_leaves_the_state_as_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_digest, "_SLICE_ROWS", 2)
    digest_ = RowDigest({"c": "timestamp"})
    digest_.update(pa.table({"c": pa.array([T0], UTC_US)}))
    before = digest_.state
    finer_at_the_end = pa.array([0, 1_000, 2_000, 3_001], pa.timestamp("ns", tz="UTC"))

    with pytest.raises(ValidationError):
        digest_.update(pa.table({"c": finer_at_the_end}))
    assert digest_.state == before


def test_an_unknown_dtype_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"'c'.*decimal"):
        RowDigest({"c": "decimal"})


def test_a_state_that_is_not_one_is_refused() -> None:
    digest_ = RowDigest(DTYPES)

    with pytest.raises(ValueError, match="not a digest state"):
        digest_.merge((1, 2, 2**64))
    with pytest.raises(ValueError, match="not a digest state"):
        digest_.merge((1, 2))


# -- the property ---------------------------------------------------------------------------------------------
FLOATS = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True))
ROWS = st.lists(
    st.tuples(
        st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)),
        st.one_of(st.none(), st.integers(-(2**50), 2**50)),  # microseconds since the epoch
        FLOATS,
        st.one_of(st.none(), st.text(max_size=5)),
        st.one_of(st.none(), st.booleans()),
        st.one_of(st.none(), st.lists(FLOATS, max_size=3)),
    ),
    max_size=25,
)


def from_rows(rows: list[tuple[object, ...]]) -> pa.Table:
    columns: list[tuple[object, ...]] = list(zip(*rows, strict=True)) if rows else [() for _ in DTYPES]
    return pa.table(
        {
            name: pa.array(list(values), ARROW_TYPES[dtype])
            for (name, dtype), values in zip(DTYPES.items(), columns, strict=True)
        }
    )


@settings(max_examples=150, deadline=None)
@given(rows=ROWS, data=st.data())
def test_any_permutation_and_any_split_of_the_rows_gives_the_same_digest(
    rows: list[tuple[object, ...]], data: st.DataObject
) -> None:
    whole = digest(from_rows(rows))
    permuted = data.draw(st.permutations(rows))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(rows)), max_size=4)))
    bounds = [0, *cuts, len(rows)]
    parts = [from_rows(permuted[a:b]) for a, b in pairwise(bounds)]

    merged = RowDigest(DTYPES)
    for part in parts:
        merged.merge(partial_state(part, DTYPES))
    updated = RowDigest(DTYPES)
    for part in reversed(parts):
        updated.update(part)

    assert merged.hexdigest() == whole
    assert updated.hexdigest() == whole
    assert digest(pa.concat_tables(parts)) == whole
