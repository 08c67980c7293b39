"""Serving commands: serve (the prediction service); the launcher both servers share, and the app factories
uvicorn's worker processes call (they open a project, so they live here, with the face, not in serving/)."""

from __future__ import annotations

import logging.config
import os
import shutil
import tempfile
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer

from keel.cli._common import ProjectOption, open_project
from keel.errors import ValidationError

if TYPE_CHECKING:
    from fastapi import FastAPI

    from keel.project import Project

#: Where a worker finds the project folder (the ``--project`` option's variable too).
PROJECT_VARIABLE = "KEEL_PROJECT"
#: Where a worker of ``keel serve`` finds the served model references, comma-separated...
MODELS_VARIABLE = "KEEL_SERVE_MODELS"
#: ...and the service's options, as JSON.
OPTIONS_VARIABLE = "KEEL_SERVE_OPTIONS"


class LogLevel(StrEnum):
    """The levels of the server's logs."""

    critical = "critical"
    error = "error"
    warning = "warning"
    info = "info"
    debug = "debug"


def serve(
    model: Annotated[
        list[str],
        typer.Option("--model", "-m", help="A model to serve, like churn@champion or churn:3 (repeatable)."),
    ],
    project: ProjectOption = Path("."),
    host: Annotated[str, typer.Option(help="The address to listen on (0.0.0.0: every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="The port to listen on.", min=0, max=65535)] = 6567,
    workers: Annotated[int, typer.Option(help="Worker processes (each loads the models).", min=1)] = 1,
    max_records: Annotated[int, typer.Option(help="Most records in one predict request.", min=1)] = 1000,
    cache_size: Annotated[
        int,
        typer.Option(help="Answers kept in the in-process cache when keel.yaml's cache is memory (0: none).", min=0),
    ] = 10_000,
    cache_ttl: Annotated[
        float, typer.Option(help="Seconds a Redis cache (cache: redis://...) keeps an answer.", min=0.001)
    ] = 3600.0,
    reload_seconds: Annotated[
        float, typer.Option(help="Poll each alias this often and swap to its new version (0: never).", min=0)
    ] = 0.0,
    log_level: Annotated[
        LogLevel,
        typer.Option(help="Level of the JSON logs on standard error (info logs every request).", case_sensitive=False),
    ] = LogLevel.info,
    allow_pickle: Annotated[
        bool, typer.Option(help="Load pickle-based (joblib) model packages: only those whose origin you trust.")
    ] = False,
    ui: Annotated[
        bool, typer.Option(help="Also serve the web UI under /ui (behind KEEL_API_TOKEN when it is set).")
    ] = False,
) -> None:
    """Serve models over HTTP: POST /v1/models/{name}/predict, GET /v1/models, /ready, /health, /metrics.

    Set KEEL_API_TOKEN to require 'Authorization: Bearer <token>' on every endpoint but /health, /ready and
    the docs. Answers are cached as keel.yaml's cache says (memory, none, redis://...); every prediction is
    logged to <offline>/_prediction_log/ unless keel.yaml's prediction_log.enabled is false.
    """
    options: dict[str, Any] = {
        "max_records": max_records,
        "cache_size": cache_size,
        "reload_seconds": reload_seconds or None,
        "cache_ttl_seconds": cache_ttl,
        "allow_pickle": allow_pickle,
        "ui": ui,
    }
    launch(
        project,
        lambda proj: proj.prediction_app(model, close_project=True, **options),
        lambda app, _proj: ", ".join(f"{m.name} v{m.version}" for m in app.state.models.values()),
        factory="keel.cli._serve:prediction_app_from_environment",
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        environment={MODELS_VARIABLE: ",".join(model), OPTIONS_VARIABLE: orjson.dumps(options).decode()},
    )


def prediction_app_from_environment() -> FastAPI:
    """The prediction service of ``$KEEL_SERVE_MODELS`` in the project ``$KEEL_PROJECT``, owning it.

    The app factory uvicorn's worker processes call (``keel serve --workers N``).
    """
    from keel.project import Project

    project = Project.open(os.environ.get(PROJECT_VARIABLE) or ".")
    models = [m for m in os.environ.get(MODELS_VARIABLE, "").split(",") if m]
    options = orjson.loads(os.environ.get(OPTIONS_VARIABLE) or "{}")
    return project.prediction_app(models, close_project=True, **options)


def feature_app_from_environment() -> FastAPI:
    """The feature server of the project in ``$KEEL_PROJECT`` (default: the current folder), owning it.

    The app factory uvicorn's worker processes call (``keel serve-features --workers N``).
    """
    from keel.project import Project

    return Project.open(os.environ.get(PROJECT_VARIABLE) or ".").feature_app(close_project=True)


def launch(
    project: Path,
    build: Callable[[Project], FastAPI],
    served: Callable[[FastAPI, Project], str],
    *,
    factory: str,
    host: str,
    port: int,
    workers: int,
    log_level: LogLevel,
    environment: dict[str, str] | None = None,
) -> None:
    """Configure the JSON logs, open the project, build its app, say what is served, and run the server.

    The project is opened and the app built here even with several workers: a wrong folder, configuration
    or model reference fails now, in one line, rather than in workers that would be started again and again.

    Args:
        project: the project folder.
        build: the app of the opened project (it owns the project: closes it at shutdown).
        served: what the app serves, for the announcement (``churn v3``).
        factory: the ``module:function`` each worker process builds its own app with.
        host: the address to listen on.
        port: the port to listen on.
        workers: worker processes.
        log_level: the level of the server's logs.
        environment: variables the workers' factory reads, besides the project folder.
    """
    from keel.serving._logging import log_config, service_log

    level = log_level.value
    config = log_config(level)
    logging.config.dictConfig(config)
    proj = open_project(project)
    app = build(proj)
    service_log.info(
        "serving %s at http://%s:%d (docs at /docs)",
        served(app, proj),
        host,
        port,
        extra={"project": str(proj.root), "workers": workers},
    )
    run_server(
        app,
        proj,
        factory=factory,
        host=host,
        port=port,
        workers=workers,
        level=level,
        config=config,
        environment=environment,
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
