"""Model calls to Llama Stack's OpenAI-compatible ``/v1/chat/completions``, each recorded as one LLM span.

Spans are started without attaching them to the tracing context (``start_span_no_context``) so a streaming call can
yield deltas while its span is open without leaking context across ``yield``s. openai autologging is not used: one
small span per call is all we need, and it keeps tracing cheap.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .config import ModelConfig
from .errors import ModelError, ModelProtocolError, ModelTimeoutError, ModelUnreachableError, NoModelError

if TYPE_CHECKING:
    import openai


@dataclass
class Usage:
    """Token counts, summed over model calls. ``reported`` is False until some call reported usage."""

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    reported: bool = False

    def add(self, other: Usage | None) -> None:
        if other is None or not other.reported:
            return
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.total_tokens += other.total_tokens
        self.reported = True

    @classmethod
    def from_openai(cls, usage: Any) -> Usage | None:
        if usage is None:
            return None
        prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion = int(getattr(usage, "completion_tokens", 0) or 0)
        total = int(getattr(usage, "total_tokens", 0) or 0) or prompt + completion
        return cls(prompt, completion, total, reported=True)

    def for_span(self) -> dict[str, int]:
        """MLflow's ``mlflow.chat.tokenUsage`` attribute shape."""
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
        }

    def for_response(self) -> dict[str, Any] | None:
        """The Responses ``usage`` object (MLflow requires both details objects)."""
        if not self.reported:
            return None
        return {
            "input_tokens": self.input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": self.output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": self.total_tokens,
        }


@dataclass
class ToolCallRequest:
    call_id: str
    name: str
    arguments: str


@dataclass
class ModelReply:
    """One model answer: text and/or tool calls, with its usage."""

    item_id: str
    text: str = ""
    tool_calls: list[ToolCallRequest] = field(default_factory=list)
    usage: Usage | None = None
    finish_reason: str | None = None
    model: str = ""

    def as_completion(self) -> dict[str, Any]:
        """A chat.completion-shaped dict, for the LLM span's outputs."""
        message: dict[str, Any] = {"role": "assistant", "content": self.text or None}
        if self.tool_calls:
            message["tool_calls"] = [
                {"id": c.call_id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in self.tool_calls
            ]
        out: dict[str, Any] = {
            "id": self.item_id,
            "object": "chat.completion",
            "model": self.model,
            "choices": [{"index": 0, "message": message, "finish_reason": self.finish_reason}],
        }
        if self.usage:
            out["usage"] = {
                "prompt_tokens": self.usage.input_tokens,
                "completion_tokens": self.usage.output_tokens,
                "total_tokens": self.usage.total_tokens,
            }
        return out


@dataclass
class TextDelta:
    item_id: str
    text: str


def _new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def reply_from_completion(completion: Any, model: str) -> ModelReply:
    if not getattr(completion, "choices", None):
        raise ValueError("the completion has no choices")
    choice = completion.choices[0]
    msg = choice.message
    calls = [
        ToolCallRequest(tc.id or _new_call_id(), tc.function.name, tc.function.arguments or "{}")
        for tc in (msg.tool_calls or [])
        if getattr(tc, "function", None) is not None
    ]
    return ModelReply(
        item_id=completion.id or f"msg_{uuid.uuid4().hex}",
        text=msg.content or "",
        tool_calls=calls,
        usage=Usage.from_openai(completion.usage),
        finish_reason=choice.finish_reason,
        model=completion.model or model,
    )


class StreamAccumulator:
    """Folds chat.completion.chunk objects into a :class:`ModelReply`, handing back text deltas as they come."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.item_id: str | None = None
        self.text: list[str] = []
        self.calls: dict[int, dict[str, str]] = {}
        self.usage: Usage | None = None
        self.finish_reason: str | None = None

    def add(self, chunk: Any) -> TextDelta | None:
        if self.item_id is None and getattr(chunk, "id", None):
            self.item_id = chunk.id
        if getattr(chunk, "usage", None):
            self.usage = Usage.from_openai(chunk.usage)
        if not chunk.choices:
            return None
        choice = chunk.choices[0]
        if choice.finish_reason:
            self.finish_reason = choice.finish_reason
        delta = choice.delta
        for tc in getattr(delta, "tool_calls", None) or []:
            slot = self.calls.setdefault(tc.index or 0, {"id": "", "name": "", "arguments": ""})
            if tc.id:
                slot["id"] = tc.id
            if tc.function is not None:
                slot["name"] += tc.function.name or ""
                slot["arguments"] += tc.function.arguments or ""
        if getattr(delta, "content", None):
            self.text.append(delta.content)
            return TextDelta(self.ensure_id(), delta.content)
        return None

    def ensure_id(self) -> str:
        if self.item_id is None:
            self.item_id = f"msg_{uuid.uuid4().hex}"
        return self.item_id

    def result(self) -> ModelReply:
        calls = [
            ToolCallRequest(c["id"] or _new_call_id(), c["name"], c["arguments"] or "{}")
            for _, c in sorted(self.calls.items())
        ]
        return ModelReply(self.ensure_id(), "".join(self.text), calls, self.usage, self.finish_reason, self.model)


def _translate(exc: Exception, url: str, timeout: float) -> ModelError:
    """openai / parsing exceptions -> one actionable :class:`ModelError`."""
    import openai

    if isinstance(exc, ModelError):
        return exc
    if isinstance(exc, openai.APITimeoutError):
        return ModelTimeoutError(url, f"no answer within {timeout:g} s; raise LLAMA_STACK_TIMEOUT or check the model")
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc
        return ModelUnreachableError(
            url, f"cannot connect ({type(cause).__name__}); is Llama Stack running? check LLAMA_STACK_BASE_URL"
        )
    if isinstance(exc, openai.APIStatusError):
        body = exc.body
        detail = body.get("message") or body.get("detail") if isinstance(body, dict) else None
        detail = str(detail or body or exc.message)
        return ModelProtocolError(url, f"HTTP {exc.status_code}: {detail[:300]}")
    return ModelProtocolError(url, f"unusable answer ({type(exc).__name__}: {str(exc)[:300]})")


def _pick_llm(models: list[dict[str, Any]]) -> str | None:
    """The first LLM in a ``/v1/models`` listing (Llama Stack marks types in ``custom_metadata.model_type``)."""
    for m in models:
        meta = m.get("custom_metadata") or m.get("metadata") or {}
        meta_kind = meta.get("model_type") if isinstance(meta, dict) else None
        kind = m.get("model_type") or m.get("api_model_type") or meta_kind
        model_id = m.get("id") or m.get("identifier")
        if model_id and kind in (None, "llm"):
            return str(model_id)
    return None


class ModelClient:
    """The agent's connection to the model: one shared sync client and one async client per event loop."""

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self._model: str | None = config.model
        self._sync: openai.OpenAI | None = None
        self._async: tuple[asyncio.AbstractEventLoop, openai.AsyncOpenAI] | None = None

    def __getstate__(self) -> dict[str, Any]:
        """Picklable (MLflow may pickle a python_model): HTTP clients are rebuilt on first use."""
        return {"config": self.config, "_model": self._model, "_sync": None, "_async": None}

    # -- clients ------------------------------------------------------------------------------------------------

    def _client_kwargs(self) -> dict[str, Any]:
        c = self.config
        return {"base_url": c.base_url, "api_key": c.api_key, "timeout": c.timeout, "max_retries": c.max_retries}

    @property
    def sync(self) -> openai.OpenAI:
        if self._sync is None:
            import openai

            self._sync = openai.OpenAI(**self._client_kwargs())
        return self._sync

    @property
    def aio(self) -> openai.AsyncOpenAI:
        loop = asyncio.get_running_loop()
        if self._async is None or self._async[0] is not loop:
            import openai

            # A plain httpx client: openai's default one schedules its own close on whatever loop is running when
            # it is garbage-collected, which fails loudly for a client left behind by a closed loop.
            client = openai.AsyncOpenAI(**self._client_kwargs(), http_client=openai.DefaultAsyncHttpxClient())
            self._async = (loop, client)
        return self._async[1]

    # -- model id -----------------------------------------------------------------------------------------------

    def model(self) -> str:
        if self._model is None:
            try:
                listing = [m.model_dump() for m in self.sync.models.list()]
            except Exception as exc:
                raise _translate(exc, self.config.base_url, self.config.timeout) from exc
            self._model = self._require(_pick_llm(listing))
        return self._model

    async def amodel(self) -> str:
        if self._model is None:
            try:
                listing = [m.model_dump() async for m in self.aio.models.list()]
            except Exception as exc:
                raise _translate(exc, self.config.base_url, self.config.timeout) from exc
            self._model = self._require(_pick_llm(listing))
        return self._model

    def _require(self, model: str | None) -> str:
        if not model:
            raise NoModelError(self.config.base_url, "lists no LLM at /v1/models; set LLAMA_STACK_MODEL")
        return model

    # -- calls --------------------------------------------------------------------------------------------------

    def _params(self, model: str, messages: list[dict], tools: list[dict], overrides: dict[str, Any]) -> dict:
        params: dict[str, Any] = {"model": model, "messages": messages}
        if tools:
            params["tools"] = tools
        temperature = overrides.get("temperature", self.config.temperature)
        if temperature is not None:
            params["temperature"] = temperature
        max_tokens = overrides.get("max_tokens", self.config.max_tokens)
        if max_tokens is not None:
            params["max_tokens"] = max_tokens
        return params

    def complete(self, messages: list[dict], tools: list[dict], **overrides: Any) -> ModelReply:
        params = self._params(self.model(), messages, tools, overrides)
        span = _start_llm_span(params)
        try:
            reply = reply_from_completion(self.sync.chat.completions.create(**params), params["model"])
        except Exception as exc:
            raise _fail(span, _translate(exc, self.config.base_url, self.config.timeout)) from exc
        _end_llm_span(span, reply)
        return reply

    async def acomplete(self, messages: list[dict], tools: list[dict], **overrides: Any) -> ModelReply:
        params = self._params(await self.amodel(), messages, tools, overrides)
        span = _start_llm_span(params)
        try:
            reply = reply_from_completion(await self.aio.chat.completions.create(**params), params["model"])
        except Exception as exc:
            raise _fail(span, _translate(exc, self.config.base_url, self.config.timeout)) from exc
        _end_llm_span(span, reply)
        return reply

    def stream(self, messages: list[dict], tools: list[dict], **overrides: Any) -> Iterator[TextDelta | ModelReply]:
        """Text deltas as they arrive, then the whole :class:`ModelReply` as the last item."""
        params = self._params(self.model(), messages, tools, overrides)
        params.update(stream=True, stream_options={"include_usage": True})
        span = _start_llm_span(params)
        acc = StreamAccumulator(params["model"])
        try:
            for chunk in self.sync.chat.completions.create(**params):
                delta = acc.add(chunk)
                if delta is not None:
                    yield delta
        except Exception as exc:
            raise _fail(span, _translate(exc, self.config.base_url, self.config.timeout)) from exc
        except GeneratorExit:
            _fail(span, ModelProtocolError(self.config.base_url, "the caller stopped reading the stream"))
            raise
        reply = acc.result()
        _end_llm_span(span, reply)
        yield reply

    async def astream(
        self, messages: list[dict], tools: list[dict], **overrides: Any
    ) -> AsyncIterator[TextDelta | ModelReply]:
        params = self._params(await self.amodel(), messages, tools, overrides)
        params.update(stream=True, stream_options={"include_usage": True})
        span = _start_llm_span(params)
        acc = StreamAccumulator(params["model"])
        try:
            async for chunk in await self.aio.chat.completions.create(**params):
                delta = acc.add(chunk)
                if delta is not None:
                    yield delta
        except Exception as exc:
            raise _fail(span, _translate(exc, self.config.base_url, self.config.timeout)) from exc
        except GeneratorExit:
            _fail(span, ModelProtocolError(self.config.base_url, "the caller stopped reading the stream"))
            raise
        reply = acc.result()
        _end_llm_span(span, reply)
        yield reply


# -- spans ------------------------------------------------------------------------------------------------------


def _start_llm_span(params: dict[str, Any]) -> Any:
    import mlflow
    from mlflow.entities import SpanType
    from mlflow.tracing.constant import SpanAttributeKey

    inputs = {k: v for k, v in params.items() if k != "stream_options"}
    return mlflow.start_span_no_context(
        name="chat.completions",
        span_type=SpanType.LLM,
        parent_span=mlflow.get_current_active_span(),
        inputs=inputs,
        attributes={SpanAttributeKey.MODEL: params["model"], SpanAttributeKey.MESSAGE_FORMAT: "openai"},
    )


def _end_llm_span(span: Any, reply: ModelReply) -> None:
    from mlflow.tracing.constant import SpanAttributeKey

    attributes = {SpanAttributeKey.CHAT_USAGE: reply.usage.for_span()} if reply.usage else None
    span.end(outputs=reply.as_completion(), attributes=attributes)


def _fail(span: Any, error: ModelError) -> ModelError:
    span.record_exception(error)
    span.end(status="ERROR")
    return error


def dumps_arguments(arguments: str) -> Any:
    """Tool-call arguments for a span's inputs: parsed JSON when possible."""
    try:
        return json.loads(arguments)
    except (TypeError, ValueError):
        return arguments
