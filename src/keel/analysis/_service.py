"""Analyses of registered model versions, on the data they were trained and served on, stored with the version.

:class:`Analyses` finds the rows (the run's holdout or training split rebuilt exactly as trained, the prediction log
joined with labels, or a file), scores them with the version's package, runs the analysis and stores its report
— JSON, a self-contained HTML page and its figures — in the artifact store, with a record in the catalog
(``keel models show`` lists them; the web UI shows them).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from keel._tables import read_table
from keel.analysis._analyze import Analysis, Scored, analyze
from keel.analysis._page import Page
from keel.errors import ValidationError

if TYPE_CHECKING:
    from keel.artifacts import ArtifactStore
    from keel.catalog import ModelAnalysisRecord, RunRecord
    from keel.catalog._analyses import AnalysisCatalog
    from keel.models import ModelPackage, ModelRegistry
    from keel.monitoring import PredictionReader
    from keel.training import TrainingRun, TrainingSpec
    from keel.training._holdout import RebuiltSplit

__all__ = ["DATA_CHOICES", "Analyses", "Rows", "StoredReport"]

#: The rows an analysis can read besides a file.
DATA_CHOICES = ("holdout", "training", "log")


@dataclass(frozen=True)
class Rows:
    """The analysed rows: ``frame`` (the model's inputs and more), the labels, and where they came from."""

    frame: pd.DataFrame
    labels: np.ndarray
    source: str


@dataclass(frozen=True)
class StoredReport:
    """A report and its catalog record (``None`` when it was not stored)."""

    document: dict[str, Any]
    page: Page
    record: ModelAnalysisRecord | None


class Analyses:
    """Runs and stores analyses of model versions.

    Args:
        registry: the model registry (versions, runs, packages).
        artifacts: where reports are stored.
        records: the catalog's analyses.
        split: a run's training set rebuilt and split as trained, from the spec given or the project's spec of that
            name and the versions the run pinned.
        read_log: the prediction log.
        specs: the project's training spec of a name (to train a selected subset with the same spec).
        train: trains a spec and records the run (``project.train``).
    """

    def __init__(
        self,
        registry: ModelRegistry,
        artifacts: ArtifactStore,
        records: AnalysisCatalog,
        split: Callable[[RunRecord, TrainingSpec | None], RebuiltSplit],
        read_log: PredictionReader,
        *,
        specs: Callable[[str], TrainingSpec] | None = None,
        train: Callable[[TrainingSpec], TrainingRun] | None = None,
    ) -> None:
        self.registry = registry
        self.artifacts = artifacts
        self.records = records
        self.split = split
        self.read_log = read_log
        self.specs = specs
        self.train = train

    # -- rows ------------------------------------------------------------------------------------------------------
    def rows(
        self,
        ref: str,
        data: str | Path | pd.DataFrame = "holdout",
        labels: Any = None,
        spec: TrainingSpec | None = None,
        package: ModelPackage | None = None,
    ) -> Rows:
        """The rows of ``data`` for the version ``ref`` names: ``holdout`` or ``training`` (its run's split, rebuilt
        and checked against the recorded digest), ``log`` (its prediction log with ``labels`` joined: by
        ``request_id``, or by entity and time), a file or a DataFrame holding the label column. ``package``: the
        version's package when the caller has it loaded already.

        Raises:
            ValidationError: no such rows, labels missing, or a file without the label column.
        """
        version = self.registry.get(ref)
        pinned = f"{version.name}:{version.version}"
        package = package if package is not None else self.registry.load(pinned)  # loaded (and verified) once
        if isinstance(data, str) and data in ("holdout", "training"):
            run = self.registry.run_of(pinned)
            rows = self.split(run, spec).rows(data)
            return Rows(rows, rows[package.label].to_numpy(), f"{data} of run {run.id[:8]}")
        if isinstance(data, str) and data == "log":
            if labels is None:
                raise ValidationError(
                    "the prediction log holds no labels: pass them (--labels FILE: request_id and the label, or the "
                    "entity keys, a timestamp and the label)",
                    field="labels",
                )
            from keel.monitoring import join_labels

            log = self.read_log(version.name, version=version.version)
            label_frame = labels if isinstance(labels, pd.DataFrame) else read_table(Path(labels))
            joined = join_labels(log, label_frame, package)
            if joined.empty:
                raise ValidationError(f"no logged prediction of {pinned} matches a label", field="labels")
            features = {c: c.removeprefix("feature.") for c in joined.columns if c.startswith("feature.")}
            frame = joined[list(features)].rename(columns=features).reset_index(drop=True)
            return Rows(frame, joined["label"].to_numpy(), f"prediction log, {len(joined):,} labelled predictions")
        frame = data if isinstance(data, pd.DataFrame) else read_table(Path(data))
        if package.label not in frame.columns:
            raise ValidationError(
                f"the rows have no label column {package.label!r}; they have {', '.join(map(str, frame.columns))}",
                field=package.label,
            )
        frame = frame[frame[package.label].notna()].reset_index(drop=True)
        source = "rows given" if isinstance(data, pd.DataFrame) else str(data)
        return Rows(frame, frame[package.label].to_numpy(), source)

    @staticmethod
    def scored(name: str, package: ModelPackage, frame: pd.DataFrame) -> Scored:
        """``package``'s answers on ``frame``."""
        missing = [c for c in package.schema.names if c not in frame.columns]
        if missing:
            raise ValidationError(
                f"{name} reads {', '.join(missing)}, which the rows lack "
                f"(they have {', '.join(map(str, frame.columns))})",
                field=missing[0],
            )
        scores = package.score(frame)
        return Scored(name, scores.predictions, scores.probabilities)

    # -- analyses --------------------------------------------------------------------------------------------------
    def analyze(
        self,
        ref: str,
        *,
        data: str | Path | pd.DataFrame = "holdout",
        labels: Any = None,
        segments: Sequence[str] = (),
        compare: str | None = None,
        metric: str | None = None,
        find_weak: bool = True,
        n_boot: int = 1000,
        seed: int = 0,
        spec: TrainingSpec | None = None,
        store: bool = True,
    ) -> tuple[Analysis, StoredReport]:
        """Analyse the version ``ref`` names on ``data`` (see :meth:`rows`) and store the report with it; with
        ``compare`` (another version: ``churn@challenger``), compare both on the same rows, segment by segment."""
        version = self.registry.get(ref)
        pinned = f"{version.name}:{version.version}"
        package = self.registry.load(pinned)
        rows = self.rows(pinned, data, labels, spec, package)
        model = self.scored(pinned, package, rows.frame)
        challenger = None
        if compare is not None:
            other = self.registry.get(compare)
            other_pinned = f"{other.name}:{other.version}"
            other_package = self.registry.load(other_pinned)
            if other_package.task != package.task:
                raise ValidationError(f"{other_pinned} is a {other_package.task} model, {pinned} a {package.task} one")
            if package.task == "classification" and list(other_package.classes or []) != list(package.classes or []):
                raise ValidationError(f"{other_pinned} and {pinned} predict different classes", field="compare")
            challenger = self.scored(other_pinned, other_package, rows.frame)
        result = analyze(
            rows.frame,
            rows.labels,
            model,
            task=package.task,
            classes=package.classes,
            segments=segments,
            challenger=challenger,
            metric=metric,
            find_weak=find_weak,
            n_boot=n_boot,
            seed=seed,
            data=rows.source,
        )
        page = result.page()
        figures = {f.name: f.png for f in result.figures}
        stored = self.store("analysis", pinned, result.summary(), result.to_dict(), page, figures, store=store)
        return result, stored

    def importance(
        self,
        ref: str,
        *,
        data: str | Path | pd.DataFrame = "holdout",
        labels: Any = None,
        repeats: int = 5,
        group_threshold: float = 0.9,
        shap: bool = True,
        explain: Sequence[int] = (),
        seed: int = 0,
        spec: TrainingSpec | None = None,
        store: bool = True,
    ) -> StoredReport:
        """Feature importance of the version ``ref`` names on held-out rows (see :mod:`keel.analysis._explain`),
        stored with it."""
        from keel.analysis._explain import importance_report

        pinned, package, rows = self._inputs(ref, data, labels, spec)
        report = importance_report(
            package,
            pinned,
            rows.frame[list(package.schema.names)],
            rows.labels,
            data=rows.source,
            n_repeats=repeats,
            seed=seed,
            group_threshold=group_threshold,
            shap=shap,
            explain=explain,
        )
        return self.store(
            "importance", pinned, report.summary, report.document, report.page, report.figures, store=store
        )

    def select(
        self,
        ref: str,
        *,
        data: str | Path | pd.DataFrame = "holdout",
        labels: Any = None,
        resamples: int = 20,
        threshold: float = 0.8,
        group_threshold: float = 0.9,
        shap: bool = False,
        seed: int = 0,
        train: bool = False,
        spec: TrainingSpec | None = None,
        store: bool = True,
    ) -> tuple[StoredReport, TrainingRun | None]:
        """Stable selection of the version's features; with ``train``, the proposed subset trained with the same spec
        (the new run is returned; register it to compare it with ``models diff``)."""
        from keel.analysis._explain import selection_report

        pinned, package, rows = self._inputs(ref, data, labels, spec)
        result, report = selection_report(
            package,
            pinned,
            rows.frame[list(package.schema.names)],
            rows.labels,
            data=rows.source,
            n_resamples=resamples,
            threshold=threshold,
            group_threshold=group_threshold,
            seed=seed,
            shap=shap,
        )
        run = None
        document = report.document
        if train:
            run = self._train_subset(pinned, list(result.selected_columns), spec)
            document = {**document, "trained": {"run": run.id, "metrics": run.metrics}}
        stored = self.store(
            "selection",
            pinned,
            {**report.summary, "trained_run": None if run is None else run.id},
            document,
            report.page,
            report.figures,
            store=store,
        )
        return stored, run

    def _inputs(
        self, ref: str, data: str | Path | pd.DataFrame, labels: Any, spec: TrainingSpec | None
    ) -> tuple[str, ModelPackage, Rows]:
        version = self.registry.get(ref)
        pinned = f"{version.name}:{version.version}"
        package = self.registry.load(pinned)
        rows = self.rows(pinned, data, labels, spec, package)
        missing = [c for c in package.schema.names if c not in rows.frame.columns]
        if missing:
            raise ValidationError(f"the rows lack {pinned}'s inputs {', '.join(missing)}", field=missing[0])
        return pinned, package, rows

    def _train_subset(self, pinned: str, columns: list[str], spec: TrainingSpec | None) -> TrainingRun:
        """Train the version's spec again on the feature refs of ``columns`` only."""
        import copy

        from keel.features import FeatureRef

        if not columns:
            raise ValidationError("no feature was selected: there is no subset to train", field="train")
        if self.train is None or (spec is None and self.specs is None):
            raise ValidationError("training a subset needs the project (its specs and its trainer)", field="train")
        run = self.registry.run_of(pinned)
        base = spec if spec is not None else self.specs(run.spec)  # type: ignore[misc]
        refs = [r for r in run.lineage.get("features", []) if FeatureRef.parse(r).feature in columns]
        subset = copy.copy(base)
        subset.features = refs
        return self.train(subset)

    def store(
        self,
        kind: str,
        pinned: str,
        summary: dict[str, Any],
        document: dict[str, Any],
        page: Page,
        figures: dict[str, bytes],
        *,
        store: bool = True,
    ) -> StoredReport:
        """Put the report's files in the artifact store and record them with the version (unless ``store`` is
        false)."""
        if not store:
            return StoredReport(document, page, None)
        name, _, number = pinned.rpartition(":")
        files = {
            "report.json": json.dumps(document, allow_nan=False, default=str).encode(),
            "report.html": page.html().encode(),
            **figures,
        }
        digests = {file: self.artifacts.put_bytes(data) for file, data in files.items()}
        record = self.records.add_model_analysis(
            analysis_id=uuid.uuid4().hex,
            name=name,
            version=int(number),
            kind=kind,
            summary=summary,
            artifacts=digests,
        )
        return StoredReport(document, page, record)

    def file(self, record: ModelAnalysisRecord, name: str = "report.html") -> bytes:
        """One stored file of an analysis, verified against its digest."""
        if name not in record.artifacts:
            raise ValidationError(
                f"analysis {record.id[:8]} has no file {name!r}; it has {', '.join(record.artifacts)}", field="file"
            )
        return self.artifacts.get_bytes(record.artifacts[name], name=name)
