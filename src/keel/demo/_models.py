"""The demo's model steps: train the example's spec, register and promote it, show its lineage, predict."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from keel.demo import CHAMPION, DEMO_SPEC
from keel.demo._features import labels
from keel.demo._render import METRIC_LABELS, cell, metric, table

if TYPE_CHECKING:
    import pandas as pd

    from keel.catalog import RunRecord
    from keel.project import Project

__all__ = ["step_lineage", "step_predict", "step_register", "step_train"]

#: Customers shown by the prediction step: this many who churned and this many who stayed.
_SHOWN_PER_CLASS = 3


@dataclass(frozen=True)
class _Scale:
    """What a run's validation metrics are set against: no skill, and the example's own formula (its yardstick)."""

    base_rate: float | None = None
    no_skill: dict[str, float | None] = field(default_factory=dict)
    formula_roc_auc: float | None = None


def _cutoff(record: RunRecord) -> pd.Timestamp | None:
    """The first validation time of a time-split run (``None`` for any other split)."""
    import pandas as pd

    split = record.params.get("split") or {}
    if split.get("kind") != "time" or not split.get("cutoff"):
        return None
    return pd.Timestamp(split["cutoff"])


def _scale(project: Project, cutoff: pd.Timestamp | None, names: list[str]) -> _Scale:
    """The yardsticks of the example's ``yardstick.py`` on the run's validation rows (after ``cutoff``)."""
    from keel._scaffold import load_example_module

    yardstick = load_example_module(project.root, "yardstick")
    if cutoff is None or yardstick is None:
        return _Scale()
    rows = labels(project)
    before = rows["event_timestamp"] < cutoff
    base_rate = float(rows.loc[before, "churned"].mean())
    return _Scale(
        base_rate=base_rate,
        no_skill=yardstick.no_skill_metrics(rows.loc[~before, "churned"].to_numpy(), base_rate, names),
        formula_roc_auc=yardstick.formula_roc_auc(project, rows[~before]),
    )


def step_train(project: Project, *, console: Console) -> dict[str, Any]:
    """Train the example's spec: a tracked run, judged on later months than it was fitted on."""
    console.rule(f"[bold]5. Train[/] the {DEMO_SPEC} spec declared in training.py")
    started = time.perf_counter()
    with console.status("training") as status:
        run = project.train(DEMO_SPEC, on_step=lambda step: status.update(f"training: {step}"))
    seconds = time.perf_counter() - started
    record = run.record
    cutoff = _cutoff(record)
    fitted = f"{run.train_rows:,} label rows" + (f" before {cutoff:%Y-%m-%d}" if cutoff is not None else "")
    console.print(
        f"run [bold]{run.id[:8]}[/] in {seconds:.2f}s (fit {record.durations.get('fit', 0.0):.2f}s): fitted on "
        f"{fitted}, validated on the {run.validation_rows:,} {'after' if cutoff is not None else 'others'}"
    )

    # For scale: what no skill scores on the same rows, and what the simulation's own formula does.
    scale = _scale(project, cutoff, list(run.metrics))
    metrics = table("validation metric", "this run", title="metrics")
    if scale.no_skill:
        metrics.add_column("no skill")
    for name, value in run.metrics.items():
        cells = [METRIC_LABELS.get(name, name), metric(value)]
        metrics.add_row(*cells, *([metric(scale.no_skill.get(name))] if scale.no_skill else []))
    console.print(metrics)
    if scale.base_rate is not None:
        console.print(f"No skill: everyone scores the training months' churn rate, {scale.base_rate:.1%}, and stays.")
    if scale.formula_roc_auc is not None:
        console.print(
            f"Yardstick: the generator's own formula (true weights, less what no feature shows) scores ROC AUC "
            f"{scale.formula_roc_auc:.3f} on the same rows."
        )
    return {
        "run_id": run.id,
        "metrics": dict(run.metrics),
        "train_rows": run.train_rows,
        "validation_rows": run.validation_rows,
        "cutoff": cutoff.isoformat() if cutoff is not None else None,
        "no_skill": scale.no_skill,
        "formula_roc_auc": scale.formula_roc_auc,
        "durations": dict(record.durations),
        "seconds": seconds,
    }


def step_register(project: Project, run_id: str, *, console: Console) -> dict[str, Any]:
    """Register the run as the next version of the model and make that version the champion."""
    console.rule(f"[bold]6. Register[/] the run as a model version and promote it to {CHAMPION}")
    started = time.perf_counter()
    run = project.runs.get(run_id)
    version = project.models.register(run_id, description=f"trained by `keel demo` from run {run_id[:8]}")
    auc = run.metrics.get("roc_auc")
    reason = f"validation ROC AUC {auc:.3f}" if isinstance(auc, float) else "first version"
    project.models.promote(version.name, version.version, alias=CHAMPION, reason=reason)
    seconds = time.perf_counter() - started

    versions = project.models.versions(version.name)
    shown = table("version", "run", "package", "format", "aliases", title=f"model {version.name}")
    for v in versions:
        shown.add_row(
            f"v{v.version}", v.run_id[:8], v.package_digest[:12], v.package_format, ", ".join(v.aliases) or "—"
        )
    console.print(shown)
    for change in project.models.history(version.name):
        held = f"v{change.from_version}" if change.from_version is not None else "nobody"
        console.print(f"alias {change.alias}: {held} → v{change.to_version} ({change.reason})")
    console.print(
        f"Registered and promoted in {seconds:.2f}s. Versions never change; aliases move, keep their history, "
        f"and `keel models rollback {version.name}` moves one back."
    )
    aliases = {alias: v.version for v in versions for alias in v.aliases}
    return {
        "model": version.name,
        "version": version.version,
        "run_id": version.run_id,
        "package_digest": version.package_digest,
        "package_format": version.package_format,
        "aliases": aliases,
        "seconds": seconds,
    }


def step_lineage(project: Project, *, console: Console) -> dict[str, Any]:
    """What the champion was made of, and a retrain of its spec that reproduces it."""
    ref = f"{DEMO_SPEC}@{CHAMPION}"
    console.rule(f"[bold]7. Lineage[/] of {ref}, and a retrain that reproduces it")
    version = project.models.get(ref)
    run = project.models.run_of(ref)
    lineage = run.lineage
    versions: dict[str, int] = lineage.get("feature_versions", {})
    digests: dict[str, str] = lineage.get("feature_digests", {})
    libraries: dict[str, str] = lineage.get("libraries", {})
    git = lineage.get("git")
    rows = lineage.get("rows", {})

    shown = table("", "", title=f"{version.name} v{version.version} (run {run.id[:8]})", show_header=False)
    for view, number in versions.items():
        shown.add_row(f"{view} v{number}", f"data {digests.get(view, '?')[:12]}")
    shown.add_row("training set", f"{lineage.get('training_set_digest', '?')[:12]}, {sum(rows.values()):,} rows")
    shown.add_row(
        "code", f"git {git['commit'][:12]}{' (dirty)' if git['dirty'] else ''}" if git else "not a git repository"
    )
    named = ("keel", "scikit-learn", "python")
    shown.add_row("libraries", ", ".join(f"{name} {libraries[name]}" for name in named if name in libraries))
    shown.add_row("package", f"{version.package_digest[:12]} ({version.package_format}, verified on load)")
    console.print(shown)

    started = time.perf_counter()
    again = project.train(run.spec)
    seconds = time.perf_counter() - started
    same_set = again.record.lineage.get("training_set_digest") == lineage.get("training_set_digest")
    same_metrics = again.metrics == run.metrics
    verdict = "[green]the same[/]" if same_set and same_metrics else "[red]different[/]"
    console.print(f"Retrained {run.spec} in {seconds:.2f}s: run {again.id[:8]} has {verdict} training set and metrics.")
    return {
        "feature_versions": dict(versions),
        "feature_digests": dict(digests),
        "training_set_digest": lineage.get("training_set_digest"),
        "git": git,
        "libraries": dict(libraries),
        "rerun_id": again.id,
        "rerun_same_training_set": same_set,
        "rerun_same_metrics": same_metrics,
        "rerun_seconds": seconds,
    }


def step_predict(project: Project, *, console: Console) -> dict[str, Any]:
    """Load the champion and predict churn for the customers of the last label date, next to what happened."""
    import numpy as np
    import pandas as pd

    ref = f"{DEMO_SPEC}@{CHAMPION}"
    console.rule(f"[bold]8. Predict[/] with {ref}")
    started = time.perf_counter()
    version = project.models.get(ref)
    package = project.models.load(ref)
    loaded = time.perf_counter() - started
    rows = labels(project)
    as_of = rows["event_timestamp"].max()
    month = rows[rows["event_timestamp"] == as_of].reset_index(drop=True)
    # The features as they were on that date, from the very feature versions the model was trained on.
    frame = project.historical_features(month, package.feature_refs)
    classes = package.classes or [0, 1]
    proba = package.predict_proba(frame)[:, classes.index(1)]
    seconds = time.perf_counter() - started

    churned = month["churned"].to_numpy()
    riskiest = np.argsort(-proba, kind="stable")[: max(1, len(month) // 10)]
    shown = [int(i) for cls in (1, 0) for i in np.flatnonzero(churned == cls)[:_SHOWN_PER_CLASS]]
    shown.sort(key=lambda i: -proba[i])
    columns = ("customer", "plan", "spend 30d", "tickets", "last order", "P(churn)", "churned")
    scored = table(*columns, title=f"{len(shown)} of the {len(month):,} customers active on {as_of:%Y-%m-%d}")
    for i in shown:
        row = frame.iloc[i]
        since = row["days_since_last_order"]
        scored.add_row(
            str(row["customer_id"]),
            cell(row["plan"]),
            cell(row["spend_30d"]),
            cell(row["support_tickets_30d"]),
            "never" if pd.isna(since) else f"{since:.0f} d ago",
            f"{proba[i]:.0%}",
            "yes" if churned[i] else "no",
        )
    console.print(scored)
    rate = float(churned.mean()) if len(churned) else 0.0
    top_rate = float(churned[riskiest].mean()) if len(riskiest) else 0.0
    console.print(
        f"v{version.version} loaded in {loaded:.2f}s (hash verified), {len(month):,} customers scored in "
        f"{seconds - loaded:.2f}s. Of the riskiest 10% by P(churn), {top_rate:.0%} churned; of all, {rate:.0%}."
    )
    return {
        "model": ref,
        "version": version.version,
        "as_of": as_of.isoformat(),
        "customers": len(month),
        "churn_rate": rate,
        "top_decile_churn_rate": top_rate,
        "rows": [
            {"customer_id": int(month.at[i, "customer_id"]), "p_churn": float(proba[i]), "churned": int(churned[i])}
            for i in shown
        ],
        "seconds": seconds,
    }


def step_analyze(project: Project, *, console: Console) -> dict[str, Any]:
    """Analyse the champion on its own holdout, rebuilt exactly as trained, by plan and region: metrics with
    intervals, weak segments, the report stored with the version (and a copy of its page in the demo folder)."""
    ref = f"{DEMO_SPEC}@{CHAMPION}"
    console.rule(f"[bold]12. Analyse[/] {ref} by segment, on the rows it was validated on")
    started = time.perf_counter()
    result, stored = project.analyses.analyze(ref, segments=["plan", "region"], n_boot=1000)
    seconds = time.perf_counter() - started
    shown = table("segment", "rows", result.metric, "95% interval", title=f"{result.model} on {result.data}")
    for s in [result.segments.overall, *result.segments.segments]:
        e = s.metrics[result.metric]
        shown.add_row(s.name, f"{s.rows:,}", metric(e.value), f"[{metric(e.low)}, {metric(e.high)}]")
    console.print(shown)
    weak = [w.name for w in result.weak.segments] if result.weak is not None else []
    page = Path(project.root) / "reports" / f"analysis-{result.model.replace(':', '-v')}.html"
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(stored.page.html())
    console.print(
        f"{len(weak)} weak segment(s) found{': ' + ', '.join(weak[:3]) if weak else ''}. Report stored with the "
        f"version (analysis {stored.record.id[:12] if stored.record else '—'}) and written to {page} in {seconds:.1f}s."
    )
    return {
        "model": result.model,
        "rows": result.rows,
        "metric": result.metric,
        "overall": result.segments.overall.metrics[result.metric].value,
        "segments": [s.name for s in result.segments.segments],
        "weak_segments": weak,
        "analysis_id": stored.record.id if stored.record else None,
        "report": str(page),
        "seconds": seconds,
    }
