"""The prediction log: a contract that the prediction service writes and monitoring reads.

One row per scored record, in Parquet files under the offline store::

    <offline>/_prediction_log/model=<name>/version=<version>/<YYYY-MM-DD>/part-<yyyymmddTHHMMSS>-<pid>-<hex8>.parquet

with ``request_id`` (string), ``record`` (int32), ``predicted_at`` (timestamp[us, UTC]), ``model`` (string),
``version`` (int32), ``key.<join key>`` (int64 or string), ``feature.<input>`` (the schema's type; the values
scored, before imputation), ``prediction`` (float64, or a classifier's class type) and ``proba.<class>``
(float64).

* :class:`LogLayout`, :func:`build_layout`, :func:`log_root`: the contract (``_layout.py``).
* :class:`PredictionLog`: the writer (a bounded queue drained by a background thread; files rotated by size, age
  and date, published by an atomic rename, flushed on close; ``_writer.py``).
* :func:`read_prediction_log`: the logged predictions of a model, as a DataFrame (``_reader.py``).

Example:
    >>> log_root("s3://bucket/offline")
    's3://bucket/offline/_prediction_log'
"""

from keel.prediction_log._layout import BASE_COLUMNS, LOG_FOLDER, LogLayout, build_layout, log_root
from keel.prediction_log._reader import read_prediction_log
from keel.prediction_log._writer import PredictionLog

__all__ = [
    "BASE_COLUMNS",
    "LOG_FOLDER",
    "LogLayout",
    "PredictionLog",
    "build_layout",
    "log_root",
    "read_prediction_log",
]
