"""Engines run the heavy data operations: ``local`` (DuckDB, in process) and ``spark`` (a Spark cluster)."""

from keel.engines._base import (
    PARTITION_ROWS,
    ROW,
    SEQ,
    TS,
    Data,
    Engine,
    EngineBase,
    EngineFrame,
    Files,
    Ingested,
    Normalisation,
    PackageSource,
    PointInTimeSource,
    Scoring,
    Written,
    WrittenFile,
)
from keel.engines.local import LocalEngine

__all__ = [
    "PARTITION_ROWS",
    "ROW",
    "SEQ",
    "TS",
    "Data",
    "Engine",
    "EngineBase",
    "EngineFrame",
    "Files",
    "Ingested",
    "LocalEngine",
    "Normalisation",
    "PackageSource",
    "PointInTimeSource",
    "Scoring",
    "Written",
    "WrittenFile",
]
