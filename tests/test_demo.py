"""`make demo`'s fast variant, run for real: every lifecycle step on the local services, nothing left running."""

from __future__ import annotations

import configparser
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def accepts_connections(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def run_demo(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "demo", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.services
def test_fast_demo_runs_the_lifecycle_and_stops_everything(tmp_path):
    result = run_demo("--fast", "--format", "json", "--workdir", str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert len(summary["steps"]) == 12 and summary["stopped"] is True
    assert summary["data"]["malformed_to_dead_letter"] == 40
    assert summary["data"]["lake"]["curated"]["parquet_files"] > 0
    assert [m["version"] for m in summary["models"]] == ["1", "2"]
    assert all(0.5 < m["metrics"]["test_roc_auc"] <= 1.0 for m in summary["models"])
    assert summary["serving"]["errors"] == 0 and summary["serving"]["requests"] == 400
    assert summary["serving"]["p50_ms"] <= summary["serving"]["p95_ms"] <= summary["serving"]["p99_ms"]
    assert summary["drift"]["detected"] is True
    assert "[4/12] Training the first model" in result.stderr  # progress is visible while it runs
    # Each team trained under its own MLflow user and promoted its own champion.
    assert summary["teams"] == {"fraud": {"user": "team-fraud", "models": ["fraud-detector"]},
                                "payments": {"user": "team-payments", "models": ["chargeback-risk"]}}
    assert [(m["version"], m["aliases"]) for m in summary["other_models"]["chargeback-risk"]] == [("1", ["champion"])]
    # Payments' training pointed at fraud's model: the server itself said no, and fraud's champion did not move.
    refused = summary["refused"]
    assert (refused["user"], refused["status"], refused["error_code"], refused["exit_code"]) == (
        "team-payments", 403, "PERMISSION_DENIED", 4)
    assert refused["endpoint"] == "/api/2.0/mlflow/model-versions/create"
    assert refused["champion_before"] == refused["champion_after"] == summary["champion"]
    assert "[11/12] Training as team-payments, pointed at fraud-detector (must be refused)" in result.stderr
    assert "refused: HTTP 403 PERMISSION_DENIED" in result.stderr
    # The admin's password was generated for this run and stays in the (owner-only) auth config.
    ini = configparser.ConfigParser(interpolation=None)
    ini.read(tmp_path / "services" / "mlflow-auth.ini")
    admin_password = ini["mlflow"]["admin_password"]
    assert len(admin_password) >= 24 and admin_password not in result.stdout + result.stderr
    where = summary["where"]
    ports = [int(u.rsplit(":", 1)[1]) for u in (where["mlflow_ui"], where["s3_endpoint"], where["prometheus"]) if u]
    assert not [p for p in ports if accepts_connections(p)], "a service is still listening after the demo"


@pytest.mark.services
def test_demo_says_which_port_is_taken(tmp_path):
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        result = run_demo("--fast", "--port", f"mlflow={port}", "--workdir", str(tmp_path), timeout=120)
    assert result.returncode == 1
    assert f"mlflow (127.0.0.1:{port})" in result.stderr and "in use" in result.stderr, result.stderr[-2000:]


def test_demo_rejects_a_bad_port_option(tmp_path):
    result = run_demo("--port", "mlflow=notaport", "--workdir", str(tmp_path), timeout=60)
    assert result.returncode == 2 and "--port: expected SERVICE=PORT" in result.stderr
