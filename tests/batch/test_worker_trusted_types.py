"""A worker process loads the package as the parent does: with the registry's trusted types."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin

from keel.batch._worker import ModelSource
from keel.errors import IntegrityError
from keel.models import InputSchema, ModelPackage, dumps


class Threshold(BaseEstimator, ClassifierMixin):  # type: ignore[misc]
    """The user's own estimator, outside Keel's allowlist."""

    def fit(self, x: Any, y: Any) -> Threshold:
        self.classes_ = np.unique(y)
        return self

    def predict(self, x: Any) -> Any:
        return (np.asarray(x, dtype=float)[:, 0] > 0).astype(np.int64)


NAME = f"{Threshold.__module__}.{Threshold.__qualname__}"


def test_a_worker_loads_a_package_of_a_trusted_class_only_with_the_trusted_types() -> None:
    frame = pd.DataFrame({"a": [-1.0, 2.0, 3.0]})
    schema = InputSchema.infer(frame, {"a": "float64"})
    package = ModelPackage("m", "classification", "y", Threshold().fit(frame, [0, 1, 1]), None, schema, [])
    blob, fmt = dumps(package, trusted_types=[NAME])
    assert fmt == "keel"
    digest = hashlib.sha256(blob).hexdigest()

    loaded = ModelSource(digest, fmt, "model m v1", blob=blob, trusted_types=(NAME,)).load()

    np.testing.assert_array_equal(loaded.predict(frame), [0, 1, 1])
    with pytest.raises(IntegrityError, match=NAME):
        ModelSource(digest, fmt, "model m v1", blob=blob).load()
