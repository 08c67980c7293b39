"""A batch of rows to write, validated once and shared by every backend.

:func:`prepare_batch` checks the Arrow table (names, key and event-time columns, dtypes), normalises it to
Keel's Arrow types and encodes the keys; :meth:`Batch.bind` reconciles it with what the store already holds
for the view (:class:`ViewSchema`). The backends then take the columns in the form they store.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from keel.errors import ConflictError, ValidationError
from keel.features._definitions import check_name
from keel.features._dtypes import arrow_type, dtype_of_arrow
from keel.online._keys import encode_key
from keel.online._values import datetime_from_us

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["Batch", "ViewSchema", "check_prefix", "prepare_batch"]

_PREFIX = re.compile(r"^[A-Za-z0-9_.\-]+$")


def check_prefix(prefix: str) -> str:
    """Refuse key prefixes that could make two (prefix, view, key) triples collide once joined with ``:``."""
    if not isinstance(prefix, str) or not _PREFIX.match(prefix):
        raise ValidationError(
            f"online store prefix {prefix!r} is invalid: use letters, digits, '_', '.' and '-'",
            field="prefix",
        )
    return prefix


@dataclass(frozen=True)
class ViewSchema:
    """What a store remembers about a view: its key columns and the dtype of every feature written so far.

    Attributes:
        keys: ``(name, dtype)`` of each key column, in order; dtypes are ``int64`` or ``string``.
        dtypes: feature name -> Keel dtype, in the order features were first written.
    """

    keys: tuple[tuple[str, str], ...]
    dtypes: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        """The schema as compact JSON (how SQLite and Redis store it)."""
        return json.dumps({"keys": [list(k) for k in self.keys], "dtypes": self.dtypes}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> ViewSchema:
        """The schema :meth:`to_json` wrote."""
        data = json.loads(text)
        return cls(tuple((str(n), str(d)) for n, d in data["keys"]), dict(data["dtypes"]))


class Batch:
    """Validated rows for one view: encoded keys, event times in epoch microseconds, typed feature columns.

    Built by :func:`prepare_batch`; backends read :attr:`keys`, :attr:`event_us` and the columns through
    :meth:`python_values`, :meth:`sqlite_values` or :meth:`column`.
    """

    def __init__(
        self,
        *,
        store: str,
        view: str,
        key_columns: tuple[tuple[str, str], ...],
        features: tuple[str, ...],
        dtypes: list[str | None],
        columns: list[pa.ChunkedArray],
        keys: list[int | str],
        event_us: list[int],
    ) -> None:
        self.store = store
        self.view = view
        self.key_columns = key_columns
        self.features = features
        self.dtypes = dtypes
        self._columns = columns
        self.keys = keys
        self.event_us = event_us
        self.num_rows = len(keys)
        #: the unpublished generation to write to (see :meth:`OnlineStore.begin_generation`); ``None``: the live data
        self.generation: str | None = None

    def bind(self, stored: ViewSchema | None) -> tuple[ViewSchema, list[str]]:
        """Reconcile the batch with the view's stored schema.

        Returns:
            The view's schema after this write, and the features it adds.

        Raises:
            ConflictError: the key columns, or the dtype of a feature, differ from what the view stores (the
                old values would be read with the wrong type): drop the view first to change them.
            ValidationError: a feature column is entirely null with no dtype to go by.
        """
        where = f"{self.store}: view {self.view!r}"
        if stored is not None and stored.keys != self.key_columns:
            raise ConflictError(
                f"{where} is keyed by {_describe_keys(stored.keys)}, but this batch by "
                f"{_describe_keys(self.key_columns)}; drop the view first to change its keys"
            )
        known = dict(stored.dtypes) if stored is not None else {}
        added: list[str] = []
        for i, (name, dtype) in enumerate(zip(self.features, self.dtypes, strict=True)):
            old = known.get(name)
            if dtype is None:  # an all-null column of Arrow's null type: it takes the stored dtype
                if old is None:
                    raise ValidationError(
                        f"{where}: feature {name!r} is entirely null and has no type; cast the column to its "
                        "Keel dtype before writing",
                        field=name,
                    )
                self.dtypes[i] = old
                self._columns[i] = self._columns[i].cast(arrow_type(old))
            elif old is None:
                known[name] = dtype
                added.append(name)
            elif old != dtype:
                raise ConflictError(
                    f"{where}: feature {name!r} is stored as {old}, but this batch has {dtype}; cast the "
                    "column to the stored dtype, or drop the view first to change its type"
                )
        return ViewSchema(self.key_columns, known), added

    def dtype(self, i: int) -> str:
        """The dtype of the ``i``-th feature (after :meth:`bind`)."""
        dtype = self.dtypes[i]
        assert dtype is not None, "Batch.bind() resolves every dtype"
        return dtype

    def column(self, i: int) -> pa.ChunkedArray:
        """The ``i``-th feature as Arrow, in Keel's Arrow type (float NaN already made null)."""
        return self._columns[i]

    def python_values(self, i: int) -> list[Any]:
        """The ``i``-th feature as the Python values a read returns (``None`` for nulls)."""
        col, dtype = self._columns[i], self.dtypes[i]
        if dtype is None:  # an all-null column (Arrow's null type)
            return [None] * self.num_rows
        if dtype == "timestamp":
            return [None if v is None else datetime_from_us(v) for v in _plain_values(col.cast(_int64()))]
        return _plain_values(col)

    def sqlite_values(self, i: int) -> list[Any]:
        """The ``i``-th feature as SQLite stores it: timestamps as epoch microseconds, lists as float64 bytes.

        Usable before :meth:`bind`, so that the conversion happens outside the write transaction.
        """
        col, dtype = self._columns[i], self.dtypes[i]
        if dtype is None:  # an all-null column (Arrow's null type)
            return [None] * self.num_rows
        if dtype == "timestamp":
            return _plain_values(col.cast(_int64()))
        if dtype == "list[float64]":
            return list_blobs(col)
        return _plain_values(col)


def _int64() -> pa.DataType:
    import pyarrow as pa

    return pa.int64()


def _plain_values(col: pa.ChunkedArray) -> list[Any]:
    # numpy's tolist() is several times faster than Arrow's to_pylist() for null-free numeric columns.
    import pyarrow.types as pat

    if col.null_count == 0 and (pat.is_integer(col.type) or pat.is_floating(col.type) or pat.is_boolean(col.type)):
        values: list[Any] = col.to_numpy().tolist()
    else:
        values = col.to_pylist()
    return values


def list_blobs(col: pa.ChunkedArray) -> list[bytes | None]:
    """Each list of a ``list<double>`` column as packed little-endian float64 bytes (``None`` for nulls)."""
    out: list[bytes | None] = []
    for chunk in col.chunks:
        # The child array backs every list; offsets index into it, so each row is one slice of its buffer.
        data = chunk.values.to_numpy(zero_copy_only=False).astype("<f8", copy=False).tobytes()
        offsets = (chunk.offsets.to_numpy() * 8).tolist()
        if chunk.null_count:
            valid = chunk.is_valid().to_numpy(zero_copy_only=False).tolist()
            out.extend(data[offsets[j] : offsets[j + 1]] if valid[j] else None for j in range(len(chunk)))
        else:
            out.extend(data[offsets[j] : offsets[j + 1]] for j in range(len(chunk)))
    return out


def _describe_keys(keys: tuple[tuple[str, str], ...]) -> str:
    return ", ".join(f"{name} ({dtype})" for name, dtype in keys)


def _first_true(mask: pa.ChunkedArray) -> int:
    import pyarrow.compute as pc

    return int(pc.index(mask, True).as_py())


def prepare_batch(
    store: str,
    view: str,
    rows: pa.Table,
    *,
    keys: Sequence[str],
    features: Sequence[str],
    timestamp: str,
) -> Batch:
    """Validate and normalise rows for :meth:`OnlineStore.write_batch`.

    Args:
        store: the store's description, for messages.
        view: the view written to.
        rows: key columns, the event-time column and the feature columns (other columns are ignored).
        keys: the key columns, integers or strings, never null.
        features: the feature columns to write.
        timestamp: the event-time column (a timestamp of any unit; naive values are taken as UTC), never null.

    Raises:
        ValidationError: a name is invalid, a column is missing or has the wrong type, a key or event time is
            null, or a list feature holds a null element.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.types as pat

    where = f"{store}: view {view!r}"
    check_name(view, f"{store}: feature view")
    if not isinstance(rows, pa.Table):
        raise ValidationError(f"{where}: rows must be a pyarrow.Table, got {type(rows).__name__}")
    key_names = _names(keys, "key column", where)
    feature_names = _names(features, "feature", where)
    if not key_names:
        raise ValidationError(f"{where}: name at least one key column", field="keys")
    clash = set(key_names) & set(feature_names) | ({timestamp} & (set(key_names) | set(feature_names)))
    if clash:
        raise ValidationError(
            f"{where}: {sorted(clash)} appear more than once among keys, timestamp and features",
            field=min(clash),
        )
    for name in (*key_names, timestamp, *feature_names):
        if name not in rows.column_names:
            raise ValidationError(
                f"{where}: column {name!r} is missing from the rows; they have {rows.column_names}",
                field=name,
            )

    # Keys: integers or strings, never null; encoded once here so every backend stores the same form.
    key_columns: list[tuple[str, str]] = []
    key_values: list[list[Any]] = []
    for name in key_names:
        col = rows.column(name)
        if col.null_count:
            row = _first_true(col.is_null())
            raise ValidationError(f"{where}: key column {name!r} is null at row {row}", field=name, row=row)
        if pat.is_integer(col.type):
            col = _cast(col, pa.int64(), where, name)
            key_columns.append((name, "int64"))
        elif pat.is_string(col.type) or pat.is_large_string(col.type) or pat.is_dictionary(col.type):
            col = _cast(col, pa.string(), where, name)
            key_columns.append((name, "string"))
        else:
            raise ValidationError(
                f"{where}: key column {name!r} has type {col.type}; keys must be integers or strings",
                field=name,
            )
        key_values.append(_plain_values(col))
    encoded: list[int | str]
    if len(key_values) == 1:
        encoded = key_values[0]
    else:
        encoded = [encode_key(values) for values in zip(*key_values, strict=True)]

    # Event times: microseconds since the epoch, UTC (a tz-aware Arrow timestamp already counts from UTC).
    ts = rows.column(timestamp)
    if pat.is_date(ts.type):
        ts = _cast(ts, pa.timestamp("us"), where, timestamp)
    if not pat.is_timestamp(ts.type):
        raise ValidationError(
            f"{where}: event-time column {timestamp!r} has type {ts.type}; it must be a timestamp",
            field=timestamp,
        )
    if ts.null_count:
        row = _first_true(ts.is_null())
        raise ValidationError(
            f"{where}: event-time column {timestamp!r} is null at row {row}", field=timestamp, row=row
        )
    truncate = pc.CastOptions(pa.timestamp("us", tz=ts.type.tz), allow_time_truncate=True)
    event_us: list[int] = pc.cast(ts, options=truncate).cast(pa.int64()).to_numpy().tolist()

    dtypes: list[str | None] = []
    columns: list[pa.ChunkedArray] = []
    for name in feature_names:
        col = rows.column(name)
        dtype = None if pat.is_null(col.type) else dtype_of_arrow(col.type)
        if dtype is None and not pat.is_null(col.type):
            raise ValidationError(
                f"{where}: feature {name!r} has type {col.type}, which is not a Keel dtype", field=name
            )
        if dtype is not None:
            col = _cast(col, arrow_type(dtype), where, name)
        if dtype == "float64" and col.null_count < len(col):
            # NaN and null are one "missing" (SQLite cannot even store NaN): every backend reads None.
            nan = pc.is_nan(col)
            if pc.any(nan).as_py():
                col = pc.if_else(nan, pa.scalar(None, pa.float64()), col)
        if dtype == "list[float64]" and pc.list_flatten(col).null_count:
            whole = col.combine_chunks()
            parents = pc.list_parent_indices(whole).filter(pc.list_flatten(whole).is_null())
            row = int(parents[0].as_py())
            raise ValidationError(
                f"{where}: feature {name!r} holds a null inside the list at row {row}; lists of float64 are "
                "stored densely: replace the null elements (e.g. by NaN) or null the whole list",
                field=name,
                row=row,
            )
        dtypes.append(dtype)
        columns.append(col)

    return Batch(
        store=store,
        view=view,
        key_columns=tuple(key_columns),
        features=feature_names,
        dtypes=dtypes,
        columns=columns,
        keys=encoded,
        event_us=event_us,
    )


def _names(names: Sequence[str], what: str, where: str) -> tuple[str, ...]:
    if isinstance(names, str):
        raise ValidationError(f"{where}: pass the {what}s as a list of names, not the string {names!r}")
    out = tuple(names)
    for name in out:
        check_name(name, f"{where}: {what}")
    if len(set(out)) != len(out):
        raise ValidationError(f"{where}: a {what} is listed twice in {list(out)}")
    return out


def _cast(col: pa.ChunkedArray, target: pa.DataType, where: str, name: str) -> pa.ChunkedArray:
    if col.type == target:
        return col
    import pyarrow as pa

    try:
        return col.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ValidationError(f"{where}: column {name!r} cannot be read as {target}: {exc}", field=name) from exc
