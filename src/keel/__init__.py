"""Keel: features, training, inference and monitoring of tabular ML models, in one coherent tool.

Example:
    >>> import keel
    >>> project = keel.Project.open(".")  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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
)

if TYPE_CHECKING:
    from keel.project import Project

__version__ = "0.1.0"

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
    "NotFoundError",
    "ParquetSource",
    "Project",
    "ValidationError",
    "__version__",
]


def __getattr__(name: str) -> Any:
    # Project pulls in pandas, pyarrow and SQLAlchemy; load it on first use so `import keel` stays fast.
    if name == "Project":
        from keel.project import Project

        return Project
    raise AttributeError(f"module 'keel' has no attribute {name!r}")
