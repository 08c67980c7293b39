"""Champion/challenger retraining: retrain the champion's spec, compare both on the same later holdout, promote
only a clear winner.

The challenger is the same :class:`~keel.training.TrainingSpec` trained again on its labels as they are now
(labels that arrived since the champion was trained included; ``labels_window`` keeps only the most recent
ones). Its time-later validation rows are the holdout: the champion is scored on exactly those rows, with the
same feature values, so the comparison is fair. The challenger is always registered (and given the
``challenger`` alias); the champion alias moves only if the challenger beats it by ``margin``. Every step is an
audit event in the catalog (``keel monitor history``).

:class:`Retrainer` holds what a retraining touches: the model registry, a function that trains a spec, a
function that finds a spec by name, the catalog's audit trail, and the project's folder (labels files are read
relative to it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
import pandas as pd

from keel.errors import ConflictError, ValidationError
from keel.models import parse_model_ref
from keel.training import primary_metric, worse_by

if TYPE_CHECKING:
    from keel.catalog import ModelVersionRecord, MonitoringCatalog
    from keel.models import ModelPackage, ModelRegistry
    from keel.training import TrainingRun, TrainingSpec

__all__ = ["RetrainDecision", "Retrainer", "Train"]


class Train(Protocol):
    """Trains a spec once and records the run: ``project.train``, or a trainer's ``train``."""

    def __call__(self, spec: TrainingSpec, /, *, on_step: Callable[[str], None] | None = None) -> TrainingRun: ...


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


@dataclass(frozen=True)
class _Contest:
    """The champion and the challenger scored on the challenger's holdout (``None``: undefined there)."""

    metric: str
    holdout_rows: int
    champion_score: float | None
    challenger_score: float | None
    why_unscored: str = ""


def _score(package: ModelPackage, holdout: pd.DataFrame, metric: str) -> float | None:
    from keel.training._metrics import compute_metrics

    y = holdout[package.label].to_numpy()
    scored = package.score(holdout)  # one preparation (and one walk of the trees) for both answers
    value = compute_metrics(package.task, [metric], y, scored.predictions, scored.probabilities, package.classes).get(
        metric
    )
    return None if value is None or not np.isfinite(value) else float(value)


def _score_text(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.4f}"


def _contest(champion: ModelPackage, run: TrainingRun, metric: str | None) -> _Contest:
    """Score both packages on the new run's holdout, with ``metric`` (default: the task's primary metric)."""
    holdout = run.holdout if run.holdout is not None else pd.DataFrame()
    chosen = metric or primary_metric(run.package.task, run.metrics)
    missing = [c for c in champion.schema.names if c not in holdout.columns]
    challenger_score = _score(run.package, holdout, chosen) if not holdout.empty else None
    if missing or holdout.empty:
        why = (
            f"the champion's inputs {', '.join(missing)} are not in the new training set"
            if missing
            else "the new run has no holdout rows"
        )
        return _Contest(chosen, len(holdout), None, challenger_score, why)
    return _Contest(chosen, len(holdout), _score(champion, holdout, chosen), challenger_score)


def _worse_segments(champion: ModelPackage, run: TrainingRun, segments: Sequence[str], metric: str) -> list[str]:
    """The declared segments of the new run's holdout where the challenger is significantly worse than the champion
    (paired bootstrap, Holm-corrected), each as the sentence the audit record keeps."""
    from keel.analysis._compare import compare_models
    from keel.analysis._segments import CLASSIFICATION_METRICS, REGRESSION_METRICS, default_metric, segments_of

    holdout = run.holdout if run.holdout is not None else pd.DataFrame()
    if holdout.empty:
        return []
    package = run.package
    y = holdout[package.label].to_numpy()
    a, b = champion.score(holdout), package.score(holdout)
    task: Literal["classification", "regression"] = (
        "classification" if package.task == "classification" else "regression"
    )
    known = CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS
    chosen = metric if metric in known else default_metric(task)
    comparison = compare_models(
        y,
        a.predictions,
        b.predictions,
        proba_a=a.probabilities,
        proba_b=b.probabilities,
        task=task,
        segments=segments_of(holdout, list(segments)),
        metric=chosen,
        classes=package.classes,
    )
    return list(comparison.gate_reasons())


def _judge(contest: _Contest, challenger: int, margin: float) -> tuple[bool, str]:
    """Whether the challenger wins by more than ``margin``, and the sentence that says why."""
    metric, champion_score, challenger_score = contest.metric, contest.champion_score, contest.challenger_score
    if challenger_score is None:
        return False, f"the challenger's {metric} is undefined on the holdout; the champion stays"
    if champion_score is None:
        return False, f"the champion could not be scored ({contest.why_unscored or metric + ' undefined'}); it stays"
    better = -worse_by(metric, champion_score, challenger_score)
    scores = f"{challenger_score:.4f} vs {champion_score:.4f} ({better:+.1%}, margin {margin:.1%})"
    if better > margin:
        return True, f"challenger v{challenger} wins on {metric}: {scores}"
    return False, f"challenger v{challenger} does not win by the margin on {metric}: {scores}; the champion stays"


class Retrainer:
    """Retrains a model's spec, compares the challenger with the champion, and promotes a clear winner.

    Args:
        registry: the model registry (versions, runs, packages, aliases).
        train: trains a spec and records the run (``project.train``).
        specs: the training spec of a name (``project.training_spec``).
        events: where the audit events are recorded (the catalog).
        root: the project's folder; a spec's labels path is read relative to it (``labels_window``).
        data_check: what is wrong with the data a spec would be trained on (the failed error-level expectations
            of the feature versions it reads), one sentence each; any answer refuses the retraining.

    Example:
        >>> retrainer = Retrainer(registry, project.train, project.training_spec, catalog, root)  # doctest: +SKIP
        >>> retrainer.retrain("churn@champion", margin=0.01).promoted  # doctest: +SKIP
        True
    """

    def __init__(
        self,
        registry: ModelRegistry,
        train: Train,
        specs: Callable[[str], TrainingSpec],
        events: MonitoringCatalog,
        root: str | Path | None = None,
        data_check: Callable[[TrainingSpec], list[str]] | None = None,
    ) -> None:
        self.registry = registry
        self.train = train
        self.specs = specs
        self.events = events
        self.root = Path(root) if root is not None else None
        self.data_check = data_check

    def retrain(
        self,
        ref: str,
        *,
        margin: float = 0.0,
        metric: str | None = None,
        labels_window: timedelta | None = None,
        report_id: str | None = None,
        on_step: Callable[[str], None] | None = None,
        segments: Sequence[str] = (),
    ) -> RetrainDecision:
        """Retrain the spec of the version ``ref`` names (``churn@champion``) and promote the challenger if it wins.

        Args:
            ref: the champion, by alias (the alias is the one competed for) or by version (then ``champion``).
            margin: the challenger must be better than the champion by more than this share of the champion's
                score (0: any improvement wins; 0.01: at least 1% better).
            metric: the metric compared (default: ROC AUC for classifiers, RMSE for regressors).
            labels_window: train only on labels from the last ``labels_window`` (default: every label).
            report_id: the monitoring report that triggered it, recorded on every audit event.
            on_step: called with the name of each training step as it starts (progress display).
            segments: declared segments (``plan``, ``age:4``, ``age >= 60 and plan == "basic"``) the challenger must
                not be significantly worse on (paired bootstrap on the holdout, Holm-corrected across segments); a
                winner worse on one is not promoted, with the segment and its evidence in the audit record.

        Raises:
            ValidationError: ``margin`` is negative; or the data the spec reads fails its expectations (recorded
                as ``retrain_refused`` first, with the failures: no model is trained on data known to be bad).
            KeelError: the retraining failed (recorded as ``retrain_failed`` first).
        """
        if margin < 0:
            raise ValidationError(f"margin must be at least 0, got {margin}", field="margin")
        name, _version, alias = parse_model_ref(ref)
        alias = alias if alias not in (None, "latest") else "champion"
        champion = self.registry.get(ref)
        run, challenger = self._challenger(champion, alias, labels_window, report_id, on_step)
        contest = _contest(self.registry.load(f"{name}:{champion.version}"), run, metric)
        self._event(
            champion,
            "compared",
            f"on {contest.holdout_rows:,} holdout rows, {contest.metric}: challenger v{challenger.version} "
            f"{_score_text(contest.challenger_score)} vs champion v{champion.version} "
            f"{_score_text(contest.champion_score)}",
            report_id,
            version=challenger.version,
            metric=contest.metric,
            challenger=contest.challenger_score,
            champion=contest.champion_score,
            holdout_rows=contest.holdout_rows,
            margin=margin,
        )
        promoted, reason = _judge(contest, challenger.version, margin)
        if promoted and segments:
            worse = _worse_segments(self.registry.load(f"{name}:{champion.version}"), run, segments, contest.metric)
            if worse:
                promoted = False
                reason = f"{reason}; not promoted: it is significantly worse on a declared segment: " + "; ".join(worse)
        if promoted:
            try:
                self.registry.set_alias(name, alias, challenger.version, reason=reason, expect=champion.version)
            except ConflictError as exc:  # someone moved the alias meanwhile: theirs stands
                promoted, reason = False, f"not promoted: {exc}"
        winner = challenger.version if promoted else champion.version
        self._event(champion, "promoted" if promoted else "kept", reason, report_id, version=winner)
        return RetrainDecision(
            model=name,
            alias=alias,
            champion=champion.version,
            challenger=challenger.version,
            run_id=run.id,
            metric=contest.metric,
            champion_score=contest.champion_score,
            challenger_score=contest.challenger_score,
            margin=margin,
            holdout_rows=contest.holdout_rows,
            promoted=promoted,
            reason=reason,
        )

    def _challenger(
        self,
        champion: ModelVersionRecord,
        alias: str,
        labels_window: timedelta | None,
        report_id: str | None,
        on_step: Callable[[str], None] | None,
    ) -> tuple[TrainingRun, ModelVersionRecord]:
        """Train the champion's spec again, register the run and give it the ``challenger`` alias; a failure is
        recorded as ``retrain_failed`` and raised."""
        name = champion.name
        spec_name = self.registry.run_of(f"{name}:{champion.version}").spec
        self._event(
            champion,
            "retrain_started",
            f"retraining spec {spec_name!r} to challenge v{champion.version} ({alias})",
            report_id,
            spec=spec_name,
            labels_window=str(labels_window) if labels_window else None,
        )
        try:
            spec = self.specs(spec_name)
            if labels_window is not None:
                spec = spec.with_recent_labels(labels_window, self.root)
        except Exception as exc:
            self._event(champion, "retrain_failed", f"retraining failed: {type(exc).__name__}: {exc}", report_id)
            raise
        problems = self.data_check(spec) if self.data_check is not None else []
        if problems:
            reason = "the data fails its expectations: " + "; ".join(problems)
            self._event(champion, "retrain_refused", reason, report_id, problems=problems)
            raise ValidationError(f"retraining of {name} refused: {reason}", field=spec_name)
        try:
            run = self.train(spec, on_step=on_step)
            tags = {"trigger": "retrain", "report": report_id, "challenges": str(champion.version)}
            challenger = self.registry.register(run, name=name, tags=tags)
            self.registry.set_alias(name, "challenger", challenger.version, reason="retrained")
        except Exception as exc:
            self._event(champion, "retrain_failed", f"retraining failed: {type(exc).__name__}: {exc}", report_id)
            raise
        return run, challenger

    def _event(
        self,
        champion: ModelVersionRecord,
        kind: str,
        message: str,
        report_id: str | None,
        /,
        *,
        version: int | None = None,
        **details: Any,
    ) -> None:
        """One audit event of the champion's model (about ``version``, by default the champion)."""
        self.events.add_monitoring_event(
            name=champion.name,
            kind=kind,
            version=champion.version if version is None else version,
            report_id=report_id,
            message=message,
            details=details,
        )
