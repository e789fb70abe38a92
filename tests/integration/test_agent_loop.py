"""The agent against the deterministic model server (a real HTTP server subprocess): tool loop, history, usage,
streaming, async entry points, model discovery and failing model endpoints. Tracing is checked in
test_agent_tracing.py; here it is switched off so nothing is written to a default store."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator

import mlflow
import pytest

from kagent_mlflow.agent import (
    LlamaStackAgent,
    ModelProtocolError,
    ModelTimeoutError,
    ModelUnreachableError,
    final_text,
    supervisor,
    tool,
)
from tests.support.model_server import ModelServerClient, prompt_tokens

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True, scope="module")
def _no_tracing() -> Iterator[None]:
    mlflow.tracing.disable()
    yield
    mlflow.tracing.reset()  # re-initialised lazily by the next test that traces (enable() would create ./mlflow.db)


@tool
def get_pods(namespace: str) -> list[str]:
    """List the pods of a namespace.

    Args:
        namespace: Kubernetes namespace.
    """
    return [f"{namespace}-web-1 CrashLoopBackOff", f"{namespace}-db-0 Running"]


@tool
def get_events(namespace: str, limit: int = 3) -> str:
    """Recent warning events of a namespace."""
    return f"{namespace}: OOMKilled x{limit}"


@tool
def broken(reason: str) -> str:
    """A tool that always fails."""
    raise PermissionError(f"forbidden: {reason}")


@tool(timeout=0.5)
def stuck() -> str:
    """A tool that hangs."""
    time.sleep(30)
    return "never"


def make_agent(server: ModelServerClient, **kw) -> LlamaStackAgent:
    kw.setdefault("tools", [get_pods, get_events, broken, stuck])
    kw.setdefault("instructions", "You are a Kubernetes troubleshooter.")
    return LlamaStackAgent(base_url=server.root, model="scripted-model", timeout=10, **kw)


def ask(text: str) -> dict:
    return {"input": [{"role": "user", "content": text}]}


def texts(response) -> list[str]:
    return [c.text for item in response.output if item.type == "message" for c in item.content]


TOOL_SCRIPT = [
    {
        "match": "crash",
        "after_tool": False,
        "tool_calls": [
            {"name": "get_pods", "arguments": {"namespace": "prod"}},
            {"name": "get_events", "arguments": {"namespace": "prod", "limit": 2}},
        ],
    },
    {"match": "crash", "after_tool": True, "reply": "Diagnosis from: {tool_outputs}"},
]


def test_plain_answer_with_instructions_and_usage(scripted_model: ModelServerClient) -> None:
    response = make_agent(scripted_model).predict(ask("What is a pod?"))
    assert final_text(response) == "Scripted answer to: What is a pod?"
    [body] = scripted_model.chat_requests()
    assert body["model"] == "scripted-model"
    assert body["messages"][0] == {"role": "system", "content": "You are a Kubernetes troubleshooter."}
    assert {t["function"]["name"] for t in body["tools"]} == {"get_pods", "get_events", "broken", "stuck"}
    assert response.usage.input_tokens == prompt_tokens(body["messages"])
    assert response.usage.output_tokens == len(final_text(response).split())
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    assert response.custom_outputs == {"agent": "assistant", "steps": 1, "stop_reason": "final_answer"}


def test_several_tool_calls_in_one_turn_are_executed_and_reported(scripted_model: ModelServerClient) -> None:
    scripted_model.set_script(TOOL_SCRIPT)
    response = make_agent(scripted_model).predict(ask("Why do my pods crash?"))
    types = [item.type for item in response.output]
    assert types == ["function_call", "function_call", "function_call_output", "function_call_output", "message"]
    calls = [item for item in response.output if item.type == "function_call"]
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [
        ("get_pods", {"namespace": "prod"}),
        ("get_events", {"namespace": "prod", "limit": 2}),
    ]
    outputs = [item.output for item in response.output if item.type == "function_call_output"]
    assert outputs == ['["prod-web-1 CrashLoopBackOff", "prod-db-0 Running"]', "prod: OOMKilled x2"]
    assert final_text(response) == f"Diagnosis from: {outputs[0]}; {outputs[1]}"

    bodies = scripted_model.chat_requests()
    assert len(bodies) == 2
    assert [m["role"] for m in bodies[1]["messages"]] == ["system", "user", "assistant", "tool", "tool"]
    assert response.usage.input_tokens == sum(prompt_tokens(b["messages"]) for b in bodies)  # summed over calls


def test_tool_errors_unknown_tools_and_hangs_go_back_to_the_model(scripted_model: ModelServerClient) -> None:
    scripted_model.set_script(
        [
            {
                "match": "try",
                "after_tool": False,
                "tool_calls": [
                    {"name": "broken", "arguments": {"reason": "rbac"}},
                    {"name": "no_such_tool", "arguments": {}},
                    {"name": "stuck", "arguments": {}},
                    {"name": "get_pods", "arguments": {"namespace": 7}},
                ],
            },
        ]
    )
    started = time.monotonic()
    response = make_agent(scripted_model).predict(ask("try everything"))
    assert time.monotonic() - started < 8  # the hanging tool was cut off
    async_response = asyncio.run(make_agent(scripted_model).apredict(ask("try everything")))
    assert async_response.model_dump()["output"] == response.model_dump()["output"]
    outputs = [item.output for item in response.output if item.type == "function_call_output"]
    assert outputs == [
        "Error: tool 'broken' raised PermissionError: forbidden: rbac",
        "Error: unknown tool 'no_such_tool'; available tools: broken, get_events, get_pods, stuck",
        "Error: tool 'stuck' timed out after 0.5 s",
        "Error: tool 'get_pods': invalid arguments: namespace: Input should be a valid string",
    ]
    last = scripted_model.chat_requests()[-1]["messages"]
    assert [m["content"] for m in last if m["role"] == "tool"] == outputs  # the model saw every error
    assert final_text(response).startswith("Scripted answer to: try everything | tool results: Error:")


def test_step_limit_ends_the_turn_with_a_clear_message(scripted_model: ModelServerClient) -> None:
    scripted_model.set_script([{"tool_calls": [{"name": "get_pods", "arguments": {"namespace": "loop"}}]}])
    response = make_agent(scripted_model, max_steps=3).predict(ask("loop forever"))
    assert len(scripted_model.chat_requests()) == 3
    assert final_text(response) == (
        "Stopped: reached the limit of 3 model calls before a final answer. Ask a narrower question or raise max_steps."
    )
    assert response.custom_outputs["stop_reason"] == "max_steps"
    call_ids = [i.call_id for i in response.output if i.type == "function_call"]
    output_ids = [i.call_id for i in response.output if i.type == "function_call_output"]
    assert len(call_ids) == 3 and call_ids == output_ids  # every call has its output: the history stays valid

    async def stream() -> list:
        agent = make_agent(scripted_model, max_steps=2)
        return [e async for e in agent.apredict_stream(ask("loop forever"))]

    events = asyncio.run(stream())
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert deltas == [
        "Stopped: reached the limit of 2 model calls before a final answer. Ask a narrower question or raise max_steps."
    ]
    assert events[-1].response["custom_outputs"]["stop_reason"] == "max_steps"


def test_agent_survives_pickling(scripted_model: ModelServerClient) -> None:
    import pickle

    agent = make_agent(scripted_model, tools=[])
    agent.predict(ask("warm up"))  # clients exist now
    clone = pickle.loads(pickle.dumps(agent))
    assert final_text(clone.predict(ask("again"))) == "Scripted answer to: again"


def test_chat_history_reaches_the_model_in_order(scripted_model: ModelServerClient) -> None:
    history = [
        {"role": "system", "content": "Prefer kubectl examples."},
        {"role": "user", "content": "Is prod healthy?"},
        {
            "type": "function_call",
            "id": "fc_a",
            "call_id": "call_a",
            "name": "get_pods",
            "arguments": '{"namespace":"p"}',
        },
        {"type": "function_call_output", "call_id": "call_a", "output": "p-web-1 Running"},
        {
            "type": "message",
            "id": "msg_1",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Yes, all pods run.", "annotations": []}],
        },
        {"role": "user", "content": [{"type": "input_text", "text": "And staging?"}]},
    ]
    make_agent(scripted_model).predict({"input": history})
    [body] = scripted_model.chat_requests()
    assert body["messages"] == [
        {"role": "system", "content": "You are a Kubernetes troubleshooter."},
        {"role": "system", "content": "Prefer kubectl examples."},
        {"role": "user", "content": "Is prod healthy?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_a", "type": "function", "function": {"name": "get_pods", "arguments": '{"namespace":"p"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": "p-web-1 Running"},
        {"role": "assistant", "content": "Yes, all pods run."},
        {"role": "user", "content": "And staging?"},
    ]


def test_multi_turn_by_sending_the_previous_output_back(scripted_model: ModelServerClient) -> None:
    scripted_model.set_script(TOOL_SCRIPT)
    agent = make_agent(scripted_model)
    first_input = ask("Why do my pods crash?")["input"]
    first = agent.predict({"input": first_input})
    second_input = first_input + [item.model_dump(exclude_none=True) for item in first.output]
    second_input.append({"role": "user", "content": "Thanks. What next?"})
    second = agent.predict({"input": second_input})
    assert final_text(second) == "Scripted answer to: Thanks. What next?"
    seen = scripted_model.chat_requests()[-1]["messages"]
    assert [m["role"] for m in seen] == ["system", "user", "assistant", "tool", "tool", "assistant", "user"]
    assert seen[2]["tool_calls"][1]["function"]["name"] == "get_events"
    assert seen[5]["content"] == final_text(first)


def _reduce(events: list) -> tuple[list[dict], dict, str]:
    items = [e.item for e in events if e.type == "response.output_item.done"]
    [completed] = [e.response for e in events if e.type == "response.completed"]
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    return items, completed, deltas


def test_stream_aggregates_to_the_same_result_as_predict(scripted_model: ModelServerClient) -> None:
    scripted_model.set_script(TOOL_SCRIPT)
    agent = make_agent(scripted_model)
    expected = agent.predict(ask("Why do my pods crash?")).model_dump(exclude_none=True)
    events = list(agent.predict_stream(ask("Why do my pods crash?")))
    items, completed, deltas = _reduce(events)
    assert items == expected["output"]
    assert completed["usage"] == expected["usage"]
    assert deltas == expected["output"][-1]["content"][0]["text"]
    n_deltas = sum(e.type == "response.output_text.delta" for e in events)
    assert n_deltas > 3  # word by word as the model sent them
    first_delta = next(i for i, e in enumerate(events) if e.type == "response.output_text.delta")
    final_done = max(i for i, e in enumerate(events) if e.type == "response.output_item.done")
    assert first_delta < final_done  # deltas come before the item they build
    assert all("stream_options" in b for b in scripted_model.chat_requests()[2:])


def test_async_entry_points_match_the_blocking_ones(scripted_model: ModelServerClient) -> None:
    scripted_model.set_script(TOOL_SCRIPT)
    agent = make_agent(scripted_model)
    expected = agent.predict(ask("Why do my pods crash?")).model_dump(exclude_none=True)

    async def main():
        got = await agent.apredict(ask("Why do my pods crash?"))
        events = [e async for e in agent.apredict_stream(ask("Why do my pods crash?"))]
        many = await asyncio.gather(*(agent.apredict(ask(f"question {i}")) for i in range(5)))
        return got, events, many

    got, events, many = asyncio.run(main())
    assert got.model_dump(exclude_none=True)["output"] == expected["output"]
    assert got.usage == agent.predict(ask("Why do my pods crash?")).usage
    items, completed, _ = _reduce(events)
    assert items == expected["output"] and completed["usage"] == expected["usage"]
    assert [final_text(r) for r in many] == [f"Scripted answer to: question {i}" for i in range(5)]


def test_model_discovered_from_llama_stack_listing(scripted_model: ModelServerClient, monkeypatch) -> None:
    monkeypatch.delenv("LLAMA_STACK_MODEL", raising=False)
    monkeypatch.setenv("LLAMA_STACK_BASE_URL", scripted_model.url)  # a URL already ending in /v1 works too
    monkeypatch.setenv("LLAMA_STACK_API_KEY", "ls-key")
    scripted_model.set_script(
        models=[
            {"id": "sentence-transformers/all-MiniLM-L6-v2", "custom_metadata": {"model_type": "embedding"}},
            {"id": "vllm/scripted-model", "custom_metadata": {"model_type": "llm", "provider_id": "vllm"}},
        ]
    )
    agent = LlamaStackAgent()
    assert final_text(agent.predict(ask("hi"))) == "Scripted answer to: hi"
    req = scripted_model.requests()[-1]
    assert req["body"]["model"] == "vllm/scripted-model"
    assert req["headers"]["authorization"] == "Bearer ls-key"


def test_request_temperature_and_max_output_tokens_reach_the_model(scripted_model: ModelServerClient) -> None:
    make_agent(scripted_model, temperature=0.3).predict(ask("a"))
    make_agent(scripted_model, temperature=0.3).predict({**ask("b"), "temperature": 0.0, "max_output_tokens": 50})
    first, second = scripted_model.chat_requests()
    assert first["temperature"] == 0.3 and "max_tokens" not in first
    assert second["temperature"] == 0.0 and second["max_tokens"] == 50


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_model_down_is_a_clear_error_not_a_hang() -> None:
    agent = LlamaStackAgent(base_url=f"http://127.0.0.1:{_closed_port()}", model="m", timeout=5)
    with pytest.raises(ModelUnreachableError, match=r"cannot connect .* is Llama Stack running\?"):
        agent.predict(ask("hello"))
    with pytest.raises(ModelUnreachableError):
        list(agent.predict_stream(ask("hello")))
    with pytest.raises(ModelUnreachableError):
        asyncio.run(agent.apredict(ask("hello")))
    no_model = LlamaStackAgent(base_url=f"http://127.0.0.1:{_closed_port()}", model=None, timeout=5)
    no_model.config = no_model.config.with_model(None)  # type: ignore[arg-type]
    no_model.client._model = None
    with pytest.raises(ModelUnreachableError):
        no_model.predict(ask("hello"))


def test_model_timeouts_http_errors_and_garbage_are_clear_errors(scripted_model: ModelServerClient) -> None:
    agent = LlamaStackAgent(base_url=scripted_model.root, model="m", timeout=0.5)
    scripted_model.set_script([{"hang": True, "hang_s": 3}])
    started = time.monotonic()
    with pytest.raises(ModelTimeoutError, match="no answer within 0.5 s"):
        agent.predict(ask("q"))
    assert time.monotonic() - started < 3
    with pytest.raises(ModelTimeoutError):
        asyncio.run(agent.apredict(ask("q")))

    scripted_model.set_script([{"status": 500}])
    with pytest.raises(ModelProtocolError, match="HTTP 500: scripted failure"):
        agent.predict(ask("q"))
    with pytest.raises(ModelProtocolError, match="HTTP 500"):
        list(agent.predict_stream(ask("q")))

    scripted_model.set_script([{"malformed": True}])
    with pytest.raises(ModelProtocolError, match="unusable answer"):
        agent.predict(ask("q"))
    with pytest.raises(ModelProtocolError):
        list(agent.predict_stream(ask("q")))


def test_supervisor_delegates_to_specialists_and_counts_their_tokens(scripted_model: ModelServerClient) -> None:
    scripted_model.set_script(
        [
            {
                "has_tool": "ask_k8s",
                "after_tool": False,
                "tool_calls": [
                    {"name": "ask_k8s", "arguments": {"request": "check pods in prod"}},
                    {"name": "ask_docs", "arguments": {"request": "OOMKilled remedies"}},
                ],
            },
            {"has_tool": "ask_k8s", "after_tool": True, "reply": "Summary: {tool_outputs}"},
            {
                "system": "cluster specialist",
                "after_tool": False,
                "tool_calls": [{"name": "get_pods", "arguments": {"namespace": "prod"}}],
            },
            {"system": "cluster specialist", "after_tool": True, "reply": "k8s: {tool_outputs}"},
            {"system": "documentation specialist", "reply": "docs: raise the memory limit"},
        ]
    )
    k8s = make_agent(scripted_model, name="k8s", instructions="You are a cluster specialist.", tools=[get_pods])
    docs = make_agent(scripted_model, name="docs", instructions="You are a documentation specialist.", tools=[])
    boss = supervisor([k8s, docs], base_url=scripted_model.root, model="scripted-model")
    response = boss.predict(ask("My pods crash, what do I do?"))
    outputs = [i.output for i in response.output if i.type == "function_call_output"]
    assert outputs == ['k8s: ["prod-web-1 CrashLoopBackOff", "prod-db-0 Running"]', "docs: raise the memory limit"]
    assert final_text(response) == f"Summary: {outputs[0]}; {outputs[1]}"
    bodies = scripted_model.chat_requests()
    assert len(bodies) == 5  # supervisor x2, k8s x2, docs x1
    assert response.usage.input_tokens == sum(prompt_tokens(b["messages"]) for b in bodies)


def test_router_returns_the_specialists_answer_directly(scripted_model: ModelServerClient) -> None:
    scripted_model.set_script(
        [
            {
                "has_tool": "ask_docs",
                "tool_calls": [{"name": "ask_docs", "arguments": {"request": "what is a route?"}}],
            },
            {"system": "documentation specialist", "reply": "A Route exposes a service."},
        ]
    )
    docs = make_agent(scripted_model, name="docs", instructions="You are a documentation specialist.", tools=[])
    router = supervisor([docs], route=True, base_url=scripted_model.root, model="scripted-model")
    response = router.predict(ask("What is an OpenShift route?"))
    assert final_text(response) == "A Route exposes a service."
    assert response.custom_outputs["stop_reason"] == "return_direct"
    assert len(scripted_model.chat_requests()) == 2  # the router did not call the model again


def test_async_entry_points_run_one_turns_tool_calls_concurrently(scripted_model: ModelServerClient) -> None:
    """Each tool waits for the other to start: run one after the other, the first would time out."""
    started: dict[str, asyncio.Event] = {}

    async def _meet(me: str, other: str) -> str:
        started.setdefault(me, asyncio.Event()).set()
        await started.setdefault(other, asyncio.Event()).wait()
        return f"{me} met {other}"

    @tool(timeout=5)
    async def left() -> str:
        """Left."""
        return await _meet("left", "right")

    @tool(timeout=5)
    async def right() -> str:
        """Right."""
        return await _meet("right", "left")

    scripted_model.set_script(
        [{"after_tool": False, "tool_calls": [{"name": "left", "arguments": {}}, {"name": "right", "arguments": {}}]}]
    )
    response = asyncio.run(make_agent(scripted_model, tools=[left, right]).apredict(ask("meet")))
    outputs = [i.output for i in response.output if i.type == "function_call_output"]
    assert outputs == ["left met right", "right met left"]  # in call order
