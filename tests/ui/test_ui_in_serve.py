"""The web UI mounted in the prediction service (``keel serve --ui``): its pages, API and assets under ``/ui``,
every URL of a page rooted there, behind the service's bearer token, and that token moves aliases."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import keel
from _training_fixtures import build_project, register_churn_versions
from keel.ui import CSRF_HEADER

TOKEN = "serve-and-ui-token"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[keel.Project]:
    project, labels = build_project(tmp_path_factory.mktemp("serve-ui"))
    register_churn_versions(project, labels)
    project.models.promote("churn", 1)
    try:
        yield project
    finally:
        project.close()


def test_the_ui_is_served_under_ui_with_every_url_rooted_there(project: keel.Project) -> None:
    with TestClient(project.prediction_app(["churn@champion"], ui=True, prediction_log=False)) as client:
        page = client.get("/ui/models/churn")
        assert page.status_code == 200 and 'data-base="/ui"' in page.text
        urls = re.findall(r'(?:href|src)="([^"]+)"', page.text)
        assert urls and all(u.startswith("/ui/") for u in urls), urls
        assert client.get("/ui/static/app.js").status_code == 200
        overview = client.get("/ui/api/overview").json()
        assert [m["name"] for m in overview["models"]["models"]] == ["churn"]
        assert client.get("/ui/api/models/churn").json()["aliases"] == {"champion": 1}
        # The service itself is unchanged beside it.
        assert client.get("/health").status_code == 200
        assert "churn" in client.get("/v1/models").text


def test_behind_the_token_the_ui_needs_it_and_that_token_moves_aliases(project: keel.Project) -> None:
    app = project.prediction_app(["churn@champion"], ui=True, prediction_log=False, api_token=TOKEN)
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    with TestClient(app) as client:
        assert client.get("/ui/").status_code == 401
        assert client.get("/ui/api/runs").status_code == 401
        assert client.get("/ui/api/runs", headers=bearer).status_code == 200
        move = {**bearer, CSRF_HEADER: "1"}
        url = "/ui/api/models/churn/aliases/champion"
        assert (
            client.post(url, json={"version": 2}, headers={**bearer, "Authorization": "Bearer nope"}).status_code == 401
        )
        assert client.post(url, json={"version": 2}, headers=bearer).status_code == 403  # no cross-site header
        changed = client.post(url, json={"version": 2, "reason": "from serve"}, headers=move)
        assert changed.status_code == 200, changed.text
    assert project.models.get("churn@champion").version == 2
    assert project.catalog.alias_history("churn")[-1].reason == "keel ui promote: from serve"
    project.models.promote("churn", 1)


def test_keel_serve_has_a_ui_option() -> None:
    from keel.cli import app

    result = CliRunner().invoke(app, ["serve", "--help"])
    assert result.exit_code == 0 and "--ui" in result.output


def test_the_mounted_ui_works_in_a_browser(project: keel.Project, browser: Any) -> None:
    from keel.serving import background_server

    with background_server(project.prediction_app(["churn@champion"], ui=True, prediction_log=False)) as url:
        context = browser.new_context(base_url=url)
        page = context.new_page()
        page.set_default_timeout(5_000)
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        try:
            page.goto("/ui/")
            page.wait_for_selector("main#app:not(:has(.loading))")
            page.click("nav a:has-text('Runs')")
            page.wait_for_selector("#runs-table")
            assert Path(page.url.split("?")[0]).as_posix().endswith("/ui/runs")
            page.locator("#runs-table tbody tr a").first.click()  # a run's page, still under /ui
            page.wait_for_selector("main#app:not(:has(.loading)) dl.facts")
            assert "/ui/runs/" in page.url
            assert page.locator("main .error").count() == 0
        finally:
            context.close()
    assert problems == []
