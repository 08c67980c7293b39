"""Batch scoring: stream a Parquet or CSV file by chunks through a model package, in worker processes.

The output keeps the input's order, with an id column (the row number or a given column), the prediction and,
for classifiers, one ``proba_<class>`` column per class. A failing chunk is retried once, then reported with its
row range while the rest completes; a manifest next to the output lets a re-run resume where it stopped.

:func:`predict_batch` takes the narrow collaborators it uses: the model registry, the artifact store and a
:class:`FeatureJoin` (the input's own columns, or features joined from the stores through plain callables);
:meth:`keel.Project.predict_batch` builds them from a project.

Example:
    >>> result = project.predict_batch("churn@champion", "customers.parquet", "scores.parquet")  # doctest: +SKIP
    >>> result.summary()  # doctest: +SKIP
    >>> predict_batch("churn@champion", "customers.parquet", "scores.parquet", registry=project.models,
    ...               artifacts=project.artifacts, options=BatchOptions(workers=2))  # doctest: +SKIP
"""

from keel.batch._features import FeatureJoin, InputFeatures, OfflineJoin, OnlineJoin
from keel.batch._runner import FEATURE_MODES, FEATURE_SOURCES, BatchOptions, BatchResult, ChunkFailure, predict_batch
from keel.batch._worker import PROBA_PREFIX, ROW_COLUMN

__all__ = [
    "FEATURE_MODES",
    "FEATURE_SOURCES",
    "PROBA_PREFIX",
    "ROW_COLUMN",
    "BatchOptions",
    "BatchResult",
    "ChunkFailure",
    "FeatureJoin",
    "InputFeatures",
    "OfflineJoin",
    "OnlineJoin",
    "predict_batch",
]
