"""``keel serve-features`` as an operator runs it: a real server process, reached over the network."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from _serving_project import build_project


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_keel_serve_features_serves_over_http_with_two_workers_and_stops_cleanly(tmp_path: Path) -> None:
    build_project(tmp_path / "project").close()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    env["KEEL_API_TOKEN"] = "test-token"
    server = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from keel.cli import main; main()",
            "serve-features",
            "--project",
            str(tmp_path / "project"),
            "--port",
            str(port),
            "--workers",
            "2",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, f"the server exited early: {server.communicate()[1]}"
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not answer /health within 60 s"
            time.sleep(0.2)

        auth = {"Authorization": "Bearer test-token"}
        with httpx.Client(base_url=base, headers=auth, timeout=10) as client:
            read = client.post(
                "/features", json={"features": ["activity:plan"], "entities": [{"customer_id": 2}, {"customer_id": 9}]}
            )
            bad = client.post("/features", json={"features": ["activity:plan"], "entities": [{"customer": 2}]})
            for _ in range(4):
                client.post("/features", json={"features": ["activity:plan"], "entities": [{"customer_id": 1}]})
            metrics = client.get("/metrics").text
            refused = httpx.post(f"{base}/features", json={"features": [], "entities": []}, timeout=10)

        assert read.status_code == 200, read.text
        assert read.json() == {"features": {"plan": ["premium", None]}, "versions": {"activity": 1}}
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "customer_id"
        assert refused.status_code == 401
        # Whichever worker answered the scrape, the counts are the sum over both workers.
        assert 'keel_http_requests_total{method="POST",route="/features",status="200"} 5.0' in metrics
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            _, stderr = server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            _, stderr = server.communicate()
            pytest.fail(f"the server did not stop within 30 s of SIGTERM: {stderr[-2000:]}")
    assert server.returncode == 0, stderr[-2000:]
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    access = [entry for entry in lines if entry["logger"] == "keel.serving.access"]
    assert any(entry["status"] == 422 and entry["route"] == "/features" for entry in access)
    assert "Traceback" not in stderr


def test_keel_serve_features_on_a_missing_project_fails_in_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", "from keel.cli import main; main()", "serve-features", "-p", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("KEEL_")},
    )

    assert result.returncode == 1
    assert "error:" in result.stderr and "no project folder" in result.stderr
    assert "Traceback" not in result.stderr
