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
    columns: dict[str, str]
    statistics: dict[str, Any] = field(repr=False)
    has_duplicates: bool
    created_at: datetime
