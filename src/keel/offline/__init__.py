"""The offline store: ingestion into immutable versions, and point-in-time retrieval."""

from keel.offline._ingest import IngestResult, ingest_view
from keel.offline._push import append_version
from keel.offline._retrieval import VERSIONS_ATTR, ResolvedView, historical_features, plan_request
from keel.offline._service import OfflineFeatureService
from keel.offline._store import OfflineStore
from keel.offline._validate import NaiveTimestampWarning, ValidatedTable, validate_table

__all__ = [
    "VERSIONS_ATTR",
    "IngestResult",
    "NaiveTimestampWarning",
    "OfflineFeatureService",
    "OfflineStore",
    "ResolvedView",
    "ValidatedTable",
    "append_version",
    "historical_features",
    "ingest_view",
    "plan_request",
    "validate_table",
]
