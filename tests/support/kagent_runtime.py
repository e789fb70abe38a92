"""The real kagent agent runtime (PyPI ``kagent-adk``, A2A protocol 0.3) as a subprocess on 127.0.0.1, for tests.

kagent-adk 0.10.x needs ``a2a-sdk<1`` while our dev venv uses a2a-sdk 1.x, so the runtime lives in its own venv,
made by ``scripts/setup-kagent-runtime.sh`` (default ``<repo>/.venvs/kagent``; ``KAGENT_VENV`` overrides).

What it starts::

    kagent-adk run rh_analyze_simple --local --working-dir DIR --host 127.0.0.1 --port N

with ``DIR/rh_analyze_simple/`` holding ``agent.py`` (``root_agent`` built by kagent's own
``AgentConfig(...).to_agent(...)`` plus one plain Python tool, ``get_pods``), ``config.json`` (an ``openai`` model
whose ``base_url`` is our deterministic model server, ``tests/support/model_server.py``) and ``agent-card.json``
(name ``rh-analyze-simple``, the seed's agent). ADK loads agents by Python module name, so the directory uses
underscores; the card, ``KAGENT_NAME`` and the URL keep the user-facing hyphenated name, as kagent's controller does.
``--local`` swaps kagent's controller-backed session and task stores for in-memory ones, so ``KAGENT_URL`` is
never called.

In pytest use the session fixture ``kagent_runtime`` -> :class:`KagentRuntime` (``.url`` is the A2A JSON-RPC URL,
``.card_url``, ``.model`` the model server client, ``.log_path``). It skips with the reason when the venv is
missing, and FAILS instead when ``KAGENT_MLFLOW_CI=1``. Tests that script the model use ``scripted_model`` too
(it resets the shared model server); an unscripted model answers ``"Scripted answer to: <question>"``.

From a shell (records the fixtures in ``tests/fixtures/kagent/``, or serves until Ctrl-C)::

    .venv/bin/python -m tests.support.kagent_runtime record [OUT_DIR]
    .venv/bin/python -m tests.support.kagent_runtime serve
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.model_server import (
    ModelServerClient,
    content_text,
    count_words,
    prompt_tokens,
    start_subprocess,
    stop_subprocess,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
AGENT_NAME = "rh-analyze-simple"  # what users and the agent card call it
AGENT_MODULE = "rh_analyze_simple"  # ADK loads agents by Python module name
NAMESPACE = "kagent"
MODEL = "scripted-model"
INSTRUCTION = "You are rh-analyze-simple, a Kubernetes and OpenShift analysis assistant. Answer briefly."
DESCRIPTION = "Analyzes Kubernetes and OpenShift questions (kagent-mlflow test agent)."
START_TIMEOUT_S = 120.0

# agent.py as written into the agent dir: kagent's own AgentConfig builds the agent, as `kagent-adk static` does.
AGENT_PY = '''\
"""rh-analyze-simple for the kagent-mlflow tests: kagent's AgentConfig.to_agent plus one plain Python tool."""

import json
from pathlib import Path

from kagent.adk.types import AgentConfig


def get_pods(namespace: str) -> str:
    """List the pods running in a Kubernetes namespace."""
    return f"pods in {namespace}: web-1, web-2"


_config = AgentConfig.model_validate(json.loads((Path(__file__).parent / "config.json").read_text()))
root_agent = _config.to_agent("rh_analyze_simple")
root_agent.tools.append(get_pods)
'''


def kagent_venv() -> Path:
    return Path(os.environ.get("KAGENT_VENV") or REPO_ROOT / ".venvs" / "kagent")


def kagent_executable() -> Path:
    return kagent_venv() / "bin" / "kagent-adk"


def free_port() -> int:
    """A port the OS just handed out on 127.0.0.1 (closed again, so the runtime can bind it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_agent_dir(
    working_dir: Path, model_url: str, port: int, model: str = MODEL, *, model_streaming: bool = False
) -> Path:
    """Write ``working_dir/rh_analyze_simple/{agent.py,config.json,agent-card.json}``; return the agent dir.

    ``model_streaming`` sets kagent's ``stream`` (streamed chat completions: ADK then reports partial events)."""
    agent_dir = working_dir / AGENT_MODULE
    agent_dir.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {
        "model": {"type": "openai", "model": model, "base_url": model_url},
        "description": DESCRIPTION,
        "instruction": INSTRUCTION,
    }
    if model_streaming:
        config["stream"] = True
    card = {
        "name": AGENT_NAME,
        "description": DESCRIPTION,
        "url": f"http://127.0.0.1:{port}/",
        "version": "0.1.0",
        "protocolVersion": "0.3.0",
        "capabilities": {"streaming": True},
        "defaultInputModes": ["text"],
        "defaultOutputModes": ["text"],
        "skills": [
            {
                "id": "analyze",
                "name": "Analyze",
                "description": "Answers questions about Kubernetes and OpenShift clusters.",
                "tags": ["kubernetes", "openshift"],
            }
        ],
    }
    (agent_dir / "agent.py").write_text(AGENT_PY)
    (agent_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (agent_dir / "agent-card.json").write_text(json.dumps(card, indent=2) + "\n")
    return agent_dir


@dataclass
class KagentRuntime:
    """A running ``kagent-adk`` process. ``url`` is where A2A JSON-RPC requests go (and the card is served)."""

    url: str
    port: int
    working_dir: Path
    log_path: Path
    model: ModelServerClient
    process: subprocess.Popen = field(repr=False)
    name: str = AGENT_NAME

    @property
    def card_url(self) -> str:
        return f"{self.url}.well-known/agent-card.json"

    def send(self, text: str, *, method: str = "message/send", message_id: str | None = None) -> bytes:
        """POST one A2A 0.3 JSON-RPC request with a text message; return the raw response body (any HTTP status)."""
        message: dict[str, Any] = {"kind": "message", "role": "user", "parts": [{"kind": "text", "text": text}]}
        if message_id != "":
            message["messageId"] = message_id or str(uuid.uuid4())
        body = {"jsonrpc": "2.0", "id": str(uuid.uuid4()), "method": method, "params": {"message": message}}
        return post_json(self.url, body)

    def get(self, path: str) -> bytes:
        """GET a path below the runtime's root (e.g. ``.well-known/agent-card.json``); the raw body."""
        return get_bytes(self.url + path.lstrip("/"))

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def expected_usage(model: ModelServerClient, answer: str) -> dict[str, float]:
    """What the model server reported over ALL its chat completions for this question, in kagent's key names.

    Each completion's reply reappears as the last assistant message of the next request (a tool round), the last
    one is the answer; the model server counts words (tool calls: name + arguments)."""
    requests = model.chat_requests()
    prompt = sum(prompt_tokens(r["messages"]) for r in requests)
    completion = count_words(answer)
    for later in requests[1:]:
        reply = [m for m in later["messages"] if m["role"] == "assistant"][-1]
        completion += count_words(content_text(reply.get("content")))
        for call in reply.get("tool_calls") or []:
            completion += count_words(call["function"]["name"] + " " + call["function"]["arguments"])
    return {"promptTokenCount": prompt, "candidatesTokenCount": completion, "totalTokenCount": prompt + completion}


def post_json(url: str, body: Any, timeout: float = 60.0) -> bytes:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read()
    except urllib.error.HTTPError as exc:  # a JSON-RPC error body with a 4xx/5xx status is still a reply
        return exc.read()


def get_bytes(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def runtime_env(working_dir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "KAGENT_URL": "http://127.0.0.1:9",  # required by kagent-adk; never called with --local
            "KAGENT_NAME": AGENT_NAME,
            "KAGENT_NAMESPACE": NAMESPACE,
            "OPENAI_API_KEY": "test-key-not-a-secret",  # the OpenAI client insists on one; our model server ignores it
            "OTEL_TRACING_ENABLED": "false",
            "OTEL_LOGGING_ENABLED": "false",
            "PYTHONPATH": str(working_dir),  # lets kagent-adk import the agent package for its optional lifespan hook
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
    )
    env.update(extra or {})
    env.pop("VIRTUAL_ENV", None)
    return env


def mlflow_tracing_env(mlflow_url: str, experiment_id: str) -> dict[str, str]:
    """The runtime's own settings (env) that export its OpenTelemetry spans to MLflow's OTLP endpoint.

    The same settings a cluster sets on the agent (docs/tracing.md). Test-only additions: a long export timeout
    (kagent reads it in milliseconds; a cold MLflow server can take over 10 s for its first OTLP request) and
    ``KAGENT_PRE_RESPONSE_TRACE_FLUSH``, so the runtime has exported a request's spans before its reply ends.
    """
    return {
        "OTEL_TRACING_ENABLED": "true",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",  # kagent's default is gRPC; MLflow speaks OTLP/HTTP
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{mlflow_url.rstrip('/')}/v1/traces",  # the full path
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS": f"x-mlflow-experiment-id={experiment_id}",
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "60000",
        "KAGENT_PRE_RESPONSE_TRACE_FLUSH": "true",
        "KAGENT_TRACE_FLUSH_TIMEOUT_MS": "60000",
    }


def start_runtime(
    model: ModelServerClient,
    working_dir: Path,
    timeout: float = START_TIMEOUT_S,
    *,
    env: dict[str, str] | None = None,
    model_streaming: bool = False,
) -> KagentRuntime:
    """Write the agent dir, start ``kagent-adk run`` on a free port, wait until it serves its card and health.

    ``env`` adds to / overrides the runtime's environment (e.g. ``OTEL_TRACING_ENABLED=true`` and its exporter).

    The port is picked before the runtime binds it, so another process may take it in between: then it is retried
    on a new port (twice at most)."""
    for attempt in range(3):
        try:
            return _start_once(model, working_dir, timeout, env, model_streaming)
        except _PortTaken:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


class _PortTaken(RuntimeError):
    pass


def _start_once(
    model: ModelServerClient, working_dir: Path, timeout: float, env: dict[str, str] | None, model_streaming: bool
) -> KagentRuntime:
    executable = kagent_executable()
    if not executable.exists():
        raise FileNotFoundError(f"{executable} not found: run scripts/setup-kagent-runtime.sh")
    port = free_port()
    write_agent_dir(working_dir, model.url, port, model_streaming=model_streaming)
    log_path = working_dir / "kagent-adk.log"
    cmd = [str(executable), "run", AGENT_MODULE, "--local", "--working-dir", str(working_dir)]
    cmd += ["--host", "127.0.0.1", "--port", str(port)]
    with open(log_path, "wb") as log:  # a file, not a pipe: a chatty runtime can never block on it
        process = subprocess.Popen(
            cmd, cwd=working_dir, env=runtime_env(working_dir, env), stdout=log, stderr=subprocess.STDOUT
        )
    runtime = KagentRuntime(
        url=f"http://127.0.0.1:{port}/", port=port, working_dir=working_dir, log_path=log_path, model=model,
        process=process,
    )  # fmt: skip
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            tail = runtime.log_tail()
            error = _PortTaken if "address already in use" in tail.lower() else RuntimeError
            raise error(f"kagent-adk exited with {process.returncode} before serving:\n{tail}")
        try:
            get_bytes(f"{runtime.url}health", timeout=2)
            get_bytes(runtime.card_url, timeout=2)
            return runtime
        except (OSError, urllib.error.URLError):
            pass
        if time.monotonic() > deadline:
            stop_runtime(runtime)
            raise RuntimeError(f"kagent-adk did not answer within {timeout:.0f}s:\n{runtime.log_tail()}")
        time.sleep(0.25)


def stop_runtime(runtime: KagentRuntime) -> None:
    process = runtime.process
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


# --------------------------------------------------------------------------------------------------------------
# pytest fixture (loaded through pytest_plugins in tests/conftest.py)
# --------------------------------------------------------------------------------------------------------------

try:
    import pytest
except ImportError:  # pragma: no cover - the CLI runs without pytest
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture(scope="session")
    def kagent_runtime(model_server: ModelServerClient, tmp_path_factory: Any) -> Iterator[KagentRuntime]:
        """The real kagent runtime (rh-analyze-simple) in front of the session's model server."""
        if not kagent_executable().exists():
            reason = (
                f"kagent runtime not installed ({kagent_executable()} missing): "
                "run scripts/setup-kagent-runtime.sh (about 1-4 minutes)"
            )
            if os.environ.get("KAGENT_MLFLOW_CI") == "1":
                pytest.fail(f"KAGENT_MLFLOW_CI=1 and {reason}", pytrace=False)
            print(f"SKIP: {reason}")
            pytest.skip(reason)
        runtime = start_runtime(model_server, tmp_path_factory.mktemp("kagent"))
        try:
            yield runtime
        finally:
            stop_runtime(runtime)


# --------------------------------------------------------------------------------------------------------------
# CLI: record the fixtures of tests/fixtures/kagent, or serve the agent for manual use
# --------------------------------------------------------------------------------------------------------------

TOOL_RULE = {"match": "pods", "has_tool": "get_pods", "after_tool": False,
             "tool_calls": [{"name": "get_pods", "arguments": {"namespace": "default"}}]}  # fmt: skip
FAIL_RULE = {"match": "fail", "status": 500}


def record(runtime: KagentRuntime, out_dir: Path) -> list[Path]:
    """Ask the running runtime the fixture questions; save each raw response body as served."""
    out_dir.mkdir(parents=True, exist_ok=True)
    runtime.model.set_script([TOOL_RULE, FAIL_RULE])
    bodies: dict[str, bytes] = {
        "agent-card.json": runtime.get(".well-known/agent-card.json"),
        "agent.json": runtime.get(".well-known/agent.json"),
        "task-completed.json": runtime.send("What is Kubernetes?"),
        "task-tool-call.json": runtime.send("Which pods run in the default namespace?"),
        "task-failed.json": runtime.send("Please fail: the model answers HTTP 500"),
        "error-missing-message-id.json": runtime.send("What is OpenShift?", message_id=""),
        "stream-completed.sse": runtime.send("In one sentence, what is OpenShift?", method="message/stream"),
        "stream-tool-call.sse": runtime.send("Which pods run in the default namespace?", method="message/stream"),
    }
    completed = json.loads(bodies["task-completed.json"])["result"]
    bodies["tasks-get-completed.json"] = post_json(
        runtime.url,
        {"jsonrpc": "2.0", "id": "get-1", "method": "tasks/get", "params": {"id": completed["id"]}},
    )
    written = []
    for name, body in bodies.items():
        path = out_dir / name
        path.write_bytes(body)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the real kagent runtime in front of the test model server.")
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="record raw A2A replies into tests/fixtures/kagent")
    rec.add_argument("out_dir", nargs="?", default=str(REPO_ROOT / "tests" / "fixtures" / "kagent"))
    sub.add_parser("serve", help="serve rh-analyze-simple until Ctrl-C")
    args = parser.parse_args(argv)

    model = start_subprocess()
    try:
        with tempfile.TemporaryDirectory(prefix="kagent-runtime-") as tmp:
            runtime = start_runtime(model, Path(tmp))
            try:
                if args.command == "record":
                    for path in record(runtime, Path(args.out_dir)):
                        print(f"wrote {path}")
                else:
                    print(f"A2A_URL={runtime.url}  (model server {model.url}; log {runtime.log_path})", flush=True)
                    runtime.process.wait()
            except KeyboardInterrupt:
                pass
            finally:
                stop_runtime(runtime)
    finally:
        stop_subprocess(model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
