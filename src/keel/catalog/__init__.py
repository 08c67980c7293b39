"""The catalog: Keel's metadata (definitions, ingested versions, runs, models...) in SQL.

``sqlite:///…`` is the embedded default, ``sqlite://`` keeps it in memory, ``postgresql+psycopg://…`` serves
teams. Both run the same code and pass the same conformance suite.
"""

from keel.catalog._browse import MAX_PAGE_SIZE, RUN_SORTS, RunQuery
from keel.catalog._migrations import MIGRATIONS, Migration, latest_version
from keel.catalog._monitoring import MonitoringCatalog
from keel.catalog._records import (
    AliasChange,
    DefinitionRecord,
    FeatureVersion,
    Materialization,
    ModelAnalysisRecord,
    ModelVersionRecord,
    MonitoringEvent,
    MonitoringReportRecord,
    RunRecord,
)
from keel.catalog._sql import SqlCatalog, utcnow

Catalog = SqlCatalog

__all__ = [
    "MAX_PAGE_SIZE",
    "MIGRATIONS",
    "RUN_SORTS",
    "AliasChange",
    "Catalog",
    "DefinitionRecord",
    "FeatureVersion",
    "Materialization",
    "Migration",
    "ModelAnalysisRecord",
    "ModelVersionRecord",
    "MonitoringCatalog",
    "MonitoringEvent",
    "MonitoringReportRecord",
    "RunQuery",
    "RunRecord",
    "SqlCatalog",
    "latest_version",
    "utcnow",
]
