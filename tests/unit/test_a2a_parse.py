"""Reply parsing over recorded replies: the real kagent runtime (0.3), the a2a-sdk 1.x agent (1.0 and 0.3)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from kagent_mlflow.a2a.parse import (
    ERROR_STATES,
    ReplyShapeError,
    collect_tool_calls,
    explain_empty,
    normalize_state,
    parse_reply,
    usage_of,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
URL = "http://localhost:8083/api/a2a/kagent/rh-analyze-simple/"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_bytes())


def parse(body: Any, version: str = "0.3") -> Any:
    return parse_reply(body, url=URL, agent_name="rh-analyze-simple", protocol_version=version, latency_ms=12.5)


# -- the real kagent runtime (protocol 0.3) ---------------------------------------------------------------------------


def test_kagent_completed_task() -> None:
    body = load("kagent/task-completed.json")

    reply = parse(body)

    assert reply.answer == "Scripted answer to: What is Kubernetes?"
    assert reply.task_id == body["result"]["id"] == "88f16f5a-e7b0-4214-aa53-c1570f7b9180"
    assert reply.context_id == body["result"]["contextId"]
    assert reply.task_state == "completed"
    assert reply.usage == {"promptTokenCount": 36, "candidatesTokenCount": 6, "totalTokenCount": 42}
    assert reply.tool_calls == []
    assert reply.raw is body  # exactly as received
    assert (reply.url, reply.agent_name, reply.protocol_version, reply.latency_ms) == (
        URL,
        "rh-analyze-simple",
        "0.3",
        12.5,
    )


def test_kagent_tool_round_lists_the_call_and_sums_usage_over_both_model_calls() -> None:
    reply = parse(load("kagent/task-tool-call.json"))

    assert reply.answer.startswith("Scripted answer to: Which pods run in the default namespace?")
    [call] = reply.tool_calls
    assert (call.name, call.arguments, call.call_id) == ("get_pods", {"namespace": "default"}, "call_7e3f531255c8_0")
    assert call.result == {"result": "pods in default: web-1, web-2"}
    # The task metadata holds only the last call (47/18/65); the first call (40/3/43) is on its own message.
    assert reply.usage == {"promptTokenCount": 87, "candidatesTokenCount": 21, "totalTokenCount": 108}


def test_kagent_failed_task_keeps_ids_and_the_reason() -> None:
    reply = parse(load("kagent/task-failed.json"))

    assert reply.task_state == "failed" and reply.task_state in ERROR_STATES
    assert reply.task_id == "b04fedd9-01e9-499b-b9d1-acd7bb424d8f"
    assert reply.answer == "Error code: 500 - scripted failure (HTTP 500)"  # the status message's text
    assert reply.usage == {}


def test_kagent_tasks_get_reply_parses_like_the_send_reply() -> None:
    assert parse(load("kagent/tasks-get-completed.json")).answer == "Scripted answer to: What is Kubernetes?"


def test_kagent_jsonrpc_error_body_is_not_a_reply() -> None:
    with pytest.raises(ReplyShapeError):
        parse(load("kagent/error-missing-message-id.json"))


def test_newer_adk_prefix_history_filtering_and_dedup() -> None:
    reply = parse(load("a2a/v03-task-adk-prefix.json"))

    assert reply.answer == "First paragraph.\nSecond paragraph."  # all text parts of all artifacts
    # Summed over this task's agent messages only (the earlier turn's message is not counted); non-numbers skipped.
    assert reply.usage == {
        "promptTokenCount": 75,
        "candidatesTokenCount": 16,
        "totalTokenCount": 91,
        "thoughtsTokenCount": 2,
    }
    [call] = reply.tool_calls  # the repeated function_response message counts once
    assert (call.name, call.arguments, call.result) == (
        "list_failing_pods",
        {"namespace": "prod"},
        {"result": ["api-7"]},
    )


# -- the a2a-sdk 1.x agent --------------------------------------------------------------------------------------------


def test_v10_completed_task() -> None:
    body = load("a2a/v10-task-completed.json")

    reply = parse(body, "1.0")

    assert reply.answer == "Answer to: What is Kubernetes?"
    assert reply.task_id == body["result"]["task"]["id"]
    assert reply.context_id == body["result"]["task"]["contextId"]
    assert reply.task_state == "completed"
    assert reply.usage == {"promptTokenCount": 3, "candidatesTokenCount": 5, "totalTokenCount": 8}
    assert reply.protocol_version == "1.0"


@pytest.mark.parametrize("name, version", [("a2a/v10-message.json", "1.0"), ("a2a/v03-message.json", "0.3")])
def test_direct_message_result(name: str, version: str) -> None:
    body = load(name)

    reply = parse(body, version)

    assert reply.answer == "Answer to: [message] What is Kubernetes?"
    assert reply.task_id is None and reply.task_state is None
    assert reply.context_id and reply.context_id in json.dumps(body)
    assert reply.usage == {"promptTokenCount": 4, "candidatesTokenCount": 6, "totalTokenCount": 10}


def test_v10_tool_calls_in_history() -> None:
    reply = parse(load("a2a/v10-task-tool-call.json"), "1.0")

    [call] = reply.tool_calls
    assert (call.name, call.arguments, call.result, call.call_id) == (
        "get_pods",
        {"namespace": "default"},
        {"result": "web-1, web-2"},
        "call_test_0",
    )
    assert reply.usage["promptTokenCount"] == 5 + len("[tool] Which pods run in the default namespace?".split())


@pytest.mark.parametrize(
    "name, version, state, answer",
    [
        ("a2a/v10-task-failed.json", "1.0", "failed", "Scripted failure for: [fail] Please fail"),
        ("a2a/v10-task-input-required.json", "1.0", "input-required", "Which namespace do you mean?"),
        ("a2a/v03-task-input-required.json", "0.3", "input-required", "Which namespace do you mean?"),
    ],
)
def test_unfinished_tasks_answer_with_the_status_message(name: str, version: str, state: str, answer: str) -> None:
    reply = parse(load(name), version)

    assert (reply.task_state, reply.answer) == (state, answer)
    assert reply.task_state in ERROR_STATES
    assert reply.usage["totalTokenCount"] > 0  # usage on the status message counts


@pytest.mark.parametrize("name, version", [("a2a/v10-task-empty.json", "1.0"), ("a2a/v03-task-empty.json", "0.3")])
def test_no_text_is_explained_not_empty(name: str, version: str) -> None:
    reply = parse(load(name), version)

    assert reply.task_state == "completed"
    assert reply.answer == (
        "(no answer text: task state completed; 1 artifact(s) with no parts; no status message; "
        "no agent message in history)"
    )


# -- rules on hand-made shapes ----------------------------------------------------------------------------------------


def test_answer_falls_back_to_last_agent_message_in_history() -> None:
    body = {
        "jsonrpc": "2.0",
        "result": {
            "kind": "task",
            "id": "t1",
            "status": {"state": "completed"},
            "history": [
                {"role": "agent", "messageId": "a", "parts": [{"kind": "text", "text": "first"}]},
                {"role": "agent", "messageId": "b", "parts": [{"kind": "text", "text": "last"}]},
                {"role": "user", "messageId": "c", "parts": [{"kind": "text", "text": "thanks"}]},
                {"role": "agent", "messageId": "d", "parts": [{"kind": "data", "data": {}}]},
            ],
        },
    }
    assert parse(body).answer == "last"


def test_explanations_name_what_was_there() -> None:
    task = {"status": {"state": "working", "message": {"parts": [{"text": ""}]}}, "history": [{"role": "ROLE_AGENT"}]}
    assert explain_empty("task", task, "working") == (
        "(no answer text: task state working; no artifacts; status message with 1 empty text part(s); "
        "1 agent message(s) in history without text)"
    )
    assert (
        explain_empty("message", {"parts": []}, None)
        == "(no answer text: the agent replied with a message of no parts)"
    )
    assert "<empty>" not in parse({"result": {"message": {"messageId": "m", "parts": [{"data": {"x": 1}}]}}}).answer


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("TASK_STATE_COMPLETED", "completed"),
        ("TASK_STATE_INPUT_REQUIRED", "input-required"),
        ("input-required", "input-required"),
        ("TASK_STATE_AUTH_REQUIRED", "auth-required"),
        ("Cancelled", "canceled"),
        ("", None),
        (None, None),
    ],
)
def test_states_are_normalised(raw: Any, expected: str | None) -> None:
    assert normalize_state(raw) == expected


def test_usage_prefers_kagent_keys_and_ignores_non_numbers() -> None:
    metadata = {
        "adk_usage_metadata": {"promptTokenCount": 1, "cachedContentTokenCount": 7},
        "kagent_usage_metadata": {"promptTokenCount": 2, "totalTokenCount": 3.5, "modality": "TEXT", "flag": False},
    }
    assert usage_of(metadata) == {"promptTokenCount": 2, "cachedContentTokenCount": 7, "totalTokenCount": 3.5}


def test_usage_falls_back_to_task_metadata_when_messages_carry_none() -> None:
    body = {"result": {"task": {"id": "t", "status": {"state": "TASK_STATE_COMPLETED"},
            "metadata": {"kagent_usage_metadata": {"totalTokenCount": 9}}}}}  # fmt: skip
    assert parse(body, "1.0").usage == {"totalTokenCount": 9}


def test_function_response_without_a_call_is_still_listed() -> None:
    message = {"parts": [{"data": {"id": "c9", "name": "lookup", "response": {"ok": True}},
                          "metadata": {"kagent_type": "function_response"}}]}  # fmt: skip
    [call] = collect_tool_calls([message])
    assert (call.name, call.call_id, call.arguments, call.result) == ("lookup", "c9", None, {"ok": True})


@pytest.mark.parametrize(
    "body, reason",
    [
        ([1, 2], "JSON list"),
        ({"jsonrpc": "2.0", "result": "text"}, "result is a str"),
        ({"jsonrpc": "2.0", "result": {"foo": 1}}, "neither a Task nor a Message (keys: foo)"),
    ],
)
def test_unreadable_shapes_raise_with_a_reason(body: Any, reason: str) -> None:
    with pytest.raises(ReplyShapeError, match=re.escape(reason)):
        parse(body)
