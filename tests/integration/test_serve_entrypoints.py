"""Every documented way to start the Agent Server starts it, and a misconfiguration is one line, not a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.agent_server import server_env

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ENV_FILE = REPO / "deploy" / "agent-server" / "agent-server.env"


def answers(url: str) -> str:
    resp = httpx.post(f"{url}/invocations", json={"input": [{"role": "user", "content": "ping"}]}, timeout=60)
    assert resp.status_code == 200, resp.text
    return resp.json()["output"][-1]["content"][0]["text"]


def test_kagent_mlflow_serve_command(agent_server_factory, scripted_model):
    server = agent_server_factory(
        scripted_model.root, command=[str(BIN / "kagent-mlflow"), "serve", "--host", "127.0.0.1", "--port", "0"]
    )
    assert answers(server.url) == "Scripted answer to: ping"


def env_file_values() -> dict[str, str]:
    values = {}
    for line in ENV_FILE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def test_container_entry_point_with_the_documented_env_file(agent_server_factory, scripted_model, mlflow_server):
    env = env_file_values()
    assert {"LLAMA_STACK_BASE_URL", "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME"} <= env.keys()
    env.update(LLAMA_STACK_BASE_URL=scripted_model.root, MLFLOW_TRACKING_URI=mlflow_server.url, KAGENT_MLFLOW_AGENT="")
    cmd = [str(BIN / "uvicorn"), "kagent_mlflow.serve.asgi:app", "--host", "127.0.0.1", "--port", "0"]
    server = agent_server_factory(scripted_model.root, tracking_uri=mlflow_server.url, extra_env=env, command=cmd)
    assert answers(server.url) == "Scripted answer to: ping"


def test_uvicorn_factory_entry_point(agent_server_factory, scripted_model):
    cmd = [
        str(BIN / "uvicorn"),
        "--factory",
        "kagent_mlflow.serve.app:create_app",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
    ]
    server = agent_server_factory(scripted_model.root, command=cmd)
    assert answers(server.url) == "Scripted answer to: ping"


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--agent", "no_such_module:agent"], {}, "error: cannot load agent 'no_such_module:agent'"),
        (["--agent", "just-a-name"], {}, "is not 'module:attribute'"),
        (["--port", "70000"], {}, "error: port 70000 is out of range"),
        ([], {"LLAMA_STACK_BASE_URL": "localhost:8321", "KAGENT_MLFLOW_AGENT": ""}, "is not an http(s) URL"),
        ([], {"KAGENT_MLFLOW_REQUEST_TIMEOUT": "soon"}, "KAGENT_MLFLOW_REQUEST_TIMEOUT='soon' is not a number"),
        ([], {"KAGENT_MLFLOW_TOOL_THREADS": "many"}, "KAGENT_MLFLOW_TOOL_THREADS='many' must be a whole number >= 1"),
    ],
)
def test_misconfiguration_is_one_line_and_exit_2(args, env, message):
    for cmd in ([str(BIN / "kagent-mlflow"), "serve"], [sys.executable, "-m", "kagent_mlflow.serve"]):
        full_env = server_env("http://127.0.0.1:9", extra=env)
        proc = subprocess.run(
            [*cmd, "--host", "127.0.0.1", *args], env=full_env, cwd=REPO, capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 2, (cmd, proc.stdout, proc.stderr)
        assert message in proc.stderr
        assert "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
