"""The demo's feature steps: generate the example's data, apply its definitions, ingest, build a training set."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from keel.demo import DEMO_SPEC, EXAMPLE
from keel.demo._folder import mark_folder
from keel.demo._render import first_rows, ingest_table, plan_table, statistics_tables, table
from keel.features import FeatureRef

if TYPE_CHECKING:
    import pandas as pd

    from keel.project import Project

__all__ = ["labels", "spec_views", "step_apply", "step_generate", "step_ingest", "step_training_set"]


def spec_views(project: Project) -> list[str]:
    """The feature views the example's training spec draws from, in the order it names them."""
    features = project.training_spec(DEMO_SPEC).features
    return list(dict.fromkeys(FeatureRef.parse(ref).view for ref in features))


def labels(project: Project) -> pd.DataFrame:
    """The example's label rows, as its data files hold them now."""
    import pandas as pd

    return pd.read_parquet(project.root / "data" / "labels.parquet")


def step_generate(root: Path, *, customers: int, seed: int, console: Console) -> dict[str, Any]:
    """Scaffold the churn example into ``root`` and generate its data."""
    import pyarrow.parquet as pq

    from keel._scaffold import scaffold

    console.rule(f"[bold]1. Generate[/] the {EXAMPLE} example: {customers:,} customers, seed {seed}")
    started = time.perf_counter()
    scaffold(root, example=EXAMPLE, customers=customers, seed=seed)
    mark_folder(root)
    seconds = time.perf_counter() - started
    files = {p.name: pq.ParquetFile(p).metadata.num_rows for p in sorted((root / "data").glob("*.parquet"))}
    written = table("file", "rows", title=f"data/ written in {seconds:.2f}s")
    for name, rows in files.items():
        written.add_row(name, f"{rows:,}")
    console.print(written)
    return {"files": files, "seconds": seconds}


def step_apply(project: Project, *, console: Console) -> dict[str, Any]:
    """Discover and register the project's definitions."""
    console.rule("[bold]2. Apply[/] the definitions in features.py and training.py")
    started = time.perf_counter()
    plan = project.apply()
    seconds = time.perf_counter() - started
    console.print(plan_table(plan, seconds))
    return {
        "added": len(plan.added),
        "changed": len(plan.changed),
        "removed": len(plan.removed),
        "definitions": [f"{item.kind}:{item.name}" for item in plan.items],
    }


def step_ingest(project: Project, *, console: Console) -> dict[str, Any]:
    """Ingest every view the example's spec uses into the offline store."""
    console.rule("[bold]3. Ingest[/] both views into immutable, validated versions")
    results = [project.ingest(view) for view in spec_views(project)]
    console.print(ingest_table(results))
    for result in results:
        for warning in result.warnings:
            console.print(f"[yellow]warning:[/] {warning}")
    for stats in statistics_tables(results):
        console.print(stats)
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


def step_training_set(project: Project, *, console: Console) -> dict[str, Any]:
    """Join every feature of the spec's views point in time onto the monthly labels and summarise the result."""
    console.rule("[bold]4. Build a training set[/], point in time")
    rows = labels(project)
    started = time.perf_counter()
    train = project.historical_features(rows, [f"{view}:*" for view in spec_views(project)])
    seconds = time.perf_counter() - started
    features = [c for c in train.columns if c not in rows.columns]
    null_rates = {f: float(train[f].isna().mean()) for f in features}
    churn_rate = float(rows["churned"].mean()) if len(rows) else 0.0
    leaky = _naive_leaks(project, rows)

    summary = table("", "", title=f"training set ({seconds:.2f}s)", show_header=False)
    summary.add_row("rows × columns", f"{train.shape[0]:,} × {train.shape[1]}")
    summary.add_row("label rows kept", f"{len(train):,} of {len(rows):,}")
    summary.add_row("churn rate", f"{churn_rate:.1%}")
    versions = train.attrs.get("keel_feature_versions", {})
    summary.add_row("feature versions", ", ".join(f"{view} v{v}" for view, v in versions.items()))
    summary.add_row("later data ignored", f"{leaky:,} label rows have activity after their time; none was used")
    console.print(summary)
    nulls = table("feature", "null rate", title="null rates")
    for feature, rate in null_rates.items():
        nulls.add_row(feature, f"{rate:.1%}")
    console.print(nulls)
    console.print(first_rows(train))
    return {
        "rows": int(train.shape[0]),
        "columns": int(train.shape[1]),
        "label_rows": len(rows),
        "features": features,
        "null_rates": null_rates,
        "churn_rate": churn_rate,
        "feature_versions": dict(versions),
        "seconds": seconds,
        "naive_leak_rows": leaky,
    }


def _naive_leaks(project: Project, rows: pd.DataFrame) -> int:
    """How many label rows a join on each customer's latest activity would fill from their future."""
    import pandas as pd

    activity = pd.read_parquet(project.root / "data" / "activity.parquet", columns=["customer_id", "event_time"])
    latest = activity.groupby("customer_id")["event_time"].max()
    seen = rows["customer_id"].map(latest)
    return int((seen > rows["event_timestamp"]).sum())
