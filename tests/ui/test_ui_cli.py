"""`keel ui`: binds 127.0.0.1:8765 by default, takes the token from --token or KEEL_UI_TOKEN, and is read-only
without one. The server itself is replaced by a recorder: these tests check what it would be given."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
from _ui_fixtures import Seeded
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from keel.cli._ui import ui


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What ``uvicorn.run`` was called with."""
    import uvicorn

    seen: dict[str, Any] = {}

    def run(app: Any, **options: Any) -> None:
        seen.update(options, app=app)

    monkeypatch.setattr(uvicorn, "run", run)
    return seen


def invoke(args: list[str], env: dict[str, str] | None = None) -> Any:
    app = typer.Typer()
    app.command()(ui)
    app.command("other")(lambda: None)  # two commands: Typer then expects the command's name
    return CliRunner().invoke(app, ["ui", *args], env=env)


def promote(app: Any, token: str) -> int:
    client = TestClient(app)
    headers = {"Authorization": f"Bearer {token}", "X-Keel-UI": "1"}
    return int(client.post("/api/models/churn/aliases/cli", json={"version": 1}, headers=headers).status_code)


def test_binds_localhost_by_default_and_is_read_only_without_a_token(seeded: Seeded, served: dict[str, Any]) -> None:
    result = invoke(["--project", str(seeded.project.root)])
    assert result.exit_code == 0, result.output
    assert (served["host"], served["port"]) == ("127.0.0.1", 8765)
    assert "read-only" in result.output
    assert promote(served["app"], "anything") == 403


def test_the_token_comes_from_the_option_or_the_environment(seeded: Seeded, served: dict[str, Any]) -> None:
    result = invoke(["--project", str(seeded.project.root), "--port", "9000"], env={"KEEL_UI_TOKEN": "from-env"})
    assert result.exit_code == 0, result.output
    assert served["port"] == 9000
    assert promote(served["app"], "wrong") == 401
    assert promote(served["app"], "from-env") == 200

    result = invoke(["--project", str(seeded.project.root), "--token", "from-option"])
    assert result.exit_code == 0, result.output
    assert promote(served["app"], "from-option") == 200


def test_listening_beyond_localhost_warns(seeded: Seeded, served: dict[str, Any]) -> None:
    result = invoke(["--project", str(seeded.project.root), "--host", "0.0.0.0"])
    assert result.exit_code == 0, result.output
    assert "warning" in result.output


def test_a_folder_without_a_project_is_a_clear_error(tmp_path: Path, served: dict[str, Any]) -> None:
    result = invoke(["--project", str(tmp_path / "missing")])
    assert result.exit_code != 0
    assert "app" not in served
