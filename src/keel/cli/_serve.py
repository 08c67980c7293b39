"""Serving commands: serve-features; the uvicorn launcher of both servers, and a background server."""

from __future__ import annotations

import logging.config
import os
import shutil
import tempfile
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from keel.cli._common import ProjectOption, open_project
from keel.errors import ValidationError

if TYPE_CHECKING:
    from keel.project import Project


class LogLevel(StrEnum):
    """The levels of the server's logs."""

    critical = "critical"
    error = "error"
    warning = "warning"
    info = "info"
    debug = "debug"


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
    from keel.serving._features_app import create_feature_app
    from keel.serving._logging import log_config, service_log

    level = log_level.value
    config = log_config(level)
    logging.config.dictConfig(config)
    # Opened here, store included, even with several workers: a wrong folder or configuration fails now, in
    # one line, rather than in workers that would be started again and again.
    proj = open_project(project)
    app = create_feature_app(proj, close_project=True)
    service_log.info(
        "serving the features of %s at http://%s:%d (docs at /docs)",
        proj.root,
        host,
        port,
        extra={"project": str(proj.root), "workers": workers},
    )
    run_server(
        app,
        proj,
        factory="keel.serving._features_app:app_from_environment",
        host=host,
        port=port,
        workers=workers,
        level=level,
        config=config,
    )


def run_server(
    app: Any,
    proj: Project,
    *,
    factory: str,
    host: str,
    port: int,
    workers: int,
    level: str,
    config: dict[str, Any],
    environment: dict[str, str] | None = None,
) -> None:
    """Run ``app`` under uvicorn; with several workers, each builds its own app from ``factory``, which reads
    the project folder (and ``environment``) from environment variables, and metrics add up across them."""
    import uvicorn

    from keel.serving._features_app import PROJECT_VARIABLE
    from keel.serving._metrics import MULTIPROCESS_VARIABLE

    if workers == 1:
        uvicorn.run(app, host=host, port=port, log_level=level, log_config=config, access_log=False)
        return
    if proj.online_store.kind == "memory":
        proj.close()
        raise ValidationError(
            f"--workers {workers}: the memory:// online store lives inside one process, so each worker would "
            "serve a store of its own; serve with one worker, or use a sqlite or redis online store",
            field="workers",
        )
    proj.close()
    os.environ[PROJECT_VARIABLE] = str(proj.root)
    os.environ.update(environment or {})
    metrics_dir = None
    if not os.environ.get(MULTIPROCESS_VARIABLE):  # workers add their metrics up in files there
        metrics_dir = tempfile.mkdtemp(prefix="keel-metrics-")
        os.environ[MULTIPROCESS_VARIABLE] = metrics_dir
    try:
        uvicorn.run(
            factory,
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=level,
            log_config=config,
            access_log=False,
        )
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
