"""Batch scoring: ``keel predict --model churn@champion --input PATH --output PATH``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from keel.cli._common import ProjectOption, console, err_console, open_project
from keel.errors import ValidationError

if TYPE_CHECKING:
    from rich.progress import Task
    from rich.text import Text

    from keel.batch import BatchResult
    from keel.project import Project

#: The engines ``--engine`` names.
ENGINES = ("local", "spark")


def _rate_column() -> type:
    from rich.progress import ProgressColumn
    from rich.text import Text

    class RateColumn(ProgressColumn):
        """Rows per second."""

        def render(self, task: Task) -> Text:
            speed = task.finished_speed or task.speed
            return Text("— rows/s" if speed is None else f"{speed:,.0f} rows/s")

    return RateColumn


def predict(
    model: Annotated[str, typer.Option("--model", "-m", help="The model: churn@champion, churn:3 ...")],
    input: Annotated[str, typer.Option("--input", "-i", help="Parquet or CSV file to score (path or fsspec URI).")],
    output: Annotated[str, typer.Option("--output", "-o", help="Parquet file to write (path or fsspec URI).")],
    workers: Annotated[
        int,
        typer.Option(
            help="Scoring lanes: threads of this process when every feature is numeric, else worker processes "
            "(each loading the model once).",
            min=1,
        ),
    ] = 1,
    chunk_rows: Annotated[int, typer.Option(help="Rows per chunk (memory is bounded by it).", min=1)] = 100_000,
    features: Annotated[
        str,
        typer.Option(
            help="Where features come from: input (its columns), offline (joined point in time by entity keys "
            "and --timestamp), online (looked up by entity keys)."
        ),
    ] = "input",
    timestamp: Annotated[str | None, typer.Option(help="With --features offline: the as-of timestamp column.")] = None,
    id_column: Annotated[
        str | None, typer.Option(help="An input column to copy as the output's id (default: row_number).")
    ] = None,
    resume: Annotated[
        bool, typer.Option(help="Resume an interrupted run of the same input, model and settings.")
    ] = True,
    allow_pickle: Annotated[bool, typer.Option(help="Load a pickle-based model package.")] = False,
    proba: Annotated[bool, typer.Option(help="Add a classifier's proba_<class> columns.")] = True,
    engine: Annotated[
        str | None,
        typer.Option(
            help="Who scores: local (worker processes of this machine, into the --output Parquet file, in input "
            "order, resumable) or spark (Spark's Python workers, into the --output folder of Parquet files; only "
            "--features input). Default: the project's engine setting."
        ),
    ] = None,
    project: ProjectOption = Path("."),
) -> None:
    """Score a file by chunks, in worker processes, keeping the input's order; resumable. With the Spark engine,
    score it in Spark's Python workers into a folder of Parquet files.

    Exits with 1 when a chunk failed twice (the summary names its rows); the finished chunks are written.
    """
    if engine is not None and engine not in ENGINES:
        raise ValidationError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}", field="engine")
    with open_project(project, **({"engine": engine} if engine else {})) as proj:
        if proj.config.engine != "local":
            _score_on_engine(
                proj,
                model,
                input,
                output,
                features=features,
                id_column=id_column,
                proba=proba,
                allow_pickle=allow_pickle,
            )
            return
        result = _predict_locally(
            proj,
            model,
            input,
            output,
            workers=workers,
            chunk_rows=chunk_rows,
            id_column=id_column,
            features=features,
            timestamp=timestamp,
            resume=resume,
            allow_pickle=allow_pickle,
            proba=proba,
        )
    for warning in result.warnings:
        err_console.print(f"[yellow]warning:[/] {warning}", soft_wrap=True, highlight=False)
    console.print(
        f"{result.rows:,} rows scored with {result.model} in {result.seconds:.2f} s "
        f"({result.rows_per_s:,.0f} rows/s); {result.chunks} chunk(s), {result.chunks_resumed} resumed, "
        f"{len(result.failures)} failed" + (f" -> {result.output}" if result.output else ""),
        soft_wrap=True,
        highlight=False,
    )
    if result.failures:
        for failure in result.failures:
            err_console.print(f"[red]failed:[/] {failure}", soft_wrap=True, highlight=False)
        err_console.print(f"the manifest {result.manifest} keeps the finished chunks; a re-run retries the rest")
        raise typer.Exit(1)


def _predict_locally(proj: Project, model: str, input: str, output: str, *, proba: bool, **options: Any) -> BatchResult:
    """Batch scoring in this machine's worker processes (:meth:`Project.predict_batch`), with a progress bar."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    with Progress(
        TextColumn("scoring"),
        BarColumn(),
        TextColumn("{task.completed:,.0f}/{task.fields[total_text]} rows"),
        _rate_column()(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,
    ) as progress:
        task = progress.add_task("scoring", total=None, total_text="?")

        def on_progress(done: int, total: int | None) -> None:
            progress.update(task, completed=done, total=total, total_text="?" if total is None else f"{total:,}")

        return proj.predict_batch(model, input, output, probabilities=proba, on_progress=on_progress, **options)


def _score_on_engine(
    proj: Project,
    model: str,
    input: str,
    output: str,
    *,
    features: str,
    id_column: str | None,
    proba: bool,
    allow_pickle: bool,
) -> None:
    """Score with the project's engine (:meth:`Engine.score <keel.engines.Engine.score>`): the package by
    reference, loaded and verified once in each of the engine's workers, the output a folder of Parquet files."""
    from keel.engines._base import Scoring
    from keel.engines._inputs import input_files

    name = proj.config.engine
    if features != "input":
        raise ValidationError(
            f"the {name} engine scores the input's own feature columns (--features input); --features {features} "
            "joins the features in this process: score with --engine local",
            field="features",
        )
    files = input_files(input)
    ref = proj.models.ref(model, allow_pickle=allow_pickle or None)  # None: the registry's own setting
    on_demand = proj.scoring_on_demand(model, allow_pickle=allow_pickle or None)
    started = time.perf_counter()
    with err_console.status(f"scoring with {ref.label} on the {name} engine", spinner="dots"):
        scoring = Scoring(id_column=id_column, probabilities=proba, on_demand=on_demand)
        written = proj.engine.score(files, ref, output, scoring=scoring)
    seconds = time.perf_counter() - started
    rate = written.rows / seconds if seconds > 0 else 0.0
    console.print(
        f"{written.rows:,} rows scored with {ref.name} v{ref.version} on the {name} engine in {seconds:.2f} s "
        f"({rate:,.0f} rows/s); {len(written.files)} file(s) -> {output}",
        soft_wrap=True,
        highlight=False,
    )
