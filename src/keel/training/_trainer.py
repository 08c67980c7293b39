"""One training run: build the set point in time, split, fit on the training part, evaluate, package, record."""

from __future__ import annotations

import time
import uuid
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from keel.errors import KeelError, TrainingError, ValidationError
from keel.models import InputSchema, ModelPackage
from keel.models._serialization import serialize
from keel.profiles._reference import reference_profile
from keel.training._lineage import frame_digest, git_commit, json_safe, library_versions
from keel.training._metrics import compute_metrics, default_metrics
from keel.training._preprocessing import auto_preprocessor
from keel.training._spec import RandomSplit, TimeSplit, TrainingSpec, load_labels

if TYPE_CHECKING:
    import pandas as pd

    from keel.artifacts import ArtifactStore
    from keel.catalog import Catalog, RunRecord

BuildTrainingSet = Callable[..., "pd.DataFrame"]


@dataclass(frozen=True)
class TrainingRun:
    """A finished run: its catalog record and the package it produced.

    Attributes:
        record: the run as recorded (id, params, metrics, lineage, package digest ...).
        package: the fitted model package.
        train_rows: rows fitted on.
        validation_rows: rows evaluated on.
        holdout: the validation rows themselves (label rows with their features), for comparing models on
            exactly the rows this run was judged on; in memory only, not stored.
    """

    record: RunRecord
    package: ModelPackage
    train_rows: int
    validation_rows: int
    holdout: pd.DataFrame | None = field(default=None, repr=False, compare=False)

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def metrics(self) -> dict[str, Any]:
        return self.record.metrics

    def __repr__(self) -> str:
        shown = {k: round(v, 4) for k, v in self.metrics.items() if isinstance(v, float)}
        return f"TrainingRun({self.id[:8]}, spec={self.record.spec!r}, metrics={shown})"


def infer_task(y: pd.Series) -> str:
    """Classification for booleans, strings and integers with few distinct values; regression otherwise."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(y) or not pd.api.types.is_numeric_dtype(y):
        return "classification"
    if pd.api.types.is_integer_dtype(y) and y.nunique() <= 20:
        return "classification"
    return "regression"


def _task(spec: TrainingSpec, estimator: Any, y: pd.Series) -> str:
    """The spec's task, else the estimator's kind (classifier, regressor), else what the label looks like.

    Raises:
        ValidationError: the spec's task contradicts the estimator's kind.
    """
    from sklearn.base import is_classifier, is_regressor

    kind: str | None
    try:
        with warnings.catch_warnings():  # an estimator without scikit-learn's tags: its kind is unknown
            warnings.simplefilter("ignore")
            kind = "classification" if is_classifier(estimator) else "regression" if is_regressor(estimator) else None
    except Exception:
        kind = None
    if spec.task is not None and kind is not None and spec.task != kind:
        raise ValidationError(
            f"training spec {spec.name!r}: task is {spec.task!r} but the model "
            f"{type(estimator).__name__} is a {'classifier' if kind == 'classification' else 'regressor'}",
            field="task",
        )
    return spec.task or kind or infer_task(y)


def keel_dtype(col: pd.Series) -> str:
    """The Keel dtype of a retrieved feature column."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(col):
        return "bool"
    if pd.api.types.is_integer_dtype(col):
        return "int64"
    if pd.api.types.is_float_dtype(col):
        return "float64"
    if pd.api.types.is_datetime64_any_dtype(col):
        return "timestamp"
    sample = col.dropna()
    if len(sample) and isinstance(sample.iloc[0], list | tuple | np.ndarray):
        return "list[float64]"
    return "string"


def split_rows(
    spec: TrainingSpec, frame: pd.DataFrame, timestamps: pd.Series | None, y: np.ndarray, task: str
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Positions of the training and validation rows, and a description of the split."""
    import pandas as pd

    split = spec.split
    if split is None:
        split = TimeSplit() if timestamps is not None else RandomSplit()
    n = len(frame)
    if isinstance(split, TimeSplit):
        if timestamps is None:
            raise ValidationError(
                f"training spec {spec.name!r}: a time split needs timestamped labels; use RandomSplit()", field="split"
            )
        ts = _utc(timestamps)
        if split.cutoff is not None:
            cutoff = pd.Timestamp(split.cutoff)
            cutoff = cutoff.tz_localize("UTC") if cutoff.tzinfo is None else cutoff.tz_convert("UTC")
        else:
            cutoff = ts.sort_values().iloc[min(n - 1, int(n * (1 - split.validation_fraction)))]
        valid = (ts >= cutoff).to_numpy()
        described: dict[str, Any] = {"kind": "time", "cutoff": cutoff.isoformat()}
    else:
        seed = split.seed if split.seed is not None else spec.seed
        stratify = task == "classification" and split.stratify
        rng = np.random.default_rng(seed)
        valid = np.zeros(n, dtype=bool)
        if stratify:
            for cls in np.unique(y):
                idx = np.flatnonzero(y == cls)
                take = round(len(idx) * split.validation_fraction)
                valid[rng.permutation(idx)[:take]] = True
        else:
            valid[rng.permutation(n)[: round(n * split.validation_fraction)]] = True
        described = {
            "kind": "random",
            "validation_fraction": split.validation_fraction,
            "seed": seed,
            "stratify": stratify,
        }
    train_idx, valid_idx = np.flatnonzero(~valid), np.flatnonzero(valid)
    if len(train_idx) == 0 or len(valid_idx) == 0:
        raise ValidationError(
            f"training spec {spec.name!r}: the split leaves {len(train_idx)} training and {len(valid_idx)} "
            "validation rows; both need at least one (move the cutoff or change the fraction)",
            field="split",
        )
    return train_idx, valid_idx, described


def train(
    spec: TrainingSpec,
    *,
    root: Path | None,
    build_training_set: BuildTrainingSet,
    feature_version_digest: Callable[[str, int], str],
    catalog: Catalog,
    artifacts: ArtifactStore,
    on_step: Callable[[str], None] | None = None,
    mirror: Callable[[RunRecord, bytes | None, str | None], None] | None = None,
    package_format: str = "keel",
    trusted_types: Sequence[str] = (),
) -> TrainingRun:
    """Run ``spec`` once and record it; see :meth:`keel.Project.train`."""
    step = on_step or (lambda _name: None)
    started = time.perf_counter()
    step("loading labels")
    labels = load_labels(spec, root)
    if spec.label not in labels.columns:
        raise ValidationError(
            f"training spec {spec.name!r}: labels have no column {spec.label!r}; they have: "
            f"{', '.join(map(str, labels.columns))}",
            field=spec.label,
        )
    labels = labels[labels[spec.label].notna()].reset_index(drop=True)
    if labels.empty:
        raise ValidationError(f"training spec {spec.name!r}: no labelled rows (empty, or every label is null)")
    estimator = spec.build_estimator()
    task = _task(spec, estimator, labels[spec.label])
    if task == "classification" and labels[spec.label].nunique() < 2:
        raise ValidationError(
            f"training spec {spec.name!r}: label {spec.label!r} has a single class "
            f"({labels[spec.label].iloc[0]!r}); a classifier needs at least two",
            field=spec.label,
        )
    metric_names = _metric_names(spec, task)
    _seed(estimator, spec.seed)
    step("building the training set")
    frame = build_training_set(labels, spec.features, timestamp=spec.timestamp)
    built = time.perf_counter()
    versions: dict[str, int] = dict(frame.attrs.get("keel_feature_versions", {}))
    feature_cols = [c for c in frame.columns if c not in labels.columns]
    dtypes = {c: keel_dtype(frame[c]) for c in feature_cols}
    y_all = labels[spec.label].to_numpy()
    ts_col = _timestamp_column(labels, spec.timestamp)
    train_idx, valid_idx, split_desc = split_rows(
        spec, frame, labels[ts_col] if ts_col is not None else None, y_all, task
    )
    features = _resolved_features(spec.features, versions, catalog)

    run_id = uuid.uuid4().hex
    params: dict[str, Any] = {
        "task": task,
        "split": split_desc,
        "seed": spec.seed,
        "estimator": _estimator_params(estimator),
        "preprocessing": _describe_preprocessing(spec),
    }
    lineage: dict[str, Any] = {
        "feature_versions": versions,
        "feature_digests": {v: feature_version_digest(v, n) for v, n in versions.items()},
        "feature_refs": [*spec.features],
        "features": features,
        "training_set_digest": frame_digest(frame[[*feature_cols, spec.label]]),
        "rows": {"train": len(train_idx), "validation": len(valid_idx)},
        "git": git_commit(root) if root is not None else None,
        "libraries": library_versions(estimator),
    }
    catalog.fail_dead_runs()  # the runs of processes killed before they could end them say so from now on
    catalog.start_run(run_id=run_id, spec=spec.name, spec_snapshot=json_safe(spec.spec()), params=json_safe(params))
    durations: dict[str, float] = {"build": built - started}
    try:
        schema = InputSchema.infer(frame.iloc[train_idx], dtypes)
        shell = ModelPackage(spec.name, task, spec.label, estimator, None, schema, [])
        x_train = shell.prepare(frame.iloc[train_idx])
        x_valid = shell.prepare(frame.iloc[valid_idx])
        y_train, y_valid = y_all[train_idx], y_all[valid_idx]
        if task == "classification" and len(np.unique(y_train)) < 2:
            raise ValidationError(
                f"training spec {spec.name!r}: the training split holds a single class; move the split",
                field="split",
            )
        step("fitting")
        fit_started = time.perf_counter()
        preprocessor = _preprocessor(spec, dtypes, estimator)
        with _thread_limit(len(train_idx)):
            if spec.param_grid:
                preprocessor, estimator, params["search"] = _search(
                    spec, estimator, preprocessor, x_train, y_train, task
                )
                params["estimator"] = _estimator_params(estimator)
            else:
                m_train = preprocessor.fit_transform(x_train) if preprocessor is not None else x_train
                estimator.fit(m_train, y_train)
        m_valid = preprocessor.transform(x_valid) if preprocessor is not None else x_valid
        durations["fit"] = time.perf_counter() - fit_started
        step("evaluating")
        eval_started = time.perf_counter()
        predictions = np.asarray(estimator.predict(m_valid))
        classes = [c.item() if hasattr(c, "item") else c for c in getattr(estimator, "classes_", [])] or None
        proba = (
            np.asarray(estimator.predict_proba(m_valid))
            if task == "classification" and hasattr(estimator, "predict_proba")
            else None
        )
        metrics = compute_metrics(task, metric_names, y_valid, predictions, proba, classes)
        durations["evaluate"] = time.perf_counter() - eval_started
        package = ModelPackage(
            name=spec.name,
            task=task,
            label=spec.label,
            estimator=estimator,
            preprocessor=preprocessor,
            schema=schema,
            feature_refs=list(features),
            classes=classes,
            metadata={"run_id": run_id, "metrics": metrics, "feature_versions": versions},
        )
        step("profiling the training data")
        profile_started = time.perf_counter()
        profile = reference_profile(package, frame.iloc[train_idx], predictions, proba)
        lineage["reference_profile"] = {
            "digest": artifacts.put_bytes(profile.to_bytes()),
            "rows": len(train_idx),
            "features": "training split",
            "predictions": "validation split",
        }
        durations["profile"] = time.perf_counter() - profile_started
        step("storing the package")
        package_started = time.perf_counter()
        serialized = serialize(package, prefer=package_format, trusted_types=trusted_types)
        blob, fmt = serialized.blob, serialized.format
        lineage["package_format"] = fmt
        lineage["package_format_reason"] = serialized.reason  # why not the preferred format (None: it is)
        digest = artifacts.put_bytes(blob)
        durations["package"] = time.perf_counter() - package_started
        durations["total"] = time.perf_counter() - started
        record = catalog.finish_run(
            run_id,
            status="finished",
            params=json_safe(params),
            metrics=json_safe(metrics),
            durations=durations,
            lineage=json_safe(lineage),
            package_digest=digest,
            package_format=fmt,
        )
    except BaseException as exc:  # recorded as failed whatever stopped it (an interrupt too), then re-raised
        durations["total"] = time.perf_counter() - started
        message = f"{type(exc).__name__}: {exc}"
        failed = catalog.finish_run(
            run_id,
            status="failed",
            params=json_safe(params),
            metrics={},
            durations=durations,
            lineage=json_safe(lineage),
            error=message,
        )
        _mirror(mirror, failed, None, None)
        if isinstance(exc, KeelError) or not isinstance(exc, Exception):
            raise
        raise TrainingError(f"training spec {spec.name!r}: run {run_id} failed: {message}") from exc
    _mirror(mirror, record, blob, fmt)
    holdout = frame.iloc[valid_idx].reset_index(drop=True)
    return TrainingRun(record, package, len(train_idx), len(valid_idx), holdout)


#: Below this many training rows, native thread pools (OpenMP, BLAS) are limited to one thread.
SMALL_FIT_ROWS = 50_000


def _thread_limit(rows: int) -> Any:
    """One native thread for small fits: on shared machines, oversubscribed OpenMP threads make a fit of a few
    thousand rows 10-30x slower, and one thread gives bit-identical models."""
    from contextlib import nullcontext

    if rows >= SMALL_FIT_ROWS:
        return nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


def _mirror(
    mirror: Callable[[RunRecord, bytes | None, str | None], None] | None,
    record: RunRecord,
    blob: bytes | None,
    fmt: str | None,
) -> None:
    """Copy the run elsewhere (MLflow); a failure there warns and never loses the run recorded here."""
    if mirror is None:
        return
    try:
        mirror(record, blob, fmt)
    except KeelError as exc:
        warnings.warn(f"run {record.id} was recorded, but mirroring it failed: {exc}", RuntimeWarning, stacklevel=3)


def _metric_names(spec: TrainingSpec, task: str) -> list[str]:
    """The metrics to compute: the spec's (each must suit the task) or every metric of the task."""
    allowed = default_metrics(task)
    if spec.metrics is None:
        return allowed
    wrong = [m for m in spec.metrics if m not in allowed]
    if wrong:
        raise ValidationError(
            f"training spec {spec.name!r}: metric(s) {', '.join(wrong)} do not apply to a {task} task; "
            f"its metrics are: {', '.join(allowed)}",
            field="metrics",
        )
    return list(dict.fromkeys(spec.metrics))


def _seed(estimator: Any, seed: int) -> None:
    """Give every unset ``random_state`` of ``estimator`` (nested ones included) the spec's seed."""
    try:
        current = estimator.get_params(deep=True)
    except Exception:  # not a scikit-learn-style estimator: nothing to seed
        return
    unset = {k: seed for k, v in current.items() if (k == "random_state" or k.endswith("__random_state")) and v is None}
    if unset:
        estimator.set_params(**unset)


def _estimator_params(estimator: Any) -> dict[str, Any]:
    """The estimator's class and its ``get_params()`` (nested estimators' params included)."""
    try:
        given = dict(estimator.get_params(deep=True))
    except Exception:
        given = {}
    return {"class": f"{type(estimator).__module__}.{type(estimator).__qualname__}", **given}


def _describe_preprocessing(spec: TrainingSpec) -> Any:
    if spec.preprocessing in ("auto", None):
        return spec.preprocessing
    return _estimator_params(spec.preprocessing)


def _resolved_features(refs: list[str], versions: dict[str, int], catalog: Catalog) -> list[str]:
    """The exact features trained on, each pinned to the version used (``view@3:feature``; wildcards expanded)."""
    from keel.features import FeatureRef

    out: list[str] = []
    for ref in refs:
        parsed = FeatureRef.parse(ref)
        version = versions.get(parsed.view, parsed.version)
        if parsed.feature == "*" and version is not None:
            names = list(catalog.feature_version(parsed.view, version).columns.get("features", {}))
        else:
            names = [parsed.feature]
        for name in names:
            pinned = str(FeatureRef(parsed.view, name, version))
            if pinned not in out:
                out.append(pinned)
    return out


def _utc(timestamps: pd.Series) -> pd.Series:
    """Label timestamps as UTC, parsed exactly as the point-in-time join parses them."""
    from keel.offline import NaiveTimestampWarning
    from keel.offline._retrieval import to_utc

    with warnings.catch_warnings():  # the join has warned about naive timestamps already
        warnings.simplefilter("ignore", NaiveTimestampWarning)
        return to_utc(timestamps, name=str(timestamps.name), allow_nulls=True)


def _timestamp_column(labels: pd.DataFrame, given: str | None) -> str | None:
    """The labels' timestamp column, chosen as the point-in-time join chooses it (``None``: there is none)."""
    from keel.offline._retrieval import resolve_entity_timestamp

    try:
        return resolve_entity_timestamp(labels, given)
    except ValidationError:
        return None


def _preprocessor(spec: TrainingSpec, dtypes: dict[str, str], estimator: Any) -> Any:
    from sklearn.base import clone

    if spec.preprocessing is None:
        return None
    if spec.preprocessing == "auto":
        return auto_preprocessor(dtypes, estimator)
    return clone(spec.preprocessing)


def _search(
    spec: TrainingSpec, estimator: Any, preprocessor: Any, x: pd.DataFrame, y: np.ndarray, task: str
) -> tuple[Any, Any, dict[str, Any]]:
    """Grid search by cross-validation on the training split; returns the refitted preprocessor and estimator.

    The preprocessing is part of what each fold fits, so a fold's validation rows never inform the
    preprocessing it is scored with.
    """
    from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold
    from sklearn.pipeline import Pipeline

    folds = StratifiedKFold(spec.cv) if task == "classification" else KFold(spec.cv)
    grid = {k: list(v) for k, v in (spec.param_grid or {}).items()}
    model: Any = estimator
    prefix = ""
    if preprocessor is not None:
        model = Pipeline([("preprocess", preprocessor), ("model", estimator)])
        prefix = "model__"
    search = GridSearchCV(model, {f"{prefix}{k}": v for k, v in grid.items()}, cv=folds, refit=True)
    try:
        search.fit(x, y)
    except ValueError as exc:
        if "Invalid parameter" not in str(exc):
            raise
        raise ValidationError(f"training spec {spec.name!r}: param_grid: {exc}", field="param_grid") from exc
    best = search.best_estimator_
    if preprocessor is not None:
        preprocessor, best = best.named_steps["preprocess"], best.named_steps["model"]
    return (
        preprocessor,
        best,
        {
            "best_params": {k.removeprefix(prefix): v for k, v in search.best_params_.items()},
            "best_cv_score": float(search.best_score_),
            "candidates": len(search.cv_results_["params"]),
            "cv": spec.cv,
        },
    )


class Trainer:
    """Runs training specs against one project's stores: what :meth:`keel.Project.train` delegates to.

    Args:
        root: the project folder (labels given as relative paths are read from there).
        catalog: the catalog recording runs.
        artifacts: the artifact store receiving packages and reference profiles.
        build_training_set: ``(labels, features, timestamp=...) -> DataFrame``, the point-in-time join
            (:meth:`keel.offline.OfflineFeatureService.historical_features`).
        feature_version_digest: ``(view, version) -> data digest`` of the ingested versions used.
        mirror: called with each finished run (its record, package bytes and format), e.g. the MLflow mirror.
        package_format: the preferred package format (``keel``, ``skops`` or ``joblib``).
        trusted_types: the user's own classes a package may hold and still be stored in a safe format.
    """

    def __init__(
        self,
        *,
        root: Path | None,
        catalog: Catalog,
        artifacts: ArtifactStore,
        build_training_set: BuildTrainingSet,
        feature_version_digest: Callable[[str, int], str],
        mirror: Callable[[RunRecord, bytes | None, str | None], None] | None = None,
        package_format: str = "keel",
        trusted_types: Sequence[str] = (),
    ) -> None:
        self.root = root
        self.catalog = catalog
        self.artifacts = artifacts
        self.build_training_set = build_training_set
        self.feature_version_digest = feature_version_digest
        self.mirror = mirror
        self.package_format = package_format
        self.trusted_types = tuple(trusted_types)

    def train(self, spec: TrainingSpec, *, on_step: Callable[[str], None] | None = None) -> TrainingRun:
        """Run ``spec`` once and record it (see :func:`train`)."""
        if not isinstance(spec, TrainingSpec):
            raise ValidationError(f"train() takes a TrainingSpec or its name, got {type(spec).__name__}")
        return train(
            spec,
            root=self.root,
            build_training_set=self.build_training_set,
            feature_version_digest=self.feature_version_digest,
            catalog=self.catalog,
            artifacts=self.artifacts,
            on_step=on_step,
            mirror=self.mirror,
            package_format=self.package_format,
            trusted_types=self.trusted_types,
        )
