"""The local stack's pure parts: the default-URL rule, its default ports, tool-call parsing of the bundled model's
replies, and the model server's handling of requests (with a stand-in generator: the real model is tested in
``tests/integration/test_up_real_model.py``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from kagent_mlflow.config import DEFAULT_A2A_URL, Settings
from kagent_mlflow.local import engine
from kagent_mlflow.local.model_server import MAX_BODY_BYTES, Loader, create_app
from kagent_mlflow.local.stack import StackOptions
from kagent_mlflow.local.state import ProcessInfo, StackState, process_start_time, write_state

TOOLS = [{"type": "function", "function": {"name": "glossary", "parameters": {"type": "object"}}}]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("MLFLOW_TRACKING_URI", "A2A_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KAGENT_MLFLOW_HOME", str(tmp_path))
    return tmp_path


def write_stack(home: Path, pid: int, started: float | None = None) -> None:
    mlflow = ProcessInfo("mlflow", pid, "http://localhost:5999", "log", "MLflow", started or 0.0)
    write_state(home, StackState([mlflow], "http://localhost:5999", "http://localhost:9083/a2a/", "http://m/v1"))


def test_default_ports_give_the_seeds_urls(tmp_path: Path) -> None:
    options = StackOptions(home=tmp_path)
    assert options.a2a_url == DEFAULT_A2A_URL
    assert options.mlflow_url == "http://localhost:5000"


def test_a_running_stack_is_used_when_nothing_else_is_configured(home: Path) -> None:
    assert Settings.from_env().is_embedded
    write_stack(home, os.getpid(), process_start_time(os.getpid()))
    settings = Settings.from_env()
    assert settings.tracking_uri == "http://localhost:5999"
    assert settings.a2a_url == "http://localhost:9083/a2a/"


def test_configured_urls_win_over_the_stack(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_stack(home, os.getpid())
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://elsewhere:5000")
    settings = Settings.from_env(a2a_url="http://agent:1/")
    assert (settings.tracking_uri, settings.a2a_url) == ("http://elsewhere:5000", "http://agent:1/")
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert Settings.from_env(a2a_url="http://agent:1/").tracking_uri == "http://localhost:5999"


@pytest.mark.parametrize(
    "content",
    [
        "",
        "{not json",
        "[]",
        '{"processes": [{"name": 1}]}',
        '{"processes": {}}',
        '{"processes": [{"name": "mlflow", "pid": "1", "url": "u", "log": "l", "description": "d"}], '
        '"mlflow_url": "u", "a2a_url": "a", "model_url": "m"}',
    ],
)
def test_an_unreadable_state_file_means_no_stack(home: Path, content: str) -> None:
    (home / "stack").mkdir()
    (home / "stack" / "state.json").write_text(content)
    assert Settings.from_env().is_embedded


def test_a_dead_or_reused_pid_means_no_stack(home: Path) -> None:
    write_stack(home, 2**22 + 12345)  # above pid_max
    assert Settings.from_env().is_embedded
    write_stack(home, os.getpid(), started=1.0)  # alive, but not the process that was started
    assert Settings.from_env().is_embedded


@pytest.mark.parametrize(
    ("reply", "name", "arguments"),
    [
        ('<tool_call>{"name": "glossary", "arguments": {"term": "pod"}}</tool_call>', "glossary", {"term": "pod"}),
        ('{"name": "glossary", "arguments": {"term": "pod"}}', "glossary", {"term": "pod"}),
        ('Let me look. <tool_call>{"name": "glossary", "parameters": {}}', "glossary", {}),
    ],
)
def test_tool_calls_are_read_from_the_reply(reply: str, name: str, arguments: dict) -> None:
    [call] = engine.parse_tool_calls(reply, TOOLS)
    assert call["type"] == "function" and call["function"]["name"] == name
    assert json.loads(call["function"]["arguments"]) == arguments


@pytest.mark.parametrize(
    "reply",
    [
        "Kubernetes runs containers.",
        '<tool_call>{"name": "rm_rf", "arguments": {}}</tool_call>',  # not offered
        '<tool_call>{"name": "glossary", "arguments": "pod"}</tool_call>',  # arguments not an object
        '<tool_call>{"name": "glossary", "arguments": {</tool_call>',  # broken JSON
        '["glossary"]',
    ],
)
def test_anything_else_is_plain_text(reply: str) -> None:
    assert engine.parse_tool_calls(reply, TOOLS) == []


def test_chat_messages_carry_tools_and_tool_turns_as_text() -> None:
    chat = engine.chat_messages(
        [
            {"role": "user", "content": [{"type": "text", "text": "What is a pod?"}]},
            {"role": "assistant", "tool_calls": [{"function": {"name": "glossary", "arguments": "{}"}}]},
            {"role": "tool", "content": "The smallest unit."},
        ],
        TOOLS,
    )
    assert [m["role"] for m in chat] == ["system", "user", "assistant", "user"]
    assert "glossary" in chat[0]["content"] and "<tool_call>" in chat[0]["content"]
    assert chat[1]["content"] == "What is a pod?"
    assert chat[2]["content"].startswith('<tool_call>{"name": "glossary"')
    assert chat[3]["content"] == "Tool result: The smallest unit."


class StandIn:
    """The generator's interface, answering at once: what the server does around the model is under test here."""

    def __init__(self, reply: str = "Kubernetes runs containers.", calls: list | None = None) -> None:
        self.reply, self.calls, self.seen = reply, calls or [], []

    def generate(self, messages, tools, max_tokens, temperature, on_text=None, cancelled=None) -> engine.Generation:
        self.seen.append({"messages": messages, "tools": tools, "max_tokens": max_tokens})
        if on_text:
            for word in self.reply.split(" "):
                on_text(word + " ")
        return engine.Generation("" if self.calls else self.reply, 7, 5, self.calls)


def client_for(model: Any) -> TestClient:
    loader = Loader(lambda: model)
    loader.model = model
    return TestClient(create_app(loader))


def test_completion_with_usage() -> None:
    model = StandIn()
    body = client_for(model).post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "Hi"}]})
    assert body.status_code == 200
    data = body.json()
    assert data["choices"][0]["message"]["content"] == "Kubernetes runs containers."
    assert data["usage"] == {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}
    assert model.seen[0]["max_tokens"] == engine.DEFAULT_MAX_TOKENS


def test_streaming_text_then_usage_then_done() -> None:
    request = {"messages": [{"role": "user", "content": "Hi"}], "stream": True}
    with client_for(StandIn()).stream(
        "POST", "/v1/chat/completions", json=request | {"stream_options": {"include_usage": True}}
    ) as response:
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text.strip() == "Kubernetes runs containers."
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"]["total_tokens"] == 12


def test_streamed_tool_call() -> None:
    call = engine.parse_tool_calls('{"name": "glossary", "arguments": {"term": "pod"}}', TOOLS)
    request = {"messages": [{"role": "user", "content": "pod?"}], "stream": True, "tools": TOOLS}
    with client_for(StandIn(calls=call)).stream("POST", "/v1/chat/completions", json=request) as response:
        chunks = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")]
    [delta] = [c["choices"][0]["delta"]["tool_calls"] for c in chunks if c["choices"][0]["delta"].get("tool_calls")]
    assert delta[0]["function"]["name"] == "glossary" and delta[0]["index"] == 0
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b"{not json", 400, "not JSON"),
        (b"\xff\xfe", 400, "not JSON"),
        (b"[]", 400, "JSON object"),
        (b"{}", 400, "messages"),
        (b'{"messages": []}', 400, "messages"),
        (b'{"messages": [{"role": "root", "content": "x"}]}', 400, "role"),
        (b'{"messages": [{"role": "user", "content": 5}]}', 400, "content"),
        (b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": 1000000000}', 400, "max_tokens"),
        (b'{"messages": [{"role": "user", "content": "x"}], "temperature": -1}', 400, "temperature"),
        (b'{"messages": [{"role": "user", "content": "x"}], "stream": "yes please"}', 400, "stream"),
        (b" " * (MAX_BODY_BYTES + 1), 413, "over"),
    ],
)
def test_bad_requests_never_reach_the_model(body: bytes, status: int, says: str) -> None:
    model = StandIn()
    response = client_for(model).post("/v1/chat/completions", content=body)
    assert response.status_code == status
    assert says in response.json()["error"]["message"]
    assert model.seen == []


def test_while_loading_health_says_so_and_chat_waits() -> None:
    loader = Loader(lambda: None)
    client = TestClient(create_app(loader))
    health = client.get("/health")
    assert health.status_code == 503 and health.json()["status"] == "loading"
    assert client.get("/v1/models").json()["data"][0]["id"] == engine.MODEL_ID
    chat = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "Hi"}]})
    assert chat.status_code == 503 and "loading" in chat.json()["error"]["message"]
