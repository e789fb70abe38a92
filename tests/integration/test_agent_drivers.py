"""One loop, two drivers: the blocking entry points (predict, predict_stream) and the async ones (apredict,
apredict_stream) against the same scripted model server (a real HTTP subprocess) give the same events, run a turn's
tool calls with the same concurrency, stream sub-agents' text, and never leave a hung tool's thread unbounded."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator

import mlflow
import pytest

from kagent_mlflow.agent import LlamaStackAgent, final_text, supervisor, tool
from kagent_mlflow.agent.threads import ToolThreads
from tests.support.model_server import ModelServerClient

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True, scope="module")
def _no_tracing() -> Iterator[None]:
    mlflow.tracing.disable()
    yield
    mlflow.tracing.reset()


def ask(text: str) -> dict:
    return {"input": [{"role": "user", "content": text}]}


def make_agent(server: ModelServerClient, **kw) -> LlamaStackAgent:
    return LlamaStackAgent(base_url=server.root, model="scripted-model", timeout=10, **kw)


def run_all_four(agent: LlamaStackAgent, text: str) -> dict[str, list[dict]]:
    """Events of predict_stream / apredict_stream and the output of predict / apredict, as plain dicts."""

    def plain(events) -> list[dict]:
        out = []
        for event in events:
            data = event.model_dump(exclude_none=True)
            if data["type"] == "response.completed":
                data["response"].pop("id")  # a fresh uuid per response
            out.append(data)
        return out

    async def async_side() -> tuple[list, list]:
        streamed = [e async for e in agent.apredict_stream(ask(text))]
        return streamed, (await agent.apredict(ask(text))).model_dump(exclude_none=True)["output"]

    blocking_stream = plain(agent.predict_stream(ask(text)))
    blocking_output = agent.predict(ask(text)).model_dump(exclude_none=True)["output"]
    async_stream, async_output = asyncio.run(async_side())
    return {
        "blocking_stream": blocking_stream,
        "async_stream": plain(async_stream),
        "blocking_output": blocking_output,
        "async_output": async_output,
    }


MEET_SCRIPT = [
    {"after_tool": False, "tool_calls": [{"name": "left", "arguments": {}}, {"name": "right", "arguments": {}}]},
    {"after_tool": True, "reply": "Both said: {tool_outputs}"},
]


def meeting_tools() -> list:
    """Two blocking tools that each wait for the other to start: run one after the other, they time out."""
    barrier = threading.Barrier(2, timeout=5)

    @tool(timeout=8)
    def left() -> str:
        """Left."""
        barrier.wait()
        return "left met right"

    @tool(timeout=8)
    def right() -> str:
        """Right."""
        barrier.wait()
        return "right met left"

    return [left, right]


def test_blocking_and_async_give_the_same_events_and_run_tool_calls_concurrently(scripted_model) -> None:
    scripted_model.set_script(MEET_SCRIPT)
    got = run_all_four(make_agent(scripted_model, tools=meeting_tools()), "meet")
    assert got["blocking_stream"] == got["async_stream"]
    assert got["blocking_output"] == got["async_output"]
    outputs = [i["output"] for i in got["blocking_output"] if i["type"] == "function_call_output"]
    assert outputs == ["left met right", "right met left"]  # concurrently, results in call order
    kinds = [e["type"] for e in got["blocking_stream"]]
    assert kinds[:4] == ["response.output_item.done"] * 4  # 2 calls, 2 outputs
    assert kinds[-1] == "response.completed" and "response.output_text.delta" in kinds


def one_at_a_time_tools() -> list:
    """``left`` waits briefly for ``right`` to start: it reports whether the two calls ever overlapped."""
    right_started = threading.Event()

    @tool
    def left() -> str:
        """Left."""
        right_started.clear()  # set by the previous request's call
        return "together" if right_started.wait(0.5) else "alone"

    @tool
    def right() -> str:
        """Right."""
        right_started.set()
        return "right"

    return [left, right]


def test_tool_concurrency_is_one_setting_for_both_drivers(scripted_model) -> None:
    scripted_model.set_script(MEET_SCRIPT)
    agent = make_agent(scripted_model, tools=one_at_a_time_tools(), tool_concurrency=1)
    got = run_all_four(agent, "one at a time")
    assert got["blocking_stream"] == got["async_stream"] and got["blocking_output"] == got["async_output"]
    outputs = [i["output"] for i in got["blocking_output"] if i["type"] == "function_call_output"]
    assert outputs == ["alone", "right"]
    assert LlamaStackAgent(base_url="http://127.0.0.1:9", model="m").tool_concurrency == 8  # the documented default


SPECIALISTS_SCRIPT = [
    {
        "has_tool": "ask_k8s",
        "after_tool": False,
        "tool_calls": [{"name": "ask_k8s", "arguments": {"request": "check prod"}}],
    },
    {"has_tool": "ask_k8s", "after_tool": True, "reply": "Summary: {tool_outputs}"},
    {"system": "cluster specialist", "reply": "The web pod in prod is crash looping."},
]


def _deltas(events: list[dict], agent: str | None) -> str:
    return "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta" and e.get("agent") == agent)


@pytest.mark.parametrize("route", [False, True])
def test_a_sub_agents_text_deltas_reach_the_callers_stream(scripted_model, route: bool) -> None:
    scripted_model.set_script(SPECIALISTS_SCRIPT)
    k8s = make_agent(scripted_model, name="k8s", instructions="You are a cluster specialist.")
    boss = supervisor([k8s], route=route, base_url=scripted_model.root, model="scripted-model")
    got = run_all_four(boss, "Is prod OK?")
    answer = "The web pod in prod is crash looping."
    for side in ("blocking_stream", "async_stream"):
        events = got[side]
        assert _deltas(events, "k8s") == answer, side  # word by word, as the specialist's model sent them
        first = next(i for i, e in enumerate(events) if e.get("agent") == "k8s")
        output = next(i for i, e in enumerate(events) if e.get("item", {}).get("type") == "function_call_output")
        assert first < output  # live, while the delegation ran
        own = _deltas(events, None)
        assert own == ("" if route else f"Summary: {answer}")  # a routed answer is not streamed twice
        assert final_text(events[-1]["response"]) == (answer if route else f"Summary: {answer}")
    assert got["blocking_stream"] == got["async_stream"]


def test_a_hung_blocking_tool_never_takes_more_than_the_bounded_pool(scripted_model, caplog) -> None:
    release = threading.Event()

    @tool(timeout=0.3)
    def hang() -> str:
        """Waits until released."""
        release.wait(60)
        return "released"

    scripted_model.set_script(
        [
            {"after_tool": False, "tool_calls": [{"name": "hang", "arguments": {}}]},
            {"after_tool": True, "reply": "{tool_outputs}"},
        ]
    )
    pool = ToolThreads(1)
    agent = make_agent(scripted_model, tools=[hang], tool_threads=pool)
    try:
        with caplog.at_level(logging.WARNING, logger="kagent_mlflow.agent"):
            first = final_text(agent.predict(ask("hang")))
        assert first == "Error: tool 'hang' timed out after 0.3 s"
        assert pool.stuck == 1 and "1 of 1 tool threads are stuck" in caplog.text
        second = final_text(asyncio.run(agent.apredict(ask("hang"))))
        assert second.startswith("Error: tool 'hang' not started: all 1 tool threads are stuck in blocking tools")
        assert pool.threads == 1
    finally:
        release.set()
    deadline = time.monotonic() + 10
    while pool.stuck and time.monotonic() < deadline:  # the released tool returns; its thread is free again
        time.sleep(0.02)
    assert pool.stuck == 0
    assert final_text(agent.predict(ask("hang"))) == "released"
    assert pool.threads == 1


def test_sub_agents_never_wait_for_a_tool_thread_their_own_delegation_holds(scripted_model) -> None:
    """With ONE tool thread, a specialist's blocking tool still runs: delegations do not take pool threads."""

    @tool
    def get_pods(namespace: str) -> str:
        """List pods."""
        return f"{namespace}-web-1 Running"

    scripted_model.set_script(
        [
            {
                "has_tool": "ask_k8s",
                "after_tool": False,
                "tool_calls": [{"name": "ask_k8s", "arguments": {"request": "check prod"}}],
            },
            {"has_tool": "ask_k8s", "after_tool": True, "reply": "Summary: {tool_outputs}"},
            {
                "system": "cluster specialist",
                "after_tool": False,
                "tool_calls": [{"name": "get_pods", "arguments": {"namespace": "prod"}}],
            },
            {"system": "cluster specialist", "after_tool": True, "reply": "k8s: {tool_outputs}"},
        ]
    )
    pool = ToolThreads(1)
    k8s = make_agent(
        scripted_model,
        name="k8s",
        instructions="You are a cluster specialist.",
        tools=[get_pods],
        tool_threads=pool,
        tool_timeout=2,
    )
    boss = supervisor([k8s], base_url=scripted_model.root, model="scripted-model", tool_threads=pool)
    assert final_text(boss.predict(ask("Is prod OK?"))) == "Summary: k8s: prod-web-1 Running"
    assert pool.stuck == 0
