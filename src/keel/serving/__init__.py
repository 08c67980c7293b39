"""HTTP services on one shared foundation: JSON errors, bearer-token authentication, request ids,
Prometheus metrics and structured logs; and the prediction log they write.

* :func:`create_feature_app`: the feature server (``keel serve-features``).
* :func:`create_prediction_app`: the prediction service (``keel serve``), with its answer cache (in process or
  Redis) and its prediction log.
* :func:`read_prediction_log`: the logged predictions of a model, as a DataFrame. The log is a contract its
  readers (monitoring) rely on::

      <offline>/_prediction_log/model=<name>/version=<version>/<YYYY-MM-DD>/part-<yyyymmddTHHMMSS>-<pid>-<hex8>.parquet

  one row per scored record with ``request_id`` (string), ``record`` (int32), ``predicted_at``
  (timestamp[us, UTC]), ``model`` (string), ``version`` (int32), ``key.<join key>`` (int64 or string),
  ``feature.<input>`` (the schema's type; the values scored, before imputation), ``prediction`` (float64, or a
  classifier's class type) and ``proba.<class>`` (float64). See :mod:`keel.serving._prediction_log`.

Example:
    >>> from keel.serving import create_feature_app
    >>> app = create_feature_app(keel.Project.open("."))  # doctest: +SKIP
"""

from __future__ import annotations

from keel.serving._app import create_service_app
from keel.serving._features_app import create_feature_app
from keel.serving._predict_app import create_prediction_app
from keel.serving._prediction_log import read_prediction_log

__all__ = ["create_feature_app", "create_prediction_app", "create_service_app", "read_prediction_log"]
