"""The Agent Server started with the rendered BYO Agent's own arguments answers where kagent talks to it.

kagent (controller v0.9.12, ``translator/agent``) runs a BYO image on port 8080, marks the pod ready on
``GET /.well-known/agent-card.json`` and proxies A2A JSON-RPC to ``http://<agent>.<namespace>:8080`` (the root). This
test takes ``spec.byo.deployment.args`` from the rendered ``full`` overlay, swaps only the bind address and port for
local ones, starts the real ``kagent-mlflow serve`` with them in front of the scripted model server, and checks the
probe path, A2A at the root (protocol 0.3 as kagent's proxy sends it, and 1.0), ``kagent-mlflow ask`` against it,
and that the Agent Server's own routes still answer.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient

from tests.support.agent_server import AgentServer, start_agent_server
from tests.support.manifests import find, render

pytestmark = pytest.mark.integration

CLI = str(Path(sys.executable).with_name("kagent-mlflow"))


def _local(args: list[str]) -> list[str]:
    """The manifest's arguments with the bind address and port made local (everything else as rendered)."""
    local = list(args)
    local[local.index("--host") + 1] = "127.0.0.1"
    local[local.index("--port") + 1] = "0"
    return local


@pytest.fixture(scope="module")
def byo_server(model_server) -> Iterator[AgentServer]:
    args = find(render("full"), "Agent", "mlflow-agent-server")["spec"]["byo"]["deployment"]["args"]
    assert args[0] == "serve" and args[args.index("--port") + 1] == "8080"
    server = start_agent_server(model_server.root, command=[CLI, *_local(args)])
    try:
        yield server
    finally:
        server.stop()


def _send(url: str, protocol: str) -> dict:
    if protocol == "0.3":
        message = {"kind": "message", "role": "user", "parts": [{"kind": "text", "text": "What is OpenShift?"}]}
        method, headers = "message/send", {}
    else:
        message = {"role": "ROLE_USER", "parts": [{"text": "What is OpenShift?"}]}
        method, headers = "SendMessage", {"A2A-Version": "1.0"}
    message["messageId"] = uuid.uuid4().hex
    body = {"jsonrpc": "2.0", "id": "1", "method": method, "params": {"message": message}}
    response = httpx.post(url, json=body, headers=headers, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def test_kagents_readiness_probe_path_answers(byo_server: AgentServer) -> None:
    card = httpx.get(f"{byo_server.url}/.well-known/agent-card.json", timeout=10)
    assert card.status_code == 200, card.text
    assert card.json()["name"]


@pytest.mark.parametrize("protocol", ["0.3", "1.0"])
def test_a2a_at_the_root_answers(byo_server: AgentServer, scripted_model, protocol: str) -> None:
    reply = _send(byo_server.url, protocol)
    assert "result" in reply, reply
    assert "error" not in reply


def test_ask_logs_an_answer_from_the_root_a2a_url(byo_server: AgentServer, scripted_model, mlflow_server) -> None:
    experiment = f"byo-root-{uuid.uuid4().hex[:8]}"
    done = subprocess.run(
        [CLI, "ask", "--a2a-url", f"{byo_server.url}/", "--tracking-uri", mlflow_server.url]
        + ["--experiment", experiment, "--json", "--flush-timeout", "120", "What is OpenShift?"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["answer"] == "Scripted answer to: What is OpenShift?"
    run = MlflowClient(mlflow_server.url).get_run(result["run_id"])
    assert run.data.metrics["total_tokens"] == result["usage"]["totalTokenCount"] > 0


def test_the_agent_servers_own_routes_still_answer(byo_server: AgentServer, scripted_model) -> None:
    assert httpx.get(f"{byo_server.url}/health", timeout=10).status_code == 200
    response = httpx.post(
        f"{byo_server.url}/invocations",
        json={"input": [{"role": "user", "content": "What is OpenShift?"}]},
        timeout=60,
    )
    assert response.status_code == 200, response.text
