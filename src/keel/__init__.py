"""Keel: features, training, inference and monitoring of tabular ML models, in one coherent tool.

Example:
    >>> import keel
    >>> project = keel.Project.open(".")  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from keel._version import __version__
from keel.errors import (
    BackendError,
    ConfigError,
    ConflictError,
    IntegrityError,
    KeelError,
    MissingExtraError,
    NotFoundError,
    ValidationError,
)
from keel.features import (
    CsvSource,
    DataFrameSource,
    Entity,
    FeatureRef,
    FeatureView,
    Field,
    ParquetSource,
    RequestSource,
    on_demand_feature_view,
)

if TYPE_CHECKING:
    from keel.models import ModelPackage
    from keel.project import Project
    from keel.training import RandomSplit, TimeSplit, TrainingSpec


__all__ = [
    "BackendError",
    "ConfigError",
    "ConflictError",
    "CsvSource",
    "DataFrameSource",
    "Entity",
    "FeatureRef",
    "FeatureView",
    "Field",
    "IntegrityError",
    "KeelError",
    "MissingExtraError",
    "ModelPackage",
    "NotFoundError",
    "ParquetSource",
    "Project",
    "RandomSplit",
    "RequestSource",
    "TimeSplit",
    "TrainingSpec",
    "ValidationError",
    "__version__",
    "on_demand_feature_view",
]


_LAZY = {
    "Project": "keel.project",
    "TrainingSpec": "keel.training",
    "TimeSplit": "keel.training",
    "RandomSplit": "keel.training",
    "ModelPackage": "keel.models",
}


def __getattr__(name: str) -> Any:
    # These pull in pandas, pyarrow, SQLAlchemy or scikit-learn; load them on first use so `import keel` stays fast.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'keel' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
