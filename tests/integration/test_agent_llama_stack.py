"""The agent through a REAL Llama Stack server (remote::vllm provider -> the scripted model server): model
discovery of ``vllm/<id>``, a tool loop with history, streaming and usage all survive Llama Stack's translation."""

from __future__ import annotations

import json
from collections.abc import Iterator

import mlflow
import pytest

from kagent_mlflow.agent import LlamaStackAgent, final_text, tool

pytestmark = [pytest.mark.integration, pytest.mark.llama_stack]


@pytest.fixture(autouse=True, scope="module")
def _no_tracing() -> Iterator[None]:
    mlflow.tracing.disable()
    yield
    mlflow.tracing.reset()


@tool
def get_pods(namespace: str) -> list[str]:
    """List the pods of a namespace."""
    return [f"{namespace}-web-1 CrashLoopBackOff"]


SCRIPT = [
    {
        "match": "crash",
        "after_tool": False,
        "tool_calls": [
            {"name": "get_pods", "arguments": {"namespace": "prod"}},
            {"name": "get_pods", "arguments": {"namespace": "staging"}},
        ],
    },
    {"match": "crash", "after_tool": True, "reply": "Found: {tool_outputs}"},
]


def test_tool_loop_through_llama_stack(llama_stack, llama_stack_model, monkeypatch) -> None:
    monkeypatch.delenv("LLAMA_STACK_MODEL", raising=False)
    monkeypatch.setenv("LLAMA_STACK_BASE_URL", llama_stack.base_url)  # the server root, as users set it
    llama_stack_model.set_script(SCRIPT)
    agent = LlamaStackAgent(instructions="You are a Kubernetes helper.", tools=[get_pods], timeout=30)

    response = agent.predict({"input": [{"role": "user", "content": "Why do pods crash?"}]})
    assert agent.client.model() == llama_stack.model == "vllm/scripted-model"  # discovered from /v1/models
    outputs = [i.output for i in response.output if i.type == "function_call_output"]
    assert outputs == ['["prod-web-1 CrashLoopBackOff"]', '["staging-web-1 CrashLoopBackOff"]']
    assert final_text(response) == f"Found: {outputs[0]}; {outputs[1]}"
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens > 0

    behind = llama_stack_model.chat_requests()  # what reached the model through Llama Stack
    assert [m["role"] for m in behind[-1]["messages"]] == ["system", "user", "assistant", "tool", "tool"]
    assert [json.loads(c["function"]["arguments"]) for c in behind[-1]["messages"][2]["tool_calls"]] == [
        {"namespace": "prod"},
        {"namespace": "staging"},
    ]

    events = list(agent.predict_stream({"input": [{"role": "user", "content": "Why do pods crash?"}]}))
    items = [e.item for e in events if e.type == "response.output_item.done"]
    assert items == response.model_dump(exclude_none=True)["output"]
    [completed] = [e.response for e in events if e.type == "response.completed"]
    assert completed["usage"] == response.model_dump()["usage"]
