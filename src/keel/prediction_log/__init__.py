"""The prediction log: a contract that the prediction service writes and monitoring reads.

One row per scored record, in Parquet files under the offline store::

    <offline>/_prediction_log/model=<name>/version=<version>/<YYYY-MM-DD>/part-<yyyymmddTHHMMSS>-<pid>-<hex8>.parquet

with ``request_id`` (string), ``record`` (int32), ``predicted_at`` (timestamp[us, UTC]), ``model`` (string),
``version`` (int32), ``key.<join key>`` (int64 or string), ``feature.<input>`` (the schema's type; the values
scored, before imputation), ``prediction`` (float64, or a classifier's class type) and ``proba.<class>``
(float64).

* :class:`PredictionLog`: the writer (a bounded queue drained by a background thread; files rotated by size, age
  and date, published by an atomic rename, flushed on close).
* :func:`read_prediction_log`: the logged predictions of a model, as a DataFrame.
"""

from keel.prediction_log._log import (
    BASE_COLUMNS,
    LOG_FOLDER,
    LogLayout,
    PredictionLog,
    build_layout,
    log_root,
    read_prediction_log,
)

__all__ = [
    "BASE_COLUMNS",
    "LOG_FOLDER",
    "LogLayout",
    "PredictionLog",
    "build_layout",
    "log_root",
    "read_prediction_log",
]
