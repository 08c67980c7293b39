"""Importance and selection of a model version's features, as reports: the model's scoring function and score chosen
for its task, every method run, the figures and the page.

- **Importance** (:func:`importance_report`): permutation importance on held-out rows (the default ranking) with
  intervals, correlated features grouped and measured together as well as alone, mutual information, impurity
  importance where the model has it (labelled as biased toward features with many values), and SHAP values when
  the ``shap`` extra is installed — global, and for the rows asked for.
- **Selection** (:func:`selection_report`): ranks across methods and bootstrap resamples of the holdout, a noise probe
  each feature must beat, the proposed subset and its stability.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from keel.analysis import _plots
from keel.analysis._importance import (
    ShapNotInstalledError,
    correlated_groups,
    impurity_importance,
    mutual_information,
    permutation_importance,
    shap_importance,
)
from keel.analysis._page import Figure, Page, Section, Table
from keel.analysis._selection import SelectionResult, stable_selection

if TYPE_CHECKING:
    from keel.models import ModelPackage

__all__ = ["Explained", "Scorer", "importance_report", "scorer", "selection_report"]


@dataclass(frozen=True)
class Scorer:
    """How a model is scored for importance: its prediction function and the metric on it."""

    predict: Callable[[pd.DataFrame], np.ndarray]
    score: Callable[[Any, Any], float]
    greater_is_better: bool
    metric: str


def scorer(package: ModelPackage) -> Scorer:
    """ROC AUC of the positive class's probability for a binary classifier, accuracy of the labels for another
    classifier, mean absolute error for a regressor."""
    from sklearn.metrics import accuracy_score, mean_absolute_error, roc_auc_score

    if package.task == "classification" and package.has_probabilities and len(package.classes or []) == 2:
        return Scorer(lambda frame: package.predict_proba(frame)[:, 1], roc_auc_score, True, "roc_auc")
    if package.task == "classification":
        return Scorer(package.predict, accuracy_score, True, "accuracy")
    return Scorer(package.predict, mean_absolute_error, False, "mae")


@dataclass(frozen=True)
class Explained:
    """A report: its summary (kept in the catalog), its JSON document, its page and figures."""

    summary: dict[str, Any]
    document: dict[str, Any]
    page: Page
    figures: dict[str, bytes]


def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "—"
    x = float(value)
    return f"{x:.{digits}g}" if np.isfinite(x) else str(x)


def _bars(series: pd.Series, title: str, xlabel: str, limit: int = 25) -> bytes:
    top = series.sort_values(ascending=False).head(limit)
    return _plots.bars_with_intervals(
        [str(i) for i in top.index],
        list(top.to_numpy(dtype=float)),
        [None] * len(top),
        [None] * len(top),
        title=title,
        xlabel=xlabel,
    )


def _estimator_names(package: ModelPackage) -> list[str]:
    """The columns the estimator was fitted on: the preprocessor's output names, else the model's inputs."""
    if package.preprocessor is not None:
        try:
            return [str(n) for n in package.preprocessor.get_feature_names_out()]
        except (AttributeError, ValueError):
            return []
    return list(package.schema.names)


def importance_report(
    package: ModelPackage,
    model: str,
    X: pd.DataFrame,
    y: np.ndarray,
    *,
    data: str,
    n_repeats: int = 5,
    seed: int = 0,
    group_threshold: float = 0.9,
    shap: bool = True,
    shap_rows: int = 500,
    explain: Sequence[int] = (),
) -> Explained:
    """Every importance of ``package``'s features on ``X`` (its inputs, held-out rows) and ``y``."""
    s = scorer(package)
    groups = {" + ".join(g): g for g in correlated_groups(X, threshold=group_threshold, seed=seed)}
    result = permutation_importance(
        s.predict,
        X,
        y,
        score=s.score,
        greater_is_better=s.greater_is_better,
        n_repeats=n_repeats,
        seed=seed,
        groups=groups or None,
        features=list(X.columns) if groups else None,
    )
    mi = mutual_information(
        X, y, task="classification" if package.task == "classification" else "regression", seed=seed
    )
    names = _estimator_names(package)
    impurity = None
    notes: list[str] = []
    try:
        impurity = impurity_importance(package.estimator, names) if names else None
    except Exception as exc:  # a model whose fitted columns are not known: impurity is optional
        notes.append(f"impurity importance not available: {exc}")
    if impurity is None and not notes:
        notes.append("impurity importance not available: the model has no feature_importances_")
    shap_result = None
    if shap:
        try:
            shap_result = shap_importance(
                package.predict_proba
                if package.task == "classification" and package.has_probabilities
                else package.predict,
                X,
                rows=list(explain),
                max_rows=shap_rows,
                seed=seed,
                output=1 if package.task == "classification" and len(package.classes or []) == 2 else None,
            )
        except ShapNotInstalledError as exc:
            notes.append(str(exc))
    figures = {
        "permutation.png": _plots.bars_with_intervals(
            [f.name for f in result.features[:25]],
            [f.mean for f in result.features[:25]],
            [f.ci_low for f in result.features[:25]],
            [f.ci_high for f in result.features[:25]],
            title=f"permutation importance (drop in {s.metric}, 95% intervals)",
            xlabel=f"drop in {s.metric}",
            reference=0.0,
            flagged=[f.is_group for f in result.features[:25]],
        ),
        "mutual_information.png": _bars(mi, "mutual information with the label", "nats"),
    }
    if impurity is not None:
        figures["impurity.png"] = _bars(impurity, "impurity importance (biased toward many-valued features)", "share")
    if shap_result is not None:
        figures["shap.png"] = _bars(pd.Series(shap_result.to_dict()["importance"]), "mean |SHAP value|", "|SHAP|")
    document = {
        "model": model,
        "data": data,
        "rows": len(X),
        "metric": s.metric,
        "permutation": result.to_dict(),
        "groups": [list(g) for g in groups.values()],
        "mutual_information": {str(k): float(v) for k, v in mi.items()},
        "impurity": None if impurity is None else {str(k): float(v) for k, v in impurity.items()},
        "impurity_note": "mean decrease in impurity on the training data: biased toward features with many values",
        "shap": None if shap_result is None else shap_result.to_dict(),
        "notes": notes,
        "figures": list(figures),
    }
    ranking = [f.name for f in result.features]
    summary = {
        "data": data,
        "rows": len(X),
        "metric": s.metric,
        "ranking": ranking[:20],
        "groups": document["groups"],
        "shap": shap_result is not None,
    }
    table = Table(
        ["feature", "drop in " + s.metric, "95% interval", "mutual information", "impurity", "mean |SHAP|"],
        [
            [
                f.name,
                _num(f.mean),
                f"[{_num(f.ci_low)}, {_num(f.ci_high)}]",
                _num(mi.get(f.name)) if f.name in mi else "",
                _num(impurity.get(f.name)) if impurity is not None and f.name in impurity else "",
                _num(shap_result.importance.get(f.name))
                if shap_result is not None and f.name in shap_result.importance
                else "",
            ]
            for f in result.features
        ],
        flags=["flag" if f.is_group else "" for f in result.features],
        numeric=[1, 3, 4, 5],
    )
    sections = [
        Section(
            "Permutation importance (held-out rows)",
            notes=[
                f"The drop in {s.metric} when a feature's values are shuffled, {n_repeats} times each; groups of "
                f"correlated features (|association| ≥ {group_threshold}) are also shuffled together, highlighted.",
                *notes,
            ],
            tables=[table],
            figures=[Figure(n, n.removesuffix(".png").replace("_", " "), png) for n, png in figures.items()],
        )
    ]
    if shap_result is not None and shap_result.explanations:
        explained = [
            Table(
                ["feature", "value", "SHAP value"],
                [[name, e.data.get(name), _num(v)] for name, v in sorted(e.values.items(), key=lambda kv: -abs(kv[1]))],
                numeric=[2],
            )
            for e in shap_result.explanations
        ]
        sections.append(
            Section(
                "Single predictions (SHAP)",
                notes=[
                    f"row {e.row}: {_num(e.base_value)} (expected) + contributions = {_num(e.output)} "
                    f"({shap_result.output})"
                    for e in shap_result.explanations
                ],
                tables=explained,
            )
        )
    page = Page(
        f"{model}: feature importance", meta=[f"{len(X):,} rows ({data}); metric {s.metric}"], sections=sections
    )
    return Explained(summary, _plain(document), page, figures)


def _plain(value: Any) -> Any:
    """JSON-safe: NaN and infinities as None, NumPy numbers as Python ones."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def selection_report(
    package: ModelPackage,
    model: str,
    X: pd.DataFrame,
    y: np.ndarray,
    *,
    data: str,
    n_resamples: int = 20,
    n_repeats: int = 3,
    threshold: float = 0.8,
    group_threshold: float = 0.9,
    seed: int = 0,
    shap: bool = False,
) -> tuple[SelectionResult, Explained]:
    """Stable selection of ``package``'s features on held-out ``X``, ``y``."""
    s = scorer(package)
    groups = {" + ".join(g): g for g in correlated_groups(X, threshold=group_threshold, seed=seed)}
    methods = ("permutation", "mutual_information", "shap") if shap else ("permutation", "mutual_information")
    result = stable_selection(
        s.predict,
        X,
        y,
        score=s.score,
        task="classification" if package.task == "classification" else "regression",
        greater_is_better=s.greater_is_better,
        methods=methods,
        groups=groups or None,
        n_resamples=n_resamples,
        n_repeats=n_repeats,
        threshold=threshold,
        seed=seed,
    )
    features = list(result.features)
    figure = _plots.bars_with_intervals(
        [f.name for f in features[:30]],
        [f.frequency for f in features[:30]],
        [None] * min(30, len(features)),
        [None] * min(30, len(features)),
        title="selection frequency across resamples (beating the noise probe)",
        xlabel="share of resamples",
        reference=threshold,
        flagged=[f.name in result.selected for f in features[:30]],
    )
    document = _plain({"model": model, "data": data, "rows": len(X), "metric": s.metric, **result.to_dict()})
    summary = {
        "data": data,
        "rows": len(X),
        "selected": list(result.selected_columns),
        "stability": result.stability,
        "threshold": threshold,
    }
    ranks = list(result.methods)
    table = Table(
        ["feature", "selected", "frequency", *(f"mean rank ({m})" for m in ranks)],
        [
            [
                f.name,
                "yes" if f.name in result.selected else "",
                _num(f.frequency, 3),
                *(_num(f.mean_rank.get(m), 3) for m in ranks),
            ]
            for f in features
        ],
        flags=["" if f.name in result.selected else "muted" for f in features],
        numeric=[2, 3, 4, 5],
    )
    stability = "undefined" if result.stability is None else f"{result.stability:.3f}"
    page = Page(
        f"{model}: feature selection",
        meta=[
            f"{len(X):,} rows ({data}); {result.n_resamples} bootstrap resamples; stability {stability} "
            f"(Nogueira et al. 2018), mean Jaccard {result.mean_jaccard:.3f}"
        ],
        sections=[
            Section(
                "Proposed subset",
                notes=[", ".join(result.selected_columns) or "no feature beats the noise", *result.notes],
                tables=[table],
                figures=[Figure("selection.png", "selection frequency", figure)],
            )
        ],
    )
    return result, Explained(summary, document, page, {"selection.png": figure})
