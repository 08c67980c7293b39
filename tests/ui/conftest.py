"""The seeded project and the UI app over it (see ``_ui_fixtures``), the UI served in a thread, and Chromium.

The browser tests need Debian's Chromium (``/usr/bin/chromium``) and the ``playwright`` package; without them
they skip with the reason, unless ``KEEL_REQUIRE_SERVICES=1``, where that fails (as for PostgreSQL and Redis).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from _ui_fixtures import TOKEN, Seeded, seed

from _training_fixtures import build_project, register_churn_versions

CHROMIUM = os.environ.get("KEEL_TEST_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="session")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    """The seeded project, shared by the UI tests (tests that move aliases set the state they start from)."""
    root = tmp_path_factory.mktemp("ui") / "project"
    root.mkdir()
    project, labels = build_project(root)
    register_churn_versions(project, labels)
    try:
        yield seed(project)
    finally:
        project.close()


@pytest.fixture(scope="session")
def ui_app(seeded: Seeded) -> Any:
    """The UI over the seeded project, with the token :data:`TOKEN`."""
    from keel.ui import create_app

    return create_app(seeded.project, token=TOKEN)


# -- browser ---------------------------------------------------------------------------------------------------------
def _browser_missing(reason: str) -> None:
    if os.environ.get("KEEL_REQUIRE_SERVICES") == "1":
        pytest.fail(f"the browser tests are required (KEEL_REQUIRE_SERVICES=1) but cannot run: {reason}")
    pytest.skip(f"browser tests skipped: {reason}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def ui_server(ui_app: Any) -> Iterator[str]:
    """The UI served by uvicorn in a thread on a free localhost port; yields its base URL."""
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(ui_app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the UI server did not start within 15 s")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Chromium driven by Playwright (Debian's browser: Playwright's own download is never used)."""
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        _browser_missing(f"no Chromium at {CHROMIUM}; install it with `apt-get install -y chromium`")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        _browser_missing(f"{exc}; pip install playwright (never `playwright install`: the Debian browser is used)")
    playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
    except Exception as exc:
        playwright.stop()
        _browser_missing(f"Chromium at {CHROMIUM} did not start: {exc}")
    try:
        yield browser
    finally:
        browser.close()
        playwright.stop()
