"""``LlamaStackAgent``: an MLflow ``ResponsesAgent`` that answers with a Llama Stack model and calls Python tools.

One turn = model call -> (tool calls -> tool results -> model call)* -> final message, bounded by ``max_steps``
model calls. The same loop serves ``predict`` / ``predict_stream`` (blocking, for MLflow model serving and notebooks)
and ``apredict`` / ``apredict_stream`` (async, for the Agent Server, so concurrent requests do not queue).
"""

from __future__ import annotations

import asyncio
import contextvars
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

import mlflow
from mlflow.entities import SpanType
from mlflow.pyfunc import ResponsesAgent
from mlflow.types.responses import (
    ResponsesAgentRequest,
    ResponsesAgentResponse,
    ResponsesAgentStreamEvent,
    create_function_call_item,
    create_function_call_output_item,
    create_text_delta,
    create_text_output_item,
    responses_agent_output_reducer,
)

from .config import ModelConfig
from .history import to_chat_messages
from .llm import ModelClient, ModelReply, TextDelta, ToolCallRequest, Usage, dumps_arguments
from .tools import DEFAULT_TOOL_TIMEOUT, Tool, ToolResult, arun_tool, as_tool, run_tool

DEFAULT_MAX_STEPS = 10

# The usage accumulator of the turn whose tool is running: a sub-agent adds its tokens to its caller's total.
_CALLER_USAGE: contextvars.ContextVar[Usage | None] = contextvars.ContextVar("kagent_mlflow_caller_usage", default=None)


def _done(item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "response.output_item.done", "item": item}


def _final(item: dict[str, Any], stream: bool) -> Iterator[dict[str, Any]]:
    """Events for an answer the agent wrote itself (step limit, routed answer): streamed as one delta, then done."""
    if stream:
        yield create_text_delta(item["content"][0]["text"], item["id"])
    yield _done(item)


def _as_request(request: ResponsesAgentRequest | dict[str, Any]) -> ResponsesAgentRequest:
    return request if isinstance(request, ResponsesAgentRequest) else ResponsesAgentRequest(**request)


class _Turn:
    """The state of one request: chat messages sent so far, output items, summed usage, steps taken."""

    def __init__(self, agent: LlamaStackAgent, request: ResponsesAgentRequest) -> None:
        self.agent = agent
        self.messages = to_chat_messages(request.input, agent.instructions)
        self.overrides: dict[str, Any] = {}
        if request.temperature is not None:
            self.overrides["temperature"] = request.temperature
        if request.max_output_tokens is not None:
            self.overrides["max_tokens"] = request.max_output_tokens
        self.output: list[dict[str, Any]] = []
        self.usage = Usage()
        self.steps = 0
        self.model = ""
        self.stop_reason: str | None = None

    @property
    def over_limit(self) -> bool:
        return self.steps >= self.agent.max_steps

    def add_reply(self, reply: ModelReply) -> list[dict[str, Any]]:
        """Record a model answer; returns its output items (text message first, then one per tool call)."""
        self.steps += 1
        self.model = reply.model
        self.usage.add(reply.usage)
        message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
        items: list[dict[str, Any]] = []
        if reply.text or not reply.tool_calls:
            items.append(create_text_output_item(reply.text, reply.item_id))
        if reply.tool_calls:
            message["tool_calls"] = []
            for call in reply.tool_calls:
                function = {"name": call.name, "arguments": call.arguments}
                message["tool_calls"].append({"id": call.call_id, "type": "function", "function": function})
                items.append(create_function_call_item(f"fc_{call.call_id}", call.call_id, call.name, call.arguments))
        else:
            self.stop_reason = "final_answer"
        self.messages.append(message)
        self.output.extend(items)
        return items

    def add_tool_result(self, call: ToolCallRequest, result: ToolResult) -> dict[str, Any]:
        self.messages.append({"role": "tool", "tool_call_id": call.call_id, "content": result.output})
        item = create_function_call_output_item(call.call_id, result.output)
        self.output.append(item)
        return item

    def direct_answer(self, reply: ModelReply, results: list[ToolResult]) -> dict[str, Any] | None:
        """If a ``return_direct`` tool succeeded, its output is the final answer (routing to a specialist)."""
        for call, result in zip(reply.tool_calls, results, strict=True):
            found = self.agent.tools.get(call.name)
            if found is not None and found.return_direct and result.error is None:
                self.stop_reason = "return_direct"
                return self._final_text(result.output, f"msg_{call.call_id}")
        return None

    def limit_answer(self) -> dict[str, Any]:
        self.stop_reason = "max_steps"
        text = (
            f"Stopped: reached the limit of {self.agent.max_steps} model calls before a final answer. "
            "Ask a narrower question or raise max_steps."
        )
        return self._final_text(text, f"msg_{uuid.uuid4().hex}")

    def _final_text(self, text: str, item_id: str) -> dict[str, Any]:
        item = create_text_output_item(text, item_id)
        self.output.append(item)
        return item

    @property
    def finished(self) -> bool:
        return self.stop_reason is not None

    def response(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": f"resp_{uuid.uuid4().hex}",
            "object": "response",
            "status": "completed",
            "model": self.model or None,
            "output": self.output,
            "custom_outputs": {"agent": self.agent.name, "steps": self.steps, "stop_reason": self.stop_reason},
        }
        if (usage := self.usage.for_response()) is not None:
            out["usage"] = usage
        return out


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
        turn = _Turn(self, request)
        specs = self._specs()
        while not turn.finished:
            if turn.over_limit:
                for event in _final(turn.limit_answer(), stream):
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
                yield _done(item)
            results = []
            for call in reply.tool_calls:
                result = self._call_tool(call, turn.usage)
                results.append(result)
                yield _done(turn.add_tool_result(call, result))
            if reply.tool_calls and (direct := turn.direct_answer(reply, results)) is not None:
                for event in _final(direct, stream):
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
        turn = _Turn(self, request)
        specs = self._specs()
        while not turn.finished:
            if turn.over_limit:
                for event in _final(turn.limit_answer(), stream):
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
                yield _done(item)
            # The calls of one model turn run concurrently here (e.g. two specialists at once); results keep order.
            results = list(await asyncio.gather(*(self._acall_tool(call, turn.usage) for call in reply.tool_calls)))
            for call, result in zip(reply.tool_calls, results, strict=True):
                yield _done(turn.add_tool_result(call, result))
            if reply.tool_calls and (direct := turn.direct_answer(reply, results)) is not None:
                for event in _final(direct, stream):
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


def _annotate_agent_span(turn: _Turn) -> None:
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
