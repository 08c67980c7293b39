"""Feature definitions: entities, fields, feature views, on-demand feature views, sources and references."""

from keel.features._definitions import Definition, Entity, FeatureView, Field, definition_hash
from keel.features._dtypes import DTYPES, arrow_type, canonical_dtype
from keel.features._on_demand import OnDemandFeatureView, RequestSource, on_demand_feature_view
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
    "OnDemandFeatureView",
    "ParquetSource",
    "RequestSource",
    "Source",
    "arrow_type",
    "canonical_dtype",
    "definition_hash",
    "on_demand_feature_view",
    "parse_refs",
    "source_from_spec",
]
