"""Monitoring: reference profiles, drift statistics, data quality, performance over time and the HTML report.

The statistics are pure functions of a stored :class:`ReferenceProfile` and a current window of data;
:func:`monitor` runs one check of a model version (reading the prediction log, storing the report and audit
events in the catalog), :func:`retrain` runs a champion/challenger retraining, :class:`Schedule` repeats a
check until stopped, and ``keel monitor`` puts them on the command line.
"""

from keel.monitoring._drift import DriftConfig, DriftResult, FeatureDrift, detect_drift
from keel.monitoring._html import render_html
from keel.monitoring._monitor import (
    MonitoringReport,
    MonitorSettings,
    default_html_path,
    join_labels,
    monitor,
    parse_duration,
    primary_metric,
    write_html,
)
from keel.monitoring._performance import MetricEstimate, WindowMetrics, overall, performance_over_time
from keel.monitoring._profile import ColumnProfile, ReferenceProfile, build_profile
from keel.monitoring._quality import ColumnQuality, KindChange, QualityResult, check_quality
from keel.monitoring._reference import feature_kinds, prediction_values, reference_profile
from keel.monitoring._retrain import RetrainDecision, retrain
from keel.monitoring._schedule import Schedule

__all__ = [
    "ColumnProfile",
    "ColumnQuality",
    "DriftConfig",
    "DriftResult",
    "FeatureDrift",
    "KindChange",
    "MetricEstimate",
    "MonitorSettings",
    "MonitoringReport",
    "QualityResult",
    "ReferenceProfile",
    "RetrainDecision",
    "Schedule",
    "WindowMetrics",
    "build_profile",
    "check_quality",
    "default_html_path",
    "detect_drift",
    "feature_kinds",
    "join_labels",
    "monitor",
    "overall",
    "parse_duration",
    "performance_over_time",
    "prediction_values",
    "primary_metric",
    "reference_profile",
    "render_html",
    "retrain",
    "write_html",
]
