"""AgentClient.stream against REAL A2A servers on 127.0.0.1: the a2a-sdk 1.x test agent's streaming face (chunks,
tool calls, long tasks with working updates, input-required, cancel) and a misbehaving 0.3 SSE server (dropped
connection, huge and malformed events, invalid UTF-8, events after the final one, error events, no events, an agent
that cannot stream)."""

from __future__ import annotations

import pytest

from kagent_mlflow.a2a.client import AgentClient
from kagent_mlflow.errors import AgentProtocolError, AgentTaskError
from tests.support.a2a_agents import HUGE_EVENT_BYTES, INPUT_QUESTION, A2AAgent, BadServer, answer_for


def read(client: AgentClient, question: str, **options: object) -> tuple[list, object]:
    stream = client.stream(question, **options)  # type: ignore[arg-type]
    events = list(stream)
    return events, stream.reply


def test_chunks_arrive_one_by_one_and_the_reply_keeps_every_event(a2a_agent: A2AAgent) -> None:
    question = "[chunks] What is Kubernetes?"
    with AgentClient(a2a_agent.stream_url, timeout=60) as client:
        events, reply = read(client, question)
    chunks = [e.text for e in events if e.kind == "artifact-update"]
    assert "".join(chunks) == answer_for(question) and len(chunks) == len(answer_for(question).split())
    assert reply.answer == answer_for(question)
    assert reply.streamed and reply.task_state == "completed"
    assert isinstance(reply.raw, list) and len(reply.raw) == len(events) == len(reply.event_times_ms)
    assert [("artifactUpdate" in b["result"]) for b in reply.raw] == [e.kind == "artifact-update" for e in events]
    assert reply.first_event_ms is not None and reply.ttft_ms is not None
    assert reply.first_event_ms <= reply.ttft_ms <= reply.latency_ms
    assert reply.usage["totalTokenCount"] > 0


def test_tool_calls_are_reported_as_they_happen(a2a_agent: A2AAgent) -> None:
    with AgentClient(a2a_agent.stream_url, timeout=60) as client:
        events, reply = read(client, "[tool] Which pods run?")
    named = [c.name for e in events for c in e.tool_calls]
    assert named == ["get_pods", "get_pods"]  # the call, then its result
    assert [(c.name, c.result) for c in reply.tool_calls] == [("get_pods", {"result": "web-1, web-2"})]


def test_a_long_task_streams_working_updates_until_it_completes(a2a_agent: A2AAgent) -> None:
    with AgentClient(a2a_agent.stream_url, timeout=60) as client:
        events, reply = read(client, "[long:700] Collect the metrics")
    assert sum(1 for e in events if e.state == "working") >= 3
    assert reply.task_state == "completed" and reply.answer == answer_for("[long:700] Collect the metrics")


def test_an_agent_that_does_not_stream_is_asked_with_message_send(a2a_agent: A2AAgent) -> None:
    with AgentClient(a2a_agent.url, timeout=60) as client:  # its card: streaming false
        events, reply = read(client, "What is OpenShift?")
    assert [e.source for e in events] == ["send"]
    assert not reply.streamed and isinstance(reply.raw, dict)
    assert reply.answer == answer_for("What is OpenShift?") and reply.ttft_ms is None


def test_input_required_is_an_answer_when_allowed_and_the_reply_continues_the_task(a2a_agent: A2AAgent) -> None:
    with AgentClient(a2a_agent.stream_url, timeout=60) as client:
        with pytest.raises(AgentTaskError) as caught:
            read(client, "[input] Restart the pod")
        assert caught.value.task_state == "input-required" and caught.value.reply.answer == INPUT_QUESTION
        _, asked = read(client, "[input] Restart the pod", input_required_ok=True)
        assert asked.task_state == "input-required" and asked.answer == INPUT_QUESTION
        _, reply = read(client, "the default namespace", context_id=asked.context_id, task_id=asked.task_id)
    assert reply.task_id == asked.task_id and reply.task_state == "completed"
    assert reply.answer == f"Answer to: the default namespace (continuing task {asked.task_id})"
    assert INPUT_QUESTION not in reply.answer


def test_cancel_sends_tasks_cancel_and_returns_what_arrived(a2a_agent: A2AAgent) -> None:
    with AgentClient(a2a_agent.stream_url, timeout=60) as client:
        stream = client.stream("[long:30000] Watch the cluster")
        events = iter(stream)
        seen = [next(events) for _ in range(3)]
        reply = stream.cancel()
    assert any(e.state == "working" for e in seen)
    assert reply.task_state == "canceled" and reply.task_id == stream.task_id
    assert stream.cancel_error is None


# -- a misbehaving SSE agent (A2A 0.3) ---------------------------------------------------------------------------


def test_a_dropped_stream_is_followed_with_tasks_get(a2a_bad_server: BadServer) -> None:
    with AgentClient(a2a_bad_server.url("sse"), timeout=60) as client:
        events, reply = read(client, "[drop] What is Kubernetes?")
    assert [e.source for e in events][-1] == "poll"
    assert reply.task_state == "completed" and reply.answer == answer_for("[drop] What is Kubernetes?")
    methods = [body["method"] for path, _, body in a2a_bad_server.requests if path.startswith("/sse")]
    assert methods[-3:] == ["message/stream", "tasks/resubscribe", "tasks/get"]  # resubscribing failed: polled


def test_a_dropped_stream_is_resubscribed_when_the_agent_can(a2a_bad_server: BadServer) -> None:
    question = "[drop] [resub] What is Kubernetes?"
    with AgentClient(a2a_bad_server.url("sse"), timeout=60) as client:
        events, reply = read(client, question)
    assert [e.source for e in events] == ["stream", "stream", "resubscribe", "resubscribe", "resubscribe"]
    assert reply.task_state == "completed" and reply.answer == answer_for(question)
    assert len(reply.raw) == len(reply.event_times_ms) == 5
    methods = [body["method"] for path, _, body in a2a_bad_server.requests if path.startswith("/sse")]
    assert methods[-2:] == ["message/stream", "tasks/resubscribe"]


def test_a_huge_event_is_kept_as_a_note_and_the_answer_still_arrives(a2a_bad_server: BadServer) -> None:
    with AgentClient(a2a_bad_server.url("sse"), timeout=60) as client:
        _, reply = read(client, "[huge] What is Kubernetes?")
    assert reply.answer == answer_for("[huge] What is Kubernetes?")
    notes = [b for b in reply.raw if isinstance(b, str)]
    assert len(notes) == 1 and "not kept" in notes[0]
    assert sum(len(str(b)) for b in reply.raw) < HUGE_EVENT_BYTES // 10


def test_invalid_utf8_in_an_event_is_replaced_not_fatal(a2a_bad_server: BadServer) -> None:
    with AgentClient(a2a_bad_server.url("sse"), timeout=60) as client:
        _, reply = read(client, "[badutf8] What is Kubernetes?")
    assert reply.task_state == "completed" and "\ufffd" in reply.answer


def test_events_after_the_final_one_are_ignored(a2a_bad_server: BadServer) -> None:
    with AgentClient(a2a_bad_server.url("sse"), timeout=60) as client:
        events, reply = read(client, "[afterfinal] What is Kubernetes?")
    assert reply.task_state == "completed" and "INJECTED" not in reply.answer
    assert events[-1].state == "completed" and not any("INJECTED" in e.text for e in events)


def test_a_malformed_event_ends_the_stream_and_the_task_is_polled(a2a_bad_server: BadServer) -> None:
    with AgentClient(a2a_bad_server.url("sse"), timeout=60) as client:
        events, reply = read(client, "[malformed] What is Kubernetes?")
    assert any(e.kind == "invalid" for e in events)
    assert reply.task_state == "completed" and reply.answer == answer_for("[malformed] What is Kubernetes?")


def test_crlf_line_endings(a2a_bad_server: BadServer) -> None:
    with AgentClient(a2a_bad_server.url("sse"), timeout=60) as client:
        _, reply = read(client, "[crlf] What is Kubernetes?")
    assert reply.answer == answer_for("[crlf] What is Kubernetes?") and len(reply.raw) == 4


def test_an_error_event_is_a_protocol_error_with_the_events(a2a_bad_server: BadServer) -> None:
    with AgentClient(a2a_bad_server.url("sse"), timeout=60) as client:
        with pytest.raises(AgentProtocolError, match="-32603: Internal error: the agent crashed") as caught:
            read(client, "[errorevent] What is Kubernetes?")
    assert isinstance(caught.value.raw, list) and len(caught.value.raw) == 3


def test_a_stream_without_events_is_a_protocol_error(a2a_bad_server: BadServer) -> None:
    with AgentClient(a2a_bad_server.url("sse"), timeout=60) as client:
        with pytest.raises(AgentProtocolError, match="the stream ended with no event"):
            read(client, "[noevents] What is Kubernetes?")


def test_an_agent_refusing_message_stream_is_asked_with_message_send(a2a_bad_server: BadServer) -> None:
    with AgentClient(a2a_bad_server.url("sse"), timeout=60) as client:
        events, reply = read(client, "[unsupported] What is Kubernetes?")
    assert [e.source for e in events] == ["send"]
    assert reply.answer == answer_for("[unsupported] What is Kubernetes?") and not reply.streamed
