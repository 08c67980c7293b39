"""The offline feature service: ingestion into versions and point-in-time retrieval, over the registered views.

It holds the collaborators the offline side needs (the registered definitions, the catalog, the offline store
and the compute engine) and nothing else; :class:`keel.Project` builds it and delegates to it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from keel.features import FeatureRef, FeatureView
from keel.offline._ingest import IngestResult, ingest_view
from keel.offline._push import append_version
from keel.offline._retrieval import historical_features, join_at_rest, plan_request

if TYPE_CHECKING:
    import pandas as pd

    from keel.catalog import Catalog, FeatureVersion
    from keel.definitions import Definitions
    from keel.engines import Engine, EngineFrame, Written
    from keel.offline._store import OfflineStore
    from keel.offline._validate import ValidatedTable

__all__ = ["OfflineFeatureService"]


class OfflineFeatureService:
    """Ingest, append to and read the offline store of the registered feature views.

    Args:
        definitions: the registered definitions (views, entities, on-demand views).
        catalog: the catalog recording versions.
        store: the offline store holding the versions' files.
        engine: the compute engine of the heavy operations.
        root: the project folder (relative source paths are read from there).
    """

    def __init__(
        self,
        definitions: Definitions,
        catalog: Catalog,
        store: OfflineStore,
        engine: Engine,
        root: Path | None,
    ) -> None:
        self.definitions = definitions
        self.catalog = catalog
        self.store = store
        self.engine = engine
        self.root = root

    def ingest(self, view: FeatureView | str) -> IngestResult:
        """Read a view's source, validate it and store it as a new immutable version (nothing when unchanged)."""
        definition, definition_version = self.definitions.registered(view)
        return ingest_view(
            definition,
            definition_version=definition_version,
            join_keys=self.definitions.join_keys(definition),
            catalog=self.catalog,
            store=self.store,
            engine=self.engine,
            root=self.root,
        )

    def append(
        self, view: FeatureView, rows: ValidatedTable, *, definition_version: int, warnings: list[str]
    ) -> IngestResult:
        """A new version of ``view``: its latest version plus the validated ``rows`` (a push to the offline side)."""
        return append_version(
            view,
            rows,
            definition_version=definition_version,
            catalog=self.catalog,
            store=self.store,
            engine=self.engine,
            warnings=warnings,
        )

    def feature_versions(self, view: str) -> list[FeatureVersion]:
        """Every ingested version of ``view``, oldest first (``NotFoundError`` for an unknown view)."""
        self.definitions.feature_view(view)
        return self.catalog.feature_versions(view)

    def verify(self, views: Iterable[str] | None = None) -> dict[str, list[str]]:
        """Re-hash the files of every ingested version (of ``views``, default all) against the catalog.

        Returns:
            ``{"view@version": [files whose content no longer matches, or that are missing]}`` per damaged
            version; empty when everything is intact.
        """
        names = list(views) if views is not None else [v.name for v in self.definitions.feature_views()]
        damaged: dict[str, list[str]] = {}
        for name in names:
            for version in self.feature_versions(name):
                bad = self.store.verify(version)
                if bad:
                    damaged[f"{name}@{version.version}"] = bad
        return damaged

    def historical_features(
        self,
        entity_df: pd.DataFrame | str | Path | EngineFrame,
        features: Sequence[str | FeatureRef] | str,
        *,
        timestamp: str | None = None,
        full_feature_names: bool = False,
        into: str | Path | None = None,
    ) -> pd.DataFrame | Written | EngineFrame:
        """The entity frame with ``features`` joined point in time (see :meth:`keel.Project.historical_features`)."""
        refs = [features] if isinstance(features, str) else list(features)
        resolved = plan_request(
            refs,
            view_lookup=lambda name: self.definitions.feature_view(name)[0],
            version_lookup=self.catalog.feature_version,
            keys_lookup=self.definitions.join_keys,
            full_feature_names=full_feature_names,
            on_demand_lookup=self.definitions.find_on_demand,
        )
        import pandas as pd

        if isinstance(entity_df, pd.DataFrame) and into is None:
            return historical_features(entity_df, resolved, store=self.store, engine=self.engine, timestamp=timestamp)
        if isinstance(entity_df, pd.DataFrame):  # a small frame written where asked: joined in memory first
            joined = historical_features(entity_df, resolved, store=self.store, engine=self.engine, timestamp=timestamp)
            return write_frame(joined, str(into))
        return join_at_rest(
            entity_df,
            resolved,
            store=self.store,
            engine=self.engine,
            timestamp=timestamp,
            into=None if into is None else str(into),
        )


def write_frame(frame: pd.DataFrame, into: str) -> Written:
    """A joined frame written as one Parquet file under the folder ``into``."""
    import pyarrow as pa

    from keel.engines import Written
    from keel.engines._arrow_files import write_parquet

    table = pa.Table.from_pandas(frame, preserve_index=False)
    return Written(into, (write_parquet(table, into, "part-0.parquet"),))
