"""Serving command: serve-features (the feature server)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from keel.cli._common import ProjectOption
from keel.cli._serve import LogLevel, launch


def serve_features(
    project: ProjectOption = Path("."),
    host: Annotated[str, typer.Option(help="The address to listen on (0.0.0.0: every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="The port to listen on.", min=0, max=65535)] = 6566,
    workers: Annotated[int, typer.Option(help="Worker processes (each opens the project).", min=1)] = 1,
    log_level: Annotated[
        LogLevel,
        typer.Option(help="Level of the JSON logs on standard error (info logs every request).", case_sensitive=False),
    ] = LogLevel.info,
) -> None:
    """Serve online features over HTTP: POST /features, POST /push, GET /health, GET /metrics, docs at /docs.

    Set KEEL_API_TOKEN to require 'Authorization: Bearer <token>' on every endpoint but /health and the docs.
    """
    launch(
        project,
        lambda proj: proj.feature_app(close_project=True),
        lambda _app, proj: f"the features of {proj.root}",
        factory="keel.cli._serve:feature_app_from_environment",
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
    )
