"""The local engine: DuckDB over Arrow tables and Parquet files, in this process; ingest and column statistics
work on Arrow tables in memory with Arrow compute and NumPy, in a thread pool."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from keel.engines._base import (
    ROW,
    SEQ,
    TS,
    Data,
    EngineBase,
    EngineFrame,
    Files,
    Ingested,
    Normalisation,
    PackageSource,
    PointInTimeSource,
    Scoring,
    Written,
    WrittenFile,
)
from keel.errors import BackendError, KeelError, ValidationError

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

    from keel.engines._conditions import Condition, Counted
    from keel.engines._profiles import ColumnSummary
    from keel.engines._windows import Window, WindowCounts


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
        threads: DuckDB worker threads, and the threads of an ingest's or the statistics' pool (default: one per
            core).
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

        if isinstance(exc, duckdb.ConversionException | duckdb.BinderException | _AbsentColumn):
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
        """Among rows of one entity at one event time: latest created time, then the larger sequence number
        (the row written last); versions written before sequence columns fall back to file position."""
        order = []
        if src.created_timestamp:
            order.append(f"{q(src.created_timestamp)} DESC NULLS LAST")
        if src.sequence:
            return [*order, f"{q(src.sequence)} DESC"]
        return [*order, "__keel_file DESC", "file_row_number DESC"]

    @staticmethod
    def _scan_sql(src: PointInTimeSource, columns: list[str], where: str, *, ordered: bool) -> str:
        """Read the source's files; ``ordered`` adds what breaks ties: the sequence column, or for versions
        written before it each row's file ordinal and row number.

        The file ordinal follows the version's file list, so a pushed delta (listed after the data it extends)
        counts as written later whatever its path.
        """
        if ordered and src.sequence:
            columns, ordered = [*columns, src.sequence], False
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
    def _latest_sql(self, src: PointInTimeSource, start: datetime | None, end: datetime, *, columns: list[str]) -> str:
        """Per entity, the row with the latest event time in ``(start, end]``; ties broken as in retrieval."""
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
        out = ", ".join(q(c) for c in dict.fromkeys(columns))
        return (
            f"SELECT {out} FROM ({self._scan_sql(src, cols, where, ordered=src.deduplicate)}) "
            f"QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY {', '.join(order)}) = 1"
        )

    def _latest_per_entity(
        self, src: PointInTimeSource, *, start: datetime | None, end: datetime, batch_rows: int
    ) -> Iterator[pa.RecordBatch]:
        """The keys, the event-time column and the stored feature columns, streamed in bounded batches."""
        columns = [*src.join_keys, src.timestamp, *(f for f, _ in src.features)]
        con = self.connect()
        try:
            reader = con.sql(self._latest_sql(src, start, end, columns=columns))
            to_reader = getattr(reader, "to_arrow_reader", None) or reader.fetch_record_batch
            for batch in to_reader(batch_rows):
                if batch.num_rows:
                    yield batch
        finally:
            con.close()

    def _stale_entities(
        self,
        old: PointInTimeSource,
        new: PointInTimeSource,
        *,
        start: datetime | None,
        end: datetime,
        new_end: datetime,
    ) -> int:
        keys = list(old.join_keys)
        on = " AND ".join(f"o.{q(k)} = n.{q(k)}" for k in keys)
        sql = (
            f"SELECT count(*) FROM ({self._latest_sql(old, start, end, columns=[*keys, old.timestamp])}) o "
            f"LEFT JOIN ({self._latest_sql(new, start, new_end, columns=[*keys, new.timestamp])}) n ON {on} "
            f"WHERE n.{q(new.timestamp)} IS NULL OR n.{q(new.timestamp)} < o.{q(old.timestamp)}"
        )
        con = self.connect()
        try:
            row = con.execute(sql).fetchone()
            return int(row[0]) if row else 0
        finally:
            con.close()

    def _join_sql(self, entities: str, sources: list[PointInTimeSource]) -> str:
        """``__keel_row`` and every source's output columns for the entity rows of the table ``entities``."""
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
        return f"SELECT {', '.join(selects)} FROM {entities} e {' '.join(joins)}"

    def _point_in_time_join(self, entities: pa.Table, sources: list[PointInTimeSource]) -> pa.Table:
        con = self.connect()
        try:
            con.register("__keel_entities", entities)
            return fetch_arrow(con, f"{self._join_sql('__keel_entities', sources)} ORDER BY {q(ROW)}")
        finally:
            con.close()

    # -- data by reference -------------------------------------------------------------------------------------
    def _relation(self, con: duckdb.DuckDBPyConnection, data: Data, name: str = "__keel_t") -> None:
        """Make ``data`` (files, an Arrow table, a DuckDB relation) readable as the view ``name``."""
        import pyarrow as pa

        if isinstance(data, Files):
            con.execute(f"CREATE TEMP VIEW {q(name)} AS {_read_sql(data)}")
        elif isinstance(data, pa.Table | pa.RecordBatch):
            con.register(name, data)
        else:
            raise ValidationError(
                f"{self.description} reads files (keel.engines.Files) or Arrow tables, not {type(data).__name__}"
            )

    # -- ingest ----------------------------------------------------------------------------------------------
    def _read(self, data: Data, rules: Normalisation) -> pa.Table:
        """The whole source as one Arrow table, files in the order given (the local engine holds a version
        in memory; that is its limit, and what the Spark engine is for)."""
        import pyarrow as pa

        if isinstance(data, pa.Table):
            return data
        if isinstance(data, pa.RecordBatch):
            return pa.Table.from_batches([data])
        if not isinstance(data, Files):
            raise ValidationError(
                f"{self.description} ingests files (keel.engines.Files) or Arrow tables, not {type(data).__name__}"
            )
        return _read_files(data)

    def _ingest(
        self,
        data: Data,
        rules: Normalisation,
        into: str,
        *,
        first_sequence: int,
        unless_digest: str | None,
        partition_rows: int,
    ) -> Ingested:
        """Read and normalise the source, then make everything else of the one table in memory in a thread pool
        (Arrow, NumPy and hashlib release the GIL, so the tasks share the cores): first the digest, in pieces that
        are merged; then, unless it is ``unless_digest`` (nothing is written then), the files (each hashed as it is
        written), each column's statistics and the duplicate count, side by side.
        """
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        from keel.engines._arrow_files import month_parts, remove_written, write_parquet
        from keel.engines._arrow_statistics import column_tasks
        from keel.engines._digest import RowDigest, partial_state
        from keel.engines._normalise import normalise_table

        raw = self._read(data, rules)
        if raw.num_rows == 0:
            raise ValidationError(f"feature view {rules.view!r}: {rules.source} has no rows; nothing ingested")
        normalised = normalise_table(raw, rules)
        del raw  # the normalised copy is all that is needed from here on; free the source's memory early
        table = normalised.table
        dtypes = rules.dtypes(normalised.key_types)
        bounds = pc.min_max(table.column(rules.timestamp)).as_py()
        workers = self._workers()
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="keel-ingest") as pool:
            digest = RowDigest(dtypes)
            for state in pool.map(lambda piece: partial_state(piece, dtypes), _pieces(table, workers)):
                digest.merge(state)
            found = {
                "rows": table.num_rows,
                "key_types": normalised.key_types,
                "event_time_min": bounds["min"],
                "event_time_max": bounds["max"],
                "digest": digest.hexdigest(),
                "warnings": tuple(normalised.warnings),
            }
            if found["digest"] == unless_digest:
                return Ingested(written=None, duplicates=0, statistics={}, **found)
            seq = np.arange(first_sequence, first_sequence + table.num_rows, dtype=np.int64)
            table = table.append_column(SEQ, pa.array(seq))
            # The longest tasks first: the writes, then the rest.
            writes = [
                pool.submit(write_parquet, part, into, rel)
                for rel, part in month_parts(table, rules.timestamp, partition_rows)
            ]
            duplicates = pool.submit(self._table_duplicates, table, list(rules.join_keys), rules.timestamp)
            statistics = {name: pool.submit(task) for name, task in column_tasks(table, dtypes).items()}
        every: list[Future[Any]] = [*writes, duplicates, *statistics.values()]
        failed = next((f.exception() for f in every if f.exception() is not None), None)
        if failed is not None:
            remove_written(Written(into, tuple(f.result() for f in writes if f.exception() is None)))
            raise failed
        return Ingested(
            written=Written(into, tuple(f.result() for f in writes)),
            duplicates=duplicates.result(),
            statistics={name: f.result() for name, f in statistics.items()},
            **found,
        )

    def _workers(self) -> int:
        """Threads of an ingest's pool: one per core (at least two: a write's sync waits on the disk)."""
        return max(2, self._threads or os.cpu_count() or 1)

    def _table_duplicates(self, table: pa.Table, keys: list[str], timestamp: str) -> int:
        """:meth:`count_duplicates` of a table in memory. In event-time order (a log), rows sharing a time are
        neighbours: only those are counted, and none at all when no two neighbours share a time."""
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        micros = pc.cast(table.column(timestamp), pa.int64()).to_numpy()
        if not bool(np.all(micros[1:] >= micros[:-1])):
            return self._count_duplicates(table, keys, timestamp)
        tied = micros[1:] == micros[:-1]
        if not tied.any():
            return 0
        rows = np.zeros(len(micros), dtype=bool)
        rows[1:] |= tied
        rows[:-1] |= tied
        subset = table.select([*keys, timestamp]).filter(pa.array(rows))
        return int(subset.num_rows - subset.group_by([*keys, timestamp]).aggregate([]).num_rows)

    # -- point-in-time join of an entity table at rest ---------------------------------------------------------
    def _join_to(
        self,
        entities: Data,
        sources: list[PointInTimeSource],
        *,
        timestamp: str,
        key_types: dict[str, str],
        into: str | None,
    ) -> Written | EngineFrame:
        from keel.engines._arrow_files import filesystem, write_parquet

        if into is None:
            raise ValidationError(
                f"{self.description}: a point-in-time join of an entity table at rest is written to a folder; "
                "pass into=PATH (only the Spark engine returns its own frames)",
                field="into",
            )
        con = self.connect()
        try:
            self._relation(con, entities, "__keel_input")
            present = [str(r[0]) for r in con.execute("DESCRIBE __keel_input").fetchall()]
            for column in [timestamp, *key_types]:
                if column not in present:
                    raise ValidationError(
                        f"entity table lacks column {column!r}; it has: {', '.join(present)}", field=column
                    )
            # Numbered once and kept: the entity rows are read twice (the join, then every column back).
            con.execute(
                "CREATE TEMP TABLE __keel_numbered AS SELECT row_number() OVER () - 1 AS __keel_row, * "
                "FROM __keel_input"
            )
            kinds = {"int64": "BIGINT", "string": "VARCHAR"}
            typed = "".join(f", CAST({q(k)} AS {kinds[t]}) AS {q(k)}" for k, t in key_types.items())
            con.execute(
                f"CREATE TEMP VIEW __keel_entities AS SELECT {q(ROW)}, "
                f"CAST({q(timestamp)} AS TIMESTAMPTZ) AS {q(TS)}{typed} FROM __keel_numbered"
            )
            keep = ", ".join(f"i.{q(c)}" for c in present)
            outputs = "".join(f", j.{q(out)}" for src in sources for _, out in src.features)
            sql = (
                f"SELECT {keep}{outputs} FROM __keel_numbered i "
                f"JOIN ({self._join_sql('__keel_entities', sources)}) j USING ({q(ROW)}) ORDER BY i.{q(ROW)}"
            )
            fs, root, local = filesystem(into)
            if not local:
                return Written(into, (write_parquet(fetch_arrow(con, sql), into, "part-0.parquet"),))
            fs.makedirs(root, exist_ok=True)
            path = f"{root.rstrip('/')}/part-0.parquet"
            con.execute(f"COPY ({sql}) TO {_lit(path)} (FORMAT parquet)")
            rows = con.execute(f"SELECT count(*) FROM read_parquet({_lit(path)})").fetchone()
            with open(path, "rb") as f:
                digest = hashlib.file_digest(f, "sha256").hexdigest()
            return Written(into, (WrittenFile("part-0.parquet", int(rows[0]) if rows else 0, digest),))
        finally:
            con.close()

    # -- statistics ------------------------------------------------------------------------------------------
    def _column_statistics(self, data: Data, dtypes: dict[str, str]) -> dict[str, dict[str, Any]]:
        """Exact statistics of the columns in memory (:mod:`keel.engines._arrow_statistics`), one column per task
        of a thread pool; files are read first, only the columns described."""
        import pyarrow as pa

        from keel.engines._arrow_statistics import column_tasks

        if isinstance(data, Files):
            table = _read_files(data, columns=list(dtypes))
        elif isinstance(data, pa.Table | pa.RecordBatch):
            table = data if isinstance(data, pa.Table) else pa.Table.from_batches([data])
        else:
            raise ValidationError(
                f"{self.description} reads files (keel.engines.Files) or Arrow tables, not {type(data).__name__}"
            )
        missing = [name for name in dtypes if name not in table.column_names]
        if missing:
            raise _AbsentColumn(
                f"no column(s) {', '.join(map(repr, missing))}; the data has {', '.join(table.column_names)}"
            )
        tasks = column_tasks(table, dtypes)
        with ThreadPoolExecutor(max_workers=min(len(tasks), self._workers()) or 1) as pool:
            running = {name: pool.submit(task) for name, task in tasks.items()}
        return {name: f.result() for name, f in running.items()}

    def _profile(
        self, data: Data, kinds: dict[str, str], *, grid: Sequence[float], bins: int
    ) -> dict[str, ColumnSummary]:
        """Three queries: bounds, moments and exact quantiles of the finite values of every numeric column; their
        histograms; the value counts of each categorical column."""
        from keel.engines._profiles import categorical_summary, check_kinds, histogram_edges, numeric_summary

        con = self.connect()
        try:
            self._relation(con, data)
            columns = [r[0] for r in con.execute("DESCRIBE __keel_t").fetchall()]
            check_kinds(kinds, columns)
            numeric = [name for name, kind in kinds.items() if kind == "numeric"]

            def finite(name: str) -> str:
                v = f"TRY_CAST({q(name)} AS DOUBLE)"
                return f"(CASE WHEN isfinite({v}) THEN {v} END)"

            exprs = ["count(*)"]
            for name in numeric:
                f = finite(name)
                exprs += [f"count({f})", f"min({f})", f"max({f})", f"avg({f})", f"stddev_pop({f})"]
                exprs.append(f"quantile_cont({f}, $grid)")
            parameters = {"grid": [float(p) for p in grid]} if numeric else None
            found = con.execute(f"SELECT {', '.join(exprs)} FROM __keel_t", parameters)
            row = found.fetchone()
            assert row is not None
            rows = int(row[0])
            parts = {name: row[1 + 6 * i : 7 + 6 * i] for i, name in enumerate(numeric)}
            edges = {name: histogram_edges(p[1], p[2], bins) for name, p in parts.items() if p[0]}
            counted: dict[str, list[int]] = {}
            counts = []
            for name, e in edges.items():
                if len(e) < 2:
                    continue
                f = finite(name)
                for k in range(len(e) - 1):
                    upper = "<=" if k == len(e) - 2 else "<"
                    counts.append((name, f"count_if({f} >= {_double(e[k])} AND {f} {upper} {_double(e[k + 1])})"))
            if counts:
                hist = con.execute(f"SELECT {', '.join(c for _, c in counts)} FROM __keel_t").fetchone()
                assert hist is not None
                for (name, _), n in zip(counts, hist, strict=True):
                    counted.setdefault(name, []).append(int(n))
            out: dict[str, ColumnSummary] = {}
            for name, kind in kinds.items():
                if kind == "numeric":
                    count, lo, hi, mean, std, quantiles = parts[name]
                    aggregates = {"count": count, "min": lo, "max": hi, "mean": mean, "std": std}
                    out[name] = numeric_summary(name, rows, aggregates, quantiles, counted.get(name, []), bins)
                else:
                    pairs = con.execute(
                        f"SELECT {q(name)}, count(*) FROM __keel_t WHERE {q(name)} IS NOT NULL GROUP BY 1"
                    ).fetchall()
                    out[name] = categorical_summary(name, rows, pairs)
            return out
        finally:
            con.close()

    def _count_where(self, data: Data, conditions: Mapping[str, Condition]) -> dict[str, Counted]:
        """One aggregate query: per condition, ``count_if`` and the smallest sequence number where it holds."""
        from keel.engines._conditions import Counted, check_columns, duckdb_register, duckdb_sql_or_null

        con = self.connect()
        try:
            self._relation(con, data)
            described = con.execute("DESCRIBE __keel_t").fetchall()
            types = {str(r[0]): str(r[1]) for r in described}
            check_columns(conditions, list(types))
            duckdb_register(con, conditions.values(), types)  # the Python checks, run batch by batch
            floats = frozenset(n for n, t in types.items() if t in ("DOUBLE", "FLOAT"))
            # Each condition is evaluated once, in a projection; the aggregates read its flag.
            flags = [f"{duckdb_sql_or_null(c, floats)} AS c{i}" for i, c in enumerate(conditions.values())]
            if SEQ in types:
                flags.append(f"{q(SEQ)} AS s")
            exprs = ["count(*)"]
            for i in range(len(conditions)):
                exprs.append(f"count_if(c{i})")
                exprs.append(f"min(CASE WHEN c{i} THEN s END)" if SEQ in types else "NULL")
            projected = f"SELECT {', '.join(flags) or 'true AS c'} FROM __keel_t"
            row = con.execute(f"SELECT {', '.join(exprs)} FROM ({projected})").fetchone()
            assert row is not None
            rows = int(row[0])
            return {
                name: Counted(rows, int(row[1 + 2 * i]), None if row[2 + 2 * i] is None else int(row[2 + 2 * i]))
                for i, name in enumerate(conditions)
            }
        finally:
            con.close()

    def _window_counts(
        self, data: Data, timestamp: str, window: Window, buckets: Mapping[str, Sequence[Condition]]
    ) -> WindowCounts:
        """One grouped query: each row's window and, per column, the first bucket condition it meets (a CASE), grouped
        by (window, bucket) for every column at once (grouping sets)."""
        from keel.engines._conditions import duckdb_sql_or_null
        from keel.engines._windows import WindowCounts, check_window_columns

        con = self.connect()
        try:
            self._relation(con, data)
            types = {str(r[0]): str(r[1]) for r in con.execute("DESCRIBE __keel_t").fetchall()}
            check_window_columns(list(types), timestamp, buckets)
            floats = frozenset(n for n, t in types.items() if t in ("DOUBLE", "FLOAT"))
            cases = []
            for i, conditions in enumerate(buckets.values()):
                whens = " ".join(f"WHEN {duckdb_sql_or_null(c, floats)} THEN {k}" for k, c in enumerate(conditions))
                cases.append(f"CASE {whens} ELSE {len(conditions)} END AS b{i}" if conditions else f"0 AS b{i}")
            ts = q(timestamp)
            projected = (
                f"SELECT {window.duckdb_index(ts)} AS w, {', '.join(cases)} FROM __keel_t WHERE {ts} IS NOT NULL"
            )
            names = [f"b{i}" for i in range(len(buckets))]
            sets = ", ".join(f"(w, {b})" for b in names)
            found = con.execute(
                f"SELECT w, {', '.join(names)}, count(*) FROM ({projected}) GROUP BY GROUPING SETS ({sets})"
            ).fetchall()
            rows = []
            for record in found:
                column = next(i for i, b in enumerate(record[1:-1]) if b is not None)
                rows.append((int(record[0]), column, int(record[1 + column]), int(record[-1])))
            return WindowCounts.from_rows(window, {n: len(c) for n, c in buckets.items()}, rows)
        finally:
            con.close()

    def _count_duplicates(self, data: Data, keys: list[str], timestamp: str) -> int:
        con = self.connect()
        try:
            self._relation(con, data)
            cols = ", ".join(q(c) for c in (*keys, timestamp))
            distinct = f"SELECT count(*) FROM (SELECT DISTINCT {cols} FROM __keel_t)"
            row = con.execute(f"SELECT count(*) - ({distinct}) FROM __keel_t").fetchone()
            return int(row[0]) if row else 0
        finally:
            con.close()

    # -- scoring ---------------------------------------------------------------------------------------------
    def _score(self, data: Data, package: PackageSource, into: str, *, scoring: Scoring) -> Written:
        from keel.engines._local_score import score_files

        return score_files(data, package, into, scoring)


class _AbsentColumn(LookupError):
    """An operation names a column the data does not have (a :class:`ValidationError` once translated)."""


def _read_sql(files: Files) -> str:
    """A DuckDB table function reading ``files`` (Parquet: columns by name across files; CSV: the options)."""
    uris = "[" + ", ".join(_lit(u) for u in files.uris) + "]"
    if files.format == "csv":
        options = dict(files.options)
        delimiter = options.get("delimiter", ",")
        return f"SELECT * FROM read_csv({uris}, header=true, delim={_lit(delimiter)})"
    return f"SELECT * FROM read_parquet({uris}, hive_partitioning=false, union_by_name=true)"


def _read_files(files: Files, columns: list[str] | None = None) -> pa.Table:
    """Every file of ``files``, in order, as one Arrow table (a Parquet folder with Hive partitions included);
    only ``columns`` when given."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    from keel.engines._arrow_files import filesystem

    tables = []
    for uri in files.uris:
        fs, path, _ = filesystem(uri)
        try:
            if files.format == "csv":
                delimiter = dict(files.options).get("delimiter", ",")
                # An empty field is null in every column, strings included (as Spark reads CSV).
                convert = pcsv.ConvertOptions(strings_can_be_null=True)
                with fs.open(path, "rb") as f:
                    tables.append(
                        pcsv.read_csv(f, parse_options=pcsv.ParseOptions(delimiter=delimiter), convert_options=convert)
                    )
            else:
                dataset = pq.ParquetDataset(path, filesystem=fs)
                # A column the files lack is the caller's to report, not a read error.
                present = None if columns is None else [c for c in columns if c in dataset.schema.names]
                tables.append(dataset.read(columns=present))
        except (OSError, pa.ArrowException) as exc:
            raise BackendError(f"cannot read {files.label}: {exc}") from exc
    table = tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="default")
    if columns is not None and files.format == "csv":
        present = [c for c in columns if c in table.column_names]
        table = table.select(present)
    return table


def _pieces(table: pa.Table, count: int) -> list[pa.Table]:
    """``table`` cut into ``count`` slices of about equal rows (zero-copy)."""
    size = -(-table.num_rows // count)
    return [table.slice(start, size) for start in range(0, table.num_rows, size)]


def _double(value: float) -> str:
    """A float as a DuckDB DOUBLE literal, bit for bit (a bare decimal literal would be a DECIMAL)."""
    return f"CAST('{float(value)!r}' AS DOUBLE)"
