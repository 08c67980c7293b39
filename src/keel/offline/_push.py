"""Pushing rows to the offline store: a new immutable version made of the previous one plus the new rows.

The previous version's files are not copied: the new version lists them (with their folder) before the file of
the pushed rows, whose sequence numbers continue the parent's, so a tie on event time resolves to the pushed
row, which came later.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from keel.engines import Files
from keel.errors import ConflictError, NotFoundError, ValidationError
from keel.offline._ingest import IngestResult, check_expectations
from keel.offline._validate import ValidatedTable

if TYPE_CHECKING:
    from keel.catalog import Catalog, FeatureVersion
    from keel.engines import Engine
    from keel.features import FeatureView
    from keel.offline._store import OfflineStore


_KIND = {"int64": "integers", "string": "strings"}


#: How often a push rebuilds on a version that a concurrent writer recorded first.
PUSH_ATTEMPTS = 50


def append_version(
    view: FeatureView,
    validated: ValidatedTable,
    *,
    definition_version: int,
    catalog: Catalog,
    store: OfflineStore,
    engine: Engine,
    warnings: list[str] | None = None,
) -> IngestResult:
    """Record a new version of ``view``: the latest version's rows followed by ``validated``'s rows.

    Concurrent pushes never lose each other's rows: a version is recorded only on top of the version it was
    built from; when another writer got there first, the push is rebuilt on the new latest version.
    """
    last: ConflictError | None = None
    for _ in range(PUSH_ATTEMPTS):
        try:
            return _append_once(
                view,
                validated,
                definition_version=definition_version,
                catalog=catalog,
                store=store,
                engine=engine,
                warnings=warnings,
            )
        except ConflictError as exc:
            last = exc
    raise ConflictError(f"push to feature view {view.name!r}: too many concurrent writers; try again ({last})")


def _append_once(
    view: FeatureView,
    validated: ValidatedTable,
    *,
    definition_version: int,
    catalog: Catalog,
    store: OfflineStore,
    engine: Engine,
    warnings: list[str] | None,
) -> IngestResult:
    started = time.perf_counter()
    delta = validated.table
    try:
        parent: FeatureVersion | None = catalog.feature_version(view.name)
    except NotFoundError:
        parent = None
    if parent is not None and parent.definition_hash != view.definition_hash:
        raise ValidationError(
            f"feature view {view.name!r} changed since its latest version (v{parent.version}); ingest it again "
            "before pushing rows to the offline store",
            field=view.name,
        )
    if parent is not None:
        # The new version's files are read as one table: a key column must keep the type its parent stores.
        stored: dict[str, str] = parent.columns["join_keys"]
        for key, dtype in validated.columns["join_keys"].items():
            if stored.get(key, dtype) != dtype:
                raise ValidationError(
                    f"push to feature view {view.name!r}: join key {key!r} holds {_KIND[dtype]} but version "
                    f"v{parent.version} stores {_KIND[stored[key]]}; convert the column before pushing",
                    field=key,
                )
    # Rows continue the parent's sequence, so that a tie on event time goes to the pushed row.
    sequenced = parent is None or bool(parent.columns.get("sequence"))
    first = parent.row_count if parent is not None and sequenced else 0
    rules = replace(validated.rules, key_types=tuple(validated.key_types.items()))
    staging = store.staging(view.name)
    try:
        delta_data = engine.ingest(delta, rules, staging, first_sequence=first, partition_rows=store.partition_rows)
        assert delta_data.written is not None  # nothing to compare with: the engine always writes
        # The view's expectations judge the version the push makes (the parent's rows and the pushed ones),
        # before anything is published.
        staged = Files((*(store.paths(parent) if parent is not None else ()), *delta_data.written.uris()))
        validation = check_expectations(view, validated.join_keys, engine, staged)
        # The folder's name covers the first sequence number too: the same rows pushed again later are a
        # different delta (their ties go to them).
        folder = hashlib.sha256(f"{delta_data.digest}@{first}".encode()).hexdigest()
        location, own_files = store.publish(view.name, staging, folder, delta_data.written)
    except BaseException:
        store.discard(staging)
        raise
    files: list[dict[str, Any]] = []
    if parent is not None:
        files += [{**f, "location": f.get("location", parent.location)} for f in parent.files]
    files += [{**f, "location": location} for f in own_files]
    digest = (
        hashlib.sha256(f"{parent.data_digest}+{delta_data.digest}".encode()).hexdigest()
        if parent is not None
        else delta_data.digest
    )
    # Statistics describe the whole version, as for an ingested one: the engine reads its files by reference.
    whole = Files(store.file_uris(location, files), describe=f"version files of {view.name!r}")
    dtypes = rules.dtypes(validated.key_types)
    statistics = engine.column_statistics(whole, dtypes)
    duplicates = engine.count_duplicates(whole, validated.join_keys, validated.timestamp)
    lows = [t for t in (parent.event_time_min if parent else None, delta_data.event_time_min) if t is not None]
    highs = [t for t in (parent.event_time_max if parent else None, delta_data.event_time_max) if t is not None]
    columns = validated.columns
    if not sequenced:  # files of a version written before sequence columns: ties fall back to file order
        columns = {k: v for k, v in columns.items() if k != "sequence"}
    version, created = catalog.add_feature_version(
        view=view.name,
        definition_version=definition_version,
        definition_hash=view.definition_hash,
        location=location,
        files=files,
        row_count=(parent.row_count if parent is not None else 0) + delta_data.rows,
        event_time_min=min(lows, default=None),
        event_time_max=max(highs, default=None),
        data_digest=digest,
        columns=columns,
        statistics=statistics,
        has_duplicates=duplicates > 0,
        skip_if_latest_digest=False,
        expect_latest=parent.version if parent is not None else 0,
        validation=validation,
    )
    return IngestResult(view.name, version, created, delta.num_rows, time.perf_counter() - started, warnings or [])
