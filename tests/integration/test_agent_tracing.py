"""Traces of the agent, read back through MLflow's API from a real MLflow tracking server: one trace per request,
an AGENT span, an LLM span per model call with token usage, a TOOL span per tool execution, sub-agents nested."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator

import mlflow
import pytest
from mlflow.entities import SpanType

from kagent_mlflow.agent import LlamaStackAgent, ModelProtocolError, supervisor, tool
from tests.support.model_server import ModelServerClient

pytestmark = pytest.mark.integration

USAGE = "mlflow.chat.tokenUsage"


@pytest.fixture
def tracing_to_server(mlflow_server) -> Iterator[str]:
    """Send traces to the session MLflow server, in a fresh experiment; restore global state afterwards."""
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(mlflow_server.url)
    mlflow.tracing.reset()
    experiment = mlflow.set_experiment(f"agent-tracing-{uuid.uuid4().hex[:8]}")
    try:
        yield experiment.experiment_id
    finally:
        mlflow.flush_trace_async_logging()
        mlflow.tracing.reset()
        mlflow.set_tracking_uri(previous)


@tool
def get_pods(namespace: str) -> list[str]:
    """List the pods of a namespace."""
    return [f"{namespace}-web-1 CrashLoopBackOff"]


@tool
def broken() -> str:
    """Always fails."""
    raise RuntimeError("kubeconfig missing")


def _agent(server: ModelServerClient, **kw) -> LlamaStackAgent:
    kw.setdefault("tools", [get_pods, broken])
    return LlamaStackAgent(base_url=server.root, model="scripted-model", timeout=10, **kw)


def _ask(text: str) -> dict:
    return {"input": [{"role": "user", "content": text}]}


def _fetch(experiment_id: str, expected: int = 1) -> list:
    """The experiment's traces (oldest first), read back from the server after the async export has flushed."""
    mlflow.flush_trace_async_logging()
    traces = mlflow.search_traces(locations=[experiment_id], return_type="list", order_by=["timestamp_ms ASC"])
    assert len(traces) == expected
    return [mlflow.get_trace(t.info.trace_id) for t in traces]


def _children(trace, span) -> list:
    return [s for s in trace.data.spans if s.parent_id == span.span_id]


SCRIPT = [
    {
        "match": "crash",
        "after_tool": False,
        "tool_calls": [{"name": "get_pods", "arguments": {"namespace": "prod"}}, {"name": "broken", "arguments": {}}],
    },
    {"match": "crash", "after_tool": True, "reply": "Diagnosis: {tool_outputs}"},
]


def test_one_trace_with_agent_llm_and_tool_spans_and_usage(scripted_model, tracing_to_server) -> None:
    scripted_model.set_script(SCRIPT)
    response = _agent(scripted_model).predict(_ask("Why do pods crash?"))
    [trace] = _fetch(tracing_to_server)

    [root] = [s for s in trace.data.spans if s.parent_id is None]
    assert (root.name, root.span_type) == ("predict", SpanType.AGENT)
    kids = _children(trace, root)
    assert [(s.span_type, s.name) for s in kids] == [
        (SpanType.LLM, "chat.completions"),
        (SpanType.TOOL, "get_pods"),
        (SpanType.TOOL, "broken"),
        (SpanType.LLM, "chat.completions"),
    ]
    llm1, pods, bad, llm2 = kids
    assert llm1.inputs["messages"] == [{"role": "user", "content": "Why do pods crash?"}]
    assert llm1.get_attribute("mlflow.llm.model") == "scripted-model"
    assert llm2.outputs["choices"][0]["message"]["content"].startswith("Diagnosis: ")
    assert pods.inputs == {"namespace": "prod"} and pods.outputs == ["prod-web-1 CrashLoopBackOff"]
    assert bad.status.status_code == "ERROR" and "kubeconfig missing" in bad.outputs
    assert root.status.status_code == "OK"

    per_call = [s.get_attribute(USAGE) for s in (llm1, llm2)]
    assert all(u["total_tokens"] == u["input_tokens"] + u["output_tokens"] > 0 for u in per_call)
    summed = {k: sum(u[k] for u in per_call) for k in ("input_tokens", "output_tokens", "total_tokens")}
    assert trace.info.token_usage == summed
    assert summed == {
        "input_tokens": response.usage.input_tokens,
        "output_tokens": response.usage.output_tokens,
        "total_tokens": response.usage.total_tokens,
    }


def test_streamed_and_async_requests_are_traced_the_same_way(scripted_model, tracing_to_server) -> None:
    scripted_model.set_script(SCRIPT)
    agent = _agent(scripted_model)
    list(agent.predict_stream(_ask("Why do pods crash?")))

    async def run_async() -> None:
        await agent.apredict(_ask("Why do pods crash?"))
        async for _ in agent.apredict_stream(_ask("Why do pods crash?")):
            pass

    asyncio.run(run_async())
    traces = _fetch(tracing_to_server, expected=3)
    for trace, name in zip(traces, ["predict_stream", "apredict", "apredict_stream"], strict=True):
        [root] = [s for s in trace.data.spans if s.parent_id is None]
        assert (root.name, root.span_type) == (name, SpanType.AGENT)
        assert [s.span_type for s in _children(trace, root)] == ["LLM", "TOOL", "TOOL", "LLM"]
        assert trace.info.token_usage["total_tokens"] > 0
        assert root.outputs["output"][-1]["content"][0]["text"].startswith("Diagnosis: ")


def test_sub_agent_spans_nest_in_the_supervisors_trace(scripted_model, tracing_to_server) -> None:
    scripted_model.set_script(
        [
            {
                "has_tool": "ask_k8s",
                "after_tool": False,
                "tool_calls": [{"name": "ask_k8s", "arguments": {"request": "check prod"}}],
            },
            {
                "system": "cluster specialist",
                "after_tool": False,
                "tool_calls": [{"name": "get_pods", "arguments": {"namespace": "prod"}}],
            },
        ]
    )
    k8s = _agent(scripted_model, name="k8s", instructions="You are a cluster specialist.", tools=[get_pods])
    boss = supervisor([k8s], base_url=scripted_model.root, model="scripted-model")
    response = boss.predict(_ask("Is prod OK?"))
    [trace] = _fetch(tracing_to_server)  # ONE trace for supervisor and specialist

    spans = trace.data.spans
    [root] = [s for s in spans if s.parent_id is None]
    delegate = next(s for s in _children(trace, root) if s.span_type == SpanType.TOOL)
    assert delegate.name == "ask_k8s"
    [sub] = _children(trace, delegate)
    assert (sub.name, sub.span_type) == ("k8s", SpanType.AGENT)
    assert [(s.span_type, s.name) for s in _children(trace, sub)] == [
        ("LLM", "chat.completions"),
        ("TOOL", "get_pods"),
        ("LLM", "chat.completions"),
    ]
    assert sum(s.span_type == SpanType.LLM for s in spans) == 4
    assert trace.info.token_usage["total_tokens"] == response.usage.total_tokens  # sub-agent tokens included


def test_a_failing_model_call_is_an_error_span(scripted_model, tracing_to_server) -> None:
    scripted_model.set_script([{"status": 500}])
    with pytest.raises(ModelProtocolError):
        _agent(scripted_model).predict(_ask("q"))
    [trace] = _fetch(tracing_to_server)
    [root] = [s for s in trace.data.spans if s.parent_id is None]
    [llm] = _children(trace, root)
    assert root.status.status_code == "ERROR" and llm.status.status_code == "ERROR"
    assert "HTTP 500" in json.dumps([e.attributes for e in llm.events])


@pytest.mark.parametrize("entry", ["blocking", "async"])
def test_concurrent_specialists_each_nest_under_their_own_tool_span(scripted_model, tracing_to_server, entry) -> None:
    """Both drivers run the two delegations concurrently; each specialist's spans stay under its own TOOL span."""
    scripted_model.set_script(
        [
            {
                "has_tool": "ask_k8s",
                "after_tool": False,
                "tool_calls": [
                    {"name": "ask_k8s", "arguments": {"request": "check prod"}},
                    {"name": "ask_docs", "arguments": {"request": "what is OOMKilled?"}},
                ],
            },
            {
                "system": "cluster specialist",
                "after_tool": False,
                "tool_calls": [{"name": "get_pods", "arguments": {"namespace": "prod"}}],
            },
        ]
    )
    k8s = _agent(scripted_model, name="k8s", instructions="You are a cluster specialist.", tools=[get_pods])
    docs = _agent(scripted_model, name="docs", instructions="You are a docs specialist.", tools=[])
    boss = supervisor([k8s, docs], base_url=scripted_model.root, model="scripted-model")
    request = _ask("Is prod OK?")
    response = boss.predict(request) if entry == "blocking" else asyncio.run(boss.apredict(request))
    [trace] = _fetch(tracing_to_server)
    by_id = {s.span_id: s for s in trace.data.spans}
    subs = {s.name: s for s in trace.data.spans if s.span_type == SpanType.AGENT and s.parent_id}
    assert by_id[subs["k8s"].parent_id].name == "ask_k8s"
    assert by_id[subs["docs"].parent_id].name == "ask_docs"
    assert [s.name for s in _children(trace, subs["k8s"])] == ["chat.completions", "get_pods", "chat.completions"]
    assert [s.name for s in _children(trace, subs["docs"])] == ["chat.completions"]
    # Every model call's usage is on its own LLM span. Not trace.info.token_usage: MLflow's default exporter logs
    # the spans of concurrent branches in separate async batches, and a sqlite-backed server can then keep the sum
    # of one batch only (seen once in CI: 102 = the last two calls' 21 + 81 of 168) - an MLflow race, not ours.
    llm_usage = [s.get_attribute("mlflow.chat.tokenUsage") for s in trace.data.spans if s.span_type == SpanType.LLM]
    assert len(llm_usage) == 5
    assert sum(u["total_tokens"] for u in llm_usage) == response.usage.total_tokens
