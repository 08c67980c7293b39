"""The ``keel`` command line: one module per command group."""

from __future__ import annotations

import logging
import sys
import warnings
from typing import Annotated

import typer

from keel.cli import _analyze, _features, _models, _monitor, _online, _project, _serve, _serve_features, _ui, _validate
from keel.cli._common import err_console
from keel.cli._predict import predict
from keel.errors import KeelError

app = typer.Typer(
    name="keel",
    help="Keel: features, training, inference and monitoring of tabular ML models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command()(_project.init)
app.command()(_project.apply)
app.command()(_project.ingest)
app.command()(_online.materialize)
app.command()(_online.push)
app.command()(_project.demo)
app.command("serve-features")(_serve_features.serve_features)
app.command("serve")(_serve.serve)
app.command("ui")(_ui.ui)
app.command()(_models.train)
app.command()(predict)
app.command()(_analyze.analyze)
app.command()(_analyze.importance)
app.command()(_analyze.select)
app.add_typer(_features.app, name="features")
app.add_typer(_features.app, name="views", help="Feature views (the same commands as `keel features`).")
app.add_typer(_models.runs_app, name="runs")
app.add_typer(_models.models_app, name="models")
app.add_typer(_monitor.monitor_app, name="monitor")
app.add_typer(_validate.validate_app, name="validate")


def _version(value: bool) -> None:
    if value:
        from keel._version import __version__

        typer.echo(f"keel {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what Keel does.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


def _show_warning(message: Warning | str, category: type[Warning], *_args: object, **_kw: object) -> None:
    err_console.print(f"[yellow]warning:[/] {message}", soft_wrap=True, highlight=False)


def main() -> None:
    """Entry point of the ``keel`` console script: a Keel error prints as one clear line and exits with 1."""
    warnings.showwarning = _show_warning
    try:
        app()  # standalone mode: usage errors print their own message and exit with 2
    except KeelError as exc:
        from rich.markup import escape

        # the message is text, not markup: "records[0]" or "local[*]" must print as they are
        err_console.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True, highlight=False)
        sys.exit(1)


__all__ = ["app", "main"]
