"""HTTP services on one shared foundation: JSON errors, bearer-token authentication, request ids,
Prometheus metrics and structured logs.

Example:
    >>> from keel.serving import create_feature_app
    >>> app = create_feature_app(keel.Project.open("."))  # doctest: +SKIP
"""

from __future__ import annotations

from keel.serving._app import create_service_app
from keel.serving._features_app import create_feature_app
from keel.serving._predict_app import create_prediction_app

__all__ = ["create_feature_app", "create_prediction_app", "create_service_app"]
