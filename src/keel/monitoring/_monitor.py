"""One monitoring check of a model version: drift, data quality and performance against its reference.

The reference is the profile stored when the version's run was trained (or a profile of ``--reference``
rows); the current window is the prediction log of the last ``window`` (or ``--current`` rows). Labels, when
given, are joined to the logged predictions by request id (and record), or by entity keys and time (each
label takes the latest prediction for its entity at or before its timestamp). The report is stored in the
catalog, with an audit event, and rendered as a self-contained HTML page.

:class:`Monitor` holds what a check touches: the model registry (versions, runs, packages), the artifact store
(stored profiles), the catalog's monitoring reports and events, and the prediction log (its URI, or a function
that reads it).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

import numpy as np
import pandas as pd

from keel._files import atomic_write, open_filesystem
from keel._tables import TIME_COLUMNS, read_table, timestamp_column
from keel._time import as_utc, utcnow
from keel.errors import NotFoundError, ValidationError
from keel.monitoring._drift import DriftConfig, DriftResult, detect_drift
from keel.monitoring._performance import overall as overall_metrics
from keel.monitoring._performance import performance_over_time
from keel.monitoring._quality import QualityResult, check_quality
from keel.profiles import ReferenceProfile, feature_kinds, prediction_values, profile_of_frame
from keel.profiles._reference import profile_at_rest
from keel.training import primary_metric, worse_by

if TYPE_CHECKING:
    from collections.abc import Callable

    from keel.artifacts import ArtifactStore
    from keel.catalog import ModelVersionRecord, MonitoringCatalog, MonitoringReportRecord, RunRecord
    from keel.engines import Engine
    from keel.models import ModelPackage, ModelRegistry
    from keel.validation import ShiftThresholds
    from keel.validation._skew import ServingSkew

__all__ = [
    "Monitor",
    "MonitorSettings",
    "MonitoringReport",
    "PredictionReader",
    "default_html_path",
    "join_labels",
    "stored_profile",
    "write_html",
]

#: Which column of given rows or labels holds their time: the shared rule, the log's own name last.
_TIME_COLUMNS = (*TIME_COLUMNS, "predicted_at")

Rows: TypeAlias = pd.DataFrame | str | Path


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


class PredictionReader(Protocol):
    """Reads the prediction log: :func:`keel.prediction_log.read_prediction_log` bound to a log's URI, or
    ``project.predictions``."""

    def __call__(
        self, model: str, *, version: int | None = None, start: datetime | None = None, end: datetime | None = None
    ) -> pd.DataFrame: ...


# -- reading inputs ------------------------------------------------------------------------------------------
def _frame(value: Rows, what: str) -> pd.DataFrame:
    if isinstance(value, pd.DataFrame):
        return value
    try:
        return read_table(Path(value))
    except ValidationError as exc:
        raise ValidationError(f"{what}: {exc}", field=what) from exc


def _times(values: pd.Series, what: str) -> pd.Series:
    """A time column as UTC (naive times taken as UTC); a value that is not a time names its row."""
    parsed = pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")
    bad = parsed.isna() & values.notna()
    if bad.any():
        row = int(np.argmax(bad.to_numpy()))
        raise ValidationError(
            f"{what}, column {values.name!r}: row {row} has {values.iloc[row]!r}, which is not a timestamp",
            field=str(values.name),
            row=row,
        )
    return parsed


def stored_profile(artifacts: ArtifactStore, run: RunRecord) -> ReferenceProfile:
    """The reference profile recorded with ``run`` (NotFoundError for runs trained before profiles existed)."""
    entry = run.lineage.get("reference_profile")
    if not entry:
        raise NotFoundError(
            f"run {run.id} has no stored reference profile (it predates them); pass reference rows with "
            "--reference PATH (reference=...)"
        )
    return ReferenceProfile.from_bytes(artifacts.get_bytes(entry["digest"]))


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
    stamp = timestamp_column(labels, prefer=_TIME_COLUMNS)
    if not keys or stamp is None:
        raise ValidationError(
            "labels must have a request_id column, or the entity keys of the logged predictions "
            f"({', '.join(c[4:] for c in log.columns if c.startswith('key.')) or 'none logged'}) and one timestamp "
            "column",
            field="labels",
        )
    right = labels[[*keys, label]].rename(columns={label: "label"})
    right["_label_at"] = _times(labels[stamp], "labels")
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


# -- the check, in steps ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Current:
    """The current side of a check: the rows (logged, or given and scored here) and what the model made of them.

    ``rows`` carries ``prediction``, ``proba.<class>``, ``predicted_at`` and, when the given rows hold the
    model's label (and no separate labels were passed), ``label``; ``labelled`` says so.
    """

    rows: pd.DataFrame
    features: pd.DataFrame
    predictions: np.ndarray
    proba: np.ndarray | None
    source: str
    window_start: datetime | None = None
    window_end: datetime | None = None
    labelled: bool = False


@dataclass(frozen=True)
class _Decay:
    """Performance on the labelled rows and whether it decayed against validation."""

    metric: str
    validation: dict[str, Any]
    performance: list[dict[str, Any]] | None = None
    overall: dict[str, Any] | None = None
    decayed: bool = False
    reasons: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def _scored(package: ModelPackage, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
    scored = package.score(frame)  # predictions and probabilities from one preparation, as the service does
    return scored.predictions, scored.probabilities


def _given_rows(package: ModelPackage, current: Rows, labels_given: bool) -> _Current:
    """Current rows handed in (``--current``): scored here, timed by their time column (else now)."""
    kinds = feature_kinds(package)
    rows = _frame(current, "current").reset_index(drop=True)
    features = rows[[c for c in kinds if c in rows.columns]]
    # A missing column is a schema change (reported by the quality check); the model scores it as missing.
    scored = features.reindex(columns=list(kinds)) if len(features.columns) < len(kinds) else features
    predictions, proba = _scored(package, scored)
    rows = rows.assign(prediction=predictions)
    if proba is not None and package.classes is not None:
        rows = rows.assign(**{f"proba.{c}": proba[:, i] for i, c in enumerate(package.classes)})
    if package.label in rows.columns and not labels_given:
        rows = rows.assign(label=rows[package.label])
    stamp = timestamp_column(rows, prefer=_TIME_COLUMNS)
    rows = rows.assign(predicted_at=_times(rows[stamp], "current") if stamp else pd.Timestamp.now(UTC))
    source = str(current) if not isinstance(current, pd.DataFrame) else "rows given"
    labelled = not labels_given and "label" in rows.columns
    return _Current(rows, features, predictions, proba, source, labelled=labelled)


def _drift_and_quality(
    profile: ReferenceProfile, current: _Current, package: ModelPackage, settings: MonitorSettings
) -> tuple[DriftResult | None, QualityResult | None]:
    """Drift of the inputs and predictions, and data quality; neither on fewer than ``min_rows`` rows."""
    if len(current.features) < max(settings.min_rows, 1):
        return None, None
    predictions = current.predictions
    pred_values = prediction_values(package, predictions, current.proba) if len(predictions) else None
    drift = detect_drift(profile, current.features, predictions=pred_values, config=settings.drift)
    quality = check_quality(
        profile,
        current.features,
        missing_rate_increase=settings.missing_rate_increase,
        out_of_range_share=settings.out_of_range_share,
    )
    return drift, quality


def _performance(
    rows: pd.DataFrame,
    package: ModelPackage,
    proba: np.ndarray | None,
    settings: MonitorSettings,
    names: list[str],
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
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


def _decay(
    current: _Current, labels: Rows | None, package: ModelPackage, run: RunRecord, settings: MonitorSettings
) -> _Decay:
    """Performance on the labelled current rows, and whether ``metric`` fell below validation by more than
    the tolerance (no verdict on fewer than ``min_rows`` labelled rows)."""
    validation = {k: v for k, v in run.metrics.items() if v is not None}
    metric = settings.metric or primary_metric(package.task, validation)
    unjudged = _Decay(metric, validation)
    if labels is None and not current.labelled:
        return unjudged
    joined = current.rows if labels is None else join_labels(current.rows, _frame(labels, "labels"), package)
    joined = joined[joined["label"].notna()].reset_index(drop=True)
    if not len(joined):
        return unjudged
    names = list(dict.fromkeys([metric, *validation]))
    performance, overall = _performance(joined, package, _log_proba(joined, package), settings, names)
    found = _Decay(metric, validation, performance, overall)
    now = (overall or {}).get("metrics", {}).get(metric, {}).get("value")
    before = validation.get(metric)
    if len(joined) < settings.min_rows:
        note = f"only {len(joined)} labelled rows (fewer than {settings.min_rows}): no decay verdict"
        return _Decay(metric, validation, performance, overall, notes=(note,))
    if now is None or before is None:
        return found
    worse = worse_by(metric, float(before), float(now))
    if worse <= settings.decay_tolerance:
        return found
    reason = (
        f"{metric} fell from {before:.4f} (validation) to {now:.4f} ({worse:.1%} worse, tolerance "
        f"{settings.decay_tolerance:.0%})"
    )
    return _Decay(metric, validation, performance, overall, decayed=True, reasons=(reason,))


def _verdict(
    drift: DriftResult | None, quality: QualityResult | None, decay: _Decay, rows: int, settings: MonitorSettings
) -> dict[str, Any]:
    """Whether a threshold was crossed, the reasons (drift, predictions, quality, decay) and the notes."""
    reasons: list[str] = []
    if drift is not None and drift.dataset_drifted:
        reasons.append(
            f"{len(drift.drifted_features)} of {len(drift.features)} features drifted ({drift.share:.0%} ≥ "
            f"{settings.drift.drift_share:.0%}): {', '.join(drift.drifted_features)}"
        )
    if drift is not None and drift.prediction is not None and drift.prediction.drifted:
        reasons.append(f"the predictions drifted ({drift.prediction.method} {drift.prediction.statistic:.3f})")
    if quality is not None and quality.failed and settings.quality_crosses:
        reasons.extend(quality.issues)
    reasons.extend(decay.reasons)
    notes = list(decay.notes)
    if drift is None:
        notes.insert(0, f"only {rows} current rows (fewer than {settings.min_rows}): no drift verdict")
    drifted = bool(drift is not None and (drift.dataset_drifted or (drift.prediction and drift.prediction.drifted)))
    quality_failed = bool(quality is not None and quality.failed)
    return {
        "drift": drifted,
        "quality": quality_failed,
        "decay": decay.decayed,
        "crossed": drifted or decay.decayed or (quality_failed and settings.quality_crosses),
        "metric": decay.metric,
        "reasons": reasons,
        "notes": notes,
    }


class Monitor:
    """Checks model versions for drift, data quality and performance decay, and keeps the reports.

    Args:
        registry: the model registry (the version, its run and its package).
        artifacts: the artifact store holding the reference profiles stored at training.
        reports: where reports and audit events are stored (the catalog).
        log: the prediction log: its URI (:func:`~keel.prediction_log.log_root` of the offline store) or a
            :class:`PredictionReader`.
        engine: the project's engine (called when first needed); with ``scratch``, reference rows given as a
            path are profiled by it where they are, instead of being read here.
        scratch: a folder the engine may write to and read from (the predictions on reference rows at rest).

    Example:
        >>> monitor = Monitor(registry, artifacts, catalog, log_root("data/offline"))  # doctest: +SKIP
        >>> report, record = monitor.check("churn@champion")  # doctest: +SKIP
    """

    def __init__(
        self,
        registry: ModelRegistry,
        artifacts: ArtifactStore,
        reports: MonitoringCatalog,
        log: str | PredictionReader,
        *,
        engine: Callable[[], Engine] | None = None,
        scratch: str | None = None,
    ) -> None:
        from keel.prediction_log import read_prediction_log

        self._engine = engine
        self._scratch = scratch
        self.registry = registry
        self.artifacts = artifacts
        self.reports = reports
        self.read_log: PredictionReader = partial(read_prediction_log, log) if isinstance(log, str) else log

    def check(
        self,
        ref: str,
        *,
        end: datetime | None = None,
        reference: Rows | None = None,
        current: Rows | None = None,
        labels: Rows | None = None,
        settings: MonitorSettings | None = None,
        store: bool = True,
    ) -> tuple[MonitoringReport, MonitoringReportRecord | None]:
        """Check the model version ``ref`` names (``churn@champion``, ``churn:3``); see :meth:`keel.Project.monitor`
        for the arguments.

        Returns the report and, with ``store``, its catalog record (an audit event ``checked`` is recorded too,
        and ``threshold_crossed`` when a threshold was crossed).
        """
        settings = settings or MonitorSettings()
        version: ModelVersionRecord = self.registry.get(ref)
        pinned = f"{version.name}:{version.version}"
        run = self.registry.run_of(pinned)
        package = self.registry.load(pinned)
        profile, reference_source = self._reference_side(package, run, reference, pinned)
        side = self._current_side(package, version, current, labels is not None, end, settings)
        drift, quality = _drift_and_quality(profile, side, package, settings)
        decay = _decay(side, labels, package, run, settings)
        report = MonitoringReport(
            id=uuid.uuid4().hex,
            model=version.name,
            version=version.version,
            created_at=datetime.now(UTC),
            window_start=side.window_start,
            window_end=side.window_end,
            reference={"rows": profile.rows, "source": reference_source},
            current={"rows": len(side.features), "source": side.source},
            drift=drift,
            quality=quality,
            performance=decay.performance,
            overall=decay.overall,
            validation_metrics=decay.validation,
            verdict=_verdict(drift, quality, decay, len(side.features), settings),
        )
        return report, self._record(report) if store else None

    def serving_skew(
        self,
        ref: str,
        *,
        end: datetime | None = None,
        window: timedelta = timedelta(days=7),
        thresholds: ShiftThresholds | None = None,
    ) -> ServingSkew:
        """The features the model version ``ref`` was served in ``[end - window, end)`` (its prediction log) against
        the reference profile stored with its run (see :mod:`keel.monitoring._skew`).

        Raises:
            NotFoundError: no such version, or its run stored no reference profile.
        """
        from keel.monitoring._skew import serving_skew

        version: ModelVersionRecord = self.registry.get(ref)
        pinned = f"{version.name}:{version.version}"
        run = self.registry.run_of(pinned)
        package = self.registry.load(pinned)
        profile = stored_profile(self.artifacts, run)
        window_end = as_utc(end) if end is not None else utcnow()
        window_start = window_end - window
        log = self.read_log(version.name, version=version.version, start=window_start, end=window_end)
        return serving_skew(
            pinned,
            profile,
            _log_features(log, package),
            thresholds=thresholds,
            window=(window_start, window_end),
        )

    def _reference_side(
        self, package: ModelPackage, run: RunRecord, reference: Rows | None, pinned: str
    ) -> tuple[ReferenceProfile, str]:
        """The reference profile and where it came from: the rows given (at rest: profiled by the engine),
        else the one stored at training."""
        if reference is not None:
            if isinstance(reference, pd.DataFrame):
                return profile_of_frame(package, reference), "rows given"
            if self._engine is None or self._scratch is None:
                return profile_of_frame(package, _frame(reference, "reference")), str(reference)
            try:
                profile = profile_at_rest(
                    package, str(reference), self._engine(), self.registry.ref(pinned), self._scratch
                )
            except ValidationError as exc:
                raise ValidationError(f"reference: {exc}", field=exc.field or "reference") from exc
            return profile, str(reference)
        return stored_profile(self.artifacts, run), f"training split of run {run.id[:8]} (stored at training)"

    def _current_side(
        self,
        package: ModelPackage,
        version: ModelVersionRecord,
        current: Rows | None,
        labels_given: bool,
        end: datetime | None,
        settings: MonitorSettings,
    ) -> _Current:
        """The rows given, scored here; else the prediction log of ``[end - window, end)``."""
        if current is not None:
            return _given_rows(package, current, labels_given)
        window_end = as_utc(end) if end is not None else utcnow()
        window_start = window_end - settings.window
        log = self.read_log(version.name, version=version.version, start=window_start, end=window_end)
        predictions = log["prediction"].to_numpy() if "prediction" in log.columns else np.empty(0)
        return _Current(
            rows=log,
            features=_log_features(log, package),
            predictions=predictions,
            proba=_log_proba(log, package),
            source=f"prediction log, {window_start:%Y-%m-%d %H:%M} to {window_end:%Y-%m-%d %H:%M} UTC",
            window_start=window_start,
            window_end=window_end,
        )

    def _record(self, report: MonitoringReport) -> MonitoringReportRecord:
        """Store the report, its ``checked`` event and, when a threshold was crossed, ``threshold_crossed``."""
        verdict = report.verdict
        record = self.reports.add_monitoring_report(
            report_id=report.id,
            name=report.model,
            version=report.version,
            window_start=report.window_start,
            window_end=report.window_end,
            crossed=report.crossed,
            verdict=verdict,
            report=report.to_dict(),
            created_at=report.created_at,
        )
        summary = "; ".join(verdict["reasons"]) if verdict["reasons"] else "within thresholds"
        drift = report.drift
        self.reports.add_monitoring_event(
            name=report.model,
            kind="checked",
            version=report.version,
            report_id=report.id,
            message=f"checked v{report.version} on {report.current['rows']:,} rows: {summary}",
            details={"crossed": report.crossed, "drifted_features": drift.drifted_features if drift else []},
        )
        if report.crossed:
            self.reports.add_monitoring_event(
                name=report.model,
                kind="threshold_crossed",
                version=report.version,
                report_id=report.id,
                message=summary,
                details={k: verdict[k] for k in ("drift", "quality", "decay")},
            )
        return record


def write_html(report: MonitoringReport | dict[str, Any], path: Path) -> Path:
    """Render ``report`` as a self-contained HTML page at ``path`` (written atomically: a reader sees the old
    page or the new one, never part of it)."""
    from keel.monitoring._html import render_html

    data = report.to_dict() if isinstance(report, MonitoringReport) else report
    fs, target, _local = open_filesystem(str(path))
    atomic_write(fs, target, render_html(data))
    return path


def default_html_path(root: str | Path, report: MonitoringReport) -> Path:
    """``<root>/.keel/reports/<model>-v<version>-<UTC time>.html``: where a project keeps its reports."""
    stamp = report.created_at.strftime("%Y%m%dT%H%M%SZ")
    return Path(root) / ".keel" / "reports" / f"{report.model}-v{report.version}-{stamp}.html"
