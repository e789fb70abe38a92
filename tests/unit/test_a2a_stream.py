"""Streamed replies, read from the REAL kagent runtime's recorded ``message/stream`` body and from 1.0 shapes:
event kinds, the folded answer/usage/tool calls, the text shown as it arrives, and hostile events."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from kagent_mlflow.a2a.parse import parse_reply
from kagent_mlflow.a2a.stream import AnswerView, TaskFold, describe, read_event
from kagent_mlflow.a2a.wire import MAX_EVENT_BYTES, Exchange, _SSETee

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "kagent"


def kagent_events() -> list[Any]:
    text = (FIXTURES / "stream-completed.sse").read_text()
    return [json.loads(line[len("data: ") :]) for line in text.splitlines() if line.startswith("data: ")]


def fold_reply(events: list[Any]) -> Any:
    fold = TaskFold()
    for body in events:
        fold.add(read_event(body))
    return parse_reply(fold.body(), url="http://x/", agent_name="a", protocol_version="0.3")


def test_kagent_stream_events_are_status_artifact_and_final() -> None:
    events = [read_event(body) for body in kagent_events()]
    assert [e.kind for e in events] == ["status-update"] * 3 + ["artifact-update", "status-update"]
    assert [e.state for e in events] == ["submitted", "working", "working", None, "completed"]
    assert [e.terminal for e in events] == [False, False, False, False, True]
    assert events[0].text == ""  # the echoed user message is not the agent's text
    assert events[2].text == events[3].text == "Scripted answer to: In one sentence, what is OpenShift?"


def test_kagent_stream_folds_to_the_answer_and_usage_of_the_same_task() -> None:
    reply = fold_reply(kagent_events())
    assert reply.answer == "Scripted answer to: In one sentence, what is OpenShift?"
    assert reply.task_state == "completed"
    assert reply.task_id == "11e10ddb-aec1-40ca-b75c-9d5cda04b4bd"
    assert reply.usage == {"candidatesTokenCount": 9, "promptTokenCount": 39, "totalTokenCount": 48}


def test_the_answer_is_shown_once_although_kagent_sends_it_twice() -> None:
    view = AnswerView()
    shown = "".join(view.new_text(read_event(body)) for body in kagent_events())
    assert shown == "Scripted answer to: In one sentence, what is OpenShift?"
    assert view.final_text("Scripted answer to: In one sentence, what is OpenShift?") == ""


def v10(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": "1", "result": {kind: obj}}


def test_v10_artifact_chunks_append_and_show_as_they_arrive() -> None:
    base = {"taskId": "t1", "contextId": "c1"}
    bodies = [
        v10("task", {"id": "t1", "contextId": "c1", "status": {"state": "TASK_STATE_SUBMITTED"}}),
        v10("artifactUpdate", {**base, "artifact": {"artifactId": "a", "parts": [{"text": "Hello"}]}}),
        v10("artifactUpdate", {**base, "append": True, "artifact": {"artifactId": "a", "parts": [{"text": " world"}]}}),
        v10("statusUpdate", {**base, "status": {"state": "TASK_STATE_COMPLETED"}}),
    ]
    view = AnswerView()
    assert [view.new_text(read_event(b)) for b in bodies] == ["", "Hello", " world", ""]
    assert read_event(bodies[-1]).terminal
    reply = fold_reply(bodies)
    assert reply.answer == "Hello world"  # chunks joined without a newline
    assert reply.context_id == "c1"


def test_partial_chunks_then_the_whole_message_are_shown_once() -> None:
    def status(text: str, partial: bool) -> dict[str, Any]:
        message = {"kind": "message", "role": "agent", "messageId": text, "parts": [{"kind": "text", "text": text}],
                   "metadata": {"kagent_adk_partial": partial}}  # fmt: skip
        return {"result": {"kind": "status-update", "taskId": "t", "status": {"state": "working", "message": message}}}

    view = AnswerView()
    shown = [view.new_text(read_event(status(t, p))) for t, p in [("Hel", True), ("lo", True), ("Hello", False)]]
    assert shown == ["Hel", "lo", ""]


def test_tool_calls_in_a_stream_are_named_in_progress() -> None:
    call = {"kind": "data", "data": {"id": "c1", "name": "get_pods", "args": {"ns": "x"}},
            "metadata": {"kagent_type": "function_call"}}  # fmt: skip
    response = {"kind": "data", "data": {"id": "c1", "name": "get_pods", "response": {"result": "web-1"}},
                "metadata": {"kagent_type": "function_response"}}  # fmt: skip

    def status(part: dict[str, Any], mid: str) -> dict[str, Any]:
        message = {"kind": "message", "role": "agent", "messageId": mid, "parts": [part]}
        return {"result": {"kind": "status-update", "taskId": "t", "status": {"state": "working", "message": message}}}

    assert describe(read_event(status(call, "m1"))) == "tool call: get_pods; working"
    assert describe(read_event(status(response, "m2"))) == "tool result: get_pods; working"
    reply = fold_reply([status(call, "m1"), status(response, "m2")])
    calls = [(c.name, c.arguments, c.result) for c in reply.tool_calls]
    assert calls == [("get_pods", {"ns": "x"}, {"result": "web-1"})]


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        ("{not json", "invalid"),
        ([1, 2], "invalid"),
        ({"jsonrpc": "2.0", "result": "a string"}, "invalid"),
        ({"jsonrpc": "2.0", "result": {"surprise": 1}}, "invalid"),
        ({"jsonrpc": "2.0", "error": {"code": -32603, "message": "boom"}}, "error"),
        ({"result": {"kind": "status-update", "status": "not a dict", "taskId": 5}}, "status-update"),
        ({"result": {"kind": "artifact-update", "artifact": ["x"], "taskId": "t"}}, "artifact-update"),
    ],
)
def test_hostile_events_are_classified_not_raised(body: Any, kind: str) -> None:
    event = read_event(body)
    assert event.kind == kind
    fold = TaskFold()
    fold.add(event)  # never raises
    assert isinstance(describe(event), str)


def test_events_of_another_task_do_not_change_the_answer() -> None:
    bodies = kagent_events()
    intruder = json.loads(json.dumps(bodies[3]))
    intruder["result"]["taskId"] = "someone-else"
    intruder["result"]["artifact"]["parts"][0]["text"] = "INJECTED"
    reply = fold_reply([*bodies[:3], intruder, *bodies[3:]])
    assert "INJECTED" not in reply.answer


def tee(chunks: list[bytes]) -> Exchange:
    return asyncio.run(_tee(chunks))


async def _tee(chunks: list[bytes]) -> Exchange:
    class Inner:
        async def __aiter__(self) -> Any:
            for chunk in chunks:
                yield chunk

        async def aclose(self) -> None:
            pass

    exchange = Exchange(streamed=True)
    passed = [chunk async for chunk in _SSETee(Inner(), exchange)]
    assert passed == chunks  # the SDK reads the bytes untouched
    return exchange


def test_tee_splits_events_across_chunks_crlf_and_bad_utf8() -> None:
    data = b'data: {"a": 1}\r\n\r\ndata: {"b":\ndata: 2}\n\n: comment\n\ndata: "\xff\xfe"\n\n'
    exchange = tee([data[i : i + 7] for i in range(0, len(data), 7)])
    assert [value for _, value in exchange.events] == [{"a": 1}, {"b": 2}, "\ufffd\ufffd"]


def test_tee_keeps_a_note_instead_of_a_huge_event() -> None:
    huge = b"data: " + b"x" * (MAX_EVENT_BYTES + 10) + b"\n\n" + b'data: {"ok": true}\n\n'
    exchange = tee([huge[i : i + 65536] for i in range(0, len(huge), 65536)])
    values = [value for _, value in exchange.events]
    assert len(values) == 2 and "not kept" in values[0] and values[1] == {"ok": True}


def test_tee_stops_keeping_events_past_the_stream_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    from kagent_mlflow.a2a import wire

    monkeypatch.setattr(wire, "MAX_STREAM_BYTES", 100)
    exchange = tee([b'data: "' + b"y" * 60 + b'"\n\n'] * 3)
    values = [value for _, value in exchange.events]
    assert values[0] == "y" * 60 and all("not kept" in v for v in values[1:])


@pytest.mark.parametrize("name", ["stream-tool-call-model-streaming.sse", "stream-tool-call.sse"])
def test_kagent_streams_with_tool_calls_and_partial_chunks_show_the_answer_once(name: str) -> None:
    text = (FIXTURES / name).read_text()
    bodies = [json.loads(line[len("data: ") :]) for line in text.splitlines() if line.startswith("data: ")]
    view = AnswerView()
    shown = "".join(view.new_text(read_event(body)) for body in bodies)
    reply = fold_reply(bodies)
    assert shown == reply.answer and reply.answer.startswith("Scripted answer to: Which pods")
    assert [c.name for c in reply.tool_calls] == ["get_pods"]
