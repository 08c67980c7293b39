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
