"""Issue 11, items 4 and 5, against the REAL kagent runtime and a real MLflow server, read back from MLflow.

Item 4: the agent's tool calls become TOOL spans (arguments, result, times) and each model call an LLM span with its
token usage, so MLflow's trace view lists the tools and the usage per call.
Item 5: the client's ``traceparent`` names the trace the sink writes later; the runtime, with OpenTelemetry on and
exporting OTLP to MLflow's ``/v1/traces``, puts its own spans into that same trace, under our AGENT span.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from kagent_mlflow.config import Settings
from kagent_mlflow.logger import KagentMLflowLogger
from kagent_mlflow.trace_context import root_span_hex, trace_id_for
from tests.support.kagent_runtime import (
    TOOL_RULE,
    KagentRuntime,
    expected_usage,
    kagent_executable,
    mlflow_tracing_env,
    start_runtime,
    stop_runtime,
)
from tests.support.mlflow_server import MlflowServer
from tests.support.model_server import ModelServerClient, prompt_tokens

QUESTION = "Which pods run in the default namespace?"
SECRET = "a2a-bearer-token-for-the-trace-test"
ANSWER = f"Scripted answer to: {QUESTION} | tool results: pods in default: web-1, web-2"


@pytest.fixture(scope="module")
def experiment(mlflow_server: MlflowServer) -> tuple[str, str]:
    """(name, id) of a fresh experiment: the runtime's exporter needs the id, the client the name."""
    name = f"kagent-trace-{uuid.uuid4().hex[:8]}"
    return name, MlflowClient(mlflow_server.url).create_experiment(name)


@pytest.fixture(scope="module")
def traced_runtime(
    model_server: ModelServerClient,
    mlflow_server: MlflowServer,
    experiment: tuple[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[KagentRuntime]:
    """A second real kagent runtime, this one with OpenTelemetry on, exporting to the test MLflow server."""
    if not kagent_executable().exists():
        reason = f"kagent runtime not installed ({kagent_executable()} missing): run scripts/setup-kagent-runtime.sh"
        if os.environ.get("KAGENT_MLFLOW_CI") == "1":
            pytest.fail(f"KAGENT_MLFLOW_CI=1 and {reason}", pytrace=False)
        print(f"SKIP: {reason}")
        pytest.skip(reason)
    env = mlflow_tracing_env(mlflow_server.url, experiment[1])
    runtime = start_runtime(model_server, tmp_path_factory.mktemp("kagent-traced"), env=env)
    try:
        yield runtime
    finally:
        stop_runtime(runtime)


def ask(
    url: str, mlflow_url: str, experiment_name: str, home: Path, *, stream: bool = False, token: str | None = None
) -> Any:
    """Ask QUESTION through the library (``send_question``, or ``stream_question``), wait until MLflow has it."""
    settings = Settings(
        a2a_url=url, tracking_uri=mlflow_url, experiment_name=experiment_name, home=home, timeout=60, a2a_token=token
    )
    with KagentMLflowLogger(settings=settings) as logger:
        result = logger.stream_question(QUESTION).wait() if stream else logger.send_question(QUESTION)
        assert logger.flush(60), "the record did not reach MLflow"
    return result


def runtime_spans_in(client: MlflowClient, trace_id: str, calls: int = 2) -> Any:
    """The trace, once the runtime's spans are in (it exports before replying; a slow server may still be storing)."""
    trace = client.get_trace(trace_id)
    deadline = time.monotonic() + 60
    while len([s for s in trace.data.spans if s.name == "call_llm"]) < calls and time.monotonic() < deadline:
        time.sleep(0.5)
        trace = client.get_trace(trace_id)
    return trace


def by_type(spans: list[Any], span_type: str) -> list[Any]:
    return [s for s in spans if s.span_type == span_type]


def test_tool_call_and_usage_per_model_call_from_the_real_runtime(
    kagent_runtime: KagentRuntime,
    scripted_model: ModelServerClient,
    mlflow_server: MlflowServer,
    experiment: tuple[str, str],
    tmp_path: Path,
) -> None:
    scripted_model.set_script([TOOL_RULE])
    result = ask(kagent_runtime.url, mlflow_server.url, experiment[0], tmp_path)
    assert result["answer"] == ANSWER

    trace = MlflowClient(mlflow_server.url).get_trace(trace_id_for(result["interaction_id"]))
    spans = trace.data.spans
    (root,) = [s for s in spans if s.parent_id is None]
    assert [(s.span_type, s.name) for s in spans if s.parent_id == root.span_id] == [
        ("LLM", "llm_call"),
        ("TOOL", "get_pods"),
        ("LLM", "llm_call"),
    ]
    (tool,) = by_type(spans, "TOOL")
    assert tool.inputs == {"namespace": "default"}
    assert tool.outputs == {"result": "pods in default: web-1, web-2"}
    assert tool.get_attribute("tool_call_id").startswith("call_")
    # Each LLM span carries the usage of its own chat completion: its prompt is what the model server was sent.
    requests = scripted_model.chat_requests()
    llm_spans = by_type(spans, "LLM")
    usages = [s.get_attribute("mlflow.chat.tokenUsage") for s in llm_spans]
    assert [u["input_tokens"] for u in usages] == [prompt_tokens(r["messages"]) for r in requests]
    assert llm_spans[0].outputs["tool_calls"][0]["name"] == "get_pods" and llm_spans[1].outputs == ANSWER
    # The trace's usage is the whole question's, counted once (not again for the per-call spans).
    expected = expected_usage(scripted_model, ANSWER)
    assert trace.info.token_usage == {
        "input_tokens": expected["promptTokenCount"],
        "output_tokens": expected["candidatesTokenCount"],
        "total_tokens": expected["totalTokenCount"],
    }
    assert sum(u["total_tokens"] for u in usages) == expected["totalTokenCount"]


def test_a_streamed_question_gives_timed_spans(
    kagent_runtime: KagentRuntime,
    scripted_model: ModelServerClient,
    mlflow_server: MlflowServer,
    experiment: tuple[str, str],
    tmp_path: Path,
) -> None:
    """``message/stream`` events are stamped: the TOOL span runs from the call's event to the response's, inside the
    AGENT span, between the two model calls."""
    scripted_model.set_script([TOOL_RULE])
    result = ask(kagent_runtime.url, mlflow_server.url, experiment[0], tmp_path, stream=True)
    assert result["answer"] == ANSWER and isinstance(result["response"], list)  # the raw event list

    spans = MlflowClient(mlflow_server.url).get_trace(trace_id_for(result["interaction_id"])).data.spans
    root, first, tool, second = spans
    assert [s.span_type for s in spans] == ["AGENT", "LLM", "TOOL", "LLM"]
    assert {s.get_attribute("timing") for s in spans[1:]} == {"agent event timestamps"}
    assert root.start_time_ns <= first.start_time_ns < first.end_time_ns <= tool.start_time_ns
    assert tool.start_time_ns <= tool.end_time_ns <= second.start_time_ns < second.end_time_ns <= root.end_time_ns
    assert (tool.name, tool.inputs) == ("get_pods", {"namespace": "default"})
    assert first.get_attribute("mlflow.chat.tokenUsage")["input_tokens"] > 0


def test_the_runtime_joins_the_clients_trace(
    traced_runtime: KagentRuntime,
    scripted_model: ModelServerClient,
    mlflow_server: MlflowServer,
    experiment: tuple[str, str],
    tmp_path: Path,
) -> None:
    scripted_model.set_script([TOOL_RULE])
    result = ask(traced_runtime.url, mlflow_server.url, experiment[0], tmp_path, token=SECRET)
    assert result["answer"] == ANSWER
    trace_id = trace_id_for(result["interaction_id"])
    client = MlflowClient(mlflow_server.url)

    trace = runtime_spans_in(client, trace_id)
    spans = trace.data.spans
    names = sorted({s.name for s in spans})
    what = f"trace {trace_id} spans: {names}\nruntime log:\n{traced_runtime.log_tail(2000)}"

    # Our AGENT span is the one root; the runtime's server span ("POST /") is its child: the runtime received our
    # traceparent and continued it.
    roots = [s for s in spans if s.parent_id is None]
    assert [(r.span_id, r.span_type) for r in roots] == [(root_span_hex(result["interaction_id"]), "AGENT")], what
    ids = {s.span_id for s in spans}
    assert all(s.parent_id in ids for s in spans if s.parent_id is not None), what  # one connected tree
    server_spans = [s for s in spans if s.parent_id == roots[0].span_id and s.name.startswith("POST")]
    assert server_spans, what
    # The runtime's own view of the same work is in the same trace: its agent, model and tool spans.
    assert any(s.name == "invoke_agent rh_analyze_simple" and s.span_type == "AGENT" for s in spans), what
    assert any(s.name == "execute_tool get_pods" and s.span_type == "TOOL" for s in spans), what
    assert len([s for s in spans if s.name == "call_llm"]) == 2, what
    assert trace.info.state.value == "OK"
    # Usage is counted once: the runtime's LLM spans sit below our root, which already carries the total.
    expected = expected_usage(scripted_model, ANSWER)
    assert trace.info.token_usage["total_tokens"] == expected["totalTokenCount"]
    # And no second trace holds the runtime's spans for this question (health probes make their own traces).
    others = client.search_traces(locations=[experiment[1]], max_results=100)
    stray = [t.info.trace_id for t in others if t.info.trace_id != trace_id
             and any(s.name.startswith("invoke_agent") for s in t.data.spans)]  # fmt: skip
    assert stray == [], what
    # The bearer token the client sent is in none of the spans, ours or the runtime's.
    assert SECRET not in json.dumps([s.to_dict() for s in spans], default=str), what


def test_a_streamed_conversation_joins_turn_by_turn(
    traced_runtime: KagentRuntime,
    scripted_model: ModelServerClient,
    mlflow_server: MlflowServer,
    experiment: tuple[str, str],
    tmp_path: Path,
) -> None:
    """Each streamed turn of a conversation is its own trace holding the runtime's spans for that turn, and the
    runtime's session id (the A2A context) agrees with the conversation's MLflow session."""
    settings = Settings(
        a2a_url=traced_runtime.url, tracking_uri=mlflow_server.url, experiment_name=experiment[0], home=tmp_path
    )
    with KagentMLflowLogger(settings=settings) as logger:
        chat = logger.conversation()
        turns = [chat.ask("First question?"), chat.ask("Second question?")]
        assert logger.flush(60)
    client = MlflowClient(mlflow_server.url)
    for result in turns:
        trace = runtime_spans_in(client, trace_id_for(result["interaction_id"]), calls=1)
        spans = trace.data.spans
        what = f"spans: {sorted({s.name for s in spans})}"
        (root,) = [s for s in spans if s.parent_id is None]
        assert root.span_id == root_span_hex(result["interaction_id"]), what
        assert any(s.parent_id == root.span_id and s.name.startswith("POST") for s in spans), what
        assert len([s for s in spans if s.name == "call_llm"]) == 1, what  # this turn's model call only
        assert trace.info.trace_metadata.get("mlflow.trace.session") == result["context_id"] == chat.id
