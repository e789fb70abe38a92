"""The deterministic model server, driven through the real ``openai`` SDK over HTTP."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.support.model_server import ModelServerClient, start_subprocess, stop_subprocess

pytestmark = pytest.mark.integration


def _client(server: ModelServerClient, **kw) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url, api_key="test-key", max_retries=0, **kw)


def test_lists_models(scripted_model: ModelServerClient) -> None:
    ids = [m.id for m in _client(scripted_model).models.list()]
    assert ids == ["scripted-model"]
    scripted_model.set_script(models=["llama-3", "granite"])
    assert [m.id for m in _client(scripted_model).models.list()] == ["llama-3", "granite"]


def test_default_reply_depends_on_question_and_usage_counts_words(scripted_model: ModelServerClient) -> None:
    resp = _client(scripted_model).chat.completions.create(
        model="scripted-model", messages=[{"role": "user", "content": "What is OpenShift?"}]
    )
    assert resp.choices[0].message.content == "Scripted answer to: What is OpenShift?"
    assert resp.choices[0].finish_reason == "stop"
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens, resp.usage.total_tokens) == (3, 6, 9)


def test_scripted_tool_calls_then_answer_with_tool_output(scripted_model: ModelServerClient) -> None:
    scripted_model.set_script(
        [
            {
                "match": "pods",
                "after_tool": False,
                "tool_calls": [
                    {"name": "get_pods", "arguments": {"namespace": "prod"}},
                    {"name": "get_events", "arguments": {"namespace": "prod"}},
                ],
            },
            {"match": "pods", "after_tool": True, "reply": "Found: {tool_outputs}"},
        ]
    )
    client = _client(scripted_model)
    messages: list[dict] = [{"role": "user", "content": "Why are my pods crashing?"}]
    first = client.chat.completions.create(model="m", messages=messages)
    calls = first.choices[0].message.tool_calls
    assert first.choices[0].finish_reason == "tool_calls"
    assert [c.function.name for c in calls] == ["get_pods", "get_events"]
    assert json.loads(calls[0].function.arguments) == {"namespace": "prod"}
    again = client.chat.completions.create(model="m", messages=messages)
    assert [c.id for c in again.choices[0].message.tool_calls] == [c.id for c in calls]  # deterministic ids

    messages.append(first.choices[0].message.model_dump(exclude_none=True))
    messages += [
        {"role": "tool", "tool_call_id": calls[0].id, "content": "web-1 CrashLoopBackOff"},
        {"role": "tool", "tool_call_id": calls[1].id, "content": "OOMKilled"},
    ]
    final = client.chat.completions.create(model="m", messages=messages)
    assert final.choices[0].message.content == "Found: web-1 CrashLoopBackOff; OOMKilled"

    seen = scripted_model.chat_requests()
    assert len(seen) == 3
    assert [m["role"] for m in seen[-1]["messages"]] == ["user", "assistant", "tool", "tool"]


def test_streaming_aggregates_to_the_non_streamed_reply(scripted_model: ModelServerClient) -> None:
    client = _client(scripted_model)
    messages = [{"role": "user", "content": "Tell me about namespaces please"}]
    full = client.chat.completions.create(model="m", messages=messages)
    stream = client.chat.completions.create(
        model="m", messages=messages, stream=True, stream_options={"include_usage": True}
    )
    text, usage, deltas = "", None, 0
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                text += choice.delta.content
                deltas += 1
    assert text == full.choices[0].message.content
    assert deltas > 1  # word by word, not one blob
    assert usage is not None and usage.total_tokens == full.usage.total_tokens


def test_streaming_without_stream_options_and_with_tool_calls(scripted_model: ModelServerClient) -> None:
    scripted_model.set_script([{"match": "weather", "tool_calls": [{"name": "get_weather", "arguments": {"c": "x"}}]}])
    chunks = list(
        _client(scripted_model).chat.completions.create(
            model="m", messages=[{"role": "user", "content": "weather?"}], stream=True
        )
    )
    assert all(c.usage is None for c in chunks)
    pieces = [tc for c in chunks for ch in c.choices for tc in (ch.delta.tool_calls or [])]
    assert pieces[0].function.name == "get_weather" and pieces[0].id.startswith("call_")
    assert json.loads("".join(p.function.arguments or "" for p in pieces)) == {"c": "x"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_system_and_has_tool_matchers_tell_agents_apart(scripted_model: ModelServerClient) -> None:
    scripted_model.set_script(
        [
            {"system": "kubernetes specialist", "reply": "k8s says hi"},
            {"has_tool": "search_docs", "reply": "docs agent says hi"},
        ]
    )
    client = _client(scripted_model)
    a = client.chat.completions.create(
        model="m",
        messages=[{"role": "system", "content": "You are a Kubernetes specialist."}, {"role": "user", "content": "q"}],
    )
    tool = {"type": "function", "function": {"name": "search_docs", "parameters": {"type": "object"}}}
    b = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "q"}], tools=[tool])
    assert a.choices[0].message.content == "k8s says hi"
    assert b.choices[0].message.content == "docs agent says hi"


def test_failure_modes(scripted_model: ModelServerClient) -> None:
    client = _client(scripted_model, timeout=1.0)
    msgs = [{"role": "user", "content": "q"}]
    scripted_model.set_script([{"status": 500, "times": 1}])
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="m", messages=msgs)
    assert client.chat.completions.create(model="m", messages=msgs).choices[0].message.content  # "times" used up

    scripted_model.set_script([{"malformed": True}])
    with pytest.raises((json.JSONDecodeError, openai.APIResponseValidationError, ValueError)):
        client.chat.completions.create(model="m", messages=msgs)

    scripted_model.set_script([{"hang": True, "hang_s": 5}])
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="m", messages=msgs)


def test_records_headers_and_bad_requests(scripted_model: ModelServerClient) -> None:
    _client(scripted_model).chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    rec = scripted_model.requests()[-1]
    assert rec["headers"]["authorization"] == "Bearer test-key"
    resp = httpx.post(scripted_model.url + "/chat/completions", content=b"{nope")
    assert resp.status_code == 400 and "not JSON" in resp.json()["error"]["message"]
    resp = httpx.post(scripted_model.url + "/chat/completions", json={"messages": []})
    assert resp.status_code == 400


def test_cli_script_file_and_delay(tmp_path) -> None:
    script = tmp_path / "rules.json"
    script.write_text(json.dumps({"rules": [{"match": "ping", "reply": "pong"}], "models": ["vllm-model"]}))
    server = start_subprocess(delay_ms=50, script_file=script)
    try:
        client = _client(server)
        assert [m.id for m in client.models.list()] == ["vllm-model"]
        reply = client.chat.completions.create(model="x", messages=[{"role": "user", "content": "ping"}])
        assert reply.choices[0].message.content == "pong"
        assert server.script()["delay_ms"] == 50
        server.reset()  # reset restores the file's script, not an empty one
        assert server.script()["rules"] == [{"match": "ping", "reply": "pong"}]
    finally:
        stop_subprocess(server)
    assert server.process.returncode is not None
