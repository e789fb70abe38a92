"""The embedded default: no tracking URI -> local SQLite store + artifact folder under KAGENT_MLFLOW_HOME, announced
once, browsable with ``kagent-mlflow ui`` (a real MLflow UI subprocess, read back over HTTP)."""

from __future__ import annotations

import json
import select
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.support.a2a_agents import A2AAgent, answer_for
from tests.support.storage import sqlite_rows, stored_run

from .test_storage_backends import CLI, clean_env, run_cli

pytestmark = pytest.mark.integration


def ask(home: Path, agent: A2AAgent, question: str) -> subprocess.CompletedProcess[str]:
    args = ["ask", question, "--json", "--a2a-url", agent.url, "--experiment", "embedded-ui", "--flush-timeout", "120"]
    return run_cli(args, clean_env(home))


def start_ui(home: Path, *args: str) -> subprocess.Popen[str]:
    """``kagent-mlflow ui --port 0 ...`` with KAGENT_MLFLOW_HOME=home; stdout is read for the printed address."""
    cmd = [str(CLI), "ui", "--port", "0", *args]
    return subprocess.Popen(cmd, env=clean_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def read_line_with(proc: subprocess.Popen[str], needle: str, timeout: float) -> str:
    """Read the process's stdout until a line containing ``needle`` (fail with what was seen)."""
    assert proc.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            if needle in line:
                return line
        elif proc.poll() is not None:
            break
    pytest.fail(f"no line with {needle!r} within {timeout:g}s; got {seen!r}, exit {proc.poll()}")


def test_local_store_is_announced_once_then_browsable_with_ui(a2a_agent: A2AAgent, tmp_path: Path) -> None:
    home = tmp_path / "data dir"  # a space in the path, as on macOS ("Application Support")
    question = f"Where do my runs go {uuid.uuid4().hex[:6]}?"

    first = ask(home, a2a_agent, question)
    assert first.returncode == 0, first.stderr
    assert f"Logging to the local MLflow store in {home}" in first.stderr
    assert "kagent-mlflow ui" in first.stderr
    out = json.loads(first.stdout.strip().splitlines()[-1])
    assert out["answer"] == answer_for(question)
    run = stored_run(sqlite_rows(home / "mlflow.db"), out["run_id"])
    assert run is not None and run.status == "FINISHED"
    assert run.artifact_uri.startswith((home / "artifacts").as_uri())

    second = run_cli(["ask", "And now?", "--a2a-url", a2a_agent.url, "--experiment", "embedded-ui"], clean_env(home))
    assert second.returncode == 0, second.stderr
    assert "Logging to the local MLflow store" not in second.stderr  # only on first use
    # The run link points where `kagent-mlflow ui` serves by default, and says how to open it.
    run_line = next(line for line in second.stdout.splitlines() if line.startswith("Run: "))
    link, hint = run_line.removeprefix("Run: ").split(maxsplit=1)
    assert link.startswith("http://127.0.0.1:5000/#/experiments/") and hint == "(open it with: kagent-mlflow ui)"

    ui = start_ui(home)
    try:
        line = read_line_with(ui, "MLflow UI: http://127.0.0.1:", timeout=240)
        url = line.split("MLflow UI: ", 1)[1].split()[0]
        got = httpx.get(f"{url}/api/2.0/mlflow/runs/get", params={"run_id": out["run_id"]}, timeout=30).json()
        tags = {t["key"]: t["value"] for t in got["run"]["data"]["tags"]}
        assert tags["interaction_id"] == out["interaction_id"]
        artifact = httpx.get(
            f"{url}/get-artifact", params={"path": "answer.txt", "run_uuid": out["run_id"]}, timeout=30
        )
        assert artifact.status_code == 200
        assert artifact.text == answer_for(question)
        _, experiment_id, _, run_id = link.split("#/", 1)[1].split("/")
        linked = httpx.get(f"{url}/api/2.0/mlflow/runs/get", params={"run_id": run_id}, timeout=30).json()
        assert linked["run"]["info"]["experiment_id"] == experiment_id
    finally:
        ui.send_signal(signal.SIGINT)  # Ctrl+C
        code = ui.wait(60)
        ui_err = ui.stderr.read() if ui.stderr else ""
    assert code == 0, ui_err
    assert "Traceback" not in ui_err
    with pytest.raises(httpx.TransportError):  # the MLflow server went with it
        httpx.get(f"{url}/health", timeout=5)


def test_ui_stops_its_server_when_terminated(tmp_path: Path) -> None:
    """``kill`` (or a closed terminal) must not orphan the MLflow server the UI command started."""
    ui = start_ui(tmp_path)
    try:
        url = read_line_with(ui, "MLflow UI: http://", timeout=240).split("MLflow UI: ", 1)[1].split()[0]
        assert httpx.get(f"{url}/health", timeout=10).status_code == 200
    finally:
        ui.send_signal(signal.SIGTERM)
        code = ui.wait(60)
    assert code == 0, ui.stderr.read() if ui.stderr else ""
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/health", timeout=5)


def test_ui_refuses_a_tracking_server_uri(tmp_path: Path) -> None:
    done = run_cli(["ui", "--backend-store-uri", "http://mlflow.example:5000"], clean_env(tmp_path), timeout=60)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "serves its own UI" in lines[0], done.stderr


def test_ui_reports_a_taken_port(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_cli(["ui", "--port", str(port)], clean_env(tmp_path), timeout=60)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    expected = f"error: cannot listen on 127.0.0.1:{port} (Address already in use); pass another --port or --host"
    assert done.stderr.strip() == expected


def test_embedded_home_defaults_to_the_user_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without KAGENT_MLFLOW_HOME the store lives in the platform's user data dir for the app."""
    from platformdirs import user_data_dir

    from kagent_mlflow.config import Settings

    monkeypatch.delenv("KAGENT_MLFLOW_HOME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    settings = Settings.from_env()
    home = Path(user_data_dir("kagent-mlflow", appauthor=False))
    assert settings.is_embedded
    assert settings.effective_tracking_uri == f"sqlite:///{home / 'mlflow.db'}"
    assert settings.embedded_artifact_root == home / "artifacts"


@pytest.mark.postgres
def test_ui_on_a_postgres_store(pg_database, mlflow_pg_s3_proxied, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """``--backend-store-uri`` browses any store: here the PostgreSQL database behind the session's servers."""
    from mlflow.tracking import MlflowClient

    name = f"ui-on-postgres-{uuid.uuid4().hex[:8]}"
    experiment_id = MlflowClient(mlflow_pg_s3_proxied.url).create_experiment(name)
    ui = start_ui(tmp_path / "home", "--backend-store-uri", pg_database.uri)
    try:
        url = read_line_with(ui, "MLflow UI: http://", timeout=240).split("MLflow UI: ", 1)[1].split()[0]
        got = httpx.get(f"{url}/api/2.0/mlflow/experiments/get", params={"experiment_id": experiment_id}, timeout=30)
        assert got.json()["experiment"]["name"] == name
    finally:
        ui.send_signal(signal.SIGINT)
        code = ui.wait(60)
    assert code == 0
