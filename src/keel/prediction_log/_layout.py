"""The prediction log's layout: where its files live and which columns they hold (a contract: monitoring reads it).

Layout::

    <offline>/_prediction_log/model=<name>/version=<version>/<YYYY-MM-DD>/part-<yyyymmddTHHMMSS>-<pid>-<hex8>.parquet

The date and time are UTC, when the file was opened; ``pid`` is the writing process (each uvicorn worker writes
its own files) and ``hex8`` 8 random hex digits (several apps in one process never clash). Only complete files
carry the ``.parquet`` name (see :mod:`keel.prediction_log._writer`).
One row per scored record, with the columns:

=====================  ==============================  =====================================================
column                 type                            value
=====================  ==============================  =====================================================
``request_id``         string                          the request's id (``X-Request-ID``)
``record``             int32                           the record's index in the request
``predicted_at``       timestamp[us, tz=UTC]           when the request was scored
``model``              string                          the model's name
``version``            int32                           the model's version
``key.<join key>``     int64 or string                 each join key of the model's feature views, as the
                                                       record gave it (null when it gave raw values only)
``feature.<input>``    float64, int64, bool, string    each input column of the model's schema: the value
                       (timestamp[us, tz=UTC])         scored, after online lookup, on-demand computation
                                                       and explicit overrides, before imputation (null
                                                       stays null)
``prediction``         float64 (regression); the       the prediction
                       class's type (int64 or string)
``proba.<class>``      float64                         a classifier's probability of each class
=====================  ==============================  =====================================================

"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

    from keel.models import ModelPackage

__all__ = ["BASE_COLUMNS", "LOG_FOLDER", "LogLayout", "build_layout", "log_root"]

#: The log's folder in the offline store.
LOG_FOLDER = "_prediction_log"
#: Columns every file has, in this order, before its key, feature, prediction and probability columns.
BASE_COLUMNS = ("request_id", "record", "predicted_at", "model", "version")
#: Published files' name prefix, and the suffix of files still being written.
PART = "part-"
TMP_SUFFIX = ".tmp"


def log_root(offline: str) -> str:
    """The prediction log's root under the offline store ``offline`` (a directory or fsspec URI)."""
    return f"{offline.rstrip('/')}/{LOG_FOLDER}"


def _arrow_type(dtype: str) -> pa.DataType:
    import pyarrow as pa

    return {
        "float64": pa.float64(),
        "int64": pa.int64(),
        "bool": pa.bool_(),
        "string": pa.string(),
        "timestamp": pa.timestamp("us", tz="UTC"),
    }.get(dtype, pa.string())


@dataclass(frozen=True)
class LogLayout:
    """The columns of one model version's log files.

    Attributes:
        model: the model's name.
        version: its version.
        keys: ``(join key, "int64" | "string")`` of the join keys of the model's feature views.
        features: ``(input column, Keel dtype)`` of the model's input schema.
        prediction: the prediction's type: ``float64`` (regression), ``int64`` or ``string`` (the classes').
        classes: a classifier's classes, as the answer's probabilities name them (empty: no probabilities).
    """

    model: str
    version: int
    keys: tuple[tuple[str, str], ...]
    features: tuple[tuple[str, str], ...]
    prediction: str
    classes: tuple[str, ...]

    @cached_property
    def schema(self) -> pa.Schema:
        import pyarrow as pa

        fields = [
            pa.field("request_id", pa.string()),
            pa.field("record", pa.int32()),
            pa.field("predicted_at", pa.timestamp("us", tz="UTC")),
            pa.field("model", pa.string()),
            pa.field("version", pa.int32()),
        ]
        fields += [pa.field(f"key.{name}", _arrow_type(dtype)) for name, dtype in self.keys]
        fields += [pa.field(f"feature.{name}", _arrow_type(dtype)) for name, dtype in self.features]
        fields.append(pa.field("prediction", _arrow_type(self.prediction)))
        fields += [pa.field(f"proba.{c}", pa.float64()) for c in self.classes]
        return pa.schema(fields)


def build_layout(name: str, version: int, package: ModelPackage, keys: tuple[tuple[str, str], ...] = ()) -> LogLayout:
    """The log columns of ``name`` v``version`` (its package ``package``).

    Args:
        name: the model's name.
        version: its version.
        package: its package (the input schema, task and classes give the columns).
        keys: ``(join key, "int64" | "string")`` of the views the package reads
            (:meth:`keel.definitions.Definitions.key_types` of its feature references).
    """
    import numpy as np

    classes: tuple[str, ...] = ()
    prediction = "float64"
    if package.task == "classification":
        known = list(package.classes or [])
        if known and all(isinstance(c, str) for c in known):
            prediction = "string"
        elif all(isinstance(c, int | np.integer) for c in known):
            prediction = "int64"
        if hasattr(package.estimator, "predict_proba"):
            classes = tuple(str(c) for c in known)
    features = tuple((f.name, f.dtype) for f in package.schema.features)
    return LogLayout(name, version, tuple(keys), features, prediction, classes)
