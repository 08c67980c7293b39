"""Plain records the catalog returns. They are immutable snapshots of catalog rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class DefinitionRecord:
    """One version of a definition as recorded by ``apply``."""

    kind: str
    name: str
    version: int
    hash: str
    spec: dict[str, Any] | None
    status: str
    created_at: datetime

    @property
    def active(self) -> bool:
        """False when this version records the definition's removal."""
        return self.status == "active"


@dataclass(frozen=True)
class FeatureVersion:
    """One immutable ingested version of a feature view's data.

    Attributes:
        view: the feature view's name.
        version: 1, 2, 3... per view.
        definition_version: the version of the view's definition the data was validated against.
        definition_hash: that definition's hash.
        location: where the data lives, relative to the offline store's root.
        files: the Parquet files (relative to ``location``) with their SHA-256 and row counts.
        row_count: rows in the version.
        event_time_min: earliest event time (UTC).
        event_time_max: latest event time (UTC).
        data_digest: SHA-256 of the validated data's content.
        columns: the stored columns and their Keel dtypes (keys, timestamps, features).
        statistics: per-column statistics (count, nulls, min, max, mean, std, quantiles, top categories).
        has_duplicates: whether some entity has two rows at the same event time.
        created_at: when the version was recorded (UTC).
        validation: the results of the view's expectations on this version (``policy`` and ``results``, see
            :meth:`keel.validation.ValidationReport.to_dict`), or ``None`` when it had none.
    """

    view: str
    version: int
    definition_version: int
    definition_hash: str
    location: str
    files: list[dict[str, Any]]
    row_count: int
    event_time_min: datetime | None
    event_time_max: datetime | None
    data_digest: str
    columns: dict[str, Any]
    statistics: dict[str, Any] = field(repr=False)
    has_duplicates: bool
    created_at: datetime
    validation: dict[str, Any] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Materialization:
    """One materialization of a feature view's version into an online store.

    Attributes:
        view: the feature view's name.
        store: the online store's identity (its URI without credentials, and key prefix).
        version: the ingested version whose values were written.
        start: ``None`` when, after this run, the store holds every latest value within the TTL up to ``end``
            (a run from the TTL floor, or an incremental run continuing one); otherwise the start of the
            explicit window written, after which the next run without a start writes the whole TTL window.
        end: event times up to this were written; the next incremental run starts here.
        row_count: entities written.
        seconds: wall time.
        created_at: when it was recorded (UTC).
    """

    view: str
    store: str
    version: int
    start: datetime | None
    end: datetime
    row_count: int
    seconds: float
    created_at: datetime


@dataclass(frozen=True)
class RunRecord:
    """One training run.

    Attributes:
        id: the run's id (32 hex characters).
        spec: the training spec's name.
        status: ``running``, ``finished`` or ``failed``.
        started_at: when it started (UTC).
        finished_at: when it ended (UTC), or ``None`` while running.
        spec_snapshot: the spec as it was run.
        params: the estimator's parameters (``get_params``) and training settings.
        metrics: validation metrics.
        durations: seconds per phase (``build``, ``fit``, ``evaluate``, ``total`` ...).
        lineage: feature-view versions and data digests, training-set digest, git commit, library versions.
        error: why a failed run failed.
        package_digest: SHA-256 of the stored model package, when the run finished.
        package_format: ``skops`` or ``joblib`` (pickle-based: loading it runs code).
        owner: the process that ran it (host, pid, ... see :class:`keel._process.ProcessOwner`); ``None`` for
            runs recorded before Keel kept it.
    """

    id: str
    spec: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    spec_snapshot: dict[str, Any] = field(repr=False)
    params: dict[str, Any] = field(repr=False)
    metrics: dict[str, Any]
    durations: dict[str, float] = field(repr=False)
    lineage: dict[str, Any] = field(repr=False)
    error: str | None
    package_digest: str | None
    package_format: str | None
    owner: dict[str, Any] | None = field(default=None, repr=False)

    def flat_params(self) -> dict[str, Any]:
        """The params with nested mappings flattened to dotted names (``estimator.max_iter``)."""
        return flatten(self.params)


@dataclass(frozen=True)
class ModelVersionRecord:
    """One immutable model version, with its current (mutable) annotations.

    Attributes:
        name: the model's name.
        version: 1, 2, 3... per name.
        run_id: the run that produced it.
        package_digest: SHA-256 of its package in the artifact store.
        package_format: ``skops`` or ``joblib``.
        created_at: when it was registered (UTC).
        description: free text (editable).
        tags: free labels (editable).
        aliases: the aliases pointing at it now.
    """

    name: str
    version: int
    run_id: str
    package_digest: str
    package_format: str
    created_at: datetime
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class AliasChange:
    """One move of an alias."""

    name: str
    alias: str
    from_version: int | None
    to_version: int | None
    reason: str
    at: datetime


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings flattened to dotted keys: ``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


@dataclass(frozen=True)
class MonitoringReportRecord:
    """One stored monitoring check of a model version.

    Attributes:
        id: the report's id (32 hex characters).
        name: the model's name.
        version: the model version checked.
        created_at: when the check ran (UTC).
        window_start: the start of the current window checked (``None``: a file or frame, not the log).
        window_end: its end.
        crossed: whether a threshold was crossed (drift, data quality or performance decay).
        verdict: what was crossed and why (``{"drift", "quality", "decay", "crossed", "reasons"}``).
        report: the whole report (drift per feature, data quality, performance per window ...).
    """

    id: str
    name: str
    version: int
    created_at: datetime
    window_start: datetime | None
    window_end: datetime | None
    crossed: bool
    verdict: dict[str, Any] = field(repr=False)
    report: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class MonitoringEvent:
    """One entry of a model's monitoring audit trail.

    Attributes:
        id: increasing with time.
        name: the model's name.
        kind: ``checked``, ``threshold_crossed``, ``retrain_started``, ``retrain_failed``, ``retrain_refused``
            (the data failed its expectations), ``compared``, ``promoted`` or ``kept``.
        version: the model version the event is about (the challenger's, for ``compared``/``promoted``).
        report_id: the monitoring report that led to it, if any.
        message: one human sentence.
        details: the figures behind it (metrics compared, drifted features ...).
        at: when (UTC).
    """

    id: int
    name: str
    kind: str
    version: int | None
    report_id: str | None
    message: str
    details: dict[str, Any] = field(repr=False)
    at: datetime


@dataclass(frozen=True)
class ModelAnalysisRecord:
    """One stored analysis of a model version.

    Attributes:
        id: the analysis's id (32 hex characters).
        name: the model's name.
        version: the model version analysed.
        kind: ``analysis`` (performance by segment), ``importance`` or ``selection``.
        created_at: when it ran (UTC).
        summary: what it found, in brief (JSON).
        artifacts: the report's files (``report.json``, ``report.html``, figures) -> their artifact digests.
    """

    id: str
    name: str
    version: int
    kind: str
    created_at: datetime
    summary: dict[str, Any] = field(repr=False)
    artifacts: dict[str, str] = field(repr=False)
