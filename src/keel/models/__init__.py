"""Models: the model package and the model registry."""

from keel.models._package import MAX_CATEGORIES, FeatureSchema, InputSchema, ModelPackage
from keel.models._registry import ModelDiff, ModelRegistry, parse_model_ref
from keel.models._serialization import dumps, loads

__all__ = [
    "MAX_CATEGORIES",
    "FeatureSchema",
    "InputSchema",
    "ModelDiff",
    "ModelPackage",
    "ModelRegistry",
    "dumps",
    "loads",
    "parse_model_ref",
]
