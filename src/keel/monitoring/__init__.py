"""Monitoring: reference profiles, drift statistics, data quality, performance over time and the HTML report.

The statistics are pure functions of a stored :class:`ReferenceProfile` and a current window of data;
:class:`Monitor` runs one check of a model version (reading the prediction log, storing the report and audit
events in the catalog) from the registry, the artifact store, the catalog and the log it is given;
:mod:`keel.retraining` acts on the verdict, and ``keel monitor`` puts both on the command line.
"""

from keel.monitoring._drift import DriftConfig, DriftResult, FeatureDrift, detect_drift
from keel.monitoring._html import render_html
from keel.monitoring._monitor import (
    Monitor,
    MonitoringReport,
    MonitorSettings,
    PredictionReader,
    default_html_path,
    join_labels,
    stored_profile,
    write_html,
)
from keel.monitoring._performance import MetricEstimate, WindowMetrics, overall, performance_over_time
from keel.monitoring._quality import ColumnQuality, KindChange, QualityResult, check_quality
from keel.profiles import (
    ColumnProfile,
    ReferenceProfile,
    build_profile,
    feature_kinds,
    prediction_values,
    reference_profile,
)

__all__ = [
    "ColumnProfile",
    "ColumnQuality",
    "DriftConfig",
    "DriftResult",
    "FeatureDrift",
    "KindChange",
    "MetricEstimate",
    "Monitor",
    "MonitorSettings",
    "MonitoringReport",
    "PredictionReader",
    "QualityResult",
    "ReferenceProfile",
    "WindowMetrics",
    "build_profile",
    "check_quality",
    "default_html_path",
    "detect_drift",
    "feature_kinds",
    "join_labels",
    "overall",
    "performance_over_time",
    "prediction_values",
    "reference_profile",
    "render_html",
    "stored_profile",
    "write_html",
]
