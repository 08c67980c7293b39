"""Models: the model package, its formats and the allowlist they load from, references to it by verified digest,
and the model registry."""

from keel.models._audit import PackageAudit, PackageVerification, Reference
from keel.models._input_check import InputValuesError, check_value
from keel.models._package import ModelPackage
from keel.models._package_ref import PackageRef
from keel.models._registry import ModelDiff, ModelRegistry, parse_model_ref
from keel.models._schema import MAX_CATEGORIES, FeatureSchema, InputSchema
from keel.models._serialization import SerializedPackage, dumps, loads, serialize

__all__ = [
    "MAX_CATEGORIES",
    "FeatureSchema",
    "InputSchema",
    "InputValuesError",
    "ModelDiff",
    "ModelPackage",
    "ModelRegistry",
    "PackageAudit",
    "PackageRef",
    "PackageVerification",
    "Reference",
    "SerializedPackage",
    "check_value",
    "dumps",
    "loads",
    "parse_model_ref",
    "serialize",
]
