"""Ingestion: source -> validated, immutable, described version in the offline store and the catalog."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keel.engines import Data, Files
from keel.errors import ValidationError
from keel.offline._validate import DIGEST_KIND, normalisation, version_columns

if TYPE_CHECKING:
    from keel.catalog import Catalog, FeatureVersion
    from keel.engines import Engine
    from keel.features import FeatureView, Source
    from keel.offline._store import OfflineStore
    from keel.validation import Expectation


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


def source_data(source: Source, root: Path | None) -> Data:
    """What an engine reads for ``source``: its files by reference, or the rows held in this process."""
    uris = source.uris(root)
    if not uris:
        return source.read(root)
    return Files(uris, format=source.kind, options=source.format_options(), describe=source.describe)  # type: ignore[arg-type]


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
    """Have the engine read ``view``'s source, normalise, describe and write it in one pass, and record the
    new version unless the data is unchanged.

    The engine writes into a staging folder of the offline store; the folder is published under the data's
    digest, and only then is the catalog row committed (a failure anywhere leaves the catalog as it was).
    """
    started = time.perf_counter()
    data = source_data(view.source, root)
    rules = normalisation(view, join_keys)
    definition_hash = view.definition_hash
    try:
        latest = catalog.feature_version(view.name)
    except LookupError:
        latest = None
    unchanged = (
        latest.data_digest
        if latest is not None
        and latest.definition_hash == definition_hash
        and latest.columns.get("digest") == DIGEST_KIND
        else None
    )
    staging = store.staging(view.name)
    validation = None
    try:
        ingested = engine.ingest(data, rules, staging, unless_digest=unchanged, partition_rows=store.partition_rows)
        if ingested.written is not None:
            validation = check_expectations(view, join_keys, engine, Files(ingested.written.uris()))
            location, files = store.publish(view.name, staging, ingested.digest, ingested.written)
    except BaseException:
        store.discard(staging)  # nothing half-written stays behind
        raise
    noticed = list(ingested.warnings)
    if ingested.written is None:
        store.discard(staging)
        assert latest is not None  # the engine skips the write only for the digest it was given
        return IngestResult(view.name, latest, False, ingested.rows, time.perf_counter() - started, noticed)
    version, created = catalog.add_feature_version(
        view=view.name,
        definition_version=definition_version,
        definition_hash=definition_hash,
        location=location,
        files=files,
        row_count=ingested.rows,
        event_time_min=ingested.event_time_min,
        event_time_max=ingested.event_time_max,
        data_digest=ingested.digest,
        columns=version_columns(rules, ingested.key_types),
        statistics=ingested.statistics,
        has_duplicates=ingested.duplicates > 0,
        validation=validation,
    )
    if validation is not None:
        noticed += [f"expectation failed: {r['describe']} ({r['failed']:,} rows)" for r in validation["failures"]]
    return IngestResult(view.name, version, created, ingested.rows, time.perf_counter() - started, noticed)


def declared_expectations(view: FeatureView) -> list[Expectation]:
    """``view``'s expectations as objects, its custom checks (Python functions) included.

    Raises:
        ValidationError: a custom check's function is not at hand (the view was rebuilt from its stored spec).
    """
    from keel.validation import expectation_from_spec

    out: list[Expectation] = []
    for spec in view.expectations:
        if spec["expect"] != "custom":
            out.append(expectation_from_spec(spec))
            continue
        live = view.custom_checks.get(str(spec["name"]))
        if live is None:
            raise ValidationError(
                f"feature view {view.name!r}: custom check {spec['name']!r} is a Python function; import the module "
                "declaring the view (keel.Project.open(folder) does) to run it",
                field=str(spec["name"]),
            )
        out.append(live)
    return out


def check_expectations(view: FeatureView, join_keys: list[str], engine: Engine, data: Data) -> dict[str, Any] | None:
    """Check the view's expectations on the rows about to be published (one pass of the engine).

    Returns what is stored with the version (``policy``, ``rows``, ``results``, ``failures``), or ``None`` when
    the view has no expectations.

    Raises:
        ValidationError: with the ``strict`` policy, an error-level expectation failed; the message lists each
            failure with its rows, their share and the first failing row.
    """
    if not view.expectations:
        return None
    from keel.validation import validate

    report = validate(engine, data, declared_expectations(view), keys=join_keys, timestamp=view.source.timestamp)
    if view.validation == "strict" and report.errors:
        lines = [
            f"- {r.expectation.describe()}: {r.failed:,} of {r.rows:,} rows ({r.share:.2%})"
            + (f", first at row {r.first}" if r.first is not None else "")
            + (f", {r.detail}" if r.detail else "")
            for r in report.errors
        ]
        raise ValidationError(
            f"feature view {view.name!r}: {len(report.errors)} expectation(s) failed; nothing ingested "
            "(validation: strict):\n" + "\n".join(lines),
            field=view.name,
        )
    stored = report.to_dict()
    return {"policy": view.validation, **stored, "failures": [r for r in stored["results"] if not r["passed"]]}


def _dt(value: object) -> datetime | None:
    return value if isinstance(value, datetime) else None
