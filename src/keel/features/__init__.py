"""Feature definitions: entities, fields, feature views, sources and feature references."""

from keel.features._definitions import Definition, Entity, FeatureView, Field, definition_hash
from keel.features._dtypes import DTYPES, arrow_type, canonical_dtype
from keel.features._refs import FeatureRef, parse_refs
from keel.features._sources import CsvSource, DataFrameSource, ParquetSource, Source, source_from_spec

__all__ = [
    "DTYPES",
    "CsvSource",
    "DataFrameSource",
    "Definition",
    "Entity",
    "FeatureRef",
    "FeatureView",
    "Field",
    "ParquetSource",
    "Source",
    "arrow_type",
    "canonical_dtype",
    "definition_hash",
    "parse_refs",
    "source_from_spec",
]
