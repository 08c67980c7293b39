"""Models: the model package, references to it by verified digest, and the model registry."""

from keel.models._package import ModelPackage
from keel.models._package_ref import PackageRef
from keel.models._registry import ModelDiff, ModelRegistry, parse_model_ref
from keel.models._schema import FeatureSchema, InputSchema
from keel.models._serialization import dumps, loads

__all__ = [
    "FeatureSchema",
    "InputSchema",
    "ModelDiff",
    "ModelPackage",
    "ModelRegistry",
    "PackageRef",
    "dumps",
    "loads",
    "parse_model_ref",
]
