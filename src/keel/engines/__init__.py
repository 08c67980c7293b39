"""Engines run the heavy data operations: ``local`` (DuckDB, in process) now, ``spark`` later."""

from keel.engines._base import ROW, TS, Engine, EngineBase, PointInTimeSource
from keel.engines.local import LocalEngine

__all__ = ["ROW", "TS", "Engine", "EngineBase", "LocalEngine", "PointInTimeSource"]
