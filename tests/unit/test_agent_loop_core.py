"""The loop core without I/O (agent/loop.py), driven by hand with scripted replies and tool results, and the bounded
pool blocking tools run on (agent/threads.py)."""

from __future__ import annotations

import logging
import threading

import pytest
from mlflow.types.responses import ResponsesAgentRequest

from kagent_mlflow.agent import LlamaStackAgent, tool
from kagent_mlflow.agent.loop import CallModel, RunTools, ToolRound, turn_steps
from kagent_mlflow.agent.reply import ModelReply, ToolCallRequest, Usage
from kagent_mlflow.agent.threads import ToolThreads, ToolThreadsExhausted
from kagent_mlflow.agent.tools import ToolResult
from kagent_mlflow.agent.turn import Turn


@tool
def get_pods(namespace: str) -> list[str]:
    """List pods."""
    return [namespace]


@tool(return_direct=True)
def ask_docs(request: str) -> str:
    """Delegate to docs."""
    return request


def agent(**kw) -> LlamaStackAgent:
    kw.setdefault("tools", [get_pods, ask_docs])
    return LlamaStackAgent(name="a", instructions="Be brief.", base_url="http://127.0.0.1:9", model="m", **kw)


def start(stream: bool = False, **kw):
    a = agent(**kw)
    turn = Turn(a, ResponsesAgentRequest(input=[{"role": "user", "content": "q"}]))
    return turn, turn_steps(turn, a.tool_specs(), stream)


def reply(text: str = "", *calls: tuple[str, str], tokens: int = 3) -> ModelReply:
    requests = [ToolCallRequest(f"call_{i}", name, args) for i, (name, args) in enumerate(calls)]
    return ModelReply("msg_1", text, requests, Usage(tokens, tokens, 2 * tokens, reported=True), model="m")


def test_a_plain_answer_is_one_model_call_then_the_events() -> None:
    _, steps = start(stream=True)
    call = next(steps)
    assert isinstance(call, CallModel) and call.stream
    assert [m["role"] for m in call.messages] == ["system", "user"]
    assert [t["function"]["name"] for t in call.tools] == ["get_pods", "ask_docs"]
    done = steps.send(reply("Hello."))
    assert done["type"] == "response.output_item.done" and done["item"]["content"][0]["text"] == "Hello."
    completed = next(steps)
    assert completed["type"] == "response.completed"
    assert completed["response"]["usage"]["total_tokens"] == 6
    assert completed["response"]["custom_outputs"] == {"agent": "a", "steps": 1, "stop_reason": "final_answer"}
    with pytest.raises(StopIteration):
        next(steps)


def test_tool_calls_become_one_run_tools_step_and_their_results_go_back_to_the_model() -> None:
    turn, steps = start()
    next(steps)
    first = steps.send(reply("", ("get_pods", '{"namespace": "a"}'), ("get_pods", '{"namespace": "b"}')))
    second = next(steps)
    assert [first["item"]["type"], second["item"]["type"]] == ["function_call", "function_call"]
    run = next(steps)
    assert isinstance(run, RunTools) and [c.call_id for c in run.calls] == ["call_0", "call_1"]
    outputs = [steps.send(ToolRound([ToolResult("A"), ToolResult("B")])), next(steps)]
    assert [o["item"]["output"] for o in outputs] == ["A", "B"]
    again = next(steps)
    assert isinstance(again, CallModel)
    assert [m["role"] for m in again.messages] == ["system", "user", "assistant", "tool", "tool"]
    steps.send(reply("Done.", tokens=5))
    completed = next(steps)["response"]
    assert completed["usage"]["input_tokens"] == 8 and turn.steps == 2


def test_the_step_limit_ends_the_turn_with_a_streamed_message() -> None:
    _, steps = start(stream=True, max_steps=1)
    next(steps)
    steps.send(reply("", ("get_pods", '{"namespace": "a"}')))
    assert isinstance(next(steps), RunTools)
    steps.send(ToolRound([ToolResult("A")]))
    delta = next(steps)
    assert delta["type"] == "response.output_text.delta" and delta["delta"].startswith("Stopped: reached the limit")
    assert next(steps)["type"] == "response.output_item.done"
    assert next(steps)["response"]["custom_outputs"]["stop_reason"] == "max_steps"


@pytest.mark.parametrize(("streamed", "expected"), [(False, ["delta", "done"]), (True, ["done"])])
def test_a_routed_answer_is_streamed_once(streamed: bool, expected: list[str]) -> None:
    """A sub-agent that already streamed its answer into this stream is not repeated as one more delta."""
    _, steps = start(stream=True)
    next(steps)
    assert steps.send(reply("", ("ask_docs", '{"request": "x"}')))["item"]["type"] == "function_call"
    assert isinstance(next(steps), RunTools)
    output = steps.send(ToolRound([ToolResult("Routes expose services.")], streamed=streamed))
    assert output["item"]["type"] == "function_call_output"
    rest = list(steps)
    kinds = [e["type"].rsplit(".", 1)[-1] for e in rest[:-1]]
    assert kinds == expected
    assert rest[-1]["response"]["custom_outputs"]["stop_reason"] == "return_direct"


def test_wrong_outcomes_are_refused() -> None:
    _, steps = start()
    next(steps)
    with pytest.raises(TypeError, match="ModelReply"):
        steps.send("text")
    _, steps = start()
    next(steps)
    steps.send(reply("", ("get_pods", "{}")))
    next(steps)
    with pytest.raises(TypeError, match="one result per call"):
        steps.send(ToolRound([]))


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="tool_concurrency"):
        agent(tool_concurrency=0)
    with pytest.raises(ValueError, match="at least 1"):
        ToolThreads(0)


@pytest.mark.parametrize("value", ["0", "many", "-3"])
def test_a_bad_tool_thread_limit_fails_when_the_agent_is_made(monkeypatch, value: str) -> None:
    from kagent_mlflow.agent import threads
    from kagent_mlflow.errors import ConfigError

    monkeypatch.setattr(threads, "_shared", None)
    monkeypatch.setenv("KAGENT_MLFLOW_TOOL_THREADS", value)
    with pytest.raises(ConfigError, match=f"KAGENT_MLFLOW_TOOL_THREADS='{value}' must be a whole number >= 1"):
        agent()
    monkeypatch.setenv("KAGENT_MLFLOW_TOOL_THREADS", "3")
    assert agent().tool_threads.limit == 3


def test_tool_threads_are_bounded_and_count_calls_that_hang(caplog) -> None:
    threads = ToolThreads(2)
    release, started = threading.Event(), threading.Semaphore(0)

    def hang() -> bool:
        started.release()
        return release.wait(30)

    hung = [threads.submit(hang) for _ in range(2)]
    assert started.acquire(timeout=10) and started.acquire(timeout=10)  # both running, not queued
    with caplog.at_level(logging.WARNING, logger="kagent_mlflow.agent"):
        for future in hung:
            threads.abandon(future, "tool 'hang'")
    assert threads.stuck == 2 and threads.threads == 2
    assert "2 of 2 tool threads are stuck" in caplog.text
    with pytest.raises(ToolThreadsExhausted, match="all 2 tool threads are stuck"):
        threads.submit(lambda: "never runs")
    release.set()
    assert [f.result(timeout=10) for f in hung] == [True, True]
    assert threads.submit(lambda: "ok").result(timeout=10) == "ok"  # callbacks ran before result() returned
    assert threads.stuck == 0 and threads.threads == 2


def test_a_job_queued_behind_busy_threads_is_cancelled_not_counted_when_abandoned() -> None:
    threads = ToolThreads(1)
    release, started = threading.Event(), threading.Event()
    busy = threads.submit(lambda: started.set() or release.wait(30))
    assert started.wait(10)
    queued = threads.submit(lambda: "late")
    threads.abandon(queued, "tool 'queued'")
    assert queued.cancelled() and threads.stuck == 0
    release.set()
    assert busy.result(timeout=10) is True


def test_one_parser_folds_streamed_chunks_into_the_reply() -> None:
    """The chunk parser both model-streaming paths feed (sync and async iterators of the same chunks)."""
    from openai.types.chat import ChatCompletionChunk

    from kagent_mlflow.agent.reply import StreamAccumulator, TextDelta

    def chunk(delta: dict | None = None, finish: str | None = None, usage: dict | None = None) -> ChatCompletionChunk:
        choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
        body = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "m", "choices": choices}
        return ChatCompletionChunk.model_validate({**body, "usage": usage} if usage else body)

    call = {"index": 0, "id": "call_a", "type": "function", "function": {"name": "get_pods", "arguments": ""}}
    chunks = [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Checking "}),
        chunk({"content": "pods."}),
        chunk({"tool_calls": [call]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"namespace"'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": ': "prod"}'}}]}),
        chunk({}, finish="tool_calls"),
        chunk(usage={"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}),
    ]
    acc = StreamAccumulator("m")
    deltas = [d for d in (acc.add(c) for c in chunks) if d is not None]
    assert deltas == [TextDelta("c1", "Checking "), TextDelta("c1", "pods.")]
    result = acc.result()
    assert (result.item_id, result.text, result.finish_reason) == ("c1", "Checking pods.", "tool_calls")
    assert [(c.call_id, c.name, c.arguments) for c in result.tool_calls] == [
        ("call_a", "get_pods", '{"namespace": "prod"}')
    ]
    assert result.usage == Usage(5, 4, 9, reported=True)
