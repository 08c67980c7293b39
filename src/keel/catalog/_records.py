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


@dataclass(frozen=True)
class Materialization:
    """One materialization of a feature view's version into an online store.

    Attributes:
        view: the feature view's name.
        store: the online store's identity (its URI without credentials, and key prefix).
        version: the ingested version whose values were written.
        start: event times after this were written (``None``: from the beginning, within the TTL).
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
