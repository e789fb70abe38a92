"""The trace of an interaction with steps: LLM spans with per-call usage, TOOL spans with their times, one tree."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mlflow.tracing.constant import SpanAttributeKey

from kagent_mlflow.a2a.models import LlmStep, ToolCall, ToolStep
from kagent_mlflow.a2a.steps import epoch_ms, steps_from_raw
from kagent_mlflow.records import Interaction
from kagent_mlflow.sinks._trace import build_trace
from kagent_mlflow.sinks.redact import Redactor
from kagent_mlflow.trace_context import root_span_hex, trace_hex

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SECRET = "s3cr3t-token-value"


def streamed(name: str = "kagent/stream-tool-call.sse") -> list[Any]:
    lines = (FIXTURES / name).read_text().splitlines()
    return [json.loads(line[len("data: ") :]) for line in lines if line.startswith("data: ")]


def record(steps: list[Any], *, started_at_ms: int, latency_ms: float, **kw: Any) -> Interaction:
    values: dict[str, Any] = dict(
        question="Which pods run in the default namespace?",
        answer="web-1, web-2",
        agent_name="rh-analyze-simple",
        a2a_url="http://agent/",
        experiment_name="e",
        usage={"promptTokenCount": 87, "candidatesTokenCount": 21, "totalTokenCount": 108},
        started_at_ms=started_at_ms,
        latency_ms=latency_ms,
        steps=steps,
    )
    values.update(kw)
    return Interaction(**values)


def test_streamed_tool_round_becomes_llm_tool_llm_under_the_agent_span() -> None:
    events = streamed()
    stamps = [epoch_ms(e["result"]["status"]["timestamp"]) for e in events if "status" in e["result"]]
    first, last = stamps[0], stamps[-1]
    assert first is not None and last is not None
    it = record(steps_from_raw(events), started_at_ms=first - 5, latency_ms=last - first + 10)
    # Through JSON as the spool keeps it: the steps survive the round trip.
    it = Interaction.model_validate_json(it.model_dump_json())
    built = build_trace(it, "1", "run", Redactor())
    root, llm1, tool, llm2 = built.spans
    assert (root.span_id, root.trace_id) == (root_span_hex(it.interaction_id), f"tr-{trace_hex(it.interaction_id)}")
    assert [(s.name, s.span_type, s.parent_id) for s in built.spans[1:]] == [
        ("llm_call", "LLM", root.span_id),
        ("get_pods", "TOOL", root.span_id),
        ("llm_call", "LLM", root.span_id),
    ]
    assert llm1.get_attribute(SpanAttributeKey.CHAT_USAGE) == {
        "input_tokens": 40,
        "output_tokens": 3,
        "total_tokens": 43,
    }
    assert llm2.get_attribute(SpanAttributeKey.CHAT_USAGE) == {
        "input_tokens": 47,
        "output_tokens": 18,
        "total_tokens": 65,
    }
    assert (tool.inputs, tool.outputs) == ({"namespace": "default"}, {"result": "pods in default: web-1, web-2"})
    assert tool.get_attribute("timing") == "agent event timestamps"
    # The steps' own times, in order, inside the root span.
    assert root.start_time_ns <= llm1.start_time_ns < llm1.end_time_ns == tool.start_time_ns
    assert tool.end_time_ns == llm2.start_time_ns < llm2.end_time_ns <= root.end_time_ns
    assert tool.start_time_ns == epoch_ms(events[2]["result"]["status"]["timestamp"]) * 1_000_000
    # Trace-level usage stays the root's total (MLflow does not add a span's usage below one that has usage).
    assert json.loads(built.info.trace_metadata["mlflow.trace.tokenUsage"])["total_tokens"] == 108


def test_agent_clock_ahead_of_ours_is_moved_back_keeping_the_steps_durations() -> None:
    """Events stamped 5 s ahead (the agent's clock, or a request timed after the card was read) are moved so the
    last one ends with the answer; their durations and gaps stay as the agent reported them."""
    steps = [
        LlmStep(usage={"promptTokenCount": 1}, started_at_ms=6_000, ended_at_ms=6_500),
        ToolStep(name="t", started_at_ms=6_500, ended_at_ms=6_600),
        LlmStep(usage={"promptTokenCount": 2}, started_at_ms=6_600, ended_at_ms=8_000),
    ]
    built = build_trace(record(steps, started_at_ms=1_000, latency_ms=2_000), "1", "run", Redactor())
    root = built.spans[0]
    ms = [((s.start_time_ns - root.start_time_ns) // 1_000_000, (s.end_time_ns - root.start_time_ns) // 1_000_000)
          for s in built.spans[1:]]  # fmt: skip
    assert ms == [(0, 500), (500, 600), (600, 2_000)]
    assert {s.get_attribute("agent_clock_shift_ms") for s in built.spans[1:]} == {-5_000}


def test_steps_before_the_request_are_clamped_into_it() -> None:
    steps = [LlmStep(started_at_ms=10, ended_at_ms=20), ToolStep(name="t", started_at_ms=20, ended_at_ms=1_500)]
    built = build_trace(record(steps, started_at_ms=1_000, latency_ms=2_000), "1", "run", Redactor())
    root, llm, tool = built.spans
    assert llm.start_time_ns == llm.end_time_ns == root.start_time_ns  # nothing is drawn before the request
    assert tool.end_time_ns - root.start_time_ns == 500 * 1_000_000
    assert llm.get_attribute("agent_clock_shift_ms") is None


def test_untimed_steps_cover_the_agent_span_and_say_so() -> None:
    body = json.loads((FIXTURES / "kagent/task-tool-call.json").read_bytes())
    built = build_trace(record(steps_from_raw(body), started_at_ms=1_000, latency_ms=300), "1", "run", Redactor())
    root = built.spans[0]
    assert [s.span_type for s in built.spans] == ["AGENT", "LLM", "TOOL", "LLM"]
    for span in built.spans[1:]:
        assert (span.start_time_ns, span.end_time_ns) == (root.start_time_ns, root.end_time_ns)
        assert span.get_attribute("timing") == "not reported by the agent"


def test_failed_model_call_and_failed_tool_are_error_spans() -> None:
    steps = [
        LlmStep(error="API_ERROR: Error code: 500", started_at_ms=1_000, ended_at_ms=1_100),
        ToolStep(name="t", result={"error": "permission denied"}, started_at_ms=1_100, ended_at_ms=1_200),
    ]
    built = build_trace(record(steps, started_at_ms=1_000, latency_ms=300), "1", "run", Redactor())
    _, llm, tool = built.spans
    assert (llm.status.status_code.value, llm.status.description) == ("ERROR", "API_ERROR: Error code: 500")
    assert (tool.status.status_code.value, tool.status.description) == ("ERROR", "permission denied")


def test_secrets_in_steps_are_redacted() -> None:
    steps = [
        LlmStep(output={"tool_calls": [{"name": "login", "arguments": {"password": "hunter2", "user": SECRET}}]}),
        ToolStep(name="login", arguments={"api_key": "zzz", "note": f"Bearer {SECRET}"}, result=f"token={SECRET}"),
    ]
    built = build_trace(record(steps, started_at_ms=1, latency_ms=1), "1", "run", Redactor([SECRET]))
    text = json.dumps([s.to_dict() for s in built.spans])
    assert SECRET not in text and "hunter2" not in text and "zzz" not in text


def test_older_record_without_steps_keeps_its_tool_span_ids() -> None:
    """A record spooled by an older version is replayed into the same spans it may already have written."""
    old = record([], started_at_ms=1, latency_ms=1, tool_calls=[ToolCall(name="search", call_id="c")])
    (_, tool) = build_trace(old, "1", "run", Redactor()).spans
    from kagent_mlflow.trace_context import hex_id

    assert tool.span_id == hex_id(old.interaction_id, "span:tool:0", 16)
    assert tool.get_attribute("timing") == "not reported by the agent"


def test_trace_headers_are_valid_w3c_for_any_interaction_id() -> None:
    import re

    from kagent_mlflow.trace_context import trace_headers

    for interaction_id in ("0" * 32, "a,b=c", "x" * 500, "ünïcode", "\r\nX-Evil: 1"):
        headers = trace_headers(interaction_id)
        assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", headers["traceparent"])
        assert "0" * 32 not in headers["traceparent"] and "-" + "0" * 16 + "-" not in headers["traceparent"]
        if interaction_id != "0" * 32:
            assert "tracestate" not in headers  # only a plain id is named in tracestate
    assert trace_headers("abc123")["tracestate"] == "kagent-mlflow=abc123"
