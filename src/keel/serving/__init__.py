"""HTTP services on one shared foundation: JSON errors, bearer-token authentication, request ids,
Prometheus metrics and structured logs.

* :func:`create_feature_app`: the feature server (``keel serve-features``), over an online feature service
  and a push function.
* :class:`Predictor`: loaded model versions scored with their features looked up online, the answers cached
  (a :class:`PredictionCache`: :class:`MemoryPredictionCache` or :class:`RedisPredictionCache`) and logged to
  the prediction log (:mod:`keel.prediction_log`); hot reload follows aliases. Usable without HTTP.
* :func:`create_prediction_app`: the prediction service (``keel serve``) of a :class:`Predictor`.

:meth:`keel.Project.prediction_app` and :meth:`keel.Project.feature_app` build both from a project.

Example:
    >>> app = keel.Project.open(".").feature_app()  # doctest: +SKIP
"""

from __future__ import annotations

from keel.serving._app import DirectRoute, create_service_app, path_parameters
from keel.serving._auth import TOKEN_VARIABLE
from keel.serving._cache import CacheOptions, MemoryPredictionCache, PredictionCache, RedisPredictionCache
from keel.serving._features_app import PushOutcome, PushRows, create_feature_app
from keel.serving._loaded import LoadedModel
from keel.serving._metrics import PredictionMetrics
from keel.serving._predict_app import create_prediction_app
from keel.serving._predictor import Predictor
from keel.serving._server import background_server

__all__ = [
    "TOKEN_VARIABLE",
    "CacheOptions",
    "DirectRoute",
    "LoadedModel",
    "MemoryPredictionCache",
    "PredictionCache",
    "PredictionMetrics",
    "Predictor",
    "PushOutcome",
    "PushRows",
    "RedisPredictionCache",
    "background_server",
    "create_feature_app",
    "create_prediction_app",
    "create_service_app",
    "path_parameters",
]
