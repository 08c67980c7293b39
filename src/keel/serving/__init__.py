"""HTTP services on one shared foundation: JSON errors, bearer-token authentication, request ids,
Prometheus metrics and structured logs; and the prediction log they write.

* :func:`create_feature_app`: the feature server (``keel serve-features``).
* :func:`create_prediction_app`: the prediction service (``keel serve``), with its answer cache (in process or
  Redis) and its prediction log.
* the prediction service writes the prediction log (:mod:`keel.prediction_log`) off its response path.

Example:
    >>> from keel.serving import create_feature_app
    >>> app = create_feature_app(keel.Project.open("."))  # doctest: +SKIP
"""

from __future__ import annotations

from keel.serving._app import create_service_app
from keel.serving._features_app import create_feature_app
from keel.serving._predict_app import create_prediction_app
from keel.serving._server import background_server

__all__ = [
    "background_server",
    "create_feature_app",
    "create_prediction_app",
    "create_service_app",
]
