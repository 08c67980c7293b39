"""The ``keel ui`` command: the web UI over the project's catalog, served by uvicorn on 127.0.0.1 by default.

Reading needs nothing; moving an alias needs the token given with ``--token`` or ``KEEL_UI_TOKEN`` (without one,
the UI is read-only). The UI keeps the project open while it serves and closes it on shutdown.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from keel.cli._common import ProjectOption, console, open_project

#: Where the token may come from instead of ``--token`` (a command line is visible to other local users).
TOKEN_VARIABLE = "KEEL_UI_TOKEN"
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def ui(
    project: ProjectOption = Path("."),
    host: Annotated[
        str, typer.Option(help="The address to listen on (127.0.0.1: this machine only; 0.0.0.0: every interface).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="The port to listen on.", min=0, max=65535)] = 8765,
    token: Annotated[
        str | None,
        typer.Option(
            envvar=TOKEN_VARIABLE,
            show_envvar=True,
            help="The token that allows promoting and rolling back aliases from the UI (none: read-only).",
        ),
    ] = None,
) -> None:
    """Serve the web UI: feature views, runs, models, analyses and monitoring, with a JSON API under /api.

    Pages: / (overview), /views, /runs, /compare?runs=a,b, /models/NAME, /monitoring/NAME; the API is described
    at /docs. Every asset ships with Keel: the UI works with no network.
    """
    import uvicorn

    from keel.ui import create_app

    proj = open_project(project)
    try:
        app = create_app(proj, token=token or None)
        mode = "aliases can be moved with the token" if token else f"read-only (set --token or {TOKEN_VARIABLE})"
        console.print(f"Keel UI of {proj.root} at http://{host}:{port} ({mode}); API docs at /docs")
        if host not in _LOOPBACK:
            console.print(
                f"[yellow]warning:[/] listening on {host}: anyone who reaches this port can read the catalog "
                "(the UI has no TLS and no login for reading)"
            )
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        proj.close()
