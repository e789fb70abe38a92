"""``LlamaStackAgent``: an MLflow ``ResponsesAgent`` that answers with a Llama Stack model and calls Python tools.

One turn = model call -> (tool calls -> tool results -> model call)* -> final message, bounded by ``max_steps``
model calls. One loop core (:mod:`.loop`, no I/O) serves ``predict`` / ``predict_stream`` through the blocking driver
(MLflow model serving, notebooks) and ``apredict`` / ``apredict_stream`` through the async one (the Agent Server, so
concurrent requests do not queue): both give the same events and run tools with the same concurrency.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

import mlflow
from mlflow.entities import SpanType
from mlflow.pyfunc import ResponsesAgent
from mlflow.types.responses import (
    ResponsesAgentRequest,
    ResponsesAgentResponse,
    ResponsesAgentStreamEvent,
    responses_agent_output_reducer,
)

from .config import ModelConfig
from .drive import aevents, events
from .llm import ModelClient
from .loop import COMPLETED
from .reply import Usage
from .threads import ToolThreads, shared_tool_threads
from .toolrun import CALLER, Caller
from .tools import DEFAULT_TOOL_TIMEOUT, Tool, as_tool

DEFAULT_MAX_STEPS = 10
DEFAULT_TOOL_CONCURRENCY = 8
DELTA = "response.output_text.delta"


def _as_request(request: ResponsesAgentRequest | dict[str, Any]) -> ResponsesAgentRequest:
    return request if isinstance(request, ResponsesAgentRequest) else ResponsesAgentRequest(**request)


class LlamaStackAgent(ResponsesAgent):
    """A tool-calling agent on a Llama Stack (or any OpenAI-compatible) ``/v1`` endpoint.

    Args:
        name: Names the agent in traces and when used as a sub-agent tool.
        instructions: System prompt placed before the conversation.
        tools: Tools (``@tool`` objects, or plain typed functions) the model may call.
        description: What the agent is good at (used when a supervisor offers it as a tool).
        model, base_url, api_key, temperature, timeout, max_retries: override ``ModelConfig.from_env()``.
        config: A complete :class:`ModelConfig` instead of the individual settings.
        max_steps: Maximum model calls per turn (default 10); reaching it ends the turn with a clear message.
        tool_timeout: Seconds a tool may run (default 30) unless the tool sets its own ``timeout``.
        tool_concurrency: How many tool calls of one model reply run at once (default 8, in every entry point);
            1 runs them one after the other.
        tool_threads: The pool blocking tools run on (default: the process's, ``KAGENT_MLFLOW_TOOL_THREADS``).
    """

    def __init__(
        self,
        *,
        name: str = "assistant",
        instructions: str | None = None,
        tools: Iterable[Tool | Any] = (),
        description: str | None = None,
        model: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        temperature: float | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        config: ModelConfig | None = None,
        max_steps: int = DEFAULT_MAX_STEPS,
        tool_timeout: float = DEFAULT_TOOL_TIMEOUT,
        tool_concurrency: int = DEFAULT_TOOL_CONCURRENCY,
        tool_threads: ToolThreads | None = None,
    ) -> None:
        if max_steps < 1:
            raise ValueError("max_steps must be at least 1")
        if tool_concurrency < 1:
            raise ValueError("tool_concurrency must be at least 1")
        self.name = name
        self.instructions = instructions
        self.description = description or instructions or name
        self.tools: dict[str, Tool] = {}
        for t in tools:
            self.add_tool(t)
        overrides = {
            "model": model,
            "base_url": base_url,
            "api_key": api_key,
            "temperature": temperature,
            "timeout": timeout,
            "max_retries": max_retries,
        }
        self.config = config or ModelConfig.from_env(**overrides)
        self.client = ModelClient(self.config)
        self.max_steps = max_steps
        self.tool_timeout = tool_timeout
        self.tool_concurrency = tool_concurrency
        self._tool_threads = tool_threads or shared_tool_threads()  # now: a bad KAGENT_MLFLOW_TOOL_THREADS fails here

    @property
    def tool_threads(self) -> ToolThreads:
        return self._tool_threads or shared_tool_threads()

    def __getstate__(self) -> dict[str, Any]:
        """Picklable: a private thread pool is not carried over (the copy uses the process's)."""
        return {**self.__dict__, "_tool_threads": None}

    def add_tool(self, t: Tool | Any) -> Tool:
        """Register a tool (or a typed function, converted with :meth:`Tool.from_function`)."""
        t = as_tool(t)
        if t.name in self.tools:
            raise ValueError(f"agent {self.name!r} already has a tool named {t.name!r}")
        self.tools[t.name] = t
        return t

    def tool_specs(self) -> list[dict[str, Any]]:
        """The ``tools`` list the model is offered."""
        return [t.spec() for t in self.tools.values()]

    def predict(self, request: ResponsesAgentRequest) -> ResponsesAgentResponse:
        """Answer one request (blocking). MLflow wraps this in an AGENT span."""
        return ResponsesAgentResponse(**_completed(events(self, _as_request(request), stream=False)))

    def predict_stream(self, request: ResponsesAgentRequest) -> Iterator[ResponsesAgentStreamEvent]:
        """Stream one answer: ``response.output_text.delta`` events as the model produces text, a
        ``response.output_item.done`` per output item, and a final ``response.completed`` carrying ``usage``."""
        for event in events(self, _as_request(request), stream=True):
            yield ResponsesAgentStreamEvent(**event)

    @mlflow.trace(span_type=SpanType.AGENT)
    async def apredict(self, request: ResponsesAgentRequest | dict[str, Any]) -> ResponsesAgentResponse:
        """Async :meth:`predict` (for the Agent Server's event loop): model calls and tools never block it."""
        replies = [e async for e in aevents(self, _as_request(request), stream=False)]
        return ResponsesAgentResponse(**_completed(iter(replies)))

    @mlflow.trace(span_type=SpanType.AGENT, output_reducer=responses_agent_output_reducer)
    async def apredict_stream(
        self, request: ResponsesAgentRequest | dict[str, Any]
    ) -> AsyncIterator[ResponsesAgentStreamEvent]:
        """Async :meth:`predict_stream`, same events."""
        async for event in aevents(self, _as_request(request), stream=True):
            yield ResponsesAgentStreamEvent(**event)

    # -- as a sub-agent -----------------------------------------------------------------------------------------

    def run(self, question: str) -> ResponsesAgentResponse:
        """Answer one question inside the current trace as an AGENT span named after this agent (blocking).

        Run as a tool of a streaming caller, its text deltas go into the caller's stream as they come."""
        caller = CALLER.get()
        with mlflow.start_span(name=self.name, span_type=SpanType.AGENT) as span:
            span.set_inputs({"input": question})
            response = None
            for event in events(self, _question(question), stream=_streams(caller)):
                response = self._pass_on(event, caller) or response
            span.set_outputs(response)
        return _answered(caller, response)

    async def arun(self, question: str) -> ResponsesAgentResponse:
        """Async :meth:`run`."""
        caller = CALLER.get()
        with mlflow.start_span(name=self.name, span_type=SpanType.AGENT) as span:
            span.set_inputs({"input": question})
            response = None
            async for event in aevents(self, _question(question), stream=_streams(caller)):
                response = self._pass_on(event, caller) or response
            span.set_outputs(response)
        return _answered(caller, response)

    def _pass_on(self, event: dict[str, Any], caller: Caller | None) -> dict[str, Any] | None:
        """Text deltas go on to a streaming caller, tagged with the agent that wrote them; returns the response
        of the last event."""
        if event["type"] == DELTA and caller is not None:
            caller.forward({**event, "agent": event.get("agent", self.name)})
        return event["response"] if event["type"] == COMPLETED else None

    def as_tool(self, name: str | None = None, description: str | None = None, *, return_direct: bool = False) -> Tool:
        """This agent as a tool for a supervisor (agents-as-tools). With ``return_direct`` the specialist's answer
        becomes the supervisor's final answer unchanged (routing)."""
        agent = self

        def delegate(request: str) -> str:
            return final_text(agent.run(request))

        async def adelegate(request: str) -> str:
            return final_text(await agent.arun(request))

        tool_name = name or f"ask_{self.name}"
        params = {
            "type": "object",
            "properties": {"request": {"type": "string", "description": "The question or task, self-contained."}},
            "required": ["request"],
        }
        return Tool(
            name=tool_name,
            description=description or f"Delegate to the {self.name} agent: {self.description}",
            parameters=params,
            func=delegate,
            afunc=adelegate,
            timeout=self.config.timeout * self.max_steps + 5,
            return_direct=return_direct,
            delegates=True,
        )


def final_text(response: ResponsesAgentResponse | dict[str, Any]) -> str:
    """The text of the last assistant message of a response (its answer); ``""`` if there is none.

    (MLflow's ``Response.output_text`` fails on responses built from dicts, hence this helper.)
    """
    data = response.model_dump() if isinstance(response, ResponsesAgentResponse) else response
    for item in reversed(data.get("output") or []):
        if item.get("type") == "message":
            return "".join(c.get("text", "") for c in item.get("content") or [] if c.get("type") == "output_text")
    return ""


def _question(text: str) -> ResponsesAgentRequest:
    return ResponsesAgentRequest(input=[{"role": "user", "content": text}])


def _completed(events: Iterator[dict[str, Any]]) -> dict[str, Any]:
    for event in events:
        if event["type"] == "response.completed":
            return event["response"]
    raise RuntimeError("agent loop ended without a response")  # pragma: no cover - the loop always completes


def _streams(caller: Caller | None) -> bool:
    return caller is not None and caller.emit is not None


def _answered(caller: Caller | None, response: dict[str, Any] | None) -> ResponsesAgentResponse:
    """A sub-agent's response; its tokens count in its caller's usage."""
    if response is None:  # pragma: no cover - the loop always completes
        raise RuntimeError("agent loop ended without a response")
    usage = response.get("usage")
    if caller is not None and usage:
        caller.add_usage(Usage(usage["input_tokens"], usage["output_tokens"], usage["total_tokens"], reported=True))
    return ResponsesAgentResponse(**response)


DEFAULT_INSTRUCTIONS = (
    "You are a helpful assistant for people who run applications on Kubernetes and OpenShift. "
    "Answer concisely and say so when you are not sure."
)


def default_agent() -> LlamaStackAgent:
    """The built-in agent served when no other is named: no tools, model settings from ``LLAMA_STACK_*``,
    instructions from ``KAGENT_MLFLOW_AGENT_INSTRUCTIONS`` (optional)."""
    import os

    instructions = os.environ.get("KAGENT_MLFLOW_AGENT_INSTRUCTIONS") or DEFAULT_INSTRUCTIONS
    return LlamaStackAgent(name="assistant", instructions=instructions)
