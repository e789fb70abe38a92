"""Tools: schema from signature + docstring, argument validation, and failures turned into outputs for the model."""

from __future__ import annotations

import asyncio
import time
from enum import Enum

import mlflow
import pytest

from kagent_mlflow.agent import Tool, tool
from kagent_mlflow.agent.reply import ToolCallRequest, Usage
from kagent_mlflow.agent.threads import ToolThreads
from kagent_mlflow.agent.toolrun import Caller, ToolSettings, run_async, run_blocking
from kagent_mlflow.agent.tools import ToolResult


@pytest.fixture(autouse=True, scope="module")
def _no_tracing():
    mlflow.tracing.disable()
    yield
    mlflow.tracing.reset()


def run_tool(tools: dict, name: str, arguments: str, timeout: float) -> ToolResult:
    """One call through the blocking runner (what ``predict`` uses)."""
    settings = ToolSettings(tools, timeout, 8, ToolThreads(4))
    steps = run_blocking(settings, [ToolCallRequest("c1", name, arguments)], Caller(Usage()), stream=False)
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value.results[0]


async def arun_tool(tools: dict, name: str, arguments: str, timeout: float) -> ToolResult:
    """One call through the async runner (what ``apredict`` uses)."""
    settings = ToolSettings(tools, timeout, 8, ToolThreads(4))
    rounds: list = []
    async for _ in run_async(settings, [ToolCallRequest("c1", name, arguments)], Caller(Usage()), False, rounds):
        pass
    return rounds[0].results[0]


class Severity(str, Enum):
    low = "low"
    high = "high"


@tool
def get_pods(namespace: str, limit: int = 5, severity: Severity = Severity.low) -> list[str]:
    """List the pods of a namespace.

    Longer explanation that is not part of the summary? It is, as long as it precedes Args.

    Args:
        namespace: Kubernetes namespace to look in.
        limit: At most this many pods,
            counting from the newest.
        severity: Minimum severity.
    """
    return [f"{namespace}-{i}-{severity.value}" for i in range(limit)]


def test_schema_comes_from_signature_and_docstring() -> None:
    spec = get_pods.spec()["function"]
    assert spec["name"] == "get_pods"
    assert spec["description"].startswith("List the pods of a namespace.")
    params = spec["parameters"]
    assert params["required"] == ["namespace"]
    assert params["properties"]["namespace"] == {"type": "string", "description": "Kubernetes namespace to look in."}
    assert params["properties"]["limit"]["type"] == "integer"
    assert params["properties"]["limit"]["default"] == 5
    assert params["properties"]["limit"]["description"] == "At most this many pods, counting from the newest."
    assert "additionalProperties" in params and params["additionalProperties"] is False


def test_decorator_options_and_plain_functions() -> None:
    @tool(name="search-docs", description="Search the docs.", timeout=3)
    def search(query: str) -> str:
        return query

    def undocumented(x: int, y: int = 2) -> int:
        return x * y

    t = Tool.from_function(undocumented)
    assert (search.name, search.description, search.timeout) == ("search-docs", "Search the docs.", 3)
    assert t.description == "undocumented" and t.parameters["required"] == ["x"]
    with pytest.raises(ValueError, match="tool name"):
        Tool.from_function(undocumented, name="has space")


def test_arguments_are_validated_and_coerced() -> None:
    tools = {"get_pods": get_pods}
    ok = run_tool(tools, "get_pods", '{"namespace": "prod", "limit": "2", "severity": "high"}', 5)
    assert ok.error is None and ok.output == '["prod-0-high", "prod-1-high"]'
    missing = run_tool(tools, "get_pods", "{}", 5)
    assert missing.output.startswith("Error: tool 'get_pods': invalid arguments: namespace: Field required")
    extra = run_tool(tools, "get_pods", '{"namespace": "a", "bogus": 1}', 5)
    assert "bogus" in extra.output and extra.error
    broken = run_tool(tools, "get_pods", '{"namespace": ', 5)
    assert "not valid JSON" in broken.output


def test_unknown_tool_raising_tool_and_hanging_tool_become_error_outputs() -> None:
    @tool
    def boom(x: int) -> int:
        """Always fails."""
        raise RuntimeError(f"disk {x} on fire")

    @tool(timeout=0.3)
    def sleepy() -> str:
        """Hangs."""
        time.sleep(30)
        return "never"

    tools = {t.name: t for t in (boom, sleepy, get_pods)}
    unknown = run_tool(tools, "nope", "{}", 5)
    assert unknown.output == "Error: unknown tool 'nope'; available tools: boom, get_pods, sleepy"
    raised = run_tool(tools, "boom", '{"x": 3}', 5)
    assert raised.output == "Error: tool 'boom' raised RuntimeError: disk 3 on fire"
    started = time.monotonic()
    hung = run_tool(tools, "sleepy", "{}", 5)
    assert hung.output == "Error: tool 'sleepy' timed out after 0.3 s"
    assert time.monotonic() - started < 10  # cut off, not waited for


def test_async_runner_handles_sync_and_async_tools() -> None:
    @tool
    async def fetch(url: str) -> dict:
        """Fetch a URL."""
        await asyncio.sleep(0)
        return {"url": url, "status": 200}

    @tool
    async def slow() -> str:
        """Too slow."""
        await asyncio.sleep(30)
        return "late"

    def blocking_hang() -> str:
        time.sleep(30)
        return "late"

    tools = {t.name: t for t in (fetch, slow, get_pods, Tool.from_function(blocking_hang))}

    async def main() -> list[str]:
        return [
            (await arun_tool(tools, "fetch", '{"url": "http://x"}', 5)).output,
            (await arun_tool(tools, "get_pods", '{"namespace": "n", "limit": 1}', 5)).output,
            (await arun_tool(tools, "slow", "{}", 0.2)).output,
            (await arun_tool(tools, "blocking_hang", "{}", 0.2)).output,
            (await arun_tool(tools, "missing", "{}", 0.2)).output,
        ]

    out = asyncio.run(main())
    assert out[0] == '{"url": "http://x", "status": 200}'
    assert out[1] == '["n-0-low"]'
    assert out[2] == "Error: tool 'slow' timed out after 0.2 s"
    assert out[3] == "Error: tool 'blocking_hang' timed out after 0.2 s"
    assert out[4].startswith("Error: unknown tool 'missing'")
    # a sync tool run by the blocking loop may be async too
    assert run_tool(tools, "fetch", '{"url": "u"}', 5).output == '{"url": "u", "status": 200}'
