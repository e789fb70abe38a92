"""Chat history conversion (Responses items -> chat messages) and model configuration from the environment."""

from __future__ import annotations

import pytest

from kagent_mlflow.agent import ModelConfig
from kagent_mlflow.agent.history import to_chat_messages
from kagent_mlflow.agent.llm import _pick_llm
from kagent_mlflow.errors import ConfigError


def test_history_keeps_order_and_merges_one_turns_tool_calls() -> None:
    items = [
        {"role": "developer", "content": "Be brief."},
        {
            "role": "user",
            "content": [{"type": "input_text", "text": "Why is web "}, {"type": "input_text", "text": "down?"}],
        },
        {
            "type": "message",
            "id": "m1",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Let me look.", "annotations": []}],
        },
        {"type": "function_call", "id": "fc1", "call_id": "c1", "name": "get_pods", "arguments": '{"ns": "web"}'},
        {"type": "function_call", "id": "fc2", "call_id": "c2", "name": "get_events", "arguments": ""},
        {"type": "function_call_output", "call_id": "c1", "output": "web-1 CrashLoopBackOff"},
        {"type": "function_call_output", "call_id": "c2", "output": [{"type": "text", "text": "x"}]},
        {"type": "reasoning", "id": "r1", "summary": [{"type": "summary_text", "text": "hidden"}]},
        {"type": "message", "id": "m2", "role": "assistant", "content": [{"type": "output_text", "text": "OOM."}]},
        {"role": "user", "content": "Fix it"},
        {"type": "function_call", "call_id": "c3", "name": "restart", "arguments": "{}"},
    ]
    assert to_chat_messages(items, "You are an SRE.") == [
        {"role": "system", "content": "You are an SRE."},
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Why is web down?"},
        {
            "role": "assistant",
            "content": "Let me look.",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "get_pods", "arguments": '{"ns": "web"}'}},
                {"id": "c2", "type": "function", "function": {"name": "get_events", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "web-1 CrashLoopBackOff"},
        {"role": "tool", "tool_call_id": "c2", "content": '[{"type": "text", "text": "x"}]'},
        {"role": "assistant", "content": "OOM."},
        {"role": "user", "content": "Fix it"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c3", "type": "function", "function": {"name": "restart", "arguments": "{}"}}],
        },
    ]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://localhost:8321", "http://localhost:8321/v1"),
        ("http://localhost:8321/", "http://localhost:8321/v1"),
        ("https://ls.example/v1/", "https://ls.example/v1"),
        ("http://h:1/v1/openai/v1", "http://h:1/v1/openai/v1"),
    ],
)
def test_base_url_is_normalised(given: str, expected: str) -> None:
    assert ModelConfig(base_url=given).base_url == expected


def test_env_and_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LLAMA_STACK_BASE_URL", "LLAMA_STACK_MODEL", "LLAMA_STACK_API_KEY", "LLAMA_STACK_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LLAMA_STACK_CLIENT_BASE_URL", "http://client-var:8321")
    assert ModelConfig.from_env().base_url == "http://client-var:8321/v1"
    monkeypatch.setenv("LLAMA_STACK_BASE_URL", "http://ls:8321")
    monkeypatch.setenv("LLAMA_STACK_MODEL", "vllm/granite")
    monkeypatch.setenv("LLAMA_STACK_API_KEY", "sekret-key")
    monkeypatch.setenv("LLAMA_STACK_TEMPERATURE", "0.1")
    cfg = ModelConfig.from_env(timeout=5)
    assert (cfg.base_url, cfg.model, cfg.temperature, cfg.timeout) == ("http://ls:8321/v1", "vllm/granite", 0.1, 5)
    assert cfg.api_key == "sekret-key" and "sekret" not in repr(cfg)
    assert ModelConfig.from_env(model="other").model == "other"


def test_bad_settings_are_config_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="LLAMA_STACK_BASE_URL"):
        ModelConfig(base_url="localhost:8321")
    monkeypatch.setenv("LLAMA_STACK_TIMEOUT", "soon")
    with pytest.raises(ConfigError, match="LLAMA_STACK_TIMEOUT='soon' is not a number"):
        ModelConfig.from_env()


def test_first_llm_is_picked_from_llama_stack_and_openai_listings() -> None:
    llama_stack = [
        {"id": "sentence-transformers/all-MiniLM", "custom_metadata": {"model_type": "embedding"}},
        {"id": "vllm/scripted-model", "custom_metadata": {"model_type": "llm", "provider_id": "vllm"}},
    ]
    assert _pick_llm(llama_stack) == "vllm/scripted-model"
    assert _pick_llm([{"identifier": "old/llm", "model_type": "llm"}]) == "old/llm"
    assert _pick_llm([{"id": "gpt-x", "object": "model"}]) == "gpt-x"
    assert _pick_llm([{"id": "e", "custom_metadata": {"model_type": "embedding"}}]) is None
