"""Reference profiles: what a model's training inputs and predictions looked like, summarised once when a run is
trained (quantile grids, statistics, category counts) and stored with it; monitoring compares later windows of
data against them. Below both training (which writes them) and monitoring (which reads them)."""

from keel.profiles._profile import ColumnProfile, ReferenceProfile, build_profile
from keel.profiles._reference import feature_kinds, prediction_values, profile_of_frame, reference_profile

__all__ = [
    "ColumnProfile",
    "ReferenceProfile",
    "build_profile",
    "feature_kinds",
    "prediction_values",
    "profile_of_frame",
    "reference_profile",
]
