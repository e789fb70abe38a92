"""The agent's steps (model calls with their usage, tool calls with their times) from recorded real kagent replies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kagent_mlflow.a2a.models import LlmStep, ToolStep
from kagent_mlflow.a2a.parse import collect_usage
from kagent_mlflow.a2a.steps import MAX_STEPS, epoch_ms, steps_from_raw

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_bytes())


def sse(name: str) -> list[Any]:
    """The events of a recorded SSE body, each the JSON-RPC response as sent."""
    lines = (FIXTURES / name).read_text().splitlines()
    return [json.loads(line[len("data: ") :]) for line in lines if line.startswith("data: ")]


def kinds(steps: list[Any]) -> list[str]:
    return [f"{s.kind}:{s.name}" if isinstance(s, ToolStep) else s.kind for s in steps]


@pytest.mark.parametrize("name", ["kagent/stream-tool-call.sse", "kagent/stream-tool-call-model-streaming.sse"])
def test_streamed_tool_round_gives_timed_model_and_tool_steps(name: str) -> None:
    events = sse(name)
    steps = steps_from_raw(events)
    assert kinds(steps) == ["llm", "tool:get_pods", "llm"]  # streamed text fragments (partial) are not calls
    first, tool, second = steps
    assert isinstance(first, LlmStep) and isinstance(tool, ToolStep) and isinstance(second, LlmStep)
    assert first.usage == {"promptTokenCount": 40, "candidatesTokenCount": 3, "totalTokenCount": 43}
    assert second.usage == {"promptTokenCount": 47, "candidatesTokenCount": 18, "totalTokenCount": 65}
    assert first.output == {"tool_calls": [{"name": "get_pods", "arguments": {"namespace": "default"},
                                            "id": tool.call_id}]}  # fmt: skip
    assert second.output.startswith("Scripted answer to: Which pods run") and first.author == "rh_analyze_simple"
    assert (tool.arguments, tool.result) == ({"namespace": "default"}, {"result": "pods in default: web-1, web-2"})
    # Times: the first call starts with the task, each step ends at the event reporting it, and the next model
    # call starts when the tool results came back.
    stamps = [epoch_ms(e["result"]["status"]["timestamp"]) for e in events if "status" in e["result"]]
    assert first.started_at_ms == stamps[0]
    assert first.ended_at_ms == tool.started_at_ms
    assert tool.ended_at_ms == second.started_at_ms
    assert first.started_at_ms < first.ended_at_ms <= tool.ended_at_ms < second.ended_at_ms <= stamps[-1]


@pytest.mark.parametrize("name", ["kagent/task-tool-call.json", "a2a/v10-task-tool-call.json"])
def test_sent_task_gives_the_same_steps_without_times(name: str) -> None:
    body = load(name)
    steps = steps_from_raw(body)
    assert kinds(steps) == ["llm", "tool:get_pods", "llm"]
    assert all(s.started_at_ms is None and s.ended_at_ms is None for s in steps)  # history has no timestamps
    # Per-call usage adds up to what the reply reports in all (the parser's sum over the agent's messages).
    total: dict[str, float] = {}
    for step in steps:
        if isinstance(step, LlmStep):
            for key, value in step.usage.items():
                total[key] = total.get(key, 0) + value
    history = body["result"]["task"]["history"] if "task" in body["result"] else body["result"]["history"]
    assert total == collect_usage([m for m in history if m["role"] in ("agent", "ROLE_AGENT")])


def test_answer_without_tools_is_one_model_call() -> None:
    steps = steps_from_raw(sse("kagent/stream-completed.sse"))
    assert kinds(steps) == ["llm"] and steps[0].usage["totalTokenCount"] == 48
    assert steps[0].ended_at_ms is not None and steps[0].started_at_ms < steps[0].ended_at_ms
    assert kinds(steps_from_raw(load("kagent/task-completed.json"))) == ["llm"]


def test_failed_model_call_is_a_step_with_its_error() -> None:
    (step,) = steps_from_raw(load("kagent/task-failed.json"))
    assert isinstance(step, LlmStep) and step.output is None
    assert step.error == "API_ERROR: Error code: 500 - scripted failure (HTTP 500)"


def test_error_body_has_no_steps() -> None:
    assert steps_from_raw(load("kagent/error-missing-message-id.json")) == []


def test_protocol_1_0_stream_events_are_read() -> None:
    """a2a 1.0 wraps stream events as {"statusUpdate": {...}}, roles and states in upper case."""
    call = {
        "data": {"id": "c1", "name": "get_pods", "args": {"namespace": "x"}},
        "metadata": {"adk_type": "function_call"},
    }
    reply = {"data": {"id": "c1", "name": "get_pods", "response": {"result": "ok"}},
             "metadata": {"adk_type": "function_response"}}  # fmt: skip

    def update(at: str, parts: list[Any] | None = None, usage: dict[str, int] | None = None) -> dict[str, Any]:
        status: dict[str, Any] = {"state": "TASK_STATE_WORKING", "timestamp": at}
        if parts is not None:
            metadata = {"adk_usage_metadata": usage} if usage else {}
            status["message"] = {"messageId": at, "role": "ROLE_AGENT", "parts": parts, "metadata": metadata}
        return {"jsonrpc": "2.0", "id": 1, "result": {"statusUpdate": {"taskId": "t", "status": status}}}

    events = [
        update("2026-01-01T00:00:00Z"),
        update("2026-01-01T00:00:01Z", [call], {"promptTokenCount": 5, "candidatesTokenCount": 1}),
        update("2026-01-01T00:00:03Z", [reply]),
        update("2026-01-01T00:00:04.5Z", [{"text": "done"}], {"promptTokenCount": 9, "candidatesTokenCount": 2}),
    ]
    steps = steps_from_raw(events)
    assert kinds(steps) == ["llm", "tool:get_pods", "llm"]
    base = epoch_ms("2026-01-01T00:00:00Z")
    assert base is not None
    assert [(s.started_at_ms - base, s.ended_at_ms - base) for s in steps] == [(0, 1000), (1000, 3000), (3000, 4500)]


def test_tool_error_and_unanswered_call() -> None:
    """A response without its call keeps the response; a call without a response has no end."""
    events = [
        {"result": {"kind": "status-update", "status": {"timestamp": "2026-01-01T00:00:00+00:00", "message": {
            "role": "agent", "messageId": "m1",
            "parts": [{"kind": "data", "data": {"id": "a", "name": "t1", "args": {}},
                       "metadata": {"kagent_type": "function_call"}}]}}}},
        {"result": {"kind": "status-update", "status": {"timestamp": "2026-01-01T00:00:02+00:00", "message": {
            "role": "agent", "messageId": "m2",
            "parts": [{"kind": "data", "data": {"id": "b", "name": "t2", "response": {"error": "denied"}},
                       "metadata": {"kagent_type": "function_response"}}]}}}},
    ]  # fmt: skip
    steps = steps_from_raw(events)
    assert kinds(steps) == ["llm", "tool:t1", "tool:t2"]
    assert steps[1].ended_at_ms is None and steps[1].started_at_ms is not None
    assert steps[2].result == {"error": "denied"} and steps[2].started_at_ms is None


@pytest.mark.parametrize(
    "raw",
    [
        None, "text", 42, [], [None, 1, "x", []], {"result": []}, {"result": {"kind": "task", "history": "no"}},
        [{"result": {"kind": "status-update", "status": "working"}}],
        [{"result": {"kind": "status-update", "status": {"timestamp": 5, "message": {"role": "agent", "parts": 7}}}}],
        [{"result": {"kind": "status-update", "status": {"timestamp": "soon", "message": {
            "role": "agent", "metadata": {"kagent_usage_metadata": {"promptTokenCount": "many"}},
            "parts": [{"kind": "data", "data": {"id": 3, "name": ["x"]}, "metadata": {"kagent_type": "function_call"}}],
        }}}}],
    ],
)  # fmt: skip
def test_hostile_replies_give_few_steps_and_never_raise(raw: Any) -> None:
    steps = steps_from_raw(raw)
    assert isinstance(steps, list)
    for step in steps:
        assert step.started_at_ms is None and step.ended_at_ms is None
        if isinstance(step, ToolStep):
            assert step.name == "unknown" and step.call_id is None


def test_a_flood_of_steps_is_capped() -> None:
    message = {"role": "agent", "parts": [{"kind": "text", "text": "x"}], "metadata": {"kagent_author": "a"}}
    events = [{"result": {"kind": "status-update", "status": {"message": message}}}] * (MAX_STEPS + 50)
    assert len(steps_from_raw(events)) == MAX_STEPS


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-27T13:15:31.344768+00:00", 1795785331344),
        ("2026-11-27T13:15:31.344768Z", 1795785331344),
        ("2026-11-27T13:15:31.344768123Z", 1795785331344),  # nanoseconds
        ("2026-11-27T13:15:31", 1795785331000),  # naive: UTC
        ("2026-11-27T15:15:31+02:00", 1795785331000),
        ("", None), ("yesterday", None), (None, None), (1795785331, None), ("9" * 100, None),
    ],
)  # fmt: skip
def test_event_timestamps(text: Any, expected: int | None) -> None:
    assert epoch_ms(text) == expected


def test_a_stream_resuming_a_task_that_asked_for_input_skips_the_earlier_turn() -> None:
    """Replying to input-required opens the stream with the task as it was: its history is the earlier turn's."""
    earlier = load("kagent/task-tool-call.json")
    earlier["result"]["status"]["state"] = "input-required"
    events = [earlier, *sse("kagent/stream-completed.sse")]
    assert kinds(steps_from_raw(events)) == ["llm"]  # only this turn's model call
    assert kinds(steps_from_raw([load("kagent/task-tool-call.json"), *sse("kagent/stream-completed.sse")])) == [
        "llm", "tool:get_pods", "llm", "llm",
    ]  # fmt: skip
