"""A private S3-compatible server for tests and benchmarks: moto's server in a subprocess on 127.0.0.1 (a plain
module on ``sys.path``, like ``_training_fixtures``).

It runs on a free port with its own log, in which every request it answered is one line; :meth:`S3Server.requests`
reads them back, so a caller can count the round trips an operation made (``PUT``, ``GET``, ``LIST`` ...). The
server is in memory: what it stores is gone when it stops. It checks no signature: any credentials are accepted.
"""

from __future__ import annotations

import collections
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Self

#: Secret-looking credentials the tests put in the environment (AWS's documented shapes; the secret holds a ``/``
#: and a ``+``, as real ones do), so that a test can look for them where they must never appear.
ACCESS_KEY = "AKIAKEELTESTEXAMPLE7"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYKEELTESTKEY"

#: A request line of the server's log: ``... "PUT /bucket/key HTTP/1.1" 200 -`` (some wrapped in colour codes).
_REQUEST = re.compile(r"(GET|PUT|POST|HEAD|DELETE) (/\S*) HTTP/")


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


class ServerUnavailable(RuntimeError):
    """moto's server is not installed (``pip install 'moto[server]'``, part of the dev extra)."""


class S3Server:
    """``python -m moto.server`` on 127.0.0.1 and a free port; :attr:`url` is its endpoint.

    Args:
        folder: where its log is written.
        timeout: seconds to wait for it to listen.
    """

    def __init__(self, folder: Path, *, timeout: float = 30.0) -> None:
        try:
            import moto.server  # noqa: F401
        except ImportError as exc:
            raise ServerUnavailable(f"moto's server is not installed ({exc}); pip install 'moto[server]'") from exc
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / "moto-server.log"
        # The server needs no credentials: it is given none of this process's.
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto's server exited with {self.process.returncode}: {self._tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    self.close()
                    raise RuntimeError(f"moto's server does not listen after {timeout} s: {self._tail()}") from None
                time.sleep(0.05)

    def _tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:]

    def requests(self) -> list[tuple[str, str]]:
        """Every request answered so far, oldest first, as ``(method, path and query)``.

        The server writes a request's line before it sends the answer, so an operation's requests are all
        here once it returned.
        """
        text = self.log.read_text(errors="replace")
        return [(m.group(1), m.group(2)) for m in map(_REQUEST.search, text.splitlines()) if m]

    def close(self) -> None:
        """Stop the server (its data is gone)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def request_kinds(requests: list[tuple[str, str]]) -> dict[str, int]:
    """Requests counted by what they do: ``GET`` (an object's bytes), ``HEAD``, ``PUT`` (an object, or a
    server-side copy), ``LIST``, ``DELETE`` (one request removes many keys), ``UPLOAD`` (the start, parts and
    completion of multipart uploads)."""
    counts: collections.Counter[str] = collections.Counter()
    for method, path in requests:
        if method == "GET" and "list-type=" in path:
            counts["LIST"] += 1
        elif method == "POST" and path.endswith("?delete"):
            counts["DELETE"] += 1
        elif "uploadId=" in path or path.endswith("?uploads"):
            counts["UPLOAD"] += 1
        else:
            counts[method] += 1
    return dict(counts)


#: The endpoint fsspec's cached S3 filesystems were made for (``None``: unknown, make new ones).
_clients_for: list[str | None] = [None]


def forget_s3_clients() -> None:
    """Drop fsspec's cached S3 filesystems: each read its endpoint and credentials when it was made (a test that
    changes them calls this)."""
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    _clients_for[0] = None


def use_s3_clients_for(endpoint: str) -> None:
    """Make sure the S3 filesystems fsspec hands out are made for ``endpoint``; those already made for it are
    kept (making one costs about a second: botocore loads its service model)."""
    if _clients_for[0] != endpoint:
        forget_s3_clients()
        _clients_for[0] = endpoint
