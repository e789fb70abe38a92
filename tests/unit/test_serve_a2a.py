"""The A2A face's parts without a server process: settings, the bounded conversation memory, how Responses events
become A2A task events, and that an in-process app keeps its memory and task store within bounds."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from kagent_mlflow.errors import ConfigError
from kagent_mlflow.serve.a2a.memory import ConversationMemory
from kagent_mlflow.serve.a2a.report import TaskReporter, usage_metadata
from kagent_mlflow.serve.config import ServeConfig, normalize_a2a_path, parse_a2a_protocols

# -- settings --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "path"),
    [
        ("a2a", "/a2a/"),
        ("/a2a", "/a2a/"),
        ("/api/a2a/kagent/rh-analyze-simple", "/api/a2a/kagent/rh-analyze-simple/"),
        ("/", "/"),  # a kagent BYO agent: kagent sends JSON-RPC to the root of the pod's port 8080
    ],
)
def test_a2a_path_gets_one_leading_and_trailing_slash(given, path):
    assert normalize_a2a_path(given) == path


@pytest.mark.parametrize("bad", ["", "/a b/", "/a2a/../x", "/a?x=1", "/a//b/", "/é/"])
def test_a2a_path_must_be_a_plain_path(bad):
    with pytest.raises(ConfigError, match="A2A path"):
        normalize_a2a_path(bad)


def test_a2a_protocols_parse_in_preference_order():
    assert parse_a2a_protocols("0.3") == ("0.3",)
    assert parse_a2a_protocols(" 0.3 , 1.0,0.3") == ("0.3", "1.0")
    for bad in ("", "2.0", "1.0,0.2"):
        with pytest.raises(ConfigError, match="A2A protocols"):
            parse_a2a_protocols(bad)


def test_a2a_settings_from_env_and_flags(monkeypatch):
    monkeypatch.setenv("KAGENT_MLFLOW_A2A_PATH", "api/a2a/ns/agent")
    monkeypatch.setenv("KAGENT_MLFLOW_A2A_PROTOCOLS", "0.3")
    monkeypatch.setenv("KAGENT_MLFLOW_A2A_MAX_CONTEXTS", "7")
    config = ServeConfig.from_env(a2a_max_turns=3)
    assert (config.a2a, config.a2a_path, config.a2a_protocols) == (True, "/api/a2a/ns/agent/", ("0.3",))
    assert (config.a2a_max_contexts, config.a2a_max_turns) == (7, 3)
    monkeypatch.setenv("KAGENT_MLFLOW_A2A", "false")
    assert ServeConfig.from_env().a2a is False
    with pytest.raises(ConfigError, match="must be > 0"):
        ServeConfig.from_env(a2a_max_turns=0)
    with pytest.raises(ConfigError, match="http"):
        ServeConfig.from_env(a2a_url="kagent-controller:8083/api/a2a/ns/agent/")


# -- conversation memory ---------------------------------------------------------------------------------------------


def turn(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}, {"type": "message", "role": "assistant", "content": f"re {text}"}]


def test_memory_keeps_the_last_turns_of_a_conversation():
    memory = ConversationMemory(max_contexts=5, max_turns=2)
    for n in range(4):
        memory.remember("a", turn(f"q{n}"))
    assert [i["content"] for i in memory.history("a")] == ["q2", "re q2", "q3", "re q3"]
    assert memory.history("unknown") == []


def test_memory_forgets_the_least_recently_used_conversation():
    memory = ConversationMemory(max_contexts=2, max_turns=5)
    memory.remember("a", turn("a1"))
    memory.remember("b", turn("b1"))
    memory.history("a")  # reading a conversation counts as using it
    memory.remember("c", turn("c1"))
    assert ("a" in memory, "b" in memory, "c" in memory) == (True, False, True)
    assert (len(memory), memory.evicted) == (2, 1)


# -- Responses events -> A2A events ----------------------------------------------------------------------------------


class Queue:
    def __init__(self) -> None:
        self.events: list[Any] = []

    async def enqueue_event(self, event: Any) -> None:
        self.events.append(event)


def reporter() -> tuple[TaskReporter, Queue]:
    from a2a.server.tasks import TaskUpdater

    queue = Queue()
    return TaskReporter(TaskUpdater(queue, "task-1", "ctx-1")), queue


def as_dicts(events: list[Any]) -> list[dict[str, Any]]:
    from google.protobuf.json_format import MessageToDict

    return [MessageToDict(e) for e in events]


def test_streamed_answer_becomes_chunks_then_the_whole_text_and_usage_once():
    rep, queue = reporter()
    usage = {"input_tokens": 7, "output_tokens": 3, "total_tokens": 10}
    events = [
        {"type": "response.output_text.delta", "item_id": "m1", "delta": "Hel"},
        {"type": "response.output_text.delta", "item_id": "sub", "delta": "x", "agent": "specialist"},  # not again
        {"type": "response.output_text.delta", "item_id": "m1", "delta": "lo"},
        {"type": "response.output_item.done", "item": {"type": "message", "id": "m1", "role": "assistant",
                                                        "content": [{"type": "output_text", "text": "Hello"}]}},
        {"type": "response.completed", "response": {"usage": usage}},
    ]  # fmt: skip

    async def run() -> None:
        for event in events:
            await rep.event(event)
        await rep.complete()

    asyncio.run(run())
    out = as_dicts(queue.events)
    chunks = [e for e in out if "artifact" in e]
    assert [(c["artifact"]["parts"][0]["text"], c.get("append", False), c.get("lastChunk", False)) for c in chunks] == [
        ("Hel", False, False),
        ("lo", True, False),
        ("Hello", False, True),
    ]
    statuses = [e for e in out if "status" in e]
    last_message = statuses[-2]["status"]["message"]
    assert last_message["parts"][0]["text"] == "Hello"
    assert last_message["metadata"] == usage_metadata(usage)
    assert statuses[-1]["status"]["state"] == "TASK_STATE_COMPLETED"
    assert statuses[-1]["metadata"]["kagent_usage_metadata"] == {
        "promptTokenCount": 7,
        "candidatesTokenCount": 3,
        "totalTokenCount": 10,
    }


def test_tool_round_becomes_kagent_data_parts():
    rep, queue = reporter()
    response = {
        "output": [
            {
                "type": "message",
                "id": "m0",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Let me"}],
            },
            {"type": "function_call", "call_id": "c1", "name": "get_pods", "arguments": '{"namespace": "prod"}'},
            {"type": "function_call_output", "call_id": "c1", "output": "web-1"},
            {"type": "message", "id": "m1", "role": "assistant", "content": [{"type": "output_text", "text": "web-1"}]},
        ],
        "usage": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2},
    }

    async def run() -> None:
        await rep.answer(response)
        await rep.complete()

    asyncio.run(run())
    messages = [e["status"]["message"] for e in as_dicts(queue.events) if e.get("status", {}).get("message")]
    assert [m["parts"][0].get("text") or m["parts"][0]["metadata"]["kagent_type"] for m in messages] == [
        "Let me",
        "function_call",
        "function_response",
        "web-1",
    ]
    assert messages[1]["parts"][0]["data"] == {"id": "c1", "name": "get_pods", "args": {"namespace": "prod"}}
    assert messages[2]["parts"][0]["data"] == {"id": "c1", "name": "get_pods", "response": {"result": "web-1"}}
    assert [("metadata" in m) for m in messages] == [False, False, False, True]  # usage once, on the answer
    assert [i["type"] for i in rep.items] == ["message", "function_call", "function_call_output", "message"]


# -- an in-process app stays within its bounds -----------------------------------------------------------------------


class EchoAgent:
    """A ResponsesAgent stand-in: answers with the number of items it was given."""

    name = "echo"

    def predict(self, request: Any) -> dict[str, Any]:
        return {
            "output": [
                {
                    "type": "message",
                    "id": uuid.uuid4().hex,
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": f"items: {len(request.input)}"}],
                }
            ]
        }

    def predict_stream(self, request: Any) -> Any:
        yield from ()


def test_app_memory_and_task_store_stay_bounded():
    import httpx

    from kagent_mlflow.serve.app import create_app

    config = ServeConfig(tracing=False, a2a_max_contexts=3, a2a_max_turns=2)
    app = create_app(EchoAgent(), config)

    async def run() -> list[str]:
        answers = []
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            for n in range(12):
                message = {"kind": "message", "messageId": f"m{n}", "role": "user", "contextId": f"ctx-{n % 6}",
                           "parts": [{"kind": "text", "text": f"q{n}"}]}  # fmt: skip
                body = {"jsonrpc": "2.0", "id": n, "method": "message/send", "params": {"message": message}}
                reply = (await client.post("/a2a/", json=body)).json()
                answers.append(reply["result"]["artifacts"][0]["parts"][0]["text"])
        return answers

    answers = asyncio.run(run())
    assert answers[:6] == ["items: 1"] * 6
    assert answers[6:] == ["items: 1"] * 6  # six conversations through a memory of three: all forgotten
    face = app.state.a2a
    assert len(face.memory) == 3 and len(face.tasks) == 3
    assert face.handler._active_task_registry._active_tasks == {}  # noqa: SLF001 - nothing left running
