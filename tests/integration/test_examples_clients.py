"""The example clients in examples/clients/ run against a live Agent Server: directly on the scripted model, and
through a real Llama Stack server in front of it. What they print is what a user would read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CLIENTS = REPO / "examples" / "clients"
QUESTION = "Which pods run in prod?"
SCRIPT = [
    {"match": "pods", "after_tool": False, "tool_calls": [{"name": "get_pods", "arguments": {"namespace": "prod"}}]},
    {"match": "pods", "after_tool": True, "reply": "Two pods: {tool_outputs}"},
    {"match": "summarise", "reply": "In short: web-2 is crash-looping."},
]
POD_JSON = '{"web-1": "Running", "web-2": "CrashLoopBackOff"}'

pytestmark = pytest.mark.integration


def run_client(url: str, *args: str) -> str:
    cmd = [sys.executable, *args] if args[0].endswith(".py") else list(args)
    env = {**os.environ, "AGENT_SERVER_URL": url}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def check_httpx_client(url: str) -> None:
    out = run_client(url, str(CLIENTS / "httpx_client.py"), QUESTION)
    lines = out.splitlines()
    assert lines[0] == 'tool call: get_pods({"namespace": "prod"})'
    assert json.loads(lines[1].removeprefix("tool result: ")) == json.loads(POD_JSON)
    assert lines[2].startswith("answer: Two pods: ") and "CrashLoopBackOff" in lines[2]
    usage = json.loads(lines[3].removeprefix("usage: "))
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"] > 0


def check_openai_sdk_client(url: str, model_server) -> None:
    out = run_client(url, str(CLIENTS / "openai_sdk.py"), QUESTION, "--follow-up", "Please summarise that")
    lines = out.splitlines()
    assert lines[0].startswith("answer: Two pods: ")
    assert lines[1].startswith("usage: ")
    assert lines[2] == "follow-up: In short: web-2 is crash-looping."
    # the follow-up carried the first turn (question, tool call, tool result, answer) as history
    roles = [m["role"] for m in model_server.chat_requests()[-1]["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "assistant", "user"]


def check_stream_client(url: str) -> None:
    out = run_client(url, str(CLIENTS / "stream.py"), QUESTION)
    assert out.startswith('[tool call: get_pods({"namespace": "prod"})]\n[tool result: ')
    assert "Two pods: " in out and "CrashLoopBackOff" in out
    assert out.splitlines()[-1].startswith("usage: ")


def check_curl_script(url: str) -> None:
    out = run_client(url, "bash", str(CLIENTS / "curl.sh"), QUESTION)
    plain, streamed = out.split("# POST ")[1:]
    body = json.loads(plain.splitlines()[1])
    assert [item["type"] for item in body["output"]] == ["function_call", "function_call_output", "message"]
    assert "data: [DONE]" in streamed and "response.output_text.delta" in streamed


# -- against the scripted model directly ----------------------------------------------------------------------------


def test_httpx_client(agent_server, scripted_model):
    scripted_model.set_script(SCRIPT)
    check_httpx_client(agent_server.url)


def test_openai_sdk_client(agent_server, scripted_model):
    scripted_model.set_script(SCRIPT)
    check_openai_sdk_client(agent_server.url, scripted_model)


def test_stream_client(agent_server, scripted_model):
    scripted_model.set_script(SCRIPT)
    check_stream_client(agent_server.url)


def test_curl_script(agent_server, scripted_model):
    scripted_model.set_script(SCRIPT)
    check_curl_script(agent_server.url)


def test_clients_report_a_bad_server_url_in_one_line(agent_server):
    proc = subprocess.run(
        [sys.executable, str(CLIENTS / "httpx_client.py"), "hi", "--url", "http://127.0.0.1:9"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: cannot reach the agent server at http://127.0.0.1:9")
    assert "Traceback" not in proc.stderr


# -- through a real Llama Stack server ------------------------------------------------------------------------------


@pytest.mark.llama_stack
def test_clients_through_llama_stack(llama_agent_server, llama_stack_model):
    llama_stack_model.set_script(SCRIPT)
    check_httpx_client(llama_agent_server.url)
    check_openai_sdk_client(llama_agent_server.url, llama_stack_model)
    check_stream_client(llama_agent_server.url)
    check_curl_script(llama_agent_server.url)
    # every model call went through Llama Stack (it adds max_tokens) to the model behind it
    assert all(body.get("max_tokens") == 4096 for body in llama_stack_model.chat_requests())
