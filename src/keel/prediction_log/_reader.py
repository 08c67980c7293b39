"""The prediction log's reader: the logged predictions of a model, as a DataFrame (what monitoring reads).

Files are read with DuckDB, ``union_by_name``: files of other versions may have other columns.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from keel._files import open_filesystem, uri_of
from keel._time import as_utc
from keel.prediction_log._layout import PART

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

__all__ = ["read_prediction_log"]


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _empty() -> pd.DataFrame:
    import pyarrow as pa

    schema = pa.schema(
        [
            ("request_id", pa.string()),
            ("record", pa.int32()),
            ("predicted_at", pa.timestamp("us", tz="UTC")),
            ("model", pa.string()),
            ("version", pa.int32()),
            ("prediction", pa.float64()),
        ]
    )
    return _frame(schema.empty_table())


def _frame(table: pa.Table) -> pd.DataFrame:
    import pandas as pd
    import pyarrow as pa

    mapping = {pa.int32(): pd.Int32Dtype(), pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}
    frame: pd.DataFrame = table.to_pandas(types_mapper=mapping.get)
    return frame


def read_prediction_log(
    uri: str,
    model: str,
    *,
    version: int | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> pd.DataFrame:
    """The logged predictions of ``model`` (every version, or ``version``) made in ``[start, end)``, from the log
    under ``uri`` (:func:`~keel.prediction_log.log_root` of the offline store; ``project.predictions(...)`` reads
    a project's own).

    Only complete files are read (files still open in a running service are not visible yet). Naive
    datetimes are taken as UTC. The frame has the log's columns (see :mod:`keel.prediction_log`),
    the union over the versions read (a column a version lacks is null there), ordered by ``predicted_at``,
    ``request_id`` and ``record``; integers and booleans have pandas' nullable dtypes (``Int32``, ``Int64``,
    ``boolean``), ``predicted_at`` is ``datetime64[us, UTC]``. Nothing logged: an empty frame with the base
    columns and ``prediction``.

    Example:
        >>> from keel.prediction_log import log_root, read_prediction_log
        >>> rows = read_prediction_log(log_root("data/offline"), "churn", version=3)  # doctest: +SKIP
    """
    import duckdb

    from keel.engines.local import fetch_arrow

    if start is not None and end is not None and as_utc(start) >= as_utc(end):
        return _empty()
    fs, root, is_local = open_filesystem(uri)
    pattern = f"{root}/model={model}/version={'*' if version is None else int(version)}/*/{PART}*.parquet"
    files = sorted(fs.glob(pattern))
    if not files:
        return _empty()
    files = [uri_of(fs, f) for f in files]
    where = []
    if start is not None:
        where.append(f"predicted_at >= {_quote(as_utc(start).isoformat())}::TIMESTAMPTZ")
    if end is not None:
        where.append(f"predicted_at < {_quote(as_utc(end).isoformat())}::TIMESTAMPTZ")
    sql = (
        f"SELECT * FROM read_parquet([{', '.join(_quote(f) for f in files)}], union_by_name=true, "
        f"hive_partitioning=false)"
        + (f" WHERE {' AND '.join(where)}" if where else "")
        + " ORDER BY predicted_at, request_id, record"
    )
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        if not is_local:
            con.register_filesystem(fs)
        table = fetch_arrow(con, sql)
    finally:
        con.close()
    if table.num_rows == 0:
        return _frame(table) if table.num_columns else _empty()
    return _frame(table)
