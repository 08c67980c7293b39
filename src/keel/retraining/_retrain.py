"""Champion/challenger retraining: retrain the champion's spec, compare both on the same later holdout, promote
only a clear winner.

The challenger is the same :class:`~keel.training.TrainingSpec` trained again on its labels as they are now
(labels that arrived since the champion was trained included; ``labels_window`` keeps only the most recent
ones). Its time-later validation rows are the holdout: the champion is scored on exactly those rows, with the
same feature values, so the comparison is fair. The challenger is always registered (and given the
``challenger`` alias); the champion alias moves only if the challenger beats it by ``margin``. Every step is an
audit event in the catalog (``keel monitor history``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from keel.errors import ConflictError, ValidationError
from keel.models._registry import parse_model_ref
from keel.training import primary_metric, worse_by

if TYPE_CHECKING:
    from keel.models._package import ModelPackage
    from keel.project import Project
    from keel.training import TrainingSpec

__all__ = ["RetrainDecision", "retrain"]


@dataclass(frozen=True)
class RetrainDecision:
    """What a retraining decided.

    Attributes:
        model: the model's name.
        alias: the alias competed for (``champion``).
        champion: the version that held it.
        challenger: the version registered from the new run.
        run_id: the new run.
        metric: the metric compared, on the holdout.
        champion_score: the champion's value of ``metric`` on the holdout.
        challenger_score: the challenger's.
        margin: how much better the challenger had to be (relative, like the decay tolerance).
        holdout_rows: rows both were scored on.
        promoted: whether the alias moved to the challenger.
        reason: one sentence saying why.
    """

    model: str
    alias: str
    champion: int
    challenger: int
    run_id: str
    metric: str
    champion_score: float | None
    challenger_score: float | None
    margin: float
    holdout_rows: int
    promoted: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _score(package: ModelPackage, holdout: pd.DataFrame, metric: str) -> float | None:
    from keel.training._metrics import compute_metrics

    y = holdout[package.label].to_numpy()
    scored = package.score(holdout)  # one preparation (and one walk of the trees) for both answers
    value = compute_metrics(package.task, [metric], y, scored.predictions, scored.probabilities, package.classes).get(
        metric
    )
    return None if value is None or not np.isfinite(value) else float(value)


def _recent_labels(project: Project, spec: TrainingSpec, window: timedelta) -> TrainingSpec:
    """``spec`` with only the labels of the last ``window`` (before the newest label)."""
    from keel.training._trainer import _timestamp_column, _utc, load_labels

    labels = load_labels(spec, project.root)
    column = _timestamp_column(labels, spec.timestamp)
    if column is None:
        raise ValidationError(
            f"training spec {spec.name!r}: labels_window needs timestamped labels", field="labels_window"
        )
    stamps = _utc(labels[column])
    kept = labels[stamps >= stamps.max() - pd.Timedelta(window)].reset_index(drop=True)
    recent = copy.copy(spec)
    recent.labels = kept
    return recent


def retrain(
    project: Project,
    ref: str,
    *,
    margin: float = 0.0,
    metric: str | None = None,
    labels_window: timedelta | None = None,
    report_id: str | None = None,
    on_step: Any = None,
) -> RetrainDecision:
    """Retrain the spec of the version ``ref`` names (``churn@champion``) and promote the challenger if it wins.

    Args:
        ref: the champion, by alias (the alias is the one competed for) or by version (then ``champion``).
        margin: the challenger must be better than the champion by more than this share of the champion's
            score (0: any improvement wins; 0.01: at least 1% better).
        metric: the metric compared (default: ROC AUC for classifiers, RMSE for regressors).
        labels_window: train only on labels from the last ``labels_window`` (default: every label).
        report_id: the monitoring report that triggered it, recorded on every audit event.

    Raises:
        KeelError: the retraining failed (recorded as ``retrain_failed`` first).
    """
    if margin < 0:
        raise ValidationError(f"margin must be at least 0, got {margin}", field="margin")
    name, _version, alias = parse_model_ref(ref)
    alias = alias if alias not in (None, "latest") else "champion"
    champion = project.models.get(ref)
    champion_run = project.models.run_of(f"{name}:{champion.version}")
    catalog = project.catalog

    def event(kind: str, message: str, version: int | None = None, **details: Any) -> None:
        catalog.add_monitoring_event(
            name=name, kind=kind, version=version, report_id=report_id, message=message, details=details
        )

    event(
        "retrain_started",
        f"retraining spec {champion_run.spec!r} to challenge v{champion.version} ({alias})",
        champion.version,
        spec=champion_run.spec,
        labels_window=str(labels_window) if labels_window else None,
    )
    try:
        spec = project.training_spec(champion_run.spec)
        if labels_window is not None:
            spec = _recent_labels(project, spec, labels_window)
        run = project.train(spec, on_step=on_step)
        challenger = project.models.register(
            run, name=name, tags={"trigger": "retrain", "report": report_id, "challenges": str(champion.version)}
        )
        project.models.set_alias(name, "challenger", challenger.version, reason="retrained")
    except Exception as exc:
        event("retrain_failed", f"retraining failed: {type(exc).__name__}: {exc}", champion.version)
        raise

    holdout = run.holdout if run.holdout is not None else pd.DataFrame()
    package = project.models.load(f"{name}:{champion.version}")
    chosen = metric or primary_metric(run.package.task, run.metrics)
    missing = [c for c in package.schema.names if c not in holdout.columns]
    if missing or holdout.empty:
        champion_score = None
        why = (
            f"the champion's inputs {', '.join(missing)} are not in the new training set"
            if missing
            else "the new run has no holdout rows"
        )
    else:
        champion_score = _score(package, holdout, chosen)
        why = ""
    challenger_score = _score(run.package, holdout, chosen) if not holdout.empty else None
    event(
        "compared",
        f"on {len(holdout):,} holdout rows, {chosen}: challenger v{challenger.version} "
        f"{_fmt(challenger_score)} vs champion v{champion.version} {_fmt(champion_score)}",
        challenger.version,
        metric=chosen,
        challenger=challenger_score,
        champion=champion_score,
        holdout_rows=len(holdout),
        margin=margin,
    )
    if challenger_score is None:
        promoted, reason = False, f"the challenger's {chosen} is undefined on the holdout; the champion stays"
    elif champion_score is None:
        promoted, reason = False, f"the champion could not be scored ({why or chosen + ' undefined'}); it stays"
    else:
        better = -worse_by(chosen, champion_score, challenger_score)
        if better > margin:
            promoted = True
            reason = (
                f"challenger v{challenger.version} wins on {chosen}: {challenger_score:.4f} vs {champion_score:.4f} "
                f"({better:+.1%}, margin {margin:.1%})"
            )
        else:
            promoted = False
            reason = (
                f"challenger v{challenger.version} does not win by the margin on {chosen}: {challenger_score:.4f} vs "
                f"{champion_score:.4f} ({better:+.1%}, margin {margin:.1%}); the champion stays"
            )
    if promoted:
        try:
            catalog.set_alias(name, alias, challenger.version, reason=reason, expect=champion.version)
        except ConflictError as exc:  # someone moved the alias meanwhile: theirs stands
            promoted, reason = False, f"not promoted: {exc}"
    event("promoted" if promoted else "kept", reason, challenger.version if promoted else champion.version)
    return RetrainDecision(
        model=name,
        alias=alias,
        champion=champion.version,
        challenger=challenger.version,
        run_id=run.id,
        metric=chosen,
        champion_score=champion_score,
        challenger_score=challenger_score,
        margin=margin,
        holdout_rows=len(holdout),
        promoted=promoted,
        reason=reason,
    )


def _fmt(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.4f}"
