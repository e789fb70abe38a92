"""Our A2A client against the REAL kagent runtime (kagent-adk 0.10.x, protocol 0.3) in front of the model server.

What a user would check: the answer is the model's, the token usage is what the model reported, the task and
context ids are the runtime's, tool calls are listed, and a failed task is an error naming the URL and the cause.
Also guards the recorded fixtures in tests/fixtures/kagent/: the live runtime must still reply in their shape.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.kagent_runtime import AGENT_NAME, FAIL_RULE, TOOL_RULE, KagentRuntime, expected_usage
from tests.support.model_server import ModelServerClient

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "kagent"


@pytest.fixture
def client(kagent_runtime: KagentRuntime) -> Iterator[Any]:
    from kagent_mlflow.a2a.client import AgentClient

    agent = AgentClient(kagent_runtime.url, timeout=60)
    try:
        yield agent
    finally:
        agent.close()


def test_answer_usage_and_ids_come_from_the_runtime(
    client: Any, kagent_runtime: KagentRuntime, scripted_model: ModelServerClient
) -> None:
    reply = client.ask("What is Kubernetes?")

    assert reply.answer == "Scripted answer to: What is Kubernetes?"
    assert reply.agent_name == AGENT_NAME
    assert reply.protocol_version == "0.3"
    assert reply.task_state == "completed"
    result = reply.raw["result"]
    assert reply.task_id == result["id"] and reply.task_id
    assert reply.context_id == result["contextId"] and reply.context_id
    # The usage is the model's own count for the one chat completion it served, passed through by kagent.
    (request,) = scripted_model.chat_requests()
    assert request["messages"][-1] == {"role": "user", "content": "What is Kubernetes?"}
    assert reply.usage == expected_usage(scripted_model, reply.answer)
    assert set(reply.usage) == {"promptTokenCount", "candidatesTokenCount", "totalTokenCount"}
    assert reply.tool_calls == []


def test_each_question_is_a_new_task(client: Any, scripted_model: ModelServerClient) -> None:
    first = client.ask("First question?")
    second = client.ask("Second question?")

    assert (first.answer, second.answer) == (
        "Scripted answer to: First question?",
        "Scripted answer to: Second question?",
    )
    assert first.task_id != second.task_id


def test_tool_calls_are_reported(client: Any, scripted_model: ModelServerClient) -> None:
    scripted_model.set_script([TOOL_RULE])

    reply = client.ask("Which pods run in the default namespace?")

    assert reply.answer == (
        "Scripted answer to: Which pods run in the default namespace? | tool results: pods in default: web-1, web-2"
    )
    assert [(call.name, call.arguments) for call in reply.tool_calls] == [("get_pods", {"namespace": "default"})]
    call = reply.tool_calls[0]
    assert "pods in default: web-1, web-2" in json.dumps(call.result)
    assert call.call_id and call.call_id.startswith("call_")
    assert len(scripted_model.chat_requests()) == 2  # the tool round and the final answer
    assert reply.usage == expected_usage(scripted_model, reply.answer)  # both model calls counted


def test_failed_task_is_an_error_naming_url_and_cause(
    client: Any, kagent_runtime: KagentRuntime, scripted_model: ModelServerClient
) -> None:
    from kagent_mlflow.errors import AgentError

    scripted_model.set_script([FAIL_RULE])

    with pytest.raises(AgentError) as caught:
        client.ask("Please fail now")

    err = caught.value
    message = str(err)
    assert "\n" not in message
    assert kagent_runtime.url.rstrip("/") in message
    assert "failed" in message and "500" in message  # task state and the model's error text
    assert err.task_state == "failed"
    assert err.reply is not None and err.reply.task_id  # the failed task is still identified, for the log
    assert err.raw["result"]["status"]["state"] == "failed"


def test_live_replies_keep_the_recorded_shape(kagent_runtime: KagentRuntime, scripted_model: ModelServerClient) -> None:
    """The fixtures the parse tests use must still describe what this kagent-adk version sends."""
    recorded_card = json.loads((FIXTURES / "agent-card.json").read_text())
    live_card = json.loads(kagent_runtime.get(".well-known/agent-card.json"))
    assert {k: v for k, v in live_card.items() if k != "url"} == {k: v for k, v in recorded_card.items() if k != "url"}

    recorded = json.loads((FIXTURES / "task-completed.json").read_text())["result"]
    live = json.loads(kagent_runtime.send("What is Kubernetes?"))["result"]
    assert sorted(live) == sorted(recorded)
    assert sorted(live["metadata"]) == sorted(recorded["metadata"])
    assert sorted(live["metadata"]["kagent_usage_metadata"]) == [
        "candidatesTokenCount",
        "promptTokenCount",
        "totalTokenCount",
    ]
    assert live["artifacts"][0]["parts"] == recorded["artifacts"][0]["parts"]
