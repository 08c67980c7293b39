"""Online commands: materialize, push."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from keel._tables import read_table
from keel.cli._common import ProjectOption, console, open_project, with_progress
from keel.errors import NotFoundError, ValidationError

if TYPE_CHECKING:
    from keel.project import Project


def _when(value: str | None, what: str) -> datetime | None:
    if value is None:
        return None
    import pandas as pd

    try:
        ts = pd.Timestamp(value)
    except (ValueError, OverflowError) as exc:
        raise ValidationError(f"--{what}: {value!r} is not an ISO 8601 date or time", field=what) from exc
    if pd.isna(ts):  # "" and "NaT" parse as "no time"
        raise ValidationError(f"--{what}: {value!r} is not an ISO 8601 date or time", field=what)
    return (ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")).to_pydatetime()


def _ingested(project: Project, view: str) -> bool:
    try:
        project.catalog.feature_version(view)
    except NotFoundError:
        return False
    return True


def materialize(
    views: Annotated[
        list[str] | None, typer.Argument(help="Views to materialize (default: every online view).")
    ] = None,
    start: Annotated[
        str | None, typer.Option(help="Only event times after this (default: where the last run stopped).")
    ] = None,
    end: Annotated[str | None, typer.Option(help="Only event times up to this (default: now).")] = None,
    project: ProjectOption = Path("."),
) -> None:
    """Write the latest value per entity, within each view's TTL, to the online store (incremental)."""
    start_at, end_at = _when(start, "start"), _when(end, "end")
    with open_project(project) as proj:
        # Without names, as project.materialize(): every online view that has ingested data.
        names = list(views) if views else [v.name for v in proj.feature_views() if v.online and _ingested(proj, v.name)]
        results = []
        for name in with_progress(names, "materializing"):
            results += proj.materialize([name], start=start_at, end=end_at)
        store = proj.online_store.description
    if not results:
        console.print("Nothing to materialize: no online view has ingested data.")
        return
    table = Table(title=f"Materialized into {store}")
    for column in ("view", "version", "entities", "event times", "seconds", "status"):
        table.add_column(column)
    for r in results:
        span = f"{r.start:%Y-%m-%d %H:%M} → {r.end:%Y-%m-%d %H:%M}" if r.start else f"… → {r.end:%Y-%m-%d %H:%M}"
        status = r.skipped or (f"[yellow]rebuilt[/] ({r.rebuilt})" if r.rebuilt else "[green]written[/]")
        table.add_row(r.view, f"v{r.version}", f"{r.rows:,}", span, f"{r.seconds:.2f}", status)
    console.print(table)


def push(
    view: Annotated[str, typer.Argument(help="The feature view.")],
    input_path: Annotated[Path, typer.Option("--input", "-i", help="Rows to push (.parquet or .csv).")],
    to: Annotated[str, typer.Option(help="online, offline or both.")] = "online",
    project: ProjectOption = Path("."),
) -> None:
    """Push rows of a view (validated like ingestion) to the online store, the offline store, or both."""
    rows = read_table(input_path)
    with open_project(project) as proj:
        result = proj.push(view, rows, to=to)
    where = []
    if to in ("online", "both"):
        where.append(f"{result.online_rows:,} applied online")
    if result.offline_version is not None:
        where.append(f"offline version v{result.offline_version}")
    console.print(f"{view}: {result.rows:,} rows pushed ({', '.join(where)})")
    for w in result.warnings:
        console.print(f"[yellow]warning:[/] {w}")
