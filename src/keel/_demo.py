"""``keel demo``: run the churn example end to end on the embedded defaults and print what happened.

The demo is a sequence of small steps, each printing its part of the summary and returning its figures: the
feature steps (generate, apply, ingest, a training set), then the model steps (train, register, lineage,
predict), then inference (online features, the prediction service over HTTP with its prediction log, batch
scoring), then the loop back (the world drifts, monitoring detects it, a retrained challenger is promoted and
the running service reloads it). Steps hand each other nothing but the project
and names the catalog knows (a run id, ``churn@champion``), as a user's scripts would.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

import yaml
from rich.console import Console
from rich.table import Table

from keel.config import CONFIG_FILE
from keel.errors import ConflictError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from keel.catalog import RunRecord
    from keel.definitions._apply import ApplyPlan
    from keel.offline import IngestResult
    from keel.project import Project

__all__ = ["CHAMPION", "DEMO_FEATURES", "DEMO_MARKER", "DEMO_SPEC", "run_demo"]

EXAMPLE = "churn"
#: Written at the root of a demo folder: only a folder holding it (and the churn keel.yaml) is ever deleted.
DEMO_MARKER = ".keel-demo"
VIEWS = ("customer_profile", "customer_activity")
#: The features the demo's training set asks for.
DEMO_FEATURES = ("customer_profile:*", "customer_activity:*")
#: The training spec declared in the example's training.py, and the model it registers.
DEMO_SPEC = "churn"
CHAMPION = "champion"
_FIRST_ROWS = 3
#: Customers shown by the prediction step: this many who churned and this many who stayed.
_SHOWN_PER_CLASS = 3


# -- the folder ----------------------------------------------------------------------------------------------
def _is_previous_demo(root: Path) -> bool:
    if not (root / DEMO_MARKER).is_file():
        return False
    try:
        config = yaml.safe_load((root / CONFIG_FILE).read_text())
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(config, dict) and config.get("name") == EXAMPLE


def prepare_folder(root: Path) -> None:
    """Make ``root`` ready for a fresh demo: remove a previous demo there; refuse any other non-empty folder.

    Raises:
        ConflictError: ``root`` is a file, or a non-empty folder that a previous demo did not create.
    """
    if root.exists() and not root.is_dir():
        raise ConflictError(f"{root} is a file; the demo needs a folder — choose another path")
    if root.is_dir() and any(root.iterdir()):
        if not _is_previous_demo(root):
            raise ConflictError(
                f"{root} is not empty and was not created by `keel demo`; choose an empty or new folder "
                "(the demo deletes and recreates its folder on every run)"
            )
        shutil.rmtree(root)


# -- steps ---------------------------------------------------------------------------------------------------
def step_generate(root: Path, *, customers: int, seed: int, console: Console) -> dict[str, Any]:
    """Scaffold the churn example into ``root`` and generate its data."""
    import pyarrow.parquet as pq

    from keel._scaffold import scaffold

    console.rule(f"[bold]1. Generate[/] the {EXAMPLE} example: {customers:,} customers, seed {seed}")
    started = time.perf_counter()
    scaffold(root, example=EXAMPLE, customers=customers, seed=seed)
    (root / DEMO_MARKER).write_text("Created by `keel demo`, which deletes and recreates this folder.\n")
    seconds = time.perf_counter() - started
    files = {p.name: pq.ParquetFile(p).metadata.num_rows for p in sorted((root / "data").glob("*.parquet"))}
    table = Table("file", "rows", title=f"data/ written in {seconds:.2f}s", title_justify="left")
    for name, rows in files.items():
        table.add_row(name, f"{rows:,}")
    console.print(table)
    return {"files": files, "seconds": seconds}


def step_apply(project: Project, *, console: Console) -> dict[str, Any]:
    """Discover and register the project's definitions."""
    console.rule("[bold]2. Apply[/] the definitions in features.py and training.py")
    started = time.perf_counter()
    plan = project.apply()
    seconds = time.perf_counter() - started
    console.print(_plan_table(plan, seconds))
    return {
        "added": len(plan.added),
        "changed": len(plan.changed),
        "removed": len(plan.removed),
        "definitions": [f"{item.kind}:{item.name}" for item in plan.items],
    }


def _plan_table(plan: ApplyPlan, seconds: float) -> Table:
    table = Table("", "kind", "name", "version", title=f"apply plan ({seconds:.2f}s)", title_justify="left")
    symbol = {"add": "[green]+[/]", "change": "[yellow]~[/]", "remove": "[red]-[/]", "unchanged": " "}
    for item in plan.items:
        table.add_row(symbol[item.action], item.kind.replace("_", " "), item.name, f"v{item.version}")
    return table


def step_ingest(project: Project, *, console: Console) -> dict[str, Any]:
    """Ingest every view of the example into the offline store."""
    console.rule("[bold]3. Ingest[/] both views into immutable, validated versions")
    results = [project.ingest(view) for view in VIEWS]
    console.print(_ingest_table(results))
    for result in results:
        for warning in result.warnings:
            console.print(f"[yellow]warning:[/] {warning}")
    for table in _statistics_tables(results):
        console.print(table)
    return {
        r.view: {
            "version": r.version.version,
            "created": r.created,
            "rows": r.version.row_count,
            "seconds": r.seconds,
            "rows_per_second": r.version.row_count / r.seconds if r.seconds > 0 else None,
            "digest": r.version.data_digest,
            "event_time_min": r.version.event_time_min.isoformat() if r.version.event_time_min else None,
            "event_time_max": r.version.event_time_max.isoformat() if r.version.event_time_max else None,
        }
        for r in results
    }


def _ingest_table(results: list[IngestResult]) -> Table:
    table = Table("view", "rows", "event times", "digest", "time", title="ingested versions")
    table.title_justify = "left"
    for r in results:
        v = r.version
        span = (
            f"{v.event_time_min:%Y-%m-%d} → {v.event_time_max:%Y-%m-%d}"
            if v.event_time_min and v.event_time_max
            else "—"
        )
        status = "" if r.created else " (unchanged)"
        table.add_row(
            f"{r.view} v{v.version}{status}", f"{v.row_count:,}", span, v.data_digest[:8], f"{r.seconds:.2f}s"
        )
    return table


def _fmt(value: object, *, whole: bool = False) -> str:
    if value is None:
        return "—"
    if whole and isinstance(value, float) and value.is_integer():
        return f"{int(value):,}"
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _statistics_tables(results: list[IngestResult]) -> list[Table]:
    """The statistics recorded with each version: numbers summarised, categories by their top values."""
    numbers = Table("feature", "nulls", "mean", "std", "min", "median", "max", title="numeric features")
    categories = Table("feature", "nulls", "distinct", "top values", title="categorical features")
    for table in (numbers, categories):
        table.title_justify = "left"
    for r in results:
        # The catalog stores the version's columns as JSON: "features" maps each feature to its dtype.
        features = cast("dict[str, str]", r.version.columns.get("features") or {})
        for feature, dtype in features.items():
            s = r.version.statistics.get(feature) or {}
            if dtype in ("int64", "float64"):
                whole = dtype == "int64"
                numbers.add_row(
                    feature,
                    _fmt(s.get("nulls")),
                    _fmt(s.get("mean")),
                    _fmt(s.get("std")),
                    _fmt(s.get("min"), whole=whole),
                    _fmt((s.get("quantiles") or {}).get("p50"), whole=whole),
                    _fmt(s.get("max"), whole=whole),
                )
            else:
                top = ", ".join(
                    f"{value} {count / max(r.version.row_count, 1):.0%}" for value, count in s.get("top") or []
                )
                categories.add_row(feature, _fmt(s.get("nulls")), _fmt(s.get("distinct")), top)
    return [numbers, categories]


def step_training_set(project: Project, *, console: Console) -> dict[str, Any]:
    """Join the features point in time onto the monthly labels and summarise the training set."""
    import pandas as pd

    console.rule("[bold]4. Build a training set[/], point in time")
    labels = pd.read_parquet(project.root / "data" / "labels.parquet")
    started = time.perf_counter()
    train = project.historical_features(labels, list(DEMO_FEATURES))
    seconds = time.perf_counter() - started
    features = [c for c in train.columns if c not in labels.columns]
    null_rates = {f: float(train[f].isna().mean()) for f in features}
    churn_rate = float(labels["churned"].mean()) if len(labels) else 0.0
    leaky = _naive_leaks(project, labels)

    summary = Table("", "", title=f"training set ({seconds:.2f}s)", title_justify="left", show_header=False)
    summary.add_row("rows × columns", f"{train.shape[0]:,} × {train.shape[1]}")
    summary.add_row("label rows kept", f"{len(train):,} of {len(labels):,}")
    summary.add_row("churn rate", f"{churn_rate:.1%}")
    versions = train.attrs.get("keel_feature_versions", {})
    summary.add_row("feature versions", ", ".join(f"{view} v{v}" for view, v in versions.items()))
    summary.add_row("later data ignored", f"{leaky:,} label rows have activity after their time; none was used")
    console.print(summary)
    nulls = Table("feature", "null rate", title="null rates", title_justify="left")
    for feature, rate in null_rates.items():
        nulls.add_row(feature, f"{rate:.1%}")
    console.print(nulls)
    console.print(_first_rows(train))
    return {
        "rows": int(train.shape[0]),
        "columns": int(train.shape[1]),
        "label_rows": len(labels),
        "features": features,
        "null_rates": null_rates,
        "churn_rate": churn_rate,
        "feature_versions": dict(versions),
        "seconds": seconds,
        "naive_leak_rows": leaky,
    }


def _naive_leaks(project: Project, labels: pd.DataFrame) -> int:
    """How many label rows a join on each customer's latest activity would fill from their future."""
    import pandas as pd

    activity = pd.read_parquet(project.root / "data" / "activity.parquet", columns=["customer_id", "event_time"])
    latest = activity.groupby("customer_id")["event_time"].max()
    seen = labels["customer_id"].map(latest)
    return int((seen > labels["event_timestamp"]).sum())


def _first_rows(train: pd.DataFrame) -> Table:
    # Transposed: a dozen columns side by side do not fit a terminal, a few rows do.
    head = train.head(_FIRST_ROWS)
    table = Table("column", *(f"row {i}" for i in range(len(head))), title="first rows", title_justify="left")
    for column in head.columns:
        table.add_row(str(column), *(_cell(v) for v in head[column]))
    return table


def _cell(value: object) -> str:
    import pandas as pd

    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return "—"
    if isinstance(value, pd.Timestamp):
        return f"{value:%Y-%m-%d}" if value == value.normalize() else f"{value:%Y-%m-%d %H:%M}"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return str(value)


# -- model steps ---------------------------------------------------------------------------------------------
#: How the demo names metrics; any other is shown as recorded.
_METRIC_LABELS = {"roc_auc": "ROC AUC", "log_loss": "log loss", "brier": "Brier score", "f1": "F1"}
#: The inputs of the simulation's churn formula (``churn_logit`` in the example's generate.py), by view.
_FORMULA_INPUTS = {
    "customer_profile": ("plan", "region", "tenure_days"),
    "customer_activity": ("spend_30d", "sessions_7d", "support_tickets_30d", "days_since_last_order"),
}


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
    no_skill: dict[str, float | None] = {}
    formula_auc = None
    base_rate = None
    if cutoff is not None:
        labels = _labels(project)
        before = labels["event_timestamp"] < cutoff
        base_rate = float(labels.loc[before, "churned"].mean())
        no_skill = _no_skill_metrics(labels.loc[~before, "churned"].to_numpy(), base_rate, list(run.metrics))
        formula_auc = _formula_roc_auc(project, labels[~before])
    table = Table("validation metric", "this run", title="metrics", title_justify="left")
    if no_skill:
        table.add_column("no skill")
    for name, value in run.metrics.items():
        cells = [_METRIC_LABELS.get(name, name), _metric(value)]
        table.add_row(*cells, *([_metric(no_skill.get(name))] if no_skill else []))
    console.print(table)
    if base_rate is not None:
        console.print(f"No skill: everyone scores the training months' churn rate, {base_rate:.1%}, and stays.")
    if formula_auc is not None:
        console.print(
            f"Yardstick: the generator's own formula (true weights, less what no feature shows) scores ROC AUC "
            f"{formula_auc:.3f} on the same rows."
        )
    return {
        "run_id": run.id,
        "metrics": dict(run.metrics),
        "train_rows": run.train_rows,
        "validation_rows": run.validation_rows,
        "cutoff": cutoff.isoformat() if cutoff is not None else None,
        "no_skill": no_skill,
        "formula_roc_auc": formula_auc,
        "durations": dict(record.durations),
        "seconds": seconds,
    }


def _labels(project: Project) -> pd.DataFrame:
    import pandas as pd

    return pd.read_parquet(project.root / "data" / "labels.parquet")


def _cutoff(record: RunRecord) -> pd.Timestamp | None:
    """The first validation time of a time-split run (``None`` for any other split)."""
    import pandas as pd

    split = record.params.get("split") or {}
    if split.get("kind") != "time" or not split.get("cutoff"):
        return None
    return pd.Timestamp(split["cutoff"])


def _metric(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else "—"


def _no_skill_metrics(y: np.ndarray, rate: float, names: list[str]) -> dict[str, float | None]:
    """The metrics of a model that gives every row the churn probability ``rate`` and predicts "stays"."""
    import numpy as np

    from keel.training._metrics import compute_metrics

    proba = np.tile([1.0 - rate, rate], (len(y), 1))
    return compute_metrics("classification", names, y, np.zeros_like(y), proba, [0, 1])


def _example_module(root: Path, name: str) -> ModuleType | None:
    """The project's ``name.py`` as a fresh module under a private name, or ``None`` when there is none."""
    path = root / f"{name}.py"
    module_name = f"_keel_demo_{name}_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(module_name, path) if path.is_file() else None
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses resolve their module's annotations through sys.modules
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(module_name, None)
    return module


def _formula_roc_auc(project: Project, rows: pd.DataFrame) -> float | None:
    """ROC AUC, on ``rows``, of the churn log-odds the example's generator drew the labels from.

    The generator adds to them a part no feature shows; without it, the formula is a yardstick for a model
    trained on these features. ``None`` when the project has no such generator or the rows hold one class.
    """
    import numpy as np
    from sklearn.metrics import roc_auc_score

    generator = _example_module(project.root, "generate")
    if generator is None or not hasattr(generator, "churn_logit") or rows.empty:
        return None
    refs = [f"{view}:{feature}" for view, features in _FORMULA_INPUTS.items() for feature in features]
    frame = project.historical_features(rows, refs)
    codes = {
        "plan": frame["plan"].map({p: i for i, p in enumerate(generator.PLANS)}),
        "region": frame["region"].map({r: i for i, r in enumerate(generator.REGIONS)}),
    }
    known = (codes["plan"].notna() & codes["region"].notna()).to_numpy()

    def values(column: pd.Series) -> np.ndarray:
        return np.asarray(column.to_numpy(dtype=np.float64, na_value=np.nan)[known])

    inputs = {f: values(frame[f]) for features in _FORMULA_INPUTS.values() for f in features if f not in codes}
    inputs.update({name: values(code).astype(np.int64) for name, code in codes.items()})
    logit = np.asarray(generator.churn_logit(**inputs), dtype=np.float64)
    y = frame["churned"].to_numpy()[known]
    finite = np.isfinite(logit)
    if len(np.unique(y[finite])) < 2:
        return None
    return float(roc_auc_score(y[finite], logit[finite]))


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
    table = Table("version", "run", "package", "format", "aliases", title=f"model {version.name}")
    table.title_justify = "left"
    for v in versions:
        table.add_row(
            f"v{v.version}", v.run_id[:8], v.package_digest[:12], v.package_format, ", ".join(v.aliases) or "—"
        )
    console.print(table)
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

    table = Table("", "", title=f"{version.name} v{version.version} (run {run.id[:8]})", show_header=False)
    table.title_justify = "left"
    for view, number in versions.items():
        table.add_row(f"{view} v{number}", f"data {digests.get(view, '?')[:12]}")
    table.add_row("training set", f"{lineage.get('training_set_digest', '?')[:12]}, {sum(rows.values()):,} rows")
    table.add_row(
        "code", f"git {git['commit'][:12]}{' (dirty)' if git['dirty'] else ''}" if git else "not a git repository"
    )
    shown = ("keel", "scikit-learn", "python")
    table.add_row("libraries", ", ".join(f"{name} {libraries[name]}" for name in shown if name in libraries))
    table.add_row("package", f"{version.package_digest[:12]} ({version.package_format}, verified on load)")
    console.print(table)

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
    labels = _labels(project)
    as_of = labels["event_timestamp"].max()
    month = labels[labels["event_timestamp"] == as_of].reset_index(drop=True)
    # The features as they were on that date, from the very feature versions the model was trained on.
    frame = project.historical_features(month, package.feature_refs)
    classes = package.classes or [0, 1]
    proba = package.predict_proba(frame)[:, classes.index(1)]
    seconds = time.perf_counter() - started

    churned = month["churned"].to_numpy()
    riskiest = np.argsort(-proba, kind="stable")[: max(1, len(month) // 10)]
    shown = [int(i) for cls in (1, 0) for i in np.flatnonzero(churned == cls)[:_SHOWN_PER_CLASS]]
    shown.sort(key=lambda i: -proba[i])
    table = Table(
        "customer",
        "plan",
        "spend 30d",
        "tickets",
        "last order",
        "P(churn)",
        "churned",
        title=f"{len(shown)} of the {len(month):,} customers active on {as_of:%Y-%m-%d}",
    )
    table.title_justify = "left"
    for i in shown:
        row = frame.iloc[i]
        since = row["days_since_last_order"]
        table.add_row(
            str(row["customer_id"]),
            _cell(row["plan"]),
            _cell(row["spend_30d"]),
            _cell(row["support_tickets_30d"]),
            "never" if pd.isna(since) else f"{since:.0f} d ago",
            f"{proba[i]:.0%}",
            "yes" if churned[i] else "no",
        )
    console.print(table)
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


# -- online steps --------------------------------------------------------------------------------------------
#: How many customers the online step pushes fresh activity for.
_PUSHED = 3


def step_online(project: Project, *, console: Console) -> dict[str, Any]:
    """Materialize, push today's activity for a few customers, read features online, score them, and check
    that offline retrieval at the same instant gives the same values and the same predictions."""
    import pandas as pd

    ref = f"{DEMO_SPEC}@{CHAMPION}"
    console.rule("[bold]9. Serve features online[/]: materialize, push, read, score")
    started = time.perf_counter()
    results = project.materialize()
    table = Table("view", "version", "entities written", "note", title="materialized into the online store")
    table.title_justify = "left"
    for r in results:
        ttl = project.feature_view(r.view).ttl
        note = f"TTL {ttl.days} d: the example's 2025 data has expired" if ttl is not None and not r.rows else ""
        table.add_row(r.view, f"v{r.version}", f"{r.rows:,}", note)
    console.print(table)

    package = project.models.load(ref)
    # The champion's features, unpinned: the latest versions, which now include the pushed rows offline too.
    refs = [r.split("@")[0] + ":" + r.split(":", 1)[1] for r in package.feature_refs]
    now = pd.Timestamp.now(tz="UTC").floor("s")
    offline = pd.read_parquet(project.root / "data" / "activity.parquet")
    latest = offline.sort_values("event_time").groupby("customer_id").tail(1)
    fresh = latest.sort_values("customer_id").head(_PUSHED).copy()
    fresh["event_time"] = now
    project.push("customer_activity", fresh, to="both")
    ids = [int(i) for i in fresh["customer_id"]]
    stale = int(latest.sort_values("customer_id").iloc[_PUSHED]["customer_id"])
    rows = [{"customer_id": i} for i in [*ids, stale]]
    online = project.online_features(refs, rows).to_frame()
    at_now = pd.DataFrame({"customer_id": [*ids, stale], "ts": now})
    offline_frame = project.historical_features(at_now, refs).drop(columns=["customer_id", "ts"])
    same_values = online.equals(offline_frame.reset_index(drop=True)[online.columns])
    p_online = package.predict_proba(online)[:, 1]
    p_offline = package.predict_proba(offline_frame)[:, 1]
    same_predictions = bool((p_online == p_offline).all())
    shown = Table("customer", "spend 30d", "tickets", "plan", "P(churn) online", title="read online, scored")
    shown.title_justify = "left"
    for i, customer in enumerate([*ids, stale]):
        shown.add_row(
            str(customer),
            _cell(online.at[i, "spend_30d"]),
            _cell(online.at[i, "support_tickets_30d"]),
            _cell(online.at[i, "plan"]),
            f"{p_online[i]:.0%}",
        )
    console.print(shown)
    console.print(
        f"Customers {', '.join(map(str, ids))} got today's activity pushed; {stale}'s is older than the 7-day TTL "
        "and reads as missing, online as offline. "
        + (
            "Online values and predictions are identical to offline retrieval at the same instant."
            if same_values and same_predictions
            else "[red]Online and offline disagree.[/]"
        )
    )
    return {
        "materialized": {r.view: r.rows for r in results},
        "pushed": ids,
        "stale": stale,
        "online_equals_offline": same_values,
        "predictions_identical": same_predictions,
        "p_churn": [float(p) for p in p_online],
        "seconds": time.perf_counter() - started,
    }


# -- serving steps -------------------------------------------------------------------------------------------
#: Single-customer requests the serve step times (each another customer: none is answered from the cache).
_TIMED_REQUESTS = 20
#: Customers the serve step sends by key: the online step pushed fresh activity for the first three.
_BY_KEY = _PUSHED + 1


def _one_native_thread() -> Any:
    """One native (OpenMP/BLAS) thread while scoring: small batches of tree ensembles are quicker so, and a
    busy machine does not stall the thread pool (the trainer does the same)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


def _post(url: str, body: dict[str, Any], *, request_id: str | None = None) -> tuple[int, dict[str, Any], float]:
    """POST ``body`` as JSON to ``url`` (no proxy): the status, the JSON answer and the milliseconds it took."""
    import urllib.error
    import urllib.request

    import orjson

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    headers = {"Content-Type": "application/json"}
    if request_id is not None:
        headers["X-Request-ID"] = request_id
    request = urllib.request.Request(url, data=orjson.dumps(body), headers=headers, method="POST")
    started = time.perf_counter()
    try:
        with opener.open(request, timeout=30) as response:
            status, payload = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, payload = exc.code, exc.read()
    return status, orjson.loads(payload), (time.perf_counter() - started) * 1000


def _json_value(value: object) -> object:
    """A feature value read online, as a JSON request would send it."""
    import pandas as pd

    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def step_serve(project: Project, *, console: Console) -> dict[str, Any]:
    """Serve the champion over HTTP on a free local port: requests by entity key, by raw values and both, their
    warnings and latency; then the prediction log the service wrote, read back."""
    import numpy as np
    import pandas as pd

    from keel.serving import background_server, create_prediction_app

    ref = f"{DEMO_SPEC}@{CHAMPION}"
    console.rule(f"[bold]10. Serve[/] {ref} over HTTP, and log every prediction")
    started = time.perf_counter()
    app = create_prediction_app(project, [ref])
    model = app.state.models[DEMO_SPEC]
    package = model.package
    # The customers the online step pushed fresh activity for (the first ones), and the next, whose expired.
    activity = pd.read_parquet(project.root / "data" / "activity.parquet", columns=["customer_id"])
    customers = sorted(int(c) for c in activity["customer_id"].unique())
    keyed = customers[:_BY_KEY]
    refs = [r.split("@")[0] + ":" + r.split(":", 1)[1] for r in package.feature_refs]
    online = project.online_features(refs, [{"customer_id": c} for c in keyed]).to_frame()
    # Raw values: the first customer's, with a plan never seen in training, an absurd spend and a null.
    raw = {name: _json_value(online.at[0, name]) for name in package.feature_names if name in online.columns}
    raw.update({"plan": "platinum", "spend_30d": 1_000_000.0, "sessions_7d": None})
    override = {"customer_id": keyed[0], "support_tickets_30d": 5, "sessions_7d": 0}
    timed = customers[_BY_KEY : _BY_KEY + _TIMED_REQUESTS]

    with _one_native_thread(), background_server(app) as url:
        predict_url = f"{url}/v1/models/{DEMO_SPEC}/predict"
        status, by_key, first_ms = _post(predict_url, {"records": [{"customer_id": c} for c in keyed]})
        statuses = [status]
        status, mixed, _ = _post(predict_url, {"records": [raw, override]})
        statuses.append(status)
        latencies = []
        for customer in timed:
            status, _, ms = _post(predict_url, {"records": [{"customer_id": customer}]})
            statuses.append(status)
            latencies.append(ms)
        status, again, cached_ms = _post(predict_url, {"records": [{"customer_id": c} for c in keyed]})
        statuses.append(status)
        status, bad, _ = _post(predict_url, {"records": [{"customer_id": keyed[0], "spend_30d": "a lot"}]})
    served_seconds = time.perf_counter() - started  # the server is shut down: the log is written out

    classes = [str(c) for c in package.classes or [0, 1]]
    positive = classes[-1]
    expected = package.predict_proba(online)[:, -1]
    served = np.array([p[positive] for p in by_key["probabilities"]])
    identical = bool((served == expected).all()) and again == by_key
    table = Table("record", "sent", "P(churn)", "warnings", title="answers of POST /v1/models/churn/predict")
    table.title_justify = "left"
    rows: list[tuple[str, str, dict[str, Any], list[dict[str, Any]]]] = [
        (f"customer {c}", "entity key: features looked up online", p, w)
        for c, p, w in zip(keyed, by_key["probabilities"], by_key["warnings"], strict=True)
    ]
    rows.append(("raw values", "every feature in the request", mixed["probabilities"][0], mixed["warnings"][0]))
    rows.append(
        (
            f"customer {keyed[0]}",
            "key + 5 tickets, 0 sessions",
            mixed["probabilities"][1],
            mixed["warnings"][1],
        )
    )
    for label, sent, proba, warnings in rows:
        shown = "; ".join(w["message"] for w in warnings[:2]) + (
            f" (+{len(warnings) - 2})" if len(warnings) > 2 else ""
        )
        table.add_row(label, sent, f"{proba[positive]:.0%}", shown or "—")
    console.print(table)
    error = bad.get("error", {})
    console.print(f"A bad value is refused with {status}: {error.get('message')}")
    p50 = float(np.median(latencies)) if latencies else 0.0
    console.print(
        f"Served at {url}: first request {first_ms:.1f} ms; {len(latencies)} one-customer requests p50 {p50:.1f} ms "
        f"(max {max(latencies, default=0.0):.1f} ms), each with an online lookup; the repeated request "
        f"{cached_ms:.1f} ms from the cache. "
        + (
            "The served probabilities are the package's own on the same online rows."
            if identical
            else "[red]The served probabilities differ from the package's.[/]"
        )
    )

    log = project.predictions(DEMO_SPEC, version=model.version)
    files = len(list((Path(project.config.offline) / "_prediction_log" / f"model={DEMO_SPEC}").rglob("part-*.parquet")))
    shown_columns = ["request_id", "record", "key.customer_id", "feature.plan", "feature.spend_30d", "prediction"]
    shown_columns += [c for c in log.columns if c == f"proba.{positive}"]
    head = Table(
        *shown_columns,
        title=f"the prediction log: {len(log):,} rows in {files} file(s) under .keel/offline/_prediction_log/",
    )
    head.title_justify = "left"
    for _, row in log.head(_FIRST_ROWS + 2).iterrows():
        cells = [str(row[c])[:8] if c == "request_id" else _cell(row[c]) for c in shown_columns]
        head.add_row(*cells)
    console.print(head)
    console.print(
        f"One row per scored record ({len(log.columns)} columns: keys, the features scored before imputation, "
        "the prediction and its probabilities), written by a background thread; read it with "
        "project.predictions()."
    )
    return {
        "url": url,
        "statuses": statuses,
        "bad_status": status,
        "bad_field": error.get("field"),
        "by_key": [
            {"customer_id": c, "p_churn": float(p[positive]), "warnings": sorted({w["type"] for w in w_})}
            for c, p, w_ in zip(keyed, by_key["probabilities"], by_key["warnings"], strict=True)
        ],
        "raw_warnings": sorted({w["type"] for w in mixed["warnings"][0]}),
        "override_p_churn": float(mixed["probabilities"][1][positive]),
        "served_equals_package": identical,
        "latency_ms": {"first": first_ms, "p50": p50, "max": max(latencies, default=0.0), "cached": cached_ms},
        "records": _BY_KEY * 2 + 2 + len(timed),
        "log": {
            "rows": len(log),
            "files": files,
            "columns": list(log.columns),
            "requests": int(log["request_id"].nunique()) if len(log) else 0,
            "keys": [None if k is None or k != k else int(k) for k in log["key.customer_id"].head(_BY_KEY)]
            if "key.customer_id" in log.columns
            else [],
        },
        "seconds": served_seconds,
    }


def step_batch(project: Project, *, console: Console) -> dict[str, Any]:
    """Batch-score every label row: entity keys and as-of times, features joined point in time offline."""
    import numpy as np
    import pandas as pd

    ref = f"{DEMO_SPEC}@{CHAMPION}"
    console.rule(f"[bold]11. Batch-score[/] with {ref}: entity keys and as-of times, features from the offline store")
    labels = _labels(project)
    entities = labels[["customer_id", "event_timestamp"]]
    source = project.root / "data" / "to_score.parquet"
    output = project.root / "data" / "scores.parquet"
    entities.to_parquet(source, index=False)
    with _one_native_thread():
        result = project.predict_batch(
            ref, source, output, features="offline", timestamp="event_timestamp", resume=False
        )
    scores = pd.read_parquet(output)
    rate = result.rows / result.seconds if result.seconds > 0 else 0.0
    package = project.models.load(ref)
    positive = str((package.classes or [0, 1])[-1])
    proba_column = f"proba_{positive}"
    # The same rows scored in process, from the same point-in-time features: the batch must agree exactly.
    last = (entities["event_timestamp"] == entities["event_timestamp"].max()).to_numpy()
    month = entities[last].reset_index(drop=True)
    with _one_native_thread():
        expected = package.predict_proba(project.historical_features(month, package.feature_refs))[:, -1]
    identical = bool(np.array_equal(scores.loc[last, proba_column].to_numpy(), expected))
    chunks = f"{result.chunks} chunk" + ("s" if result.chunks != 1 else "")
    console.print(
        f"{result.rows:,} rows scored in {result.seconds:.2f}s ({rate:,.0f} rows/s) in {chunks} by "
        f"{result.model}; written to data/{output.name} in input order. "
        + (
            "The last month's scores are identical to in-process scoring."
            if identical
            else "[red]Batch and in-process scores differ.[/]"
        )
    )
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    count = min(len(scores), _FIRST_ROWS + 2)
    ids = entities["customer_id"].to_numpy()[:count]
    times = entities["event_timestamp"].iloc[:count].tolist()
    probabilities = scores[proba_column].to_numpy()[:count]
    table = Table("row", "customer", "as of", "P(churn)", "prediction", title="first rows", title_justify="left")
    for i in range(count):
        table.add_row(
            str(scores["row_number"].iat[i]) if "row_number" in scores.columns else str(i),
            str(ids[i]),
            _cell(times[i]),
            f"{probabilities[i]:.0%}",
            str(scores["prediction"].iat[i]),
        )
    console.print(table)
    return {
        "model": result.model,
        "rows": result.rows,
        "input_rows": len(entities),
        "chunks": result.chunks,
        "failures": len(result.failures),
        "seconds": result.seconds,
        "rows_per_second": rate,
        "output": str(output),
        "columns": list(scores.columns),
        "identical_to_package": identical,
        "last_month": {int(c): float(p) for c, p in zip(month["customer_id"], expected, strict=True)},
        "first_rows": [{"customer_id": int(ids[i]), "p_churn": float(probabilities[i])} for i in range(count)],
    }


#: The demo's world changes on this date (the example's drift: spend falls, tickets rise and weigh more on churn).
DRIFT_AFTER = "2025-08-01"
#: Where the loop step keeps the data files as they were before the drift (``data/before_drift/``).
BEFORE_DRIFT = "before_drift"
#: Rows of the drifted months sent to the service as raw values, per request.
_LOOP_BATCH = 250


def step_monitor(project: Project, *, customers: int, seed: int, console: Console) -> dict[str, Any]:
    """Close the loop: the world drifts, the served champion's predictions are logged, monitoring detects the
    drift and the decay, a retrained challenger wins on the same later holdout, the champion alias moves, and
    the running service hot-reloads it."""
    import pandas as pd

    from keel._scaffold import _generate_data
    from keel.monitoring import MonitorSettings, default_html_path, write_html
    from keel.serving import background_server, create_prediction_app

    ref = f"{DEMO_SPEC}@{CHAMPION}"
    console.rule(f"[bold]12. Close the loop[/]: the world drifts after {DRIFT_AFTER}; monitor, retrain, promote")
    started = time.perf_counter()
    data = project.root / "data"
    (data / BEFORE_DRIFT).mkdir(exist_ok=True)
    for name in ("customers.parquet", "activity.parquet", "labels.parquet"):  # the world before, kept
        shutil.copy2(data / name, data / BEFORE_DRIFT / name)
    _generate_data(project.root, customers=customers, seed=seed, drift_after=DRIFT_AFTER)
    versions = {view: project.ingest(view).version.version for view in VIEWS}
    champion = project.models.get(ref).version
    package = project.models.load(ref)
    labels = _labels(project)
    drifted = labels[labels["event_timestamp"] > pd.Timestamp(DRIFT_AFTER, tz="UTC")].reset_index(drop=True)
    latest = [r.split("@")[0] + ":" + r.split(":", 1)[1] for r in package.feature_refs]  # the drifted versions
    with _one_native_thread():
        rows = project.historical_features(drifted, latest)
    names = [n for n in package.feature_names if n in rows.columns]
    records = [
        {n: _json_value(v) for n, v in zip(names, values, strict=True)}
        for values in rows[names].itertuples(index=False)
    ]
    console.print(
        f"The data were generated again with drift after {DRIFT_AFTER} (identical before it; the files as they were "
        f"are kept in data/{BEFORE_DRIFT}/) and ingested as "
        + ", ".join(f"{view} v{v}" for view, v in versions.items())
        + f". The service scores the {len(records):,} customer-months since, as raw values, with {ref} (v{champion})."
    )
    app = create_prediction_app(project, [ref], reload_seconds=0.25)
    truth: list[dict[str, Any]] = []
    traffic_started = datetime.now(UTC)
    with _one_native_thread(), background_server(app) as url:
        predict_url = f"{url}/v1/models/{DEMO_SPEC}/predict"
        for i in range(0, len(records), _LOOP_BATCH):
            request_id = f"demo-loop-{i // _LOOP_BATCH}"
            status, answer, _ms = _post(predict_url, {"records": records[i : i + _LOOP_BATCH]}, request_id=request_id)
            if status != 200:
                raise RuntimeError(f"the service answered {status}: {answer}")
            truth.extend(
                {"request_id": request_id, "record": j, "churned": int(y)}
                for j, y in enumerate(drifted["churned"].iloc[i : i + _LOOP_BATCH])
            )
        app.state.prediction_log.flush()

        # The labels arrive: joined to the logged predictions by request id and record.
        # The window: the drifted traffic only (not the serve step's hand-made requests, absurd values included).
        window = datetime.now(UTC) - traffic_started + timedelta(seconds=1)
        report = project.monitor(ref, labels=pd.DataFrame(truth), settings=MonitorSettings(window=window))
        html = write_html(report, default_html_path(project.root, report))
        drift = report.drift
        table = Table("feature", "method", "statistic", "threshold", "drifted", title="drift of the logged inputs")
        table.title_justify = "left"
        for f in sorted(drift.features if drift else [], key=lambda f: (not f.drifted, f.name)):
            table.add_row(
                f.name, f.method, f"{f.statistic:.3f}", f"{f.threshold:g}", "[red]yes[/]" if f.drifted else "no"
            )
        console.print(table)
        metric = report.verdict["metric"]
        now = (report.overall or {}).get("metrics", {}).get(metric, {})
        console.print(
            f"{metric} on the labelled predictions: {_metric(now.get('value'))} "
            f"(95% interval {_metric(now.get('low'))}–{_metric(now.get('high'))}) against "
            f"{_metric(report.validation_metrics.get(metric))} at validation."
        )
        for reason in report.verdict["reasons"]:
            console.print(f"  [red]•[/] {reason}", highlight=False)
        console.print(f"Report {report.id[:12]} stored in the catalog; HTML at {html.relative_to(project.root)}")

        decision = project.retrain(ref, report_id=report.id) if report.crossed else None
        reloaded_to = None
        if decision is not None:
            colour = "green" if decision.promoted else "yellow"
            console.print(f"[{colour}]{decision.reason}[/] ({decision.holdout_rows:,} holdout rows)")
            deadline = time.monotonic() + (10.0 if decision.promoted else 0.0)
            while time.monotonic() < deadline:  # the service watches the alias every 0.25 s
                served = app.state.models[DEMO_SPEC].version
                if served == project.models.get(ref).version:
                    reloaded_to = served
                    break
                time.sleep(0.05)
            status, answer, _ms = _post(predict_url, {"records": records[:1]}, request_id="demo-loop-after")
            if not decision.promoted:
                console.print(f"The running service keeps answering with v{answer.get('version')}.")
            elif reloaded_to is not None:
                console.print(
                    f"The running service now answers with v{answer.get('version')} (hot-reloaded, no restart)."
                )
            else:
                console.print("[red]The service did not pick the new champion up.[/]")
    events = project.catalog.monitoring_events(DEMO_SPEC)
    history = Table("event", "version", "what", title="audit trail (keel monitor history --model churn)")
    history.title_justify = "left"
    for e in events:
        history.add_row(e.kind, f"v{e.version}" if e.version is not None else "—", e.message)
    console.print(history)
    return {
        "versions": versions,
        "champion": champion,
        "logged": len(records),
        "report_id": report.id,
        "crossed": report.crossed,
        "verdict": report.verdict,
        "drifted_features": drift.drifted_features if drift else [],
        "html": str(html),
        "decision": decision.to_dict() if decision is not None else None,
        "reloaded_to": reloaded_to,
        "events": [e.kind for e in events],
        "seconds": time.perf_counter() - started,
    }


# -- the whole demo ------------------------------------------------------------------------------------------
def run_demo(path: Path, *, customers: int = 1000, seed: int = 7, console: Console | None = None) -> dict[str, Any]:
    """Run the churn example end to end in ``path`` and print a summary.

    The folder is (re)created: a previous demo there is deleted, any other non-empty folder refused.

    Args:
        path: the demo project's folder.
        customers: how many customers the example simulates.
        seed: the example's random seed.
        console: where to print (default: a new console on standard output).

    Returns:
        The key figures, by step: ``generate`` (rows per file), ``apply`` (definitions added...),
        ``ingest`` (per view: version, rows, seconds, digest, event-time range), ``training_set`` (shape, null
        rates, churn rate, feature versions), ``train`` (run id, validation metrics, rows per split, cutoff,
        the no-skill metrics and the generator's formula's ROC AUC for scale), ``register`` (model, version,
        package digest and format, aliases), ``lineage`` (feature versions and data digests, training-set
        digest, git, libraries, and whether a retrain reproduced the training set and metrics), ``predict``
        (the champion's version, the customers scored, the shown rows with P(churn) and the actual label, the
        churn rate of the riskiest tenth), ``online`` (materialized rows, pushed customers, whether online and
        offline agree), ``serve`` (the answers by key and by raw values with their warnings, latencies, whether
        the served probabilities are the package's, and the prediction log read back), ``batch`` (rows, chunks,
        rows per second, whether the batch scores are the package's), ``monitor`` (the drifted data's versions,
        the rows logged, the monitoring verdict and drifted features, the retraining decision, the version the
        running service reloaded, the audit trail), plus ``path`` and ``seconds``.

    Raises:
        ConflictError: ``path`` is a non-empty folder that a previous demo did not create.

    Example:
        >>> figures = run_demo(Path("demo"), customers=500)  # doctest: +SKIP
        >>> figures["training_set"]["churn_rate"]  # doctest: +SKIP
        0.13
        >>> figures["register"]["aliases"]  # doctest: +SKIP
        {'champion': 1}
    """
    from keel.project import Project

    console = console or Console()
    root = Path(path).expanduser().resolve()
    started = time.perf_counter()
    prepare_folder(root)
    figures: dict[str, Any] = {"path": str(root), "customers": customers, "seed": seed}
    figures["generate"] = step_generate(root, customers=customers, seed=seed, console=console)
    with Project.open(root) as project:
        figures["apply"] = step_apply(project, console=console)
        figures["ingest"] = step_ingest(project, console=console)
        figures["training_set"] = step_training_set(project, console=console)
        figures["train"] = step_train(project, console=console)
        figures["register"] = step_register(project, figures["train"]["run_id"], console=console)
        figures["lineage"] = step_lineage(project, console=console)
        figures["predict"] = step_predict(project, console=console)
        figures["online"] = step_online(project, console=console)
        figures["serve"] = step_serve(project, console=console)
        figures["batch"] = step_batch(project, console=console)
        figures["monitor"] = step_monitor(project, customers=customers, seed=seed, console=console)
    figures["seconds"] = time.perf_counter() - started
    console.rule(f"[bold green]Done[/] in {figures['seconds']:.1f}s — the project is in {root}")
    return figures
