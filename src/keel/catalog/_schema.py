"""The catalog's tables (SQLAlchemy Core), shared by the SQLite and PostgreSQL backends."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

#: One row per key: ``schema_version`` says which migrations have run.
meta = sa.Table(
    "keel_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

#: Every version of every definition (entity, feature view, ...). Append-only: a changed definition is a new
#: row with the next version; a removed one is a row with status ``removed``.
definitions = sa.Table(
    "keel_definitions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("spec", sa.JSON, nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("kind", "name", "version", name="uq_keel_definitions_version"),
    sa.Index("ix_keel_definitions_kind_name", "kind", "name"),
)

#: Every ingested version of a feature view's data. Append-only.
feature_versions = sa.Table(
    "keel_feature_versions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("view", sa.String(255), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("definition_version", sa.Integer, nullable=False),
    sa.Column("definition_hash", sa.String(64), nullable=False),
    sa.Column("location", sa.Text, nullable=False),
    sa.Column("files", sa.JSON, nullable=False),
    sa.Column("row_count", sa.BigInteger, nullable=False),
    sa.Column("event_time_min", sa.DateTime(timezone=True), nullable=True),
    sa.Column("event_time_max", sa.DateTime(timezone=True), nullable=True),
    sa.Column("data_digest", sa.String(64), nullable=False),
    sa.Column("columns", sa.JSON, nullable=False),
    sa.Column("statistics", sa.JSON, nullable=False),
    sa.Column("has_duplicates", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    # The results of the view's expectations on the version (schema v5; null when none were checked).
    sa.Column("validation", sa.JSON, nullable=True),
    sa.UniqueConstraint("view", "version", name="uq_keel_feature_versions_version"),
)

#: Every materialization of a feature view into an online store. Append-only; the latest row per (view, store)
#: is where the next incremental materialization starts.
materializations = sa.Table(
    "keel_materializations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("view", sa.String(255), nullable=False),
    sa.Column("store", sa.Text, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("start", sa.DateTime(timezone=True), nullable=True),
    sa.Column("end", sa.DateTime(timezone=True), nullable=False),
    sa.Column("row_count", sa.BigInteger, nullable=False),
    sa.Column("seconds", sa.Float, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_keel_materializations_view_store", "view", "store"),
)

#: Training runs. A run is written when it starts (status ``running``, with the process that owns it) and
#: completed once, when it ends (``finished`` or ``failed``, by its process, or by another once that process is
#: known to have died); after that it never changes.
runs = sa.Table(
    "keel_runs",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("spec", sa.String(255), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("spec_snapshot", sa.JSON, nullable=False),
    sa.Column("params", sa.JSON, nullable=False),
    sa.Column("metrics", sa.JSON, nullable=False),
    sa.Column("durations", sa.JSON, nullable=False),
    sa.Column("lineage", sa.JSON, nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("package_digest", sa.String(64), nullable=True),
    sa.Column("package_format", sa.String(16), nullable=True),
    sa.Column("owner", sa.JSON, nullable=True),
    sa.Index("ix_keel_runs_spec", "spec"),
)

#: Immutable model versions, numbered 1, 2, 3... per model name.
model_versions = sa.Table(
    "keel_model_versions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("run_id", sa.String(32), nullable=False),
    sa.Column("package_digest", sa.String(64), nullable=False),
    sa.Column("package_format", sa.String(16), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("name", "version", name="uq_keel_model_versions_version"),
)

#: Mutable notes on a model version (description, tags): they describe it, they are not part of it.
model_annotations = sa.Table(
    "keel_model_annotations",
    metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("tags", sa.JSON, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

#: Where each alias of each model points now.
aliases = sa.Table(
    "keel_aliases",
    metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("alias", sa.String(255), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

#: Every move of an alias: from which version to which, when and why. Append-only.
alias_history = sa.Table(
    "keel_alias_history",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("alias", sa.String(255), nullable=False),
    sa.Column("from_version", sa.Integer, nullable=True),
    sa.Column("to_version", sa.Integer, nullable=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_keel_alias_history_name_alias", "name", "alias"),
)

#: Monitoring reports: one row per check of a model version (drift, data quality, performance, verdict).
monitoring_reports = sa.Table(
    "keel_monitoring_reports",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("window_start", sa.DateTime(timezone=True), nullable=True),
    sa.Column("window_end", sa.DateTime(timezone=True), nullable=True),
    sa.Column("crossed", sa.Boolean, nullable=False),
    sa.Column("verdict", sa.JSON, nullable=False),
    sa.Column("report", sa.JSON, nullable=False),
    sa.Index("ix_keel_monitoring_reports_name", "name", "created_at"),
)

#: The monitoring audit trail: drift seen, retraining started, metrics compared, promoted or kept. Append-only.
monitoring_events = sa.Table(
    "keel_monitoring_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("version", sa.Integer, nullable=True),
    sa.Column("report_id", sa.String(32), nullable=True),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("details", sa.JSON, nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_keel_monitoring_events_name", "name"),
)

#: Analyses of model versions (performance by segment, importance, selection): a summary, and the report's files in
#: the artifact store by digest. Append-only.
model_analyses = sa.Table(
    "keel_model_analyses",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("summary", sa.JSON, nullable=False),
    sa.Column("artifacts", sa.JSON, nullable=False),
    sa.Index("ix_keel_model_analyses_name", "name", "version", "created_at"),
)
