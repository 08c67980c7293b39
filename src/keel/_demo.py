"""``keel demo``: run the churn example end to end on the embedded defaults and print what happened.

The demo is a sequence of small steps, each printing its part of the summary and returning its figures; later
capabilities (training, serving, monitoring) add steps after the training set.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import yaml
from rich.console import Console
from rich.table import Table

from keel.config import CONFIG_FILE
from keel.errors import ConflictError

if TYPE_CHECKING:
    import pandas as pd

    from keel.features._apply import ApplyPlan
    from keel.offline import IngestResult
    from keel.project import Project

__all__ = ["DEMO_FEATURES", "DEMO_MARKER", "run_demo"]

EXAMPLE = "churn"
#: Written at the root of a demo folder: only a folder holding it (and the churn keel.yaml) is ever deleted.
DEMO_MARKER = ".keel-demo"
VIEWS = ("customer_profile", "customer_activity")
#: The features the demo's training set asks for.
DEMO_FEATURES = ("customer_profile:*", "customer_activity:*")
_FIRST_ROWS = 3


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
    console.rule("[bold]2. Apply[/] the definitions in features.py")
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
        rates, churn rate, feature versions), plus ``path`` and ``seconds`` for the whole run.

    Raises:
        ConflictError: ``path`` is a non-empty folder that a previous demo did not create.

    Example:
        >>> figures = run_demo(Path("demo"), customers=500)  # doctest: +SKIP
        >>> figures["training_set"]["churn_rate"]  # doctest: +SKIP
        0.13
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
    figures["seconds"] = time.perf_counter() - started
    console.rule(f"[bold green]Done[/] in {figures['seconds']:.1f}s — the project is in {root}")
    return figures
