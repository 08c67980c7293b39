"""Serving command: serve (the prediction service)."""

from __future__ import annotations

import logging.config
from pathlib import Path
from typing import Annotated

import orjson
import typer

from keel.cli._common import ProjectOption, open_project
from keel.cli._serve import LogLevel, run_server


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
) -> None:
    """Serve models over HTTP: POST /v1/models/{name}/predict, GET /v1/models, /ready, /health, /metrics.

    Set KEEL_API_TOKEN to require 'Authorization: Bearer <token>' on every endpoint but /health, /ready and
    the docs. Answers are cached as keel.yaml's cache says (memory, none, redis://...); every prediction is
    logged to <offline>/_prediction_log/ unless keel.yaml's prediction_log.enabled is false.
    """
    from keel.serving._logging import log_config, service_log
    from keel.serving._predict_app import _OPTIONS_VARIABLE, MODELS_VARIABLE, create_prediction_app

    level = log_level.value
    config = log_config(level)
    logging.config.dictConfig(config)
    options = {
        "max_records": max_records,
        "cache_size": cache_size,
        "reload_seconds": reload_seconds or None,
        "cache_ttl_seconds": cache_ttl,
        "allow_pickle": allow_pickle,
    }
    # Loaded here even with several workers: a wrong reference fails now, in one line.
    proj = open_project(project)
    app = create_prediction_app(proj, model, close_project=True, **options)  # type: ignore[arg-type]
    service_log.info(
        "serving %s at http://%s:%d (docs at /docs)",
        ", ".join(f"{m.name} v{m.version}" for m in app.state.models.values()),
        host,
        port,
        extra={"project": str(proj.root), "workers": workers},
    )
    run_server(
        app,
        proj,
        factory="keel.serving._predict_app:app_from_environment",
        host=host,
        port=port,
        workers=workers,
        level=level,
        config=config,
        environment={MODELS_VARIABLE: ",".join(model), _OPTIONS_VARIABLE: orjson.dumps(options).decode()},
    )
