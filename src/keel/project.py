"""The facade: a :class:`Project` binds a folder's configuration to its backends and delegates to services."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keel.config import CONFIG_FILE, KeelConfig, load_config
from keel.errors import NotFoundError, ValidationError
from keel.features import Definition, FeatureRef, FeatureView

if TYPE_CHECKING:
    import pandas as pd
    from fastapi import FastAPI

    from keel.artifacts import ArtifactStore
    from keel.batch import BatchResult
    from keel.catalog import Catalog, FeatureVersion, RunRecord
    from keel.definitions import ApplyPlan, Definitions
    from keel.engines import Engine
    from keel.features import Entity
    from keel.models import ModelRegistry
    from keel.monitoring import MonitoringReport, MonitorSettings
    from keel.offline import IngestResult, OfflineStore
    from keel.online import MaterializeResult, OnlineFeatures, OnlineFeatureService, OnlineStore
    from keel.online._service import EntityRows
    from keel.retraining import RetrainDecision
    from keel.training import Runs, TrainingRun, TrainingSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PushResult:
    """What a push did.

    Attributes:
        view: the feature view.
        rows: rows received.
        online_rows: rows applied to the online store (rows older than the stored ones are ignored).
        offline_version: the new offline version, when pushed offline.
        warnings: what was noticed and corrected (naive timestamps taken as UTC ...).
    """

    view: str
    rows: int
    online_rows: int
    offline_version: int | None
    warnings: list[str] = field(default_factory=list)


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
        if "online_store" in self.__dict__:
            self.online_store.close()
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
    def online_store(self) -> OnlineStore:
        """The online store (SQLite by default), namespaced by the project's name."""
        from keel._backends import backend_class

        cls = backend_class("online", self.config.online)
        store: OnlineStore = cls(self.config.online, prefix=self.online_prefix)
        return store

    @property
    def online_prefix(self) -> str:
        """The key prefix of this project's views in the online store."""
        return re.sub(r"[^A-Za-z0-9_.-]", "_", self.config.name) or "keel"

    @property
    def online_store_id(self) -> str:
        """How the catalog names the online store in materialization records (no credentials)."""
        from keel.online._store import safe_uri

        return f"{safe_uri(self.config.online)}#{self.online_prefix}"

    @cached_property
    def online(self) -> OnlineFeatureService:
        """The online read service behind :meth:`online_features`."""
        from keel.online import OnlineFeatureService

        return OnlineFeatureService(
            definitions=self.definitions,
            catalog=self.catalog,
            store=self.online_store,
            store_id=self.online_store_id,
        )

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
        from keel.definitions import Definitions

        return Definitions(self.catalog, root=self.root, modules=self.config.modules)

    # -- definitions ---------------------------------------------------------------------------------------
    def discover(self) -> list[Definition]:
        """The definitions declared in the project's modules (imported fresh)."""
        from keel.definitions import discover, unique_definitions

        return unique_definitions(discover(self.root, self.config.modules))

    def apply(self, objects: Iterable[Definition] | None = None, *, dry_run: bool = False) -> ApplyPlan:
        """Validate and register definitions; return the plan (what was added, changed, removed).

        Args:
            objects: definitions to register; by default every definition found in the project's modules,
                and registered definitions no longer declared are removed.
            dry_run: compute and validate the plan without writing anything.
        """
        from keel.definitions import apply_definitions, with_referenced_definitions

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
        found = with_referenced_definitions(found)  # the views an on-demand view reads are applied (and kept) too
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

    def verify(self, views: Iterable[str] | None = None) -> dict[str, list[str]]:
        """Re-hash the files of every ingested version (of ``views``, default all) against the catalog.

        Returns:
            ``{"view@version": [files whose content no longer matches, or that are missing]}`` for each
            damaged version; an empty dict when everything is intact.
        """
        names = list(views) if views is not None else [v.name for v in self.feature_views()]
        damaged: dict[str, list[str]] = {}
        for name in names:
            for version in self.feature_versions(name):
                bad = self.offline_store.verify(version)
                if bad:
                    damaged[f"{name}@{version.version}"] = bad
        return damaged

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

        On-demand features (``basket:cart_to_spend``) are computed on the joined rows: their input features are
        joined point in time like the others (and returned only when requested), and their request fields are
        read from the entity frame's columns.

        Args:
            entity_df: join keys and a timestamp per row (other columns, labels for instance, are kept), and the
                request fields of the on-demand features requested.
            features: references ``view:feature``, ``view:*`` or ``view@3:feature`` (pinned version), and
                ``on_demand_view:feature``.
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
            on_demand_lookup=self.definitions.find_on_demand,
        )
        return historical_features(
            entity_df, resolved, store=self.offline_store, engine=self.engine, timestamp=timestamp
        )

    # -- online store ----------------------------------------------------------------------------------------
    def materialize(
        self,
        views: Iterable[FeatureView | str] | None = None,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[MaterializeResult]:
        """Write the latest value per entity (within each view's TTL) to the online store.

        Incremental by default: the catalog remembers what was written per view and store, so a run writes
        only event times after the previous run's end (or everything within the TTL for a new version).

        Args:
            views: the views (default: every registered view with ``online=True`` and ingested data).
            start: only event times after this (default: where the last run stopped).
            end: only event times up to this (default: now).
        """
        from keel.online import materialize_view

        if views is None:
            chosen = [v for v in self.feature_views() if v.online]
            explicit = False
        else:
            chosen = [self._registered_view(v)[0] for v in views]
            explicit = True
        results = []
        for view in chosen:
            try:
                version = self.catalog.feature_version(view.name)
            except NotFoundError:
                if explicit:
                    raise
                continue  # nothing ingested yet: nothing to materialize
            results.append(
                materialize_view(
                    view,
                    version,
                    self.definitions.join_keys(view),
                    catalog=self.catalog,
                    engine=self.engine,
                    offline_store=self.offline_store,
                    online_store=self.online_store,
                    store_id=self.online_store_id,
                    start=start,
                    end=end,
                )
            )
        if "online" in self.__dict__:
            self.online.refresh()
        return results

    def online_features(
        self,
        features: Sequence[str] | str,
        entity_rows: EntityRows,
        *,
        full_feature_names: bool = False,
    ) -> OnlineFeatures:
        """Feature values from the online store, for each entity row, in request order.

        A value older than its view's TTL reads as ``None``, exactly as offline retrieval would null it;
        unknown entities read as ``None``.

        On-demand features are computed by the same function as offline, on the values read and the request
        fields of each entity row.

        Args:
            features: references ``view:feature``, ``view:*`` or ``on_demand_view:feature``.
            entity_rows: ``[{"customer_id": 42}, ...]`` or ``{"customer_id": [42, 7]}``, with the request
                fields of the on-demand features requested (``{"customer_id": 42, "cart_value": 30.0}``).
            full_feature_names: name columns ``view__feature``.

        Returns:
            :class:`~keel.online.OnlineFeatures`: ``.to_dict()`` (columns), ``.to_frame()``, and ``.versions``
            (the ingested version that served each view).

        Example:
            >>> project.online_features(["customer_activity:spend_30d"], [{"customer_id": 42}]).to_dict()
            ... # doctest: +SKIP
            {'spend_30d': [118.5]}
        """
        return self.online.get(features, entity_rows, full_feature_names=full_feature_names)

    def push(self, view: FeatureView | str, df: pd.DataFrame, *, to: str = "online") -> PushResult:
        """Write rows of ``view`` as they arrive, validated like ingestion.

        Args:
            view: the feature view (or its name).
            df: key columns, the event-time column and the view's features.
            to: ``"online"`` (upsert into the online store; older rows than stored are ignored),
                ``"offline"`` (a new immutable version: the latest one plus these rows) or ``"both"``.
        """
        import warnings

        import pandas as pd
        import pyarrow as pa

        from keel.offline import append_version, validate_table

        if to not in ("online", "offline", "both"):
            raise ValidationError(f"push: to must be 'online', 'offline' or 'both', got {to!r}", field="to")
        if not isinstance(df, pd.DataFrame):
            raise ValidationError(f"push: expected a pandas DataFrame of rows, got {type(df).__name__}")
        if df.empty:
            raise ValidationError(f"push to {view if isinstance(view, str) else view.name!r}: no rows")
        definition, definition_version = self._registered_view(view)
        keys = self.definitions.join_keys(definition)
        try:
            raw = pa.Table.from_pandas(df, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise ValidationError(f"push to {definition.name!r}: cannot read the rows: {exc}") from exc
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            validated = validate_table(raw, definition, keys)
        noticed = [str(w.message) for w in caught]
        online_rows = 0
        offline_version = None
        # Offline first: it is the one that can refuse (a changed definition, a key of another type), and a
        # refused push must leave both stores untouched.
        if to in ("offline", "both"):
            offline_version = append_version(
                definition,
                validated,
                definition_version=definition_version,
                catalog=self.catalog,
                store=self.offline_store,
                engine=self.engine,
                warnings=noticed,
            ).version.version
        if to in ("online", "both"):
            online_rows = self.online_store.write_batch(
                definition.name,
                validated.table,
                keys=keys,
                features=definition.feature_names,
                timestamp=validated.timestamp,
                ttl=definition.ttl,
            )
        return PushResult(definition.name, len(df), online_rows, offline_version, noticed)

    # -- training and models ---------------------------------------------------------------------------------
    def training_spec(self, name: str) -> TrainingSpec:
        """The training spec ``name`` declared in the project's modules."""
        from keel.training import TrainingSpec

        specs = {d.name: d for d in self.discover() if isinstance(d, TrainingSpec)}
        if name not in specs:
            raise NotFoundError(
                f"no training spec {name!r} in the project's modules; specs found: {', '.join(sorted(specs)) or 'none'}"
            )
        return specs[name]

    def train(self, spec: TrainingSpec | str, *, on_step: Callable[[str], None] | None = None) -> TrainingRun:
        """Run a training spec once: point-in-time training set, split, fit, evaluate, package, record.

        The run is recorded in the catalog with its params, metrics, durations, the feature-view versions and
        data digests it used, the training set's digest, the git commit and library versions; a failed fit is
        recorded as failed with its error.

        Args:
            spec: a :class:`~keel.training.TrainingSpec` or the name of one declared in the project.
            on_step: called with the name of each step as it starts (progress display).

        Returns:
            The :class:`~keel.training.TrainingRun` (record and fitted package); register it with
            ``project.models.register(run)``.
        """
        from keel.training import TrainingSpec, train

        resolved = self.training_spec(spec) if isinstance(spec, str) else spec
        if not isinstance(resolved, TrainingSpec):
            raise ValidationError(f"train() takes a TrainingSpec or its name, got {type(spec).__name__}")
        return train(
            resolved,
            root=self.root,
            build_training_set=self.historical_features,
            feature_version_digest=lambda view, version: self.catalog.feature_version(view, version).data_digest,
            catalog=self.catalog,
            artifacts=self.artifacts,
            on_step=on_step,
            mirror=self._mlflow_mirror(),
            package_format=self.config.package_format,
        )

    def _mlflow_mirror(self) -> Callable[[RunRecord, bytes | None, str | None], None] | None:
        """With ``mlflow_uri`` configured, a function that copies each run to that MLflow server."""
        uri = self.config.mlflow_uri
        if not uri:
            return None
        from keel.training._mlflow import mirror_run

        experiment = self.config.name

        def mirror(record: RunRecord, blob: bytes | None, fmt: str | None) -> None:
            mirror_run(uri, record, package_blob=blob, package_format=fmt, experiment=experiment)

        return mirror

    @cached_property
    def runs(self) -> Runs:
        """The project's training runs: ``list()`` (newest first or by a metric), ``get(id)``, ``compare(ids)``."""
        from keel.training import Runs

        return Runs(self.catalog)

    @cached_property
    def models(self) -> ModelRegistry:
        """The model registry: ``register(run)``, ``load("churn@champion")``, aliases, ``diff``."""
        from keel.models import ModelRegistry

        return ModelRegistry(self.catalog, self.artifacts)

    def monitor(
        self,
        model: str,
        *,
        end: datetime | None = None,
        reference: pd.DataFrame | str | Path | None = None,
        current: pd.DataFrame | str | Path | None = None,
        labels: pd.DataFrame | str | Path | None = None,
        settings: MonitorSettings | None = None,
        store: bool = True,
    ) -> MonitoringReport:
        """Check a model version for drift, data quality and performance decay, and store the report.

        Args:
            model: ``churn@champion``, ``churn:3`` ...
            end: the end of the current window (default: now); it reaches back ``settings.window``.
            reference: reference rows instead of the profile stored when the version's run was trained.
            current: current rows (the model's input columns) instead of the prediction log's window.
            labels: labels to judge performance: ``request_id`` (and ``record``) with the label, or entity
                keys, a timestamp and the label (each takes its entity's latest prediction before then).
            settings: thresholds (:class:`~keel.monitoring.MonitorSettings`).
            store: store the report and its audit events in the catalog.

        Returns:
            The :class:`~keel.monitoring.MonitoringReport`; ``report.crossed`` says whether a threshold was crossed.
        """
        from keel.monitoring import monitor

        report, _record = monitor(
            self,
            model,
            end=end,
            reference=reference,
            current=current,
            labels=labels,
            settings=settings,
            store=store,
        )
        return report

    def retrain(
        self,
        model: str,
        *,
        margin: float = 0.0,
        metric: str | None = None,
        labels_window: timedelta | None = None,
        report_id: str | None = None,
        on_step: Callable[[str], None] | None = None,
    ) -> RetrainDecision:
        """Retrain the spec of ``model`` (``churn@champion``), compare on the same later holdout, promote a winner.

        See :func:`keel.retraining.retrain`; every step is an audit event (``keel monitor history``).
        """
        from keel.retraining import retrain

        return retrain(
            self,
            model,
            margin=margin,
            metric=metric,
            labels_window=labels_window,
            report_id=report_id,
            on_step=on_step,
        )

    def predictions(
        self,
        model: str,
        *,
        version: int | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> pd.DataFrame:
        """The prediction log of ``model`` (every version, or ``version``) in ``[start, end)``, as a DataFrame.

        See :func:`keel.prediction_log.read_prediction_log` for the columns; naive datetimes are taken as UTC.
        """
        from keel.prediction_log import log_root, read_prediction_log

        return read_prediction_log(log_root(self.config.offline), model, version=version, start=start, end=end)

    def predict_batch(
        self,
        model: str,
        input: str | Path,
        output: str | Path,
        *,
        workers: int = 1,
        chunk_rows: int = 100_000,
        id_column: str | None = None,
        features: str = "input",
        timestamp: str | None = None,
        resume: bool = True,
        allow_pickle: bool = False,
        probabilities: bool = True,
        on_progress: Callable[[int, int | None], None] | None = None,
    ) -> BatchResult:
        """Score a Parquet or CSV file (local or fsspec URI) by chunks into a Parquet file, in input order.

        Memory stays bounded by ``chunk_rows`` times the number of workers, whatever the input's size.

        Args:
            model: a model reference (``churn@champion``, ``churn:3``).
            input: the rows to score.
            output: the Parquet file to write (atomically); a manifest next to it lets a re-run resume.
            workers: scoring lanes (1: score in this process): threads of this process, each with its share of
                the cores, when every feature is numeric (scoring then releases the GIL); otherwise worker
                processes, each loading the package once by its digest.
            chunk_rows: rows per chunk.
            id_column: an input column copied to the output as its id (default: ``row_number``, from 0).
            features: ``input`` (the input holds the feature columns), ``offline`` (joined point in time for
                the entity keys as of ``timestamp``) or ``online`` (looked up by entity keys).
            timestamp: with ``offline``, the as-of column (default: the input's only timestamp column).
            resume: reuse the chunks an interrupted run with the same input, model and settings finished.
            allow_pickle: load a pickle-based package.
            probabilities: add a classifier's ``proba_<class>`` columns (off: predictions only, about half the
                work for models whose probabilities cost as much as their predictions).
            on_progress: called with (rows done, total rows or ``None``) after each chunk.

        Returns:
            :class:`~keel.batch.BatchResult`, listing the chunks that failed twice with their row ranges.
        """
        from keel.batch import predict_batch

        return predict_batch(
            self,
            model,
            input,
            output,
            workers=workers,
            chunk_rows=chunk_rows,
            id_column=id_column,
            features=features,
            timestamp=timestamp,
            resume=resume,
            allow_pickle=allow_pickle,
            probabilities=probabilities,
            on_progress=on_progress,
        )

    # -- the HTTP services ----------------------------------------------------------------------------------
    def prediction_app(
        self,
        models: Sequence[str],
        *,
        cache_size: int = 10_000,
        cache_ttl_seconds: float = 3600.0,
        allow_pickle: bool = False,
        prediction_log: bool | None = None,
        close_project: bool = False,
        **options: Any,
    ) -> FastAPI:
        """The prediction service of ``models`` (``["churn@champion", "fraud:3"]``), served by name.

        The project's registry, online store, ``cache`` and ``prediction_log`` settings are wired into a
        :class:`~keel.serving.Predictor`, served by :func:`~keel.serving.create_prediction_app`.

        Args:
            models: model references; each is loaded now, so a wrong one fails here. Two references to the
                same model name are refused.
            cache_size: answers kept in the in-process LRU (0: no cache) when the project's ``cache`` is
                ``memory``.
            cache_ttl_seconds: how long a Redis cache keeps an answer.
            allow_pickle: load pickle-based (joblib) packages; without it they are refused here.
            prediction_log: log every prediction (``None``: the project's ``prediction_log.enabled``). The log
                is written by a background thread and written out when the app shuts down.
            close_project: close the project when the app shuts down (when the app owns it).
            **options: passed to :func:`~keel.serving.create_prediction_app` (``api_token``, ``max_records``,
                ``max_body_bytes``, ``reload_seconds``, ``inline_records``).

        Example:
            >>> app = project.prediction_app(["churn@champion"], reload_seconds=30)  # doctest: +SKIP
        """
        from keel._backends import open_cache
        from keel.prediction_log import PredictionLog, log_root
        from keel.serving import CacheOptions, PredictionMetrics, Predictor, create_prediction_app

        metrics = PredictionMetrics()
        cache = open_cache(
            self.config.cache, CacheOptions(self.config.name, cache_size, cache_ttl_seconds, metrics.cache_failed)
        )
        settings = self.config.prediction_log
        log = None
        if settings.enabled if prediction_log is None else prediction_log:
            log = PredictionLog(
                log_root(self.config.offline),
                max_bytes=settings.max_bytes,
                max_seconds=settings.max_seconds,
                linger_seconds=settings.linger_seconds,
                on_written=metrics.logged,
                on_dropped=metrics.dropped,
            )
        keys = self.definitions.key_types
        predictor = Predictor(self.models, self.online, cache, log, keys, allow_pickle=allow_pickle, metrics=metrics)
        try:
            predictor.load(models)
            return create_prediction_app(predictor, on_shutdown=self.close if close_project else None, **options)
        except BaseException:
            predictor.close()
            raise

    def feature_app(self, *, close_project: bool = False, **options: Any) -> FastAPI:
        """The feature server of the project's online store: ``POST /features``, ``POST /push`` (see
        :func:`~keel.serving.create_feature_app`, which ``options`` go to: ``api_token``, ``max_body_bytes``).

        Its backends are opened now, so a configuration error shows here rather than at the first request.

        Args:
            close_project: close the project when the app shuts down (when the app owns it).

        Example:
            >>> uvicorn.run(project.feature_app(), port=6566)  # doctest: +SKIP
        """
        from keel.serving import create_feature_app

        return create_feature_app(
            self.online,
            self.push,
            feature_view=self.feature_view,
            join_keys=self.definitions.join_keys,
            store_kind=self.online_store.kind,
            on_shutdown=self.close if close_project else None,
            **options,
        )

    @property
    def config_path(self) -> Path:
        """The project's ``keel.yaml``."""
        return self.root / CONFIG_FILE
