"""What every command shares: the project option, consoles, error rendering, table files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from keel.errors import ValidationError

if TYPE_CHECKING:
    import pandas as pd

    from keel.project import Project

console = Console()
err_console = Console(stderr=True)

ProjectOption = Annotated[
    Path,
    typer.Option(
        "--project",
        "-p",
        help="The project folder (holding keel.yaml).",
        envvar="KEEL_PROJECT",
        show_default=True,
    ),
]


def open_project(path: Path, **overrides: Any) -> Project:
    """Open the project at ``path``; ``overrides`` replace configuration keys (``engine="spark"``)."""
    from keel.project import Project

    return Project.open(path, **overrides)


def write_table(df: pd.DataFrame, path: Path) -> None:
    """Write a DataFrame as Parquet or CSV, by extension, atomically (temporary name, then rename)."""
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".pq", ".csv"):
        raise ValidationError(f"{path}: unsupported output type {suffix!r}; use .parquet or .csv", field=str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    if suffix == ".csv":
        df.to_csv(tmp, index=False)
    else:
        df.to_parquet(tmp, index=False)
    tmp.replace(path)


def with_progress(names: list[str], verb: str) -> Iterator[str]:
    """Yield each name while a progress bar shows ``verb name`` (on a terminal only)."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    ) as progress:
        task = progress.add_task(verb, total=len(names))
        for name in names:
            progress.update(task, description=f"{verb} {name}")
            yield name
            progress.advance(task)
