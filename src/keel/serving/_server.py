"""An HTTP app served in a background thread of this process (the demo, tests and benchmarks use it)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from keel.errors import BackendError

__all__ = ["background_server"]


@contextmanager
def background_server(app: Any, *, host: str = "127.0.0.1", port: int = 0, timeout: float = 30.0) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a thread of this process, on ``port`` (0: a free one); yields its base URL.

    Leaving the block shuts the server down gracefully: the app's lifespan shutdown runs (the prediction
    service writes out its prediction log) before it returns. Uvicorn configures no logging here.

    Raises:
        BackendError: the server did not start within ``timeout`` seconds (its startup failed).

    Example:
        >>> with background_server(project.prediction_app(["churn@champion"])) as url:  # doctest: +SKIP
        ...     urllib.request.urlopen(f"{url}/ready")
    """
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    config = uvicorn.Config(app, log_config=None, log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="keel-server", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise BackendError(f"the HTTP server on {host}:{sock.getsockname()[1]} did not start")
            time.sleep(0.005)
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()
