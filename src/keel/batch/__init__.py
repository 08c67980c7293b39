"""Batch scoring: stream a Parquet or CSV file by chunks through a model package, in worker processes.

The output keeps the input's order, with an id column (the row number or a given column), the prediction and,
for classifiers, one ``proba_<class>`` column per class. A failing chunk is retried once, then reported with its
row range while the rest completes; a manifest next to the output lets a re-run resume where it stopped.

Example:
    >>> result = project.predict_batch("churn@champion", "customers.parquet", "scores.parquet")  # doctest: +SKIP
    >>> result.summary()  # doctest: +SKIP
"""

from keel.batch._runner import FEATURE_MODES, BatchResult, ChunkFailure, predict_batch
from keel.batch._worker import PROBA_PREFIX, ROW_COLUMN

__all__ = ["FEATURE_MODES", "PROBA_PREFIX", "ROW_COLUMN", "BatchResult", "ChunkFailure", "predict_batch"]
