"""The local engine: DuckDB over Arrow tables and Parquet files, in this process."""

from __future__ import annotations

import contextlib
import math
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from keel.engines._base import ROW, TS, EngineBase, PointInTimeSource
from keel.errors import BackendError, KeelError, ValidationError

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
TOP_CATEGORIES = 20


def q(identifier: str) -> str:
    """Quote a SQL identifier for DuckDB."""
    return '"' + identifier.replace('"', '""') + '"'


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def fetch_arrow(con: duckdb.DuckDBPyConnection, sql: str) -> pa.Table:
    """Run ``sql`` and return its result as one Arrow table (across DuckDB versions)."""
    rel = con.sql(sql)
    to_table = getattr(rel, "to_arrow_table", None) or rel.fetch_arrow_table
    result: pa.Table = to_table()
    return result


#: A TTL at least this long keeps every value any timestamp (years 1 to 9999) can see: it is no TTL at all.
UNBOUNDED_TTL = timedelta(days=366 * 10_000)


def _ts_literal(value: datetime) -> str:
    """A TIMESTAMPTZ literal for an aware datetime (naive ones are taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return f"TIMESTAMPTZ '{value.astimezone(UTC).isoformat()}'"


def _interval(ttl: timedelta) -> str:
    micros = ttl // timedelta(microseconds=1)  # exact: no float rounding on long TTLs
    return f"INTERVAL ({micros}) MICROSECONDS"


class LocalEngine(EngineBase):
    """Heavy data operations on DuckDB, in the calling process.

    DuckDB's conversion and binder errors (a value that does not cast, a column that is absent) are
    :class:`~keel.errors.ValidationError`; its other errors are :class:`~keel.errors.BackendError`
    (see :class:`~keel.engines.EngineBase`).

    Args:
        filesystems: fsspec filesystems DuckDB should read through (for offline stores that are not local).
        threads: DuckDB worker threads (default: DuckDB's own, one per core).
    """

    name = "local"

    def __init__(self, filesystems: list[Any] | None = None, threads: int | None = None) -> None:
        self._filesystems = list(filesystems or [])
        self._threads = threads

    @property
    def description(self) -> str:
        """How messages name this engine."""
        return "local engine (DuckDB)"

    def _error_type(self, exc: Exception) -> type[KeelError]:
        import duckdb

        if isinstance(exc, duckdb.ConversionException | duckdb.BinderException):
            return ValidationError
        return BackendError

    def connect(self) -> duckdb.DuckDBPyConnection:
        """A fresh in-memory DuckDB connection, UTC, with the configured filesystems registered."""
        import duckdb

        con = duckdb.connect()
        with contextlib.suppress(duckdb.Error):  # with ICU, TIMESTAMPTZ renders in the session zone
            con.execute("SET TimeZone = 'UTC'")
        if self._threads:
            con.execute(f"SET threads = {int(self._threads)}")
        for fs in self._filesystems:
            con.register_filesystem(fs)
        return con

    # -- point-in-time join ----------------------------------------------------------------------------------
    @staticmethod
    def _tie_order(src: PointInTimeSource) -> list[str]:
        """Among rows of one entity at one event time: latest created time, then the row written last."""
        order = []
        if src.created_timestamp:
            order.append(f"{q(src.created_timestamp)} DESC NULLS LAST")
        return [*order, "__keel_file DESC", "file_row_number DESC"]

    @staticmethod
    def _scan_sql(src: PointInTimeSource, columns: list[str], where: str, *, ordered: bool) -> str:
        """Read the source's files; ``ordered`` adds each row's file ordinal and row number (tie-breaking).

        The file ordinal follows the version's file list, so a pushed delta (listed after the data it extends)
        counts as written later whatever its path.
        """
        select = ", ".join(q(c) for c in dict.fromkeys(columns))
        if not ordered:
            files = "[" + ", ".join(_lit(p) for p in src.paths) + "]"
            return f"SELECT {select} FROM read_parquet({files}, hive_partitioning=false){where}"
        parts = [
            f"SELECT {select}, {i} AS __keel_file, file_row_number "
            f"FROM read_parquet({_lit(path)}, hive_partitioning=false, file_row_number=true){where}"
            for i, path in enumerate(src.paths)
        ]
        return " UNION ALL ".join(parts)

    @classmethod
    def _source_sql(cls, i: int, src: PointInTimeSource) -> str:
        cols = [*src.join_keys, src.timestamp, *(stored for stored, _ in src.features)]
        if src.created_timestamp:
            cols.append(src.created_timestamp)
        if not src.deduplicate:
            return cls._scan_sql(src, cols, "", ordered=False)
        partition = ", ".join(q(c) for c in (*src.join_keys, src.timestamp))
        select = ", ".join(q(c) for c in dict.fromkeys(cols))
        return (
            f"SELECT {select} FROM ({cls._scan_sql(src, cols, '', ordered=True)}) "
            f"QUALIFY row_number() OVER (PARTITION BY {partition} ORDER BY {', '.join(cls._tie_order(src))}) = 1"
        )

    # -- latest value per entity (materialization) -------------------------------------------------------------
    def _latest_per_entity(self, src: PointInTimeSource, *, start: datetime | None, end: datetime) -> pa.Table:
        """Per entity, the row with the latest event time in ``(start, end]``; ties broken as in retrieval.

        Returns the join keys, the event-time column and the stored feature columns.
        """
        cols = [*src.join_keys, src.timestamp, *(stored for stored, _ in src.features)]
        if src.created_timestamp:
            cols.append(src.created_timestamp)
        ts = q(src.timestamp)
        where = f" WHERE {ts} <= {_ts_literal(end)}"
        if start is not None:
            where += f" AND {ts} > {_ts_literal(start)}"
        keys = ", ".join(q(k) for k in src.join_keys)
        order = [f"{ts} DESC"]
        if src.deduplicate:
            order += self._tie_order(src)
        out = ", ".join(q(c) for c in dict.fromkeys([*src.join_keys, src.timestamp, *(f for f, _ in src.features)]))
        sql = (
            f"SELECT {out} FROM ({self._scan_sql(src, cols, where, ordered=src.deduplicate)}) "
            f"QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY {', '.join(order)}) = 1"
        )
        con = self.connect()
        try:
            return fetch_arrow(con, sql)
        finally:
            con.close()

    def _point_in_time_join(self, entities: pa.Table, sources: list[PointInTimeSource]) -> pa.Table:
        con = self.connect()
        try:
            con.register("__keel_entities", entities)
            selects = [f"e.{q(ROW)}"]
            joins = []
            for i, src in enumerate(sources):
                alias = f"f{i}"
                on = " AND ".join(f"e.{q(k)} = {alias}.{q(k)}" for k in src.join_keys)
                on += f" AND e.{q(TS)} >= {alias}.{q(src.timestamp)}"
                joins.append(f"ASOF LEFT JOIN ({self._source_sql(i, src)}) {alias} ON {on}")
                for stored, out in src.features:
                    value = f"{alias}.{q(stored)}"
                    if src.ttl is not None and src.ttl < UNBOUNDED_TTL:
                        fresh = f"{alias}.{q(src.timestamp)} >= e.{q(TS)} - {_interval(src.ttl)}"
                        value = f"CASE WHEN {fresh} THEN {value} END"
                    selects.append(f"{value} AS {q(out)}")
            sql = f"SELECT {', '.join(selects)} FROM __keel_entities e {' '.join(joins)} ORDER BY e.{q(ROW)}"
            return fetch_arrow(con, sql)
        finally:
            con.close()

    # -- statistics ------------------------------------------------------------------------------------------
    def _column_statistics(self, table: pa.Table, dtypes: dict[str, str]) -> dict[str, dict[str, Any]]:
        con = self.connect()
        try:
            con.register("__keel_t", table)
            exprs: list[str] = ["count(*) AS n"]
            for i, (col, dtype) in enumerate(dtypes.items()):
                c = q(col)
                exprs += [f"count({c}) AS c{i}_count"]
                if dtype in ("int64", "float64"):
                    v = f"CAST({c} AS DOUBLE)" if dtype == "int64" else c
                    quant = "[" + ", ".join(str(x) for x in QUANTILES) + "]"
                    exprs += [
                        f"min({c}) AS c{i}_min",  # int64 bounds stay exact integers
                        f"max({c}) AS c{i}_max",
                        f"avg({v}) AS c{i}_mean",
                        f"stddev_samp({v}) AS c{i}_std",
                        f"quantile_cont({v}, {quant}) AS c{i}_quantiles",
                        f"approx_count_distinct({c}) AS c{i}_distinct",
                    ]
                elif dtype == "bool":
                    exprs += [f"avg(CAST({c} AS DOUBLE)) AS c{i}_mean"]
                elif dtype == "timestamp":
                    exprs += [f"min({c}) AS c{i}_min", f"max({c}) AS c{i}_max"]
                elif dtype == "string":
                    exprs += [f"approx_count_distinct({c}) AS c{i}_distinct"]
                elif dtype == "list[float64]":
                    exprs += [f"avg(len({c})) AS c{i}_mean_length"]
            row = con.execute(f"SELECT {', '.join(exprs)} FROM __keel_t").fetchone()
            assert row is not None
            names = ["n"] + [e.rsplit(" AS ", 1)[1] for e in exprs[1:]]
            values = dict(zip(names, row, strict=True))
            n = int(values["n"])
            stats: dict[str, dict[str, Any]] = {}
            for i, (col, dtype) in enumerate(dtypes.items()):
                count = int(values[f"c{i}_count"])
                s: dict[str, Any] = {"dtype": dtype, "count": count, "nulls": n - count}
                if dtype in ("int64", "float64"):
                    s.update(
                        min=_bound(values[f"c{i}_min"]),
                        max=_bound(values[f"c{i}_max"]),
                        mean=_num(values[f"c{i}_mean"]),
                        std=_num(values[f"c{i}_std"]),
                        quantiles=dict(
                            zip(
                                (f"p{int(x * 100):02d}" for x in QUANTILES),
                                [_num(v) for v in (values[f"c{i}_quantiles"] or [None] * len(QUANTILES))],
                                strict=True,
                            )
                        ),
                        distinct=int(values[f"c{i}_distinct"] or 0),
                    )
                elif dtype == "bool":
                    s["mean"] = _num(values[f"c{i}_mean"])
                elif dtype == "timestamp":
                    lo, hi = values[f"c{i}_min"], values[f"c{i}_max"]
                    s.update(min=lo.isoformat() if lo else None, max=hi.isoformat() if hi else None)
                elif dtype == "string":
                    s["distinct"] = int(values[f"c{i}_distinct"] or 0)
                    top = con.execute(
                        f"SELECT {q(col)} AS v, count(*) AS k FROM __keel_t WHERE {q(col)} IS NOT NULL "
                        f"GROUP BY 1 ORDER BY k DESC, v LIMIT {TOP_CATEGORIES}"
                    ).fetchall()
                    s["top"] = [[str(v), int(k)] for v, k in top]
                elif dtype == "list[float64]":
                    s["mean_length"] = _num(values[f"c{i}_mean_length"])
                stats[col] = s
            return stats
        finally:
            con.close()

    def _count_duplicates(self, table: pa.Table, keys: list[str], timestamp: str) -> int:
        con = self.connect()
        try:
            con.register("__keel_t", table)
            cols = ", ".join(q(c) for c in (*keys, timestamp))
            distinct = f"SELECT count(*) FROM (SELECT DISTINCT {cols} FROM __keel_t)"
            row = con.execute(f"SELECT count(*) - ({distinct}) FROM __keel_t").fetchone()
            return int(row[0]) if row else 0
        finally:
            con.close()


def _bound(value: Any) -> int | float | str | None:
    """A minimum or maximum: integers as they are, floats made JSON-safe."""
    return int(value) if isinstance(value, int) else _num(value)


def _num(value: Any) -> float | str | None:
    """A JSON-safe number: NaN becomes None, infinities become "inf"/"-inf" (JSON has neither)."""
    if value is None:
        return None
    f = float(value)
    if math.isnan(f):
        return None
    if math.isinf(f):
        return "inf" if f > 0 else "-inf"
    return f
