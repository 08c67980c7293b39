"""The facade: a :class:`Project` binds a folder's configuration to its backends and delegates to services."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable, Sequence
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

    from keel.analysis import Analyses, Analysis
    from keel.artifacts import ArtifactStore
    from keel.batch import BatchResult
    from keel.catalog import Catalog, FeatureVersion, RunRecord
    from keel.definitions import ApplyPlan, Definitions
    from keel.engines import Engine
    from keel.features import Entity
    from keel.features._on_demand_plan import OnDemandStep
    from keel.models import ModelRegistry
    from keel.monitoring import Monitor, MonitoringReport, MonitorSettings
    from keel.offline import IngestResult, OfflineFeatureService, OfflineStore
    from keel.online import MaterializeResult, OnlineFeatures, OnlineFeatureService, OnlineStore, PushResult
    from keel.online._service import EntityRows
    from keel.retraining import RetrainDecision, Retrainer
    from keel.training import Runs, Trainer, TrainingRun, TrainingSpec
    from keel.training._holdout import RebuiltSplit
    from keel.validation import Expectation, ShiftThresholds, StabilityReport, ValidationReport
    from keel.validation._skew import SkewReport

log = logging.getLogger(__name__)


#: Where ``prediction_app(ui=True)`` (``keel serve --ui``) serves the web UI.
UI_PATH = "/ui"


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
        """How the catalog names the online store in materialization records (no credentials, and no connection
        options: ``?socket_timeout=0.5`` does not make it another store)."""
        from keel.online._store import safe_uri

        return f"{safe_uri(self.config.online).split('?', 1)[0]}#{self.online_prefix}"

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
        from keel._backends import open_engine

        store = self.offline_store
        return open_engine(self.config, filesystems=[] if store.is_local else [store.fs])

    @cached_property
    def definitions(self) -> Definitions:
        """The registered definitions."""
        from keel.definitions import Definitions

        return Definitions(self.catalog, root=self.root, modules=self.config.modules)

    @cached_property
    def offline(self) -> OfflineFeatureService:
        """The offline feature service behind :meth:`ingest`, :meth:`historical_features` and :meth:`verify`."""
        from keel.offline import OfflineFeatureService

        return OfflineFeatureService(self.definitions, self.catalog, self.offline_store, self.engine, self.root)

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
    def ingest(self, view: FeatureView | str) -> IngestResult:
        """Read a view's source, validate it and store it as a new immutable version.

        Identical data (same content and definition as the latest version) creates nothing, and says so.

        Raises:
            NotFoundError: the view is not registered, or its source file is missing.
            ValidationError: a row does not match the schema (the message names the row and column).
        """
        return self.offline.ingest(view)

    def feature_versions(self, view: str) -> list[FeatureVersion]:
        """Every ingested version of ``view``, oldest first."""
        return self.offline.feature_versions(view)

    def validate(
        self,
        view: str,
        expectations: Sequence[Expectation],
        *,
        version: int | None = None,
        now: datetime | None = None,
    ) -> tuple[FeatureVersion, ValidationReport]:
        """Check an ingested version of ``view`` (default: the latest) against ``expectations``, in one pass of
        the project's engine over its files.

        Raises:
            NotFoundError: the view has no such version.
            ValidationError: an expectation names a column the version does not have.
        """
        from keel.engines import Files
        from keel.validation import validate

        found = self.catalog.feature_version(view, version)
        files = Files(self.offline_store.paths(found), describe=f"feature view {view!r} version {found.version}")
        keys = list(found.columns.get("join_keys", {}))
        report = validate(
            self.engine, files, expectations, keys=keys, timestamp=found.columns.get("timestamp"), now=now
        )
        return found, report

    def stability(
        self,
        view: str,
        *,
        window: str = "7d",
        version: int | None = None,
        features: Sequence[str] | None = None,
        thresholds: ShiftThresholds | None = None,
        severity: str = "error",
    ) -> tuple[FeatureVersion, StabilityReport]:
        """How stable each feature of ``view`` (an ingested version, default the latest) is over time: each
        event-time ``window`` (``1d``, ``7d``, ``1mo`` ...) compared with the one before, in one pass of the project's
        engine (see :mod:`keel.validation._stability`).

        Raises:
            NotFoundError: the view has no such version.
            ValidationError: a bad window, an unknown feature, or no feature that can be measured.
        """
        from keel.engines import Files
        from keel.engines._windows import Window
        from keel.validation import ShiftThresholds, stability

        parsed = Window.parse(window)
        found = self.catalog.feature_version(view, version)
        dtypes: dict[str, str] = dict(found.columns.get("features", {}))
        if features is not None:
            unknown = [f for f in features if f not in dtypes]
            if unknown:
                raise ValidationError(
                    f"{view} has no feature(s) {', '.join(map(repr, unknown))}; it has {', '.join(dtypes)}",
                    field=unknown[0],
                )
            dtypes = {f: dtypes[f] for f in features}
        files = Files(self.offline_store.paths(found), describe=f"feature view {view!r} version {found.version}")
        report = stability(
            self.engine,
            files,
            features=dtypes,
            statistics=found.statistics,
            timestamp=found.columns["timestamp"],
            window=parsed,
            thresholds=thresholds or ShiftThresholds(),
            severity=severity,
        )
        return found, report

    def skew(
        self,
        model: str,
        *,
        sample: int = 1000,
        seed: int = 0,
        window: timedelta = timedelta(days=7),
        end: datetime | None = None,
        thresholds: ShiftThresholds | None = None,
    ) -> SkewReport:
        """Training/serving skew of a model version (``churn@champion``, ``churn:3``):

        - for each feature view it reads that is kept online, ``sample`` entities' online values against the offline
          store's latest values at the same time (:mod:`keel.online._skew`);
        - the features it was served in ``[end - window, end)``, from its prediction log, against its training set's
          profile, per feature (:mod:`keel.monitoring._skew`).

        Raises:
            NotFoundError: no such model version.
        """
        from keel.online._skew import online_skew
        from keel.validation._skew import SkewReport

        version = self.models.get(model)
        pinned = f"{version.name}:{version.version}"
        package = self.models.load(pinned)
        notes: list[str] = []
        online = []
        for name in self.definitions.views_read(package.feature_refs):
            view, _ = self.definitions.feature_view(name)
            if not view.online:
                notes.append(f"{name}: not kept online (online=False); nothing to compare")
                continue
            try:
                online.append(
                    online_skew(
                        view,
                        self.definitions.join_keys(view),
                        catalog=self.catalog,
                        engine=self.engine,
                        offline_store=self.offline_store,
                        online_store=self.online_store,
                        store_id=self.online_store_id,
                        sample=sample,
                        seed=seed,
                        now=end,
                    )
                )
            except NotFoundError as exc:
                notes.append(f"{name}: {exc}")
        try:
            serving = self.monitoring.serving_skew(pinned, end=end, window=window, thresholds=thresholds)
        except NotFoundError as exc:
            serving = None
            notes.append(f"serving against training: {exc}")
        return SkewReport(pinned, online, serving, notes)

    def verify(self, views: Iterable[str] | None = None) -> dict[str, list[str]]:
        """Re-hash the files of every ingested version (of ``views``, default all) against the catalog.

        Returns:
            ``{"view@version": [files whose content no longer matches, or that are missing]}`` for each
            damaged version; an empty dict when everything is intact.
        """
        return self.offline.verify(views)

    def historical_features(
        self,
        entity_df: pd.DataFrame | str | Path | Any,
        features: Sequence[str | FeatureRef] | str,
        *,
        timestamp: str | None = None,
        full_feature_names: bool = False,
        into: str | Path | None = None,
    ) -> Any:
        """The entity frame with ``features`` joined point in time.

        Every row is kept, in its order, with its index; a row with no value within the view's TTL at or
        before its timestamp gets null. Ties on event time go to the latest created timestamp, then to the row
        ingested or pushed last.

        An entity table too large for this process stays where it is: give its Parquet file or folder (a path
        or URI) or, with ``engine: spark``, a Spark DataFrame, and the engine joins it without collecting it:
        the result is written under ``into`` (a :class:`keel.engines.Written` listing the files) or, on Spark
        with ``into=None``, returned as a Spark DataFrame. Row order is then not kept.

        On-demand features (``basket:cart_to_spend``) are computed on the joined rows: their input features are
        joined point in time like the others (and returned only when requested), and their request fields are
        read from the entity frame's columns.

        Args:
            entity_df: join keys and a timestamp per row (other columns, labels for instance, are kept), and the
                request fields of the on-demand features requested.
            features: references ``view:feature``, ``view:*`` or ``view@3:feature`` (pinned version), and
                ``on_demand_view:feature``.
            timestamp: the entity frame's timestamp column (default: its only datetime column; required for an
                entity table at rest).
            full_feature_names: name output columns ``view__feature``.
            into: a folder to write the result to, as Parquet.

        Returns:
            A DataFrame for a DataFrame (``df.attrs["keel_feature_versions"]`` maps each view to the version that
            served it); a :class:`keel.engines.Written` when ``into`` is given; a Spark DataFrame for a Spark
            DataFrame without ``into``.
        """
        return self.offline.historical_features(
            entity_df, features, timestamp=timestamp, full_feature_names=full_feature_names, into=into
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
        from keel.online import materialize_views

        results = materialize_views(
            views,
            definitions=self.definitions,
            catalog=self.catalog,
            engine=self.engine,
            offline_store=self.offline_store,
            online_store=self.online_store,
            store_id=self.online_store_id,
            start=start,
            end=end,
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
        from keel.online import push_rows

        return push_rows(
            view,
            df,
            to=to,
            definitions=self.definitions,
            offline=self.offline,
            # Only a push that writes online opens the online store (an offline push never touches it).
            store=self.online_store if to in ("online", "both") else None,
        )

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
        return self.trainer.train(self.training_spec(spec) if isinstance(spec, str) else spec, on_step=on_step)

    @cached_property
    def trainer(self) -> Trainer:
        """The trainer behind :meth:`train` (runs recorded in the catalog, mirrored to MLflow when configured)."""
        from keel.training import Trainer
        from keel.training._mlflow import mirror_for

        return Trainer(
            root=self.root,
            catalog=self.catalog,
            artifacts=self.artifacts,
            build_training_set=self.historical_features,
            feature_version_digest=lambda view, version: self.catalog.feature_version(view, version).data_digest,
            mirror=mirror_for(self.config.mlflow_uri, self.config.name),
            package_format=self.config.package_format,
            trusted_types=self.config.trusted_types,
        )

    @cached_property
    def runs(self) -> Runs:
        """The project's training runs: ``list()`` (newest first or by a metric), ``get(id)``, ``compare(ids)``."""
        from keel.training import Runs

        return Runs(self.catalog)

    @cached_property
    def models(self) -> ModelRegistry:
        """The model registry: ``register(run)``, ``load("churn@champion")``, aliases, ``diff``."""
        from keel.models import ModelRegistry

        return ModelRegistry(self.catalog, self.artifacts, trusted_types=self.config.trusted_types)

    @cached_property
    def monitoring(self) -> Monitor:
        """The monitoring service behind :meth:`monitor`: the registry, the artifacts, the catalog, the log."""
        from keel.monitoring import Monitor
        from keel.prediction_log import log_root

        return Monitor(
            self.models,
            self.artifacts,
            self.catalog,
            log_root(self.config.offline),
            engine=lambda: self.engine,
            scratch=f"{self.config.offline.rstrip('/')}/_scratch",
        )

    @cached_property
    def analyses(self) -> Analyses:
        """The analysis service behind :meth:`analyze`: rows rebuilt as trained or from the log, reports stored."""
        from keel.analysis import Analyses
        from keel.training._holdout import rebuild_split

        def split(run: RunRecord, spec: TrainingSpec | None) -> RebuiltSplit:
            chosen = spec if spec is not None else self.training_spec(run.spec)
            return rebuild_split(run, chosen, root=self.root, build_training_set=self.historical_features)

        return Analyses(
            self.models,
            self.artifacts,
            self.catalog,
            split,
            self.predictions,
            specs=self.training_spec,
            train=lambda spec: self.train(spec),
        )

    def analyze(
        self,
        model: str,
        *,
        data: str | Path | pd.DataFrame = "holdout",
        labels: pd.DataFrame | str | Path | None = None,
        segments: Sequence[str] = (),
        compare: str | None = None,
        metric: str | None = None,
        find_weak: bool = True,
        n_boot: int = 1000,
        seed: int = 0,
        spec: TrainingSpec | None = None,
        store: bool = True,
    ) -> Analysis:
        """Analyse a model version (``churn@champion``, ``churn:3``) on the data it was trained on or served, and
        store the report with it (see :mod:`keel.analysis`).

        Args:
            model: the version.
            data: ``holdout`` (default) or ``training`` (its run's split, rebuilt exactly as trained), ``log`` (its
                prediction log joined with ``labels``), or a file or DataFrame with the label column.
            labels: with ``data="log"``: ``request_id`` (and ``record``) and the label, or entity keys, a timestamp
                and the label.
            segments: declared segments: ``plan`` (one per value), ``age:4`` (quantile bins), ``age[30,60]``
                (edges), ``age >= 60 and plan == "basic"``.
            compare: another version, compared on the same rows segment by segment (paired bootstrap).
            metric: the primary metric (default: ROC AUC for a binary classifier, accuracy for others, MAE for a
                regressor).
            find_weak: search for significantly weak segments over every column.
            n_boot: bootstrap resamples.
            seed: their seed.
            spec: the training spec (default: the project's spec of the run's name), to rebuild the training set.
            store: store the report (JSON, HTML, figures) with the version.

        Returns:
            The :class:`~keel.analysis.Analysis`; its stored record is ``project.catalog.model_analyses(...)[0]``.
        """
        result, _ = self.analyses.analyze(
            model,
            data=data,
            labels=labels,
            segments=segments,
            compare=compare,
            metric=metric,
            find_weak=find_weak,
            n_boot=n_boot,
            seed=seed,
            spec=spec,
            store=store,
        )
        return result

    def importance(
        self,
        model: str,
        *,
        data: str | Path | pd.DataFrame = "holdout",
        repeats: int = 5,
        shap: bool = True,
        explain: Sequence[int] = (),
        seed: int = 0,
        spec: TrainingSpec | None = None,
        store: bool = True,
    ) -> dict[str, Any]:
        """Feature importance of a model version on its holdout (or ``data``): permutation importance with intervals
        (correlated features also grouped), mutual information, impurity importance where the model has it, SHAP
        values when the ``shap`` extra is installed (global, and for the rows ``explain`` lists). Stored with the
        version; returns the report's JSON document."""
        return self.analyses.importance(
            model, data=data, repeats=repeats, shap=shap, explain=explain, seed=seed, spec=spec, store=store
        ).document

    def select(
        self,
        model: str,
        *,
        data: str | Path | pd.DataFrame = "holdout",
        resamples: int = 20,
        threshold: float = 0.8,
        seed: int = 0,
        train: bool = False,
        spec: TrainingSpec | None = None,
        store: bool = True,
    ) -> tuple[dict[str, Any], TrainingRun | None]:
        """Stable feature selection for a model version: ranks across methods and bootstrap resamples of its holdout,
        a noise probe to beat, a proposed subset and its stability; with ``train``, the subset trained with the same
        spec (the run is returned: register it and compare with ``project.models.diff``)."""
        stored, run = self.analyses.select(
            model, data=data, resamples=resamples, threshold=threshold, seed=seed, train=train, spec=spec, store=store
        )
        return stored.document, run

    @cached_property
    def retrainer(self) -> Retrainer:
        """The retraining service behind :meth:`retrain`, training with :meth:`train`."""
        from keel.retraining import Retrainer

        return Retrainer(
            self.models, self.train, self.training_spec, self.catalog, self.root, data_check=self.expectation_failures
        )

    def expectation_failures(self, spec: TrainingSpec) -> list[str]:
        """The failed error-level expectations of the feature versions ``spec`` reads (each view's latest, or the
        version a reference pins), one sentence per version; empty when the data is fine."""
        from keel.features import FeatureRef

        out: list[str] = []
        seen: set[tuple[str, int | None]] = set()
        for feature in spec.features:
            ref = feature if isinstance(feature, FeatureRef) else FeatureRef.parse(str(feature))
            if (ref.view, ref.version) in seen:
                continue
            seen.add((ref.view, ref.version))
            try:
                version = self.catalog.feature_version(ref.view, ref.version)
            except NotFoundError:
                continue  # an on-demand view: its inputs' versions are judged under their own names
            failures = [f for f in (version.validation or {}).get("failures", []) if f.get("severity") == "error"]
            if failures:
                listed = ", ".join(f"{f['describe']} ({f['failed']:,} rows)" for f in failures)
                out.append(f"{ref.view} v{version.version}: {listed}")
        return out

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
        return self.monitoring.check(
            model, end=end, reference=reference, current=current, labels=labels, settings=settings, store=store
        )[0]

    def retrain(
        self,
        model: str,
        *,
        margin: float = 0.0,
        metric: str | None = None,
        labels_window: timedelta | None = None,
        report_id: str | None = None,
        on_step: Callable[[str], None] | None = None,
        segments: Sequence[str] = (),
    ) -> RetrainDecision:
        """Retrain the spec of ``model`` (``churn@champion``), compare on the same later holdout, promote a winner —
        unless it is significantly worse on one of ``segments``.

        See :class:`keel.retraining.Retrainer`; every step is an audit event (``keel monitor history``).
        """
        return self.retrainer.retrain(
            model,
            margin=margin,
            metric=metric,
            labels_window=labels_window,
            report_id=report_id,
            on_step=on_step,
            segments=segments,
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

    def scoring_on_demand(self, model: str, *, allow_pickle: bool | None = None) -> tuple[OnDemandStep, ...]:
        """The on-demand views that compute some of ``model``'s features when an engine scores an input holding
        their inputs and request fields as columns (:class:`~keel.engines.Scoring`'s ``on_demand``): the
        registered views, run by the same functions as at training and serving."""
        from keel.features._on_demand_plan import scoring_steps

        package = self.models.load(model, allow_pickle=allow_pickle)
        refs, names = package.feature_refs, package.feature_names

        def features_of(view: str) -> dict[str, str]:
            found = self.definitions.feature_view(view)[0]
            return {f.name: f.dtype for f in found.schema}

        return scoring_steps(refs, names, self.definitions.find_on_demand, features_of)

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
        feature_source: str | None = None,
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
            features: the earlier name of ``feature_source`` (kept working).
            timestamp: with ``offline``, the as-of column (default: the input's only timestamp column).
            resume: reuse the chunks an interrupted run with the same input, model and settings finished.
            allow_pickle: load a pickle-based package.
            probabilities: add a classifier's ``proba_<class>`` columns (off: predictions only, about half the
                work for models whose probabilities cost as much as their predictions).
            on_progress: called with (rows done, total rows or ``None``) after each chunk.
            feature_source: ``input`` (the default: the input holds the feature columns), ``offline`` (joined
                point in time for the entity keys as of ``timestamp``) or ``online`` (looked up by entity keys).

        Returns:
            :class:`~keel.batch.BatchResult`, listing the chunks that failed twice with their row ranges.
        """
        from keel.batch import BatchOptions, OfflineJoin, OnlineJoin, predict_batch

        if feature_source is not None and features not in ("input", feature_source):
            raise ValidationError(
                f"features={features!r} and feature_source={feature_source!r} disagree; give feature_source only",
                field="feature_source",
            )
        options = BatchOptions(
            workers=workers,
            chunk_rows=chunk_rows,
            id_column=id_column,
            feature_source=feature_source or features,
            timestamp=timestamp,
            resume=resume,
            allow_pickle=allow_pickle,
            probabilities=probabilities,
        )
        join: OfflineJoin | OnlineJoin | None = None
        if options.feature_source != "input":
            record = self.models.get(model)
            model = f"{record.name}:{record.version}"  # the version whose features are joined is the one scored
            package = self.models.load(model, allow_pickle=allow_pickle)
            keys: list[str] = []
            read_all = False  # an on-demand view's request fields come from the input: every column is read
            for ref in package.feature_refs:
                try:
                    view = self.definitions.feature_view(FeatureRef.parse(ref).view)[0]
                except NotFoundError:
                    read_all = True
                    continue
                keys += [k for k in self.definitions.join_keys(view) if k not in keys]
            names, refs = package.feature_names, package.feature_refs
            if options.feature_source == "offline":
                join = OfflineJoin(
                    self.historical_features,
                    refs,
                    keys,
                    timestamp,
                    features=names,
                    read_all=read_all,
                    id_column=id_column,
                    model=package.name,
                )
            else:
                join = OnlineJoin(
                    self.online_features,
                    refs,
                    keys,
                    features=names,
                    read_all=read_all,
                    id_column=id_column,
                    model=package.name,
                )
        return predict_batch(
            model,
            input,
            output,
            registry=self.models,
            artifacts=self.artifacts,
            join=join,
            options=options,
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
        ui: bool = False,
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
            ui: also serve the web UI (:func:`keel.ui.create_app`) under ``/ui``. It is behind the service's
                bearer token like every other path, and that token is the one that moves aliases from it.
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
            app = create_prediction_app(predictor, on_shutdown=self.close if close_project else None, **options)
            if ui:
                from keel.serving import TOKEN_VARIABLE
                from keel.ui import create_app

                token = options.get("api_token") or os.environ.get(TOKEN_VARIABLE) or None
                app.mount(UI_PATH, create_app(self, token=token))
            return app
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
