"""Training specs: what to train, on which labels and features, how to split and what to measure."""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from keel._tables import read_table, timestamp_column
from keel.errors import ValidationError
from keel.features._definitions import Definition, check_name
from keel.features._refs import FeatureRef

if TYPE_CHECKING:
    import pandas as pd

TASKS = ("classification", "regression")
CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "brier")
REGRESSION_METRICS = ("mae", "rmse", "r2")


@dataclass(frozen=True)
class TimeSplit:
    """Train on rows before a cutoff, validate on rows at or after it (the default for timestamped labels).

    Args:
        cutoff: the first validation time; default: the time that leaves ``validation_fraction`` of the rows
            for validation.
        validation_fraction: share of rows to validate on when ``cutoff`` is not given.
    """

    cutoff: datetime | str | None = None
    validation_fraction: float = 0.2

    def __post_init__(self) -> None:
        if not 0.0 < self.validation_fraction < 1.0:
            raise ValidationError(
                f"TimeSplit: validation_fraction must be between 0 and 1, got {self.validation_fraction}",
                field="validation_fraction",
            )
        if self.cutoff is not None:
            import pandas as pd

            try:
                parsed = pd.Timestamp(self.cutoff)
            except (TypeError, ValueError) as exc:
                raise ValidationError(
                    f"TimeSplit: cutoff {self.cutoff!r} is not a timestamp (give a datetime or an ISO 8601 string)",
                    field="cutoff",
                ) from exc
            if pd.isna(parsed):
                raise ValidationError(f"TimeSplit: cutoff {self.cutoff!r} is not a timestamp", field="cutoff")

    def spec(self) -> dict[str, Any]:
        cutoff = self.cutoff.isoformat() if isinstance(self.cutoff, datetime) else self.cutoff
        return {"kind": "time", "cutoff": cutoff, "validation_fraction": self.validation_fraction}


@dataclass(frozen=True)
class RandomSplit:
    """A seeded random split, stratified by class for classification by default.

    Args:
        validation_fraction: share of rows to validate on.
        seed: the split's random seed (default: the spec's seed).
        stratify: keep class proportions in both parts (classification only).
    """

    validation_fraction: float = 0.2
    seed: int | None = None
    stratify: bool = True

    def __post_init__(self) -> None:
        if not 0.0 < self.validation_fraction < 1.0:
            raise ValidationError(
                f"RandomSplit: validation_fraction must be between 0 and 1, got {self.validation_fraction}",
                field="validation_fraction",
            )

    def spec(self) -> dict[str, Any]:
        return {
            "kind": "random",
            "validation_fraction": self.validation_fraction,
            "seed": self.seed,
            "stratify": self.stratify,
        }


def _describe_model(model: Any) -> dict[str, Any]:
    """A JSON-able description of a model (estimator or factory) for the definition hash."""
    if inspect.isclass(model) or not hasattr(model, "get_params"):
        target = model
        try:
            source = inspect.getsource(target)
        except (OSError, TypeError):
            source = repr(target)
        name = getattr(target, "__qualname__", type(target).__qualname__)
        return {"factory": f"{getattr(target, '__module__', '')}.{name}", "source": source}
    params = {k: repr(v) for k, v in sorted(model.get_params(deep=True).items())}
    return {"estimator": f"{type(model).__module__}.{type(model).__qualname__}", "params": params}


class TrainingSpec(Definition):
    """A reproducible recipe for a model: labels, features, estimator, preprocessing, split and metrics.

    Args:
        name: the spec's name (and the default model name at registration).
        labels: a DataFrame, or a Parquet/CSV path (relative to the project), of entity keys, a timestamp and
            the label column.
        label: the label column.
        features: feature references (``view:feature``, ``view:*``, ``view@3:feature``).
        model: a scikit-learn-compatible estimator (cloned for each run) or a function returning one.
        preprocessing: ``"auto"`` (imputation, scaling, encoding of strings chosen for the estimator),
            ``None`` (none: the estimator takes the raw columns) or a scikit-learn transformer to fit.
        split: :class:`TimeSplit` (the default when labels have timestamps) or :class:`RandomSplit`.
        metrics: metric names (default: every metric of the task).
        task: ``"classification"`` or ``"regression"`` (default: inferred from the label).
        timestamp: the labels' timestamp column (default: their only datetime column).
        param_grid: a hyperparameter grid searched by cross-validation on the training split.
        cv: folds of that search.
        seed: the seed of everything random (split, estimator's ``random_state`` when unset, search).

    Example:
        >>> churn = TrainingSpec(  # doctest: +SKIP
        ...     "churn", labels="data/labels.parquet", label="churned",
        ...     features=["customer_activity:*", "customer_profile:plan"],
        ...     model=HistGradientBoostingClassifier(max_iter=200),
        ... )
    """

    kind: ClassVar[str] = "training_spec"

    def __init__(
        self,
        name: str,
        *,
        labels: pd.DataFrame | str | Path,
        label: str,
        features: Sequence[str],
        model: Any,
        preprocessing: Any = "auto",
        split: TimeSplit | RandomSplit | None = None,
        metrics: Iterable[str] | None = None,
        task: str | None = None,
        timestamp: str | None = None,
        param_grid: Mapping[str, Sequence[Any]] | None = None,
        cv: int = 3,
        seed: int = 0,
        description: str = "",
        tags: Mapping[str, str] | None = None,
    ) -> None:
        import pandas as pd

        check_name(name, "training spec")
        self.name = name
        if not isinstance(labels, pd.DataFrame | str | Path):
            raise ValidationError(
                f"training spec {name!r}: labels must be a DataFrame or a Parquet/CSV path, "
                f"got {type(labels).__name__}",
                field="labels",
            )
        self.labels = labels
        if not isinstance(label, str) or not label:
            raise ValidationError(f"training spec {name!r}: label must be the label column's name", field="label")
        self.label = label
        refs = [features] if isinstance(features, str) else list(features)
        if not refs:
            raise ValidationError(f"training spec {name!r}: features lists no feature references", field="features")
        for ref in refs:
            FeatureRef.parse(ref)
        self.features = refs
        if model is None or not (callable(model) or hasattr(model, "fit")):
            raise ValidationError(
                f"training spec {name!r}: model must be a scikit-learn-compatible estimator or a function returning "
                f"one, got {model!r}",
                field="model",
            )
        self.model = model
        if not (preprocessing in ("auto", None) or hasattr(preprocessing, "fit_transform")):
            raise ValidationError(
                f"training spec {name!r}: preprocessing must be 'auto', None or a scikit-learn transformer",
                field="preprocessing",
            )
        self.preprocessing = preprocessing
        if split is not None and not isinstance(split, TimeSplit | RandomSplit):
            raise ValidationError(
                f"training spec {name!r}: split must be TimeSplit(...) or RandomSplit(...)", field="split"
            )
        self.split = split
        if task is not None and task not in TASKS:
            raise ValidationError(
                f"training spec {name!r}: task must be one of {', '.join(TASKS)}, got {task!r}", field="task"
            )
        self.task = task
        self.metrics = list(metrics) if metrics is not None else None
        if self.metrics is not None:
            known = set(CLASSIFICATION_METRICS) | set(REGRESSION_METRICS)
            unknown = [m for m in self.metrics if m not in known]
            if unknown:
                raise ValidationError(
                    f"training spec {name!r}: unknown metric(s) {unknown}; known: {', '.join(sorted(known))}",
                    field="metrics",
                )
        self.timestamp = timestamp
        self.param_grid = dict(param_grid) if param_grid else None
        if not isinstance(cv, int) or cv < 2:
            raise ValidationError(f"training spec {name!r}: cv must be an integer of at least 2", field="cv")
        self.cv = cv
        if not isinstance(seed, int):
            raise ValidationError(f"training spec {name!r}: seed must be an integer", field="seed")
        self.seed = seed
        self.description = description
        self.tags = dict(tags or {})

    def build_estimator(self) -> Any:
        """A fresh, unfitted estimator for one run."""
        from sklearn.base import clone

        if hasattr(self.model, "fit") and not inspect.isclass(self.model):
            estimator = clone(self.model)
        else:
            factory: Callable[[], Any] = self.model
            try:
                estimator = factory()
            except Exception as exc:
                raise ValidationError(
                    f"training spec {self.name!r}: the model factory failed: {type(exc).__name__}: {exc}",
                    field="model",
                ) from exc
        if not hasattr(estimator, "fit") or not (hasattr(estimator, "predict")):
            raise ValidationError(
                f"training spec {self.name!r}: the model {estimator!r} is not an estimator (it needs fit and predict)",
                field="model",
            )
        return estimator

    def with_recent_labels(self, window: timedelta, root: Path | None) -> TrainingSpec:
        """A copy of this spec that trains only on the labels of the last ``window`` before the newest label.

        The labels' time column is chosen as training chooses it (``timestamp``, else their only datetime
        column, else ``event_timestamp``/``event_time``/``timestamp``); a path is read relative to ``root``.

        Raises:
            ValidationError: ``window`` is not positive, or the labels have no time column.
        """
        import pandas as pd

        if not isinstance(window, timedelta) or window <= timedelta(0):
            raise ValidationError(
                f"training spec {self.name!r}: labels_window must be a positive duration, got {window!r}",
                field="labels_window",
            )
        labels = load_labels(self, root)
        column = timestamp_column(labels, self.timestamp, what=f"training spec {self.name!r}, labels")
        if column is None:
            raise ValidationError(
                f"training spec {self.name!r}: labels_window needs timestamped labels", field="labels_window"
            )
        # Parsed as the point-in-time join parses entity times: ISO 8601 text or datetimes, naive ones as UTC.
        stamps = pd.to_datetime(labels[column], utc=True, errors="coerce", format="ISO8601")
        recent = copy.copy(self)
        recent.labels = labels[stamps >= stamps.max() - pd.Timedelta(window)].reset_index(drop=True)
        return recent

    def spec(self) -> dict[str, Any]:
        labels = str(self.labels) if not hasattr(self.labels, "columns") else {"dataframe": list(self.labels.columns)}
        preprocessing = (
            self.preprocessing if self.preprocessing in ("auto", None) else _describe_model(self.preprocessing)
        )
        return {
            "name": self.name,
            "labels": labels,
            "label": self.label,
            "features": list(self.features),
            "model": _describe_model(self.model),
            "preprocessing": preprocessing,
            "split": self.split.spec() if self.split is not None else None,
            "metrics": self.metrics,
            "task": self.task,
            "timestamp": self.timestamp,
            "param_grid": {k: [repr(v) for v in vs] for k, vs in (self.param_grid or {}).items()} or None,
            "cv": self.cv,
            "seed": self.seed,
            "description": self.description,
            "tags": dict(sorted(self.tags.items())),
        }

    def __repr__(self) -> str:
        return f"TrainingSpec({self.name!r}, label={self.label!r}, features={self.features})"


def load_labels(spec: TrainingSpec, root: Path | None) -> pd.DataFrame:
    """``spec``'s labels as a DataFrame (a path is read relative to ``root``, the project's folder)."""
    import pandas as pd

    if isinstance(spec.labels, pd.DataFrame):
        return spec.labels
    path = Path(spec.labels)
    if not path.is_absolute() and root is not None:
        path = root / path
    if not path.exists():
        raise ValidationError(f"training spec {spec.name!r}: no labels file at {path}", field="labels")
    try:
        return read_table(path)
    except ValidationError as exc:
        raise ValidationError(f"training spec {spec.name!r}: labels: {exc}", field="labels") from exc
