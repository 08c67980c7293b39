"""Ingestion: source -> validated, immutable, described version in the offline store and the catalog."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow.compute as pc

from keel.errors import ValidationError
from keel.offline._digest import table_digest
from keel.offline._validate import validate_table

if TYPE_CHECKING:
    from keel.catalog import Catalog, FeatureVersion
    from keel.engines import Engine
    from keel.features import FeatureView
    from keel.offline._store import OfflineStore


@dataclass(frozen=True)
class IngestResult:
    """What one ingestion did.

    Attributes:
        view: the feature view's name.
        version: the version holding the data (the new one, or the identical existing one).
        created: False when the data was identical to the latest version and nothing was written.
        rows: rows read from the source.
        seconds: wall time of the ingestion.
        warnings: what was noticed and corrected (naive timestamps taken as UTC ...).
    """

    view: str
    version: FeatureVersion
    created: bool
    rows: int
    seconds: float
    warnings: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        if not self.created:
            return (
                f"{self.view}: unchanged — the source is identical to version {self.version.version}; nothing written"
            )
        return f"{self.view}: version {self.version.version} ({self.rows:,} rows) in {self.seconds:.2f}s"


def ingest_view(
    view: FeatureView,
    *,
    definition_version: int,
    join_keys: list[str],
    catalog: Catalog,
    store: OfflineStore,
    engine: Engine,
    root: Path | None,
) -> IngestResult:
    """Read ``view``'s source, validate it, and record a new version unless the data is unchanged."""
    started = time.perf_counter()
    raw = view.source.read(root)
    if raw.num_rows == 0:
        raise ValidationError(f"feature view {view.name!r}: {view.source.describe} has no rows; nothing ingested")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        validated = validate_table(raw, view, join_keys)
    rows = raw.num_rows
    del raw  # the validated copy is all that is needed from here on; free the source's memory early
    noticed = [str(w.message) for w in caught]
    for w in caught:  # hand them on to the caller's filters too
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    table = validated.table
    digest = table_digest(table)
    definition_hash = view.definition_hash
    try:
        latest = catalog.feature_version(view.name)
    except LookupError:
        latest = None
    if latest is not None and latest.data_digest == digest and latest.definition_hash == definition_hash:
        return IngestResult(view.name, latest, False, rows, time.perf_counter() - started, noticed)

    duplicates = engine.count_duplicates(table, validated.join_keys, validated.timestamp)
    key_dtypes: dict[str, str] = validated.columns["join_keys"]
    dtypes = {k: key_dtypes[k] for k in validated.join_keys}
    dtypes[validated.timestamp] = "timestamp"
    if validated.created_timestamp:
        dtypes[validated.created_timestamp] = "timestamp"
    dtypes.update(validated.features)
    statistics = engine.column_statistics(table, dtypes)
    ts = table.column(validated.timestamp)
    bounds = pc.min_max(ts).as_py()
    location, files = store.write_version(view.name, table, digest, validated.timestamp)
    version, created = catalog.add_feature_version(
        view=view.name,
        definition_version=definition_version,
        definition_hash=definition_hash,
        location=location,
        files=files,
        row_count=table.num_rows,
        event_time_min=_dt(bounds["min"]),
        event_time_max=_dt(bounds["max"]),
        data_digest=digest,
        columns=validated.columns,
        statistics=statistics,
        has_duplicates=duplicates > 0,
    )
    return IngestResult(view.name, version, created, rows, time.perf_counter() - started, noticed)


def _dt(value: object) -> datetime | None:
    return value if isinstance(value, datetime) else None
