"""Pushing rows to the offline store: a new immutable version made of the previous one plus the new rows.

The previous version's files are not copied: the new version lists them (with their folder) before the file of
the pushed rows, so a tie on event time resolves to the pushed row, which came later.
"""

from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from keel.errors import ConflictError, NotFoundError, ValidationError
from keel.offline._digest import table_digest
from keel.offline._ingest import IngestResult, _dt
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
    delta_digest = table_digest(delta)
    location, own_files = store.write_version(view.name, delta, delta_digest, validated.timestamp)
    files: list[dict[str, Any]] = []
    if parent is not None:
        files += [{**f, "location": f.get("location", parent.location)} for f in parent.files]
    files += [{**f, "location": location} for f in own_files]
    digest = (
        hashlib.sha256(f"{parent.data_digest}+{delta_digest}".encode()).hexdigest()
        if parent is not None
        else delta_digest
    )
    # Statistics describe the whole version, as for an ingested one.
    whole = delta
    if parent is not None:
        parts = [pq.read_table(p, filesystem=None if store.is_local else store.fs) for p in _local(store, parent)]
        whole = pa.concat_tables([*[t.select(delta.column_names).cast(delta.schema) for t in parts], delta])
    key_dtypes: dict[str, str] = validated.columns["join_keys"]
    dtypes = dict(key_dtypes)
    dtypes[validated.timestamp] = "timestamp"
    if validated.created_timestamp:
        dtypes[validated.created_timestamp] = "timestamp"
    dtypes.update(validated.features)
    statistics = engine.column_statistics(whole, dtypes)
    duplicates = engine.count_duplicates(whole, validated.join_keys, validated.timestamp)
    bounds = pc.min_max(whole.column(validated.timestamp)).as_py()
    version, created = catalog.add_feature_version(
        view=view.name,
        definition_version=definition_version,
        definition_hash=view.definition_hash,
        location=location,
        files=files,
        row_count=whole.num_rows,
        event_time_min=_dt(bounds["min"]),
        event_time_max=_dt(bounds["max"]),
        data_digest=digest,
        columns=validated.columns,
        statistics=statistics,
        has_duplicates=duplicates > 0,
        skip_if_latest_digest=False,
        expect_latest=parent.version if parent is not None else 0,
    )
    return IngestResult(view.name, version, created, delta.num_rows, time.perf_counter() - started, warnings or [])


def _local(store: OfflineStore, version: FeatureVersion) -> list[str]:
    """The version's files as paths for pyarrow (inside the store's filesystem, without a scheme)."""
    return [f"{store._join(f.get('location', version.location))}/{f['path']}" for f in version.files]
