"""The Agent Server (``python -m kagent_mlflow.serve``) as a real subprocess on 127.0.0.1.

::

    server = start_agent_server(model_base_url, tracking_uri=mlflow_server.url, experiment="x")
    try:
        httpx.post(f"{server.url}/invocations", json={"input": [...]})
    finally:
        server.stop()

Fixtures:

- ``agent_server``: session server whose model is the session ``model_server`` and whose traces go to the session
  ``mlflow_server`` (experiment :data:`EXPERIMENT`). Tests script the model with ``scripted_model``.
- ``llama_agent_server``: the same, but the model is reached through the real ``llama_stack`` server.
- ``agent_server_factory``: start private servers (other env, model down, ...); all stopped at teardown.

The servers run :func:`build_test_agent` (tools ``get_pods`` and ``broken_tool``) unless ``extra_env`` names another
agent with ``KAGENT_MLFLOW_AGENT`` (``""`` = the built-in default agent).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
EXPERIMENT = "agent-server-tests"
LLAMA_EXPERIMENT = "agent-server-llama-tests"
START_TIMEOUT = float(os.environ.get("KAGENT_MLFLOW_TEST_AGENT_SERVER_START_TIMEOUT", "120"))

# Settings of the test process that must not leak into the server.
_DROP_ENV = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_EXPERIMENT_NAME",
    "MLFLOW_EXPERIMENT_ID",
    "MLFLOW_RUN_ID",
    "LLAMA_STACK_BASE_URL",
    "LLAMA_STACK_CLIENT_BASE_URL",
    "LLAMA_STACK_MODEL",
    "LLAMA_STACK_API_KEY",
    "KAGENT_MLFLOW_AGENT",
)


@dataclass
class AgentServer:
    url: str
    process: subprocess.Popen
    output: list[str] = field(default_factory=list)

    def log_tail(self, lines: int = 40) -> str:
        return "".join(self.output[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)


def server_env(
    model_base_url: str,
    *,
    model: str | None = None,
    tracking_uri: str | None = None,
    experiment: str = EXPERIMENT,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _DROP_ENV}
    env.update(
        {
            "LLAMA_STACK_BASE_URL": model_base_url,
            "LLAMA_STACK_API_KEY": "test-key",
            "MLFLOW_EXPERIMENT_NAME": experiment,
            "PYTHONUNBUFFERED": "1",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
        }
    )
    if model:
        env["LLAMA_STACK_MODEL"] = model
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    else:
        env["KAGENT_MLFLOW_TRACING"] = "false"
    env.setdefault("KAGENT_MLFLOW_AGENT", TEST_AGENT)
    # the test agent lives in tests/: importable whatever the entry point (console scripts do not add the cwd)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.update(extra or {})
    return env


def start_agent_server(
    model_base_url: str,
    *,
    model: str | None = None,
    tracking_uri: str | None = None,
    experiment: str = EXPERIMENT,
    extra_env: dict[str, str] | None = None,
    args: list[str] | None = None,
    command: list[str] | None = None,
    timeout: float = START_TIMEOUT,
) -> AgentServer:
    """Start the server on a free port and wait for ``/health``; raise with its output if it dies first.

    ``command`` replaces ``python -m kagent_mlflow.serve --host 127.0.0.1 --port 0`` (e.g. ``kagent-mlflow serve``
    or ``uvicorn ...``); the URL is read from its ``READY <url>`` or uvicorn's ``running on <url>`` line.
    """
    env = server_env(model_base_url, model=model, tracking_uri=tracking_uri, experiment=experiment, extra=extra_env)
    cmd = command or [sys.executable, "-u", "-m", "kagent_mlflow.serve", "--host", "127.0.0.1", "--port", "0"]
    cmd = [*cmd, *(args or [])]
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    server = AgentServer(url="", process=proc)
    ready = threading.Event()

    def pump() -> None:  # keep reading so the pipe never fills up and blocks the server
        assert proc.stdout is not None
        for line in proc.stdout:
            server.output.append(line)
            if ready.is_set():
                continue
            if line.startswith("READY "):
                server.url = line.split()[1]
                ready.set()
            elif "Uvicorn running on http" in line:
                server.url = line.split("running on ")[1].split()[0]
                ready.set()

    threading.Thread(target=pump, name="agent-server-output", daemon=True).start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            time.sleep(0.2)
            raise RuntimeError(f"agent server exited with {proc.returncode}:\n{server.log_tail()}")
        if ready.is_set():
            try:
                if httpx.get(f"{server.url}/health", timeout=2).status_code == 200:
                    return server
            except httpx.HTTPError:
                pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"agent server not healthy after {timeout:.0f}s:\n{server.log_tail()}")


@pytest.fixture(scope="session")
def agent_server(model_server, mlflow_server) -> Iterator[AgentServer]:
    """Agent Server -> scripted model server; traces to the session MLflow server (experiment EXPERIMENT)."""
    server = start_agent_server(model_server.root, tracking_uri=mlflow_server.url, experiment=EXPERIMENT)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def llama_agent_server(llama_stack, mlflow_server) -> Iterator[AgentServer]:
    """Agent Server -> real Llama Stack -> scripted model server; traces to the session MLflow server."""
    server = start_agent_server(
        llama_stack.base_url, model=llama_stack.model, tracking_uri=mlflow_server.url, experiment=LLAMA_EXPERIMENT
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def agent_server_factory() -> Iterator:
    """``agent_server_factory(model_base_url, **kwargs)`` -> a private server (see :func:`start_agent_server`)."""
    started: list[AgentServer] = []

    def factory(model_base_url: str, **kwargs: object) -> AgentServer:
        server = start_agent_server(model_base_url, **kwargs)  # type: ignore[arg-type]
        started.append(server)
        return server

    try:
        yield factory
    finally:
        for server in started:
            server.stop()


# -- the agent the test servers run: a LlamaStackAgent with small deterministic tools -----------------------------

PODS = {"prod": {"web-1": "Running", "web-2": "CrashLoopBackOff"}, "dev": {"api-0": "Running"}}


def build_test_agent():  # noqa: ANN201 - imported by the server subprocess (KAGENT_MLFLOW_AGENT=...)
    """A cluster helper with tools: ``get_pods`` (reads :data:`PODS`), ``broken_tool`` (always raises)."""
    from kagent_mlflow.agent import LlamaStackAgent, tool

    @tool
    def get_pods(namespace: str) -> dict[str, str]:
        """List the pods of a namespace with their status.

        Args:
            namespace: Kubernetes namespace, e.g. "prod".
        """
        if namespace not in PODS:
            raise ValueError(f"namespace {namespace!r} not found")
        return PODS[namespace]

    @tool
    def broken_tool(reason: str) -> str:
        """A tool that always fails (to show how errors reach the model).

        Args:
            reason: Any text.
        """
        raise RuntimeError(f"broken on purpose: {reason}")

    return LlamaStackAgent(
        name="cluster-helper", instructions="You help with Kubernetes clusters.", tools=[get_pods, broken_tool]
    )


def build_sync_only_agent():  # noqa: ANN201
    """The test agent behind a ResponsesAgent that has only the blocking ``predict``/``predict_stream`` (as most
    agents written for MLflow do): the server must run it on worker threads, not on its event loop."""
    from mlflow.pyfunc import ResponsesAgent

    inner = build_test_agent()

    class SyncOnlyAgent(ResponsesAgent):
        def predict(self, request):  # noqa: ANN001, ANN202
            return inner.predict(request)

        def predict_stream(self, request):  # noqa: ANN001, ANN202
            yield from inner.predict_stream(request)

    return SyncOnlyAgent()


TEST_AGENT = "tests.support.agent_server:build_test_agent"
SYNC_ONLY_AGENT = "tests.support.agent_server:build_sync_only_agent"
