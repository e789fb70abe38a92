"""The Llama Stack lane itself: a real Llama Stack server forwards chat completions to the scripted model."""

from __future__ import annotations

import httpx
import pytest

from tests.support.model_server import prompt_tokens

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


# -- the Agent Server through Llama Stack -----------------------------------------------------------------------------

TOOL_SCRIPT = [
    {"match": "pods", "after_tool": False, "tool_calls": [{"name": "get_pods", "arguments": {"namespace": "dev"}}]},
    {"match": "pods", "after_tool": True, "reply": "Dev pods: {tool_outputs}"},
]


def _invoke(url: str, payload: dict, **headers: str) -> httpx.Response:
    return httpx.post(f"{url}/invocations", json=payload, headers=headers, timeout=60)


def _sse(resp: httpx.Response) -> list[dict]:
    import json

    return [json.loads(line[6:]) for line in resp.text.splitlines() if line.startswith("data: {")]


def test_agent_server_tool_call_usage_and_trace_through_llama_stack(
    llama_agent_server, llama_stack_model, mlflow_server
):
    import time

    from mlflow import MlflowClient

    llama_stack_model.set_script(TOOL_SCRIPT)
    question = {"input": [{"role": "user", "content": "Which pods run in dev?"}]}
    resp = _invoke(llama_agent_server.url, question, **{"x-mlflow-return-trace-id": "true"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert [i["type"] for i in body["output"]] == ["function_call", "function_call_output", "message"]
    assert body["output"][-1]["content"][0]["text"].startswith('Dev pods: {"api-0": "Running"}')
    sent = llama_stack_model.chat_requests()
    assert len(sent) == 2 and all(r["model"] == "scripted-model" for r in sent)  # Llama Stack strips "vllm/"
    # tokens summed over both model calls, as the model server counted them
    assert body["usage"]["input_tokens"] == sum(prompt_tokens(r["messages"]) for r in sent)
    assert body["usage"]["total_tokens"] == body["usage"]["input_tokens"] + body["usage"]["output_tokens"]

    streamed = _sse(_invoke(llama_agent_server.url, {**question, "stream": True}))
    completed = [e for e in streamed if e.get("type") == "response.completed"][-1]["response"]
    assert completed["usage"] == body["usage"]  # usage survives Llama Stack's streaming too

    client = MlflowClient(tracking_uri=mlflow_server.url)
    deadline = time.monotonic() + 60
    while True:
        try:
            trace = client.get_trace(body["metadata"]["trace_id"])
            if trace and trace.data.spans:
                break
        except Exception:  # noqa: BLE001 - not exported yet
            pass
        assert time.monotonic() < deadline, "trace did not reach MLflow"
        time.sleep(0.5)
    types = [s.span_type for s in trace.data.spans]
    assert types.count("LLM") == 2 and types.count("TOOL") == 1
    assert types.count("AGENT") == 2  # the request's root span and the agent's own (as in test_serve_agent_server)
    assert trace.info.token_usage["total_tokens"] == body["usage"]["total_tokens"]


def test_agent_picks_the_llama_stack_model_when_none_is_configured(
    llama_stack, llama_stack_model, agent_server_factory
):
    server = agent_server_factory(llama_stack.base_url)  # no LLAMA_STACK_MODEL: first LLM of /v1/models
    resp = _invoke(server.url, {"input": [{"role": "user", "content": "Who answers?"}]})
    assert resp.status_code == 200, resp.text
    assert resp.json()["output"][-1]["content"][0]["text"] == "Scripted answer to: Who answers?"


def test_model_failure_behind_llama_stack_is_a_clear_502(llama_agent_server, llama_stack_model):
    llama_stack_model.set_script([{"match": "explode", "status": 500}])
    resp = _invoke(llama_agent_server.url, {"input": [{"role": "user", "content": "please explode"}]})
    assert resp.status_code == 502, resp.text
    assert resp.json()["error"]["type"] == "model_error"
