"""One monitoring check of a model version: drift, data quality and performance against its reference.

The reference is the profile stored when the version's run was trained (or a profile of ``--reference``
rows); the current window is the prediction log of the last ``window`` (or ``--current`` rows). Labels, when
given, are joined to the logged predictions by request id (and record), or by entity keys and time (each
label takes the latest prediction for its entity at or before its timestamp). The report is stored in the
catalog, with an audit event, and rendered as a self-contained HTML page.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from keel.errors import NotFoundError, ValidationError
from keel.monitoring._drift import DriftConfig, DriftResult, detect_drift
from keel.monitoring._performance import performance_over_time
from keel.monitoring._quality import QualityResult, check_quality
from keel.profiles import ReferenceProfile, feature_kinds, prediction_values, profile_of_frame
from keel.training import primary_metric, worse_by

if TYPE_CHECKING:
    from keel.catalog import ModelVersionRecord, MonitoringReportRecord, RunRecord
    from keel.models._package import ModelPackage
    from keel.project import Project

__all__ = [
    "MonitorSettings",
    "MonitoringReport",
    "monitor",
]


@dataclass(frozen=True)
class MonitorSettings:
    """Thresholds of a check.

    Attributes:
        window: how far back from ``end`` the current window of the prediction log reaches (default 7 days).
        drift: the drift tests and their thresholds (see :class:`DriftConfig`).
        metric: the metric decay is judged on (default: ROC AUC for classifiers, RMSE for regressors).
        decay_tolerance: decay is crossed when the current value of ``metric`` is worse than the version's
            validation value by more than this share of it (default 0.05: 5% worse).
        performance_window: the width of each time window performance is computed over (pandas offset).
        n_boot: bootstrap resamples for the confidence intervals.
        min_rows: fewer current rows than this give no drift verdict (too little data to judge).
        missing_rate_increase: data quality fails when a column's missing rate grows by more than this.
        out_of_range_share: data quality fails when more than this share of a column's values lies outside
            the training range.
        quality_crosses: whether a data-quality failure alone crosses the threshold (exit code, retraining).
    """

    window: timedelta = timedelta(days=7)
    drift: DriftConfig = field(default_factory=DriftConfig)
    metric: str | None = None
    decay_tolerance: float = 0.05
    performance_window: str = "1D"
    n_boot: int = 200
    min_rows: int = 30
    missing_rate_increase: float = 0.1
    out_of_range_share: float = 0.05
    quality_crosses: bool = False


@dataclass(frozen=True)
class MonitoringReport:
    """The outcome of one check; :meth:`to_dict` is what the catalog stores and the HTML page shows."""

    id: str
    model: str
    version: int
    created_at: datetime
    window_start: datetime | None
    window_end: datetime | None
    reference: dict[str, Any]
    current: dict[str, Any]
    drift: DriftResult | None
    quality: QualityResult | None
    performance: list[dict[str, Any]] | None
    overall: dict[str, Any] | None
    validation_metrics: dict[str, Any]
    verdict: dict[str, Any]

    @property
    def crossed(self) -> bool:
        return bool(self.verdict["crossed"])

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model": self.model,
            "version": self.version,
            "created_at": self.created_at.isoformat(),
            "window": {
                "start": self.window_start.isoformat() if self.window_start else None,
                "end": self.window_end.isoformat() if self.window_end else None,
            },
            "reference": self.reference,
            "current": self.current,
            "drift": self.drift.to_dict() if self.drift is not None else None,
            "quality": self.quality.to_dict() if self.quality is not None else None,
            "performance": self.performance,
            "overall": self.overall,
            "validation_metrics": self.validation_metrics,
            "verdict": self.verdict,
        }


# -- reading inputs ------------------------------------------------------------------------------------------
def _frame(value: pd.DataFrame | str | Path, what: str) -> pd.DataFrame:
    if isinstance(value, pd.DataFrame):
        return value
    from keel._tables import read_table

    try:
        return read_table(Path(value))
    except ValidationError as exc:
        raise ValidationError(f"{what}: {exc}", field=what) from exc


def stored_profile(project: Project, run: RunRecord) -> ReferenceProfile:
    """The reference profile recorded with ``run`` (NotFoundError for runs trained before profiles existed)."""
    entry = run.lineage.get("reference_profile")
    if not entry:
        raise NotFoundError(
            f"run {run.id} has no stored reference profile (it predates them); pass reference rows with "
            "--reference PATH (reference=...)"
        )
    return ReferenceProfile.from_bytes(project.artifacts.get_bytes(entry["digest"]))


def _logged(project: Project, name: str, version: int, start: datetime, end: datetime) -> pd.DataFrame:
    from keel.prediction_log import log_root, read_prediction_log

    return read_prediction_log(log_root(project.config.offline), name, version=version, start=start, end=end)


def _log_features(log: pd.DataFrame, package: ModelPackage) -> pd.DataFrame:
    columns = {f"feature.{n}": n for n in feature_kinds(package) if f"feature.{n}" in log.columns}
    return log[list(columns)].rename(columns=columns).reset_index(drop=True)


def _log_proba(log: pd.DataFrame, package: ModelPackage) -> np.ndarray | None:
    if package.task != "classification" or not package.classes:
        return None
    names = [f"proba.{c}" for c in package.classes]
    if not all(n in log.columns for n in names):
        return None
    return log[names].to_numpy(dtype=np.float64)


def _label_column(labels: pd.DataFrame, package: ModelPackage) -> str:
    for candidate in (package.label, "label"):
        if candidate in labels.columns:
            return candidate
    raise ValidationError(
        f"the labels have no column {package.label!r} (the model's label) nor 'label'; they have: "
        f"{', '.join(map(str, labels.columns))}",
        field=package.label,
    )


def _timestamp_column(frame: pd.DataFrame) -> str | None:
    stamps = [c for c in frame.columns if pd.api.types.is_datetime64_any_dtype(frame[c])]
    for preferred in ("event_timestamp", "timestamp", "predicted_at"):
        if preferred in stamps:
            return preferred
    return stamps[0] if len(stamps) == 1 else None


def join_labels(log: pd.DataFrame, labels: pd.DataFrame, package: ModelPackage) -> pd.DataFrame:
    """The logged rows that have a label, with a ``label`` column.

    By ``request_id`` (and ``record`` when the labels have it), or else by the entity keys the log holds and
    a timestamp: each label takes the latest logged prediction for its entity at or before its time.
    """
    label = _label_column(labels, package)
    if "request_id" in labels.columns:
        on = ["request_id", "record"] if "record" in labels.columns else ["request_id"]
        right = labels[[*on, label]].rename(columns={label: "label"})
        if "record" not in on and right["request_id"].duplicated().any():
            raise ValidationError("labels name a request id twice; add a 'record' column", field="request_id")
        return log.merge(right, on=on, how="inner")
    keys = [c.removeprefix("key.") for c in log.columns if c.startswith("key.") and c[4:] in labels.columns]
    stamp = _timestamp_column(labels)
    if not keys or stamp is None:
        raise ValidationError(
            "labels must have a request_id column, or the entity keys of the logged predictions "
            f"({', '.join(c[4:] for c in log.columns if c.startswith('key.')) or 'none logged'}) and one timestamp "
            "column",
            field="labels",
        )
    right = labels[[*keys, stamp, label]].rename(columns={label: "label", stamp: "_label_at"})
    right["_label_at"] = pd.to_datetime(right["_label_at"], utc=True)
    left = log.rename(columns={f"key.{k}": k for k in keys})
    left = left[left[keys].notna().all(axis=1)].copy()
    for k in keys:  # one type on both sides for merge_asof's by=
        if pd.api.types.is_numeric_dtype(right[k]) and pd.api.types.is_numeric_dtype(left[k]):
            left[k], right[k] = left[k].astype("int64"), right[k].astype("int64")
        else:
            left[k], right[k] = left[k].astype(str), right[k].astype(str)
    left = left.sort_values("predicted_at", kind="stable")
    right = right.dropna(subset=["_label_at"]).sort_values("_label_at", kind="stable")
    joined = pd.merge_asof(right, left, left_on="_label_at", right_on="predicted_at", by=keys, direction="backward")
    joined = joined[joined["predicted_at"].notna()].drop(columns=["_label_at"])
    return joined.rename(columns={k: f"key.{k}" for k in keys}).reset_index(drop=True)


# -- the check -----------------------------------------------------------------------------------------------
def _performance(
    rows: pd.DataFrame,
    package: ModelPackage,
    proba: np.ndarray | None,
    settings: MonitorSettings,
    names: list[str],
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from keel.monitoring._performance import overall as overall_metrics

    y_true = rows["label"].to_numpy()
    y_pred = rows["prediction"].to_numpy()
    if package.task == "classification" and package.classes is not None:
        kind = type(package.classes[0])
        y_true = np.asarray([kind(v) for v in y_true], dtype=object)
        y_pred = np.asarray([kind(v) for v in y_pred], dtype=object)
    common: dict[str, Any] = {
        "task": package.task,
        "classes": package.classes,
        "proba": proba,
        "metrics": names,
        "n_boot": settings.n_boot,
    }
    windows = performance_over_time(
        y_true, y_pred, timestamps=rows["predicted_at"], window=settings.performance_window, **common
    )
    total = overall_metrics(y_true, y_pred, timestamps=rows["predicted_at"], **common)
    return [w.to_dict() for w in windows], total.to_dict()


def _scored(package: ModelPackage, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
    scored = package.score(frame)  # predictions and probabilities from one preparation, as the service does
    return scored.predictions, scored.probabilities


def monitor(
    project: Project,
    ref: str,
    *,
    end: datetime | None = None,
    reference: pd.DataFrame | str | Path | None = None,
    current: pd.DataFrame | str | Path | None = None,
    labels: pd.DataFrame | str | Path | None = None,
    settings: MonitorSettings | None = None,
    store: bool = True,
) -> tuple[MonitoringReport, MonitoringReportRecord | None]:
    """Check the model version ``ref`` names (``churn@champion``, ``churn:3``); see the module docstring.

    Returns the report and, with ``store``, its catalog record (an audit event ``checked`` is recorded too,
    and ``threshold_crossed`` when a threshold was crossed).
    """
    settings = settings or MonitorSettings()
    version: ModelVersionRecord = project.models.get(ref)
    run = project.models.run_of(f"{version.name}:{version.version}")
    package = project.models.load(f"{version.name}:{version.version}")
    kinds = feature_kinds(package)

    if reference is not None:
        source = str(reference) if not isinstance(reference, pd.DataFrame) else "rows given"
        profile = profile_of_frame(package, _frame(reference, "reference"))
    else:
        profile = stored_profile(project, run)
        source = f"training split of run {run.id[:8]} (stored at training)"

    window_start: datetime | None = None
    window_end: datetime | None = None
    if current is not None:
        rows = _frame(current, "current").reset_index(drop=True)
        features = rows[[c for c in kinds if c in rows.columns]]
        # A missing column is a schema change (reported by the quality check); the model scores it as missing.
        scored = features.reindex(columns=list(kinds)) if len(features.columns) < len(kinds) else features
        predictions, proba = _scored(package, scored)
        rows = rows.assign(prediction=predictions)
        if proba is not None and package.classes is not None:
            rows = rows.assign(**{f"proba.{c}": proba[:, i] for i, c in enumerate(package.classes)})
        if package.label in rows.columns and labels is None:
            rows = rows.assign(label=rows[package.label])
        stamp = _timestamp_column(rows)
        rows = rows.assign(predicted_at=pd.to_datetime(rows[stamp], utc=True) if stamp else pd.Timestamp.now(UTC))
        current_source = str(current) if not isinstance(current, pd.DataFrame) else "rows given"
        log = rows
    else:
        window_end = (end or datetime.now(UTC)).astimezone(UTC)
        window_start = window_end - settings.window
        log = _logged(project, version.name, version.version, window_start, window_end)
        features = _log_features(log, package)
        proba = _log_proba(log, package)
        predictions = log["prediction"].to_numpy() if "prediction" in log.columns else np.empty(0)
        current_source = f"prediction log, {window_start:%Y-%m-%d %H:%M} to {window_end:%Y-%m-%d %H:%M} UTC"

    reasons: list[str] = []
    notes: list[str] = []
    drift: DriftResult | None = None
    quality: QualityResult | None = None
    n = len(features)
    if n >= max(settings.min_rows, 1):
        pred_values = prediction_values(package, predictions, proba) if len(predictions) else None
        drift = detect_drift(profile, features, predictions=pred_values, config=settings.drift)
        quality = check_quality(
            profile,
            features,
            missing_rate_increase=settings.missing_rate_increase,
            out_of_range_share=settings.out_of_range_share,
        )
        if drift.dataset_drifted:
            reasons.append(
                f"{len(drift.drifted_features)} of {len(drift.features)} features drifted ({drift.share:.0%} ≥ "
                f"{settings.drift.drift_share:.0%}): {', '.join(drift.drifted_features)}"
            )
        if drift.prediction is not None and drift.prediction.drifted:
            reasons.append(f"the predictions drifted ({drift.prediction.method} {drift.prediction.statistic:.3f})")
        if quality.failed and settings.quality_crosses:
            reasons.extend(quality.issues)
    performance = overall = None
    decayed = False
    validation = {k: v for k, v in run.metrics.items() if v is not None}
    metric = settings.metric or primary_metric(package.task, validation)
    if labels is not None or (current is not None and "label" in log.columns):
        names = list(dict.fromkeys([metric, *validation]))
        joined = log if labels is None else join_labels(log, _frame(labels, "labels"), package)
        joined = joined[joined["label"].notna()].reset_index(drop=True)
        if len(joined):
            performance, overall = _performance(joined, package, _log_proba(joined, package), settings, names)
            now = (overall or {}).get("metrics", {}).get(metric, {}).get("value")
            before = validation.get(metric)
            if len(joined) < settings.min_rows:
                notes.append(f"only {len(joined)} labelled rows (fewer than {settings.min_rows}): no decay verdict")
            elif now is not None and before is not None:
                worse = worse_by(metric, float(before), float(now))
                if worse > settings.decay_tolerance:
                    decayed = True
                    reasons.append(
                        f"{metric} fell from {before:.4f} (validation) to {now:.4f} ({worse:.1%} worse, tolerance "
                        f"{settings.decay_tolerance:.0%})"
                    )
    drifted = bool(drift is not None and (drift.dataset_drifted or (drift.prediction and drift.prediction.drifted)))
    quality_failed = bool(quality is not None and quality.failed)
    crossed = drifted or decayed or (quality_failed and settings.quality_crosses)
    if drift is None:
        notes.insert(0, f"only {n} current rows (fewer than {settings.min_rows}): no drift verdict")
    verdict = {
        "drift": drifted,
        "quality": quality_failed,
        "decay": decayed,
        "crossed": crossed,
        "metric": metric,
        "reasons": reasons,
        "notes": notes,
    }
    report = MonitoringReport(
        id=uuid.uuid4().hex,
        model=version.name,
        version=version.version,
        created_at=datetime.now(UTC),
        window_start=window_start,
        window_end=window_end,
        reference={"rows": profile.rows, "source": source},
        current={"rows": n, "source": current_source},
        drift=drift,
        quality=quality,
        performance=performance,
        overall=overall,
        validation_metrics=validation,
        verdict=verdict,
    )
    if not store:
        return report, None
    record = project.catalog.add_monitoring_report(
        report_id=report.id,
        name=report.model,
        version=report.version,
        window_start=window_start,
        window_end=window_end,
        crossed=crossed,
        verdict=verdict,
        report=report.to_dict(),
        created_at=report.created_at,
    )
    summary = "; ".join(reasons) if reasons else "within thresholds"
    project.catalog.add_monitoring_event(
        name=report.model,
        kind="checked",
        version=report.version,
        report_id=report.id,
        message=f"checked v{report.version} on {n:,} rows: {summary}",
        details={"crossed": crossed, "drifted_features": drift.drifted_features if drift else []},
    )
    if crossed:
        project.catalog.add_monitoring_event(
            name=report.model,
            kind="threshold_crossed",
            version=report.version,
            report_id=report.id,
            message=summary,
            details={k: verdict[k] for k in ("drift", "quality", "decay")},
        )
    return report, record


def write_html(report: MonitoringReport | dict[str, Any], path: Path) -> Path:
    """Render ``report`` as a self-contained HTML page at ``path`` (written atomically)."""
    from keel.monitoring._html import render_html

    data = report.to_dict() if isinstance(report, MonitoringReport) else report
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(render_html(data), encoding="utf-8")
    tmp.replace(path)
    return path


def default_html_path(project: Project, report: MonitoringReport) -> Path:
    """``.keel/reports/<model>-v<version>-<UTC time>.html`` under the project."""
    stamp = report.created_at.strftime("%Y%m%dT%H%M%SZ")
    return Path(project.root) / ".keel" / "reports" / f"{report.model}-v{report.version}-{stamp}.html"
