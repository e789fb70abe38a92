"""The multi-agent example, run as a user would (``python examples/multi_agent/run.py``) against the deterministic
model server, with traces sent to a real MLflow server and read back through MLflow's API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import mlflow
import pytest
from mlflow.entities import SpanType

from tests.support.model_server import ModelServerClient

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "multi_agent"


@pytest.fixture
def example_model(scripted_model: ModelServerClient) -> ModelServerClient:
    scripted_model.set_script(**json.loads((EXAMPLE / "scripted_model.json").read_text()))
    return scripted_model


def _run(model: ModelServerClient, mlflow_url: str, experiment: str, *args: str) -> str:
    env = {
        **os.environ,
        "LLAMA_STACK_BASE_URL": model.root,
        "MLFLOW_TRACKING_URI": mlflow_url,
        "MLFLOW_EXPERIMENT_NAME": experiment,
    }
    env.pop("LLAMA_STACK_MODEL", None)  # the model id comes from the server's /v1/models
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE / "run.py"), *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def _trace(mlflow_url: str, stdout: str):
    trace_id = stdout.strip().splitlines()[-1].removeprefix("trace: ")
    mlflow.set_tracking_uri(mlflow_url)
    try:
        return mlflow.get_trace(trace_id)
    finally:
        mlflow.set_tracking_uri(None)


def test_supervisor_example_consults_both_specialists(example_model, mlflow_server) -> None:
    out = _run(example_model, mlflow_server.url, f"example-{uuid.uuid4().hex[:8]}", "Why does shop keep crashing?")
    answer = out.splitlines()[0]
    assert answer.startswith('Cause and fix. From the docs: [{"title": "Resource limits and OOMKilled"')
    assert "oc set resources deployment/web" in answer
    assert "  -> ask_k8s_troubleshooter(" in out and "  -> ask_openshift_docs(" in out

    trace = _trace(mlflow_server.url, out)
    spans = trace.data.spans
    agents = {s.name: s for s in spans if s.span_type == SpanType.AGENT}
    assert set(agents) == {"predict", "k8s_troubleshooter", "openshift_docs"}
    by_id = {s.span_id: s for s in spans}
    assert by_id[agents["k8s_troubleshooter"].parent_id].name == "ask_k8s_troubleshooter"
    assert by_id[agents["openshift_docs"].parent_id].name == "ask_openshift_docs"
    tools = sorted(s.name for s in spans if s.span_type == SpanType.TOOL)
    assert tools == ["ask_k8s_troubleshooter", "ask_openshift_docs", "list_pods", "recent_events", "search_docs"]
    assert sum(s.span_type == SpanType.LLM for s in spans) == 7  # supervisor 3, each specialist 2
    usage_line = next(line for line in out.splitlines() if line.startswith("usage: "))
    assert usage_line == "usage: input={input_tokens} output={output_tokens} total={total_tokens}".format(
        **trace.info.token_usage
    )


def test_router_example_returns_one_specialists_answer_streaming(example_model, mlflow_server) -> None:
    out = _run(
        example_model,
        mlflow_server.url,
        f"example-{uuid.uuid4().hex[:8]}",
        "--router",
        "--stream",
        "How do I expose a service with a route?",
    )
    assert out.splitlines()[0].startswith('From the docs: [{"title": "Routes"')
    trace = _trace(mlflow_server.url, out)
    assert {s.name for s in trace.data.spans if s.span_type == SpanType.AGENT} == {"predict_stream", "openshift_docs"}


def test_supervisor_example_streams_the_specialists_work_then_the_answer(example_model, mlflow_server) -> None:
    question = "Why does shop keep crashing?"
    streamed = _run(example_model, mlflow_server.url, f"example-{uuid.uuid4().hex[:8]}", "--stream", question)
    plain = _run(example_model, mlflow_server.url, f"example-{uuid.uuid4().hex[:8]}", question)
    answer = plain.splitlines()[0]
    lines = streamed.splitlines()
    answer_line = lines.index(answer)  # the supervisor's answer, streamed after its specialists' text
    assert answer_line >= 2 and all(line and not line.startswith("  -> ") for line in lines[:answer_line])
