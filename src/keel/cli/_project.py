"""Project commands: init, apply, ingest, demo."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from keel.cli._common import ProjectOption, console, open_project, with_progress


def init(
    directory: Annotated[Path, typer.Argument(help="Folder to create the project in.")],
    example: Annotated[
        str | None, typer.Option("--example", help="Write a complete example project instead (churn).")
    ] = None,
    customers: Annotated[int, typer.Option(help="Example scale: number of customers.", min=1)] = 1000,
    seed: Annotated[int, typer.Option(help="Example random seed.")] = 7,
    drift_after: Annotated[
        str | None, typer.Option(help="Example: inject drift after this ISO date (e.g. 2025-10-01).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Write into a folder that holds a project already.")] = False,
) -> None:
    """Create a Keel project: keel.yaml with the embedded defaults, or a whole example project."""
    from keel._scaffold import scaffold

    root = scaffold(directory, example=example, customers=customers, seed=seed, drift_after=drift_after, force=force)
    what = f"the {example} example" if example else "a new project"
    console.print(f"[green]Created {what} in {root}[/green]")
    console.print(f"Next: cd {directory} && keel apply && keel ingest")


def apply(
    project: ProjectOption = Path("."),
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the plan without writing.")] = False,
) -> None:
    """Register the definitions declared in the project's Python modules (added, changed, removed)."""
    with open_project(project) as proj:
        plan = proj.apply(dry_run=dry_run)
    if not plan.items:
        console.print("No definitions found in the project's modules.")
        return
    table = Table(title="Plan (dry run: nothing written)" if dry_run else "Applied")
    for column in ("", "kind", "name", "version", "changed"):
        table.add_column(column)
    style = {"add": "[green]+[/]", "change": "[yellow]~[/]", "remove": "[red]-[/]", "unchanged": " "}
    for item in plan.items:
        table.add_row(
            style[item.action],
            item.kind.replace("_", " "),
            item.name,
            f"v{item.version}",
            ", ".join(item.changes),
        )
    console.print(table)
    verb = "to add" if dry_run else "added"
    console.print(
        f"{len(plan.added)} {verb}, {len(plan.changed)} {'to change' if dry_run else 'changed'}, "
        f"{len(plan.removed)} {'to remove' if dry_run else 'removed'}, {len(plan.unchanged)} unchanged"
    )


def ingest(
    views: Annotated[list[str] | None, typer.Argument(help="Views to ingest (default: every registered view).")] = None,
    project: ProjectOption = Path("."),
) -> None:
    """Read each view's source, validate it and store a new immutable version (unchanged data: nothing)."""
    with open_project(project) as proj:
        names = list(views) if views else [v.name for v in proj.feature_views()]
        if not names:
            console.print("No feature views registered; declare some and run `keel apply`.")
            return
        results = []
        for name in with_progress(names, "ingesting"):
            results.append(proj.ingest(name))
    table = Table(title="Ingested")
    for column in ("view", "version", "rows", "event time range", "digest", "seconds", "status"):
        table.add_column(column)
    for r in results:
        v = r.version
        span = f"{v.event_time_min:%Y-%m-%d %H:%M} → {v.event_time_max:%Y-%m-%d %H:%M}" if v.event_time_min else ""
        status = "[green]new[/]" if r.created else "unchanged"
        table.add_row(r.view, f"v{v.version}", f"{v.row_count:,}", span, v.data_digest[:12], f"{r.seconds:.2f}", status)
    console.print(table)
    for r in results:
        for w in r.warnings:
            console.print(f"[yellow]warning:[/] {w}")


def demo(
    directory: Annotated[Path, typer.Argument(help="Folder for the demo project (recreated).")] = Path("demo"),
    customers: Annotated[int, typer.Option(help="Number of customers to generate.", min=10)] = 1000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
) -> None:
    """Run the end-to-end example on the embedded defaults and print a summary."""
    from keel.demo import run_demo

    run_demo(directory, customers=customers, seed=seed, console=console)
