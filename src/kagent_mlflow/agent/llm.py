"""Model calls to Llama Stack's OpenAI-compatible ``/v1/chat/completions``, each recorded as one LLM span.

Spans are started without attaching them to the tracing context (``start_span_no_context``) so a streaming call can
yield deltas while its span is open without leaking context across ``yield``s. openai autologging is not used: one
small span per call is all we need, and it keeps tracing cheap.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from .config import ModelConfig
from .errors import ModelError, ModelProtocolError, ModelTimeoutError, ModelUnreachableError, NoModelError
from .reply import ModelReply, StreamAccumulator, TextDelta, reply_from_completion

if TYPE_CHECKING:
    import openai


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
        call = _Call(self, self._params(self.model(), messages, tools, overrides))
        try:
            completion = self.sync.chat.completions.create(**call.params)
        except Exception as exc:
            raise call.failed(exc) from exc
        return call.finish(completion)

    async def acomplete(self, messages: list[dict], tools: list[dict], **overrides: Any) -> ModelReply:
        call = _Call(self, self._params(await self.amodel(), messages, tools, overrides))
        try:
            completion = await self.aio.chat.completions.create(**call.params)
        except Exception as exc:
            raise call.failed(exc) from exc
        return call.finish(completion)

    def stream(self, messages: list[dict], tools: list[dict], **overrides: Any) -> Iterator[TextDelta | ModelReply]:
        """Text deltas as they arrive, then the whole :class:`ModelReply` as the last item."""
        call = _Call(self, self._params(self.model(), messages, tools, overrides), stream=True)
        try:
            for chunk in self.sync.chat.completions.create(**call.params):
                if (delta := call.feed(chunk)) is not None:
                    yield delta
        except Exception as exc:
            raise call.failed(exc) from exc
        except BaseException:  # the caller stopped reading (GeneratorExit) or was interrupted
            call.abandoned()
            raise
        yield call.finish()

    async def astream(
        self, messages: list[dict], tools: list[dict], **overrides: Any
    ) -> AsyncIterator[TextDelta | ModelReply]:
        """Async :meth:`stream`: the same parser, fed by the async client's chunks."""
        call = _Call(self, self._params(await self.amodel(), messages, tools, overrides), stream=True)
        try:
            async for chunk in await self.aio.chat.completions.create(**call.params):
                if (delta := call.feed(chunk)) is not None:
                    yield delta
        except Exception as exc:
            raise call.failed(exc) from exc
        except BaseException:  # GeneratorExit, or CancelledError when a request deadline cancels the task
            call.abandoned()
            raise
        yield call.finish()


class _Call:
    """The I/O-free part of one model call, shared by the four ways of making it: its LLM span, the parser of
    streamed chunks, and error translation. The callers only differ in ``for`` / ``async for``."""

    def __init__(self, client: ModelClient, params: dict[str, Any], stream: bool = False) -> None:
        if stream:
            params.update(stream=True, stream_options={"include_usage": True})
        self.params = params
        self.url = client.config.base_url
        self.timeout = client.config.timeout
        self.span = _start_llm_span(params)
        self.acc = StreamAccumulator(params["model"])

    def feed(self, chunk: Any) -> TextDelta | None:
        return self.acc.add(chunk)

    def failed(self, exc: Exception) -> ModelError:
        return _fail(self.span, _translate(exc, self.url, self.timeout))

    def abandoned(self) -> None:
        _fail(self.span, ModelProtocolError(self.url, "the caller stopped reading the stream"))

    def finish(self, completion: Any = None) -> ModelReply:
        """The reply (from a whole completion, or from the chunks fed so far); ends the span."""
        try:
            reply = self.acc.result() if completion is None else reply_from_completion(completion, self.params["model"])
        except Exception as exc:
            raise self.failed(exc) from exc
        _end_llm_span(self.span, reply)
        return reply


# -- spans ------------------------------------------------------------------------------------------------------


def _start_llm_span(params: dict[str, Any]) -> Any:
    import mlflow
    from mlflow.entities import SpanType

    from .._mlflow_compat import span_attribute_keys

    keys = span_attribute_keys()
    inputs = {k: v for k, v in params.items() if k != "stream_options"}
    return mlflow.start_span_no_context(
        name="chat.completions",
        span_type=SpanType.LLM,
        parent_span=mlflow.get_current_active_span(),
        inputs=inputs,
        attributes={keys.MODEL: params["model"], keys.MESSAGE_FORMAT: "openai"},
    )


def _end_llm_span(span: Any, reply: ModelReply) -> None:
    from .._mlflow_compat import span_attribute_keys

    attributes = {span_attribute_keys().CHAT_USAGE: reply.usage.for_span()} if reply.usage else None
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
