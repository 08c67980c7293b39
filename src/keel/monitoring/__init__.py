"""Monitoring: reference profiles, drift statistics, data quality, performance over time and the HTML report.

The statistics here are pure functions of a stored :class:`ReferenceProfile` and a current window of data; the
catalog, the prediction log and the ``keel monitor`` command build on them.
"""

from keel.monitoring._drift import DriftConfig, DriftResult, FeatureDrift, detect_drift
from keel.monitoring._html import render_html
from keel.monitoring._performance import MetricEstimate, WindowMetrics, overall, performance_over_time
from keel.monitoring._profile import ColumnProfile, ReferenceProfile, build_profile
from keel.monitoring._quality import ColumnQuality, KindChange, QualityResult, check_quality

__all__ = [
    "ColumnProfile",
    "ColumnQuality",
    "DriftConfig",
    "DriftResult",
    "FeatureDrift",
    "KindChange",
    "MetricEstimate",
    "QualityResult",
    "ReferenceProfile",
    "WindowMetrics",
    "build_profile",
    "check_quality",
    "detect_drift",
    "overall",
    "performance_over_time",
    "render_html",
]
