"""The Llama Stack lane itself: a real Llama Stack server forwards chat completions to the scripted model."""

from __future__ import annotations

import httpx
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.llama_stack]


def test_llama_stack_lists_the_model_with_its_provider_prefix(llama_stack):
    models = httpx.get(f"{llama_stack.openai_url}/models", timeout=10).json()
    assert llama_stack.model in [m["id"] for m in models["data"]]
    assert llama_stack.model == "vllm/scripted-model"


def test_llama_stack_forwards_chat_completions_to_the_model_server(llama_stack, llama_stack_model):
    llama_stack_model.set_script([{"match": "capital", "reply": "Paris, via {model}"}])
    resp = httpx.post(
        f"{llama_stack.openai_url}/chat/completions",
        json={"model": llama_stack.model, "messages": [{"role": "user", "content": "The capital of France?"}]},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["choices"][0]["message"]["content"] == "Paris, via scripted-model"
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
    forwarded = llama_stack_model.chat_requests()
    assert forwarded[-1]["model"] == "scripted-model"
    assert forwarded[-1]["messages"] == [{"role": "user", "content": "The capital of France?"}]
