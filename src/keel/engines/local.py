"""The local engine: DuckDB over Arrow tables and Parquet files, in this process."""

from __future__ import annotations

import contextlib
import math
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from keel.engines._base import ROW, TS, PointInTimeSource
from keel.errors import BackendError, ValidationError

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


def _interval(ttl: timedelta) -> str:
    micros = ttl // timedelta(microseconds=1)  # exact: no float rounding on long TTLs
    return f"INTERVAL ({micros}) MICROSECONDS"


class LocalEngine:
    """Heavy data operations on DuckDB, in the calling process.

    Args:
        filesystems: fsspec filesystems DuckDB should read through (for offline stores that are not local).
        threads: DuckDB worker threads (default: DuckDB's own, one per core).
    """

    name = "local"

    def __init__(self, filesystems: list[Any] | None = None, threads: int | None = None) -> None:
        self._filesystems = list(filesystems or [])
        self._threads = threads

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
    def _source_sql(i: int, src: PointInTimeSource) -> str:
        files = "[" + ", ".join(_lit(p) for p in src.paths) + "]"
        cols = [*src.join_keys, src.timestamp, *(stored for stored, _ in src.features)]
        if src.created_timestamp:
            cols.append(src.created_timestamp)
        distinct = list(dict.fromkeys(cols))
        select = ", ".join(q(c) for c in distinct)
        if not src.deduplicate:
            return f"SELECT {select} FROM read_parquet({files}, hive_partitioning=false)"
        # Ties on (keys, event time): the latest created time wins, then the row written last.
        partition = ", ".join(q(c) for c in (*src.join_keys, src.timestamp))
        order = []
        if src.created_timestamp:
            order.append(f"{q(src.created_timestamp)} DESC NULLS LAST")
        order += ["filename DESC", "file_row_number DESC"]
        options = "hive_partitioning=false, filename=true, file_row_number=true"
        return (
            f"SELECT {select} FROM read_parquet({files}, {options}) "
            f"QUALIFY row_number() OVER (PARTITION BY {partition} ORDER BY {', '.join(order)}) = 1"
        )

    def point_in_time_join(self, entities: pa.Table, sources: list[PointInTimeSource]) -> pa.Table:
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
        except Exception as exc:
            if "Conversion Error" in str(exc) or "Binder Error" in str(exc):
                raise ValidationError(f"point-in-time join failed: {exc}") from exc
            raise BackendError(f"local engine (DuckDB): point-in-time join failed: {exc}") from exc
        finally:
            con.close()

    # -- statistics ------------------------------------------------------------------------------------------
    def column_statistics(self, table: pa.Table, dtypes: dict[str, str]) -> dict[str, dict[str, Any]]:
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

    def count_duplicates(self, table: pa.Table, keys: list[str], timestamp: str) -> int:
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
