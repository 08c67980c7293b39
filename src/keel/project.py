"""The facade: a :class:`Project` binds a folder's configuration to its backends and delegates to services."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keel.config import CONFIG_FILE, KeelConfig, load_config
from keel.errors import NotFoundError, ValidationError
from keel.features import Definition, FeatureRef, FeatureView

if TYPE_CHECKING:
    import pandas as pd

    from keel.artifacts import ArtifactStore
    from keel.catalog import Catalog, FeatureVersion
    from keel.engines import Engine
    from keel.features import Entity
    from keel.features._apply import ApplyPlan, Definitions
    from keel.offline import IngestResult, OfflineStore

log = logging.getLogger(__name__)


class Project:
    """A Keel project: a folder with ``keel.yaml`` (optional) and Python modules declaring definitions.

    Open one with :meth:`open`; create one with :meth:`init`.

    Example:
        >>> project = keel.Project.open(".")  # doctest: +SKIP
        >>> project.apply()  # doctest: +SKIP
        >>> project.ingest("customer_activity")  # doctest: +SKIP
    """

    def __init__(self, root: Path, config: KeelConfig) -> None:
        self.root = root
        self.config = config

    # -- construction ----------------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path = ".", **overrides: Any) -> Project:
        """Open the project in ``path``: read ``keel.yaml`` and ``KEEL_*`` variables; ``overrides`` win.

        Raises:
            NotFoundError: ``path`` is not a folder.
            ConfigError: the configuration is invalid.
        """
        root = Path(path).expanduser().resolve()
        if not root.is_dir():
            raise NotFoundError(f"no project folder at {root}; create one with `keel init {path}`")
        return cls(root, load_config(root, overrides=overrides))

    @classmethod
    def init(cls, path: str | Path, *, example: str | None = None, **example_options: Any) -> Project:
        """Create a project folder with a ``keel.yaml`` of the defaults (or the ``example`` project)."""
        from keel._scaffold import scaffold

        root = scaffold(Path(path), example=example, **example_options)
        return cls.open(root)

    def __repr__(self) -> str:
        return f"Project({str(self.root)!r})"

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the project's connections."""
        if "catalog" in self.__dict__:
            self.catalog.close()

    # -- backends (built on first use) ---------------------------------------------------------------------
    @cached_property
    def catalog(self) -> Catalog:
        """The metadata catalog (SQLite by default)."""
        from keel._backends import open_catalog

        catalog: Catalog = open_catalog(self.config.catalog)
        return catalog

    @cached_property
    def artifacts(self) -> ArtifactStore:
        """The content-addressed artifact store."""
        from keel.artifacts import ArtifactStore

        return ArtifactStore(self.config.artifacts)

    @cached_property
    def offline_store(self) -> OfflineStore:
        """The offline store of ingested versions."""
        from keel.offline import OfflineStore

        return OfflineStore(self.config.offline, partition_rows=self.config.partition_rows)

    @cached_property
    def engine(self) -> Engine:
        """The compute engine of the heavy data operations."""
        from keel._backends import backend_class

        cls = backend_class("engine", self.config.engine)
        store = self.offline_store
        engine: Engine = cls(filesystems=[] if store.is_local else [store.fs])
        return engine

    @cached_property
    def definitions(self) -> Definitions:
        """The registered definitions."""
        from keel.features._apply import Definitions

        return Definitions(self.catalog)

    # -- definitions ---------------------------------------------------------------------------------------
    def discover(self) -> list[Definition]:
        """The definitions declared in the project's modules (imported fresh)."""
        from keel.features._discovery import discover, unique_definitions

        return unique_definitions(discover(self.root, self.config.modules))

    def apply(self, objects: Iterable[Definition] | None = None, *, dry_run: bool = False) -> ApplyPlan:
        """Validate and register definitions; return the plan (what was added, changed, removed).

        Args:
            objects: definitions to register; by default every definition found in the project's modules,
                and registered definitions no longer declared are removed.
            dry_run: compute and validate the plan without writing anything.
        """
        from keel.features._apply import apply_definitions
        from keel.features._discovery import unique_definitions

        partial = objects is not None
        if objects is None:
            found = self.discover()
        else:
            found = list(objects)
            for obj in found:
                if not isinstance(obj, Definition):
                    raise ValidationError(
                        f"apply() takes Entity and FeatureView objects, got {type(obj).__name__}: {obj!r}"
                    )
            found = unique_definitions(found)
        plan = apply_definitions(found, self.catalog, root=self.root, partial=partial, dry_run=dry_run)
        if not dry_run:
            self.definitions.remember(found)
        return plan

    def plan(self, objects: Iterable[Definition] | None = None) -> ApplyPlan:
        """What :meth:`apply` would do, without writing."""
        return self.apply(objects, dry_run=True)

    def feature_views(self) -> list[FeatureView]:
        """Every registered feature view."""
        return self.definitions.feature_views()

    def entities(self) -> dict[str, Entity]:
        """Every registered entity, by name."""
        return self.definitions.entities()

    def feature_view(self, name: str) -> FeatureView:
        """The registered feature view ``name``."""
        return self.definitions.feature_view(name)[0]

    # -- offline store -------------------------------------------------------------------------------------
    def _registered_view(self, view: FeatureView | str) -> tuple[FeatureView, int]:
        if isinstance(view, FeatureView):
            registered, record = self.definitions.feature_view(view.name)
            if record.hash != view.definition_hash:
                raise ValidationError(
                    f"feature view {view.name!r} differs from its registered definition (v{record.version}); "
                    "run `keel apply` (or project.apply()) first",
                    field=view.name,
                )
            self.definitions.remember([view])
            return view, record.version
        if not isinstance(view, str):
            raise ValidationError(f"expected a FeatureView or a view name, got {type(view).__name__}")
        registered, record = self.definitions.feature_view(view)
        return registered, record.version

    def ingest(self, view: FeatureView | str) -> IngestResult:
        """Read a view's source, validate it and store it as a new immutable version.

        Identical data (same content and definition as the latest version) creates nothing, and says so.

        Raises:
            NotFoundError: the view is not registered, or its source file is missing.
            ValidationError: a row does not match the schema (the message names the row and column).
        """
        from keel.offline import ingest_view

        definition, definition_version = self._registered_view(view)
        return ingest_view(
            definition,
            definition_version=definition_version,
            join_keys=self.definitions.join_keys(definition),
            catalog=self.catalog,
            store=self.offline_store,
            engine=self.engine,
            root=self.root,
        )

    def feature_versions(self, view: str) -> list[FeatureVersion]:
        """Every ingested version of ``view``, oldest first."""
        self.definitions.feature_view(view)
        return self.catalog.feature_versions(view)

    def historical_features(
        self,
        entity_df: pd.DataFrame,
        features: Sequence[str | FeatureRef] | str,
        *,
        timestamp: str | None = None,
        full_feature_names: bool = False,
    ) -> pd.DataFrame:
        """The entity frame with ``features`` joined point in time.

        Every row is kept, in its order, with its index; a row with no value within the view's TTL at or
        before its timestamp gets null. Ties on event time go to the latest created timestamp.

        Args:
            entity_df: join keys and a timestamp per row (other columns, labels for instance, are kept).
            features: references ``view:feature``, ``view:*`` or ``view@3:feature`` (pinned version).
            timestamp: the entity frame's timestamp column (default: its only datetime column).
            full_feature_names: name output columns ``view__feature``.

        Returns:
            A DataFrame; ``df.attrs["keel_feature_versions"]`` maps each view to the version that served it.
        """
        from keel.offline import historical_features, plan_request

        refs = [features] if isinstance(features, str) else list(features)
        resolved = plan_request(
            refs,
            view_lookup=lambda name: self.definitions.feature_view(name)[0],
            version_lookup=self.catalog.feature_version,
            keys_lookup=self.definitions.join_keys,
            full_feature_names=full_feature_names,
        )
        return historical_features(
            entity_df, resolved, store=self.offline_store, engine=self.engine, timestamp=timestamp
        )

    @property
    def config_path(self) -> Path:
        """The project's ``keel.yaml``."""
        return self.root / CONFIG_FILE
