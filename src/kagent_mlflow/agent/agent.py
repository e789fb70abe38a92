"""``LlamaStackAgent``: an MLflow ``ResponsesAgent`` that answers with a Llama Stack model and calls Python tools.

One turn = model call -> (tool calls -> tool results -> model call)* -> final message, bounded by ``max_steps``
model calls. The same loop serves ``predict`` / ``predict_stream`` (blocking, for MLflow model serving and notebooks)
and ``apredict`` / ``apredict_stream`` (async, for the Agent Server, so concurrent requests do not queue).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

import mlflow
from mlflow.entities import SpanType
from mlflow.pyfunc import ResponsesAgent
from mlflow.types.responses import (
    ResponsesAgentRequest,
    ResponsesAgentResponse,
    ResponsesAgentStreamEvent,
    create_text_delta,
    responses_agent_output_reducer,
)

from .config import ModelConfig
from .llm import ModelClient, TextDelta, ToolCallRequest, Usage, dumps_arguments
from .tools import DEFAULT_TOOL_TIMEOUT, Tool, ToolResult, arun_tool, as_tool, run_tool
from .turn import Turn, done, final

DEFAULT_MAX_STEPS = 10

# The usage accumulator of the turn whose tool is running: a sub-agent adds its tokens to its caller's total.
_CALLER_USAGE: contextvars.ContextVar[Usage | None] = contextvars.ContextVar("kagent_mlflow_caller_usage", default=None)


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
    ) -> None:
        if max_steps < 1:
            raise ValueError("max_steps must be at least 1")
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

    def add_tool(self, t: Tool | Any) -> Tool:
        """Register a tool (or a typed function, converted with :meth:`Tool.from_function`)."""
        t = as_tool(t)
        if t.name in self.tools:
            raise ValueError(f"agent {self.name!r} already has a tool named {t.name!r}")
        self.tools[t.name] = t
        return t

    def _specs(self) -> list[dict[str, Any]]:
        return [t.spec() for t in self.tools.values()]

    # -- the loop (blocking) ----------------------------------------------------------------------------------

    def _events(self, request: ResponsesAgentRequest, stream: bool) -> Iterator[dict[str, Any]]:
        turn = Turn(self, request)
        specs = self._specs()
        while not turn.finished:
            if turn.over_limit:
                for event in final(turn.limit_answer(), stream):
                    yield event
                break
            if stream:
                reply = None
                for part in self.client.stream(turn.messages, specs, **turn.overrides):
                    if isinstance(part, TextDelta):
                        yield create_text_delta(part.text, part.item_id)
                    else:
                        reply = part
                assert reply is not None
            else:
                reply = self.client.complete(turn.messages, specs, **turn.overrides)
            for item in turn.add_reply(reply):
                yield done(item)
            results = []
            for call in reply.tool_calls:
                result = self._call_tool(call, turn.usage)
                results.append(result)
                yield done(turn.add_tool_result(call, result))
            if reply.tool_calls and (direct := turn.direct_answer(reply, results)) is not None:
                for event in final(direct, stream):
                    yield event
        _annotate_agent_span(turn)
        yield {"type": "response.completed", "response": turn.response()}

    def _call_tool(self, call: ToolCallRequest, usage: Usage) -> ToolResult:
        with mlflow.start_span(name=call.name, span_type=SpanType.TOOL) as span:
            span.set_inputs(dumps_arguments(call.arguments))
            token = _CALLER_USAGE.set(usage)
            try:
                result = run_tool(self.tools, call.name, call.arguments, self.tool_timeout)
            finally:
                _CALLER_USAGE.reset(token)
            _finish_tool_span(span, result)
        return result

    def predict(self, request: ResponsesAgentRequest) -> ResponsesAgentResponse:
        """Answer one request (blocking). MLflow wraps this in an AGENT span."""
        return ResponsesAgentResponse(**_completed(self._events(request, stream=False)))

    def predict_stream(self, request: ResponsesAgentRequest) -> Iterator[ResponsesAgentStreamEvent]:
        """Stream one answer: ``response.output_text.delta`` events as the model produces text, a
        ``response.output_item.done`` per output item, and a final ``response.completed`` carrying ``usage``."""
        for event in self._events(request, stream=True):
            yield ResponsesAgentStreamEvent(**event)

    # -- the loop (async) -------------------------------------------------------------------------------------

    async def _aevents(self, request: ResponsesAgentRequest, stream: bool) -> AsyncIterator[dict[str, Any]]:
        turn = Turn(self, request)
        specs = self._specs()
        while not turn.finished:
            if turn.over_limit:
                for event in final(turn.limit_answer(), stream):
                    yield event
                break
            if stream:
                reply = None
                async for part in self.client.astream(turn.messages, specs, **turn.overrides):
                    if isinstance(part, TextDelta):
                        yield create_text_delta(part.text, part.item_id)
                    else:
                        reply = part
                assert reply is not None
            else:
                reply = await self.client.acomplete(turn.messages, specs, **turn.overrides)
            for item in turn.add_reply(reply):
                yield done(item)
            # The calls of one model turn run concurrently here (e.g. two specialists at once); results keep order.
            results = list(await asyncio.gather(*(self._acall_tool(call, turn.usage) for call in reply.tool_calls)))
            for call, result in zip(reply.tool_calls, results, strict=True):
                yield done(turn.add_tool_result(call, result))
            if reply.tool_calls and (direct := turn.direct_answer(reply, results)) is not None:
                for event in final(direct, stream):
                    yield event
        _annotate_agent_span(turn)
        yield {"type": "response.completed", "response": turn.response()}

    async def _acall_tool(self, call: ToolCallRequest, usage: Usage) -> ToolResult:
        with mlflow.start_span(name=call.name, span_type=SpanType.TOOL) as span:
            span.set_inputs(dumps_arguments(call.arguments))
            token = _CALLER_USAGE.set(usage)
            try:
                result = await arun_tool(self.tools, call.name, call.arguments, self.tool_timeout)
            finally:
                _CALLER_USAGE.reset(token)
            _finish_tool_span(span, result)
        return result

    @mlflow.trace(span_type=SpanType.AGENT)
    async def apredict(self, request: ResponsesAgentRequest | dict[str, Any]) -> ResponsesAgentResponse:
        """Async :meth:`predict` (for the Agent Server's event loop): model calls and tools never block it."""
        events = [e async for e in self._aevents(_as_request(request), stream=False)]
        return ResponsesAgentResponse(**_completed(iter(events)))

    @mlflow.trace(span_type=SpanType.AGENT, output_reducer=responses_agent_output_reducer)
    async def apredict_stream(
        self, request: ResponsesAgentRequest | dict[str, Any]
    ) -> AsyncIterator[ResponsesAgentStreamEvent]:
        """Async :meth:`predict_stream`, same events."""
        async for event in self._aevents(_as_request(request), stream=True):
            yield ResponsesAgentStreamEvent(**event)

    # -- as a sub-agent -----------------------------------------------------------------------------------------

    def run(self, question: str) -> ResponsesAgentResponse:
        """Answer one question inside the current trace as an AGENT span named after this agent (blocking)."""
        with mlflow.start_span(name=self.name, span_type=SpanType.AGENT) as span:
            span.set_inputs({"input": question})
            response = _completed(self._events(_question(question), stream=False))
            span.set_outputs(response)
        _report_usage(response)
        return ResponsesAgentResponse(**response)

    async def arun(self, question: str) -> ResponsesAgentResponse:
        """Async :meth:`run`."""
        with mlflow.start_span(name=self.name, span_type=SpanType.AGENT) as span:
            span.set_inputs({"input": question})
            events = [e async for e in self._aevents(_question(question), stream=False)]
            response = _completed(iter(events))
            span.set_outputs(response)
        _report_usage(response)
        return ResponsesAgentResponse(**response)

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


def _report_usage(response: dict[str, Any]) -> None:
    caller = _CALLER_USAGE.get()
    usage = response.get("usage")
    if caller is not None and usage:
        caller.add(Usage(usage["input_tokens"], usage["output_tokens"], usage["total_tokens"], reported=True))


def _finish_tool_span(span: Any, result: ToolResult) -> None:
    span.set_outputs(result.output)
    if result.error is not None:
        span.record_exception(result.error)


def _annotate_agent_span(turn: Turn) -> None:
    span = mlflow.get_current_active_span()
    if span is not None:
        span.set_attributes({"agent.name": turn.agent.name, "agent.steps": turn.steps})


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
