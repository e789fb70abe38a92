"""The Agent Server (a real ``python -m kagent_mlflow.serve`` process in front of the scripted model server, traces
to a real MLflow server): the request's root span is an AGENT span with the answer's token usage, and a streamed
answer has an overall deadline (``KAGENT_MLFLOW_REQUEST_TIMEOUT``)."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from mlflow import MlflowClient

pytestmark = pytest.mark.integration

USAGE = "mlflow.chat.tokenUsage"
TOOL_SCRIPT = [
    {"match": "pods", "after_tool": False, "tool_calls": [{"name": "get_pods", "arguments": {"namespace": "prod"}}]},
    {"match": "pods", "after_tool": True, "reply": "Pods: {tool_outputs}"},
]


def post(url: str, payload: dict, timeout: float = 60) -> httpx.Response:
    headers = {"x-mlflow-return-trace-id": "true"}
    return httpx.post(f"{url}/invocations", json=payload, headers=headers, timeout=timeout)


def user(text: str, **extra) -> dict:
    return {"input": [{"role": "user", "content": text}], **extra}


def sse(response: httpx.Response) -> list:
    lines = [line[len("data: ") :] for line in response.text.splitlines() if line.startswith("data: ")]
    return [line if line == "[DONE]" else json.loads(line) for line in lines]


def complete_trace(tracking_uri: str, trace_id: str, timeout: float = 60):
    """The trace once MLflow has all of it (its root span is there and has ended)."""
    client = MlflowClient(tracking_uri=tracking_uri)
    deadline = time.monotonic() + timeout
    while True:
        try:
            trace = client.get_trace(trace_id)
            roots = [s for s in trace.data.spans if s.parent_id is None]
            if roots and roots[0].end_time_ns and trace.info.state == "OK":
                return trace, roots[0]
        except Exception:  # noqa: BLE001 - not exported yet
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"trace {trace_id} not complete in MLflow within {timeout}s")
        time.sleep(0.3)


@pytest.mark.parametrize("stream", [False, True])
def test_the_root_span_is_an_agent_span_with_the_answers_token_usage(
    agent_server, scripted_model, mlflow_server, stream
) -> None:
    scripted_model.set_script(TOOL_SCRIPT)
    resp = post(agent_server.url, user("Which pods run in prod?", stream=stream))
    assert resp.status_code == 200, resp.text
    if stream:
        events = sse(resp)
        usage = next(e["response"]["usage"] for e in events if e != "[DONE]" and e.get("type") == "response.completed")
        trace_id = next(e["trace_id"] for e in events if e != "[DONE]" and "trace_id" in e)
    else:
        usage, trace_id = resp.json()["usage"], resp.json()["metadata"]["trace_id"]

    trace, root = complete_trace(mlflow_server.url, trace_id)
    assert root.span_type == "AGENT"  # was UNKNOWN: MLflow's Agent Server opens the root span without a type
    expected = {k: usage[k] for k in ("input_tokens", "output_tokens", "total_tokens")}
    assert root.get_attribute(USAGE) == expected
    assert trace.info.token_usage == expected  # counted once, not root + LLM spans
    llm = [s.get_attribute(USAGE)["total_tokens"] for s in trace.data.spans if s.span_type == "LLM"]
    assert len(llm) == 2 and sum(llm) == expected["total_tokens"]


def cut_trace(tracking_uri: str, experiment: str, question: str, timeout: float = 60):
    """The trace of the request that asked ``question``, once MLflow has it with its root span."""
    client = MlflowClient(tracking_uri=tracking_uri)
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    deadline = time.monotonic() + timeout
    while True:
        for info in client.search_traces(locations=[experiment_id]):
            trace = client.get_trace(info.info.trace_id)
            roots = [span for span in trace.data.spans if span.parent_id is None]
            if roots and question in json.dumps(roots[0].inputs):
                return trace
        if time.monotonic() > deadline:
            raise AssertionError(f"no trace for {question!r} in {experiment} within {timeout}s")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def impatient_server(model_server, mlflow_server):
    """A private server whose requests may take at most 4 s, warmed up (model listed, experiment set)."""
    from tests.support.agent_server import start_agent_server

    server = start_agent_server(
        model_server.root,
        tracking_uri=mlflow_server.url,
        experiment="agent-server-deadline",
        extra_env={"KAGENT_MLFLOW_REQUEST_TIMEOUT": "4"},
    )
    try:
        assert post(server.url, user("warm up")).status_code == 200
        yield server
    finally:
        server.stop()


LONG_ANSWER = " ".join(f"word{i}" for i in range(40))  # streamed word by word, 0.4 s apart: ~16 s


def test_a_streamed_answer_past_the_request_timeout_ends_with_a_clear_error_event(
    impatient_server, scripted_model, mlflow_server
) -> None:
    scripted_model.set_script([{"match": "slow", "reply": LONG_ANSWER}], chunk_delay_ms=400)
    resp = post(impatient_server.url, user("a slow answer please", stream=True))
    assert resp.status_code == 200  # the answer had begun
    events = sse(resp)
    assert events[-1] == "[DONE]"
    deltas = [e for e in events[:-1] if e.get("type") == "response.output_text.delta"]
    assert 0 < len(deltas) < 40  # cut at the deadline, mid-answer
    error = events[-2]["error"]
    assert "not complete within 4 s" in error and "KAGENT_MLFLOW_REQUEST_TIMEOUT" in error
    assert not any(e.get("type") == "response.completed" for e in events[:-1])
    trace = cut_trace(mlflow_server.url, "agent-server-deadline", "a slow answer please")
    assert trace.info.state == "ERROR"  # recorded, and as what it was
    llm = [span for span in trace.data.spans if span.span_type == "LLM"]
    assert [span.status.status_code for span in llm] == ["ERROR"]  # the model call was cancelled, its span closed

    scripted_model.set_script([], chunk_delay_ms=0)
    again = post(impatient_server.url, user("quick"))
    assert again.status_code == 200 and again.json()["output"][-1]["content"][0]["text"] == "Scripted answer to: quick"


def test_a_stream_past_the_request_timeout_before_its_first_event_is_a_504(impatient_server, scripted_model):
    scripted_model.set_script([{"match": "stall", "hang": True, "hang_s": 15}])
    resp = post(impatient_server.url, user("stall please", stream=True))
    assert resp.status_code == 504, resp.text
    body = resp.json()
    assert body["error"]["type"] == "request_timeout"
    assert "not complete within 4 s; raise KAGENT_MLFLOW_REQUEST_TIMEOUT" in body["error"]["message"]
