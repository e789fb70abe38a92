"""``POST /invocations`` and ``POST /responses``: MLflow Agent Server's interface, with the heavy work off the loop.

Same contract as ``mlflow.genai.agent_server.AgentServer("ResponsesAgent")`` (OpenAI Responses body, ``"stream":
true`` for server-sent events ending with ``data: [DONE]``, ``x-mlflow-return-trace-id: true`` for the trace id, one
MLflow trace per request). Handled here instead because MLflow's handler parses, re-serialises and validates the
body on the event loop (~0.1 ms per input item here, so one big request stalled every other one and ``/health``)
and declares no request body, so its OpenAPI schema described none.

A body is checked by :func:`.request.parse_request` before anything else; a big one (over :data:`OFFLOAD_BYTES`
or :data:`OFFLOAD_ITEMS`) is parsed, recorded on the trace, run through the agent and serialised on worker threads.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import anyio.to_thread
from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from .config import Limits
from .errors import ServeError, classify
from .handlers import AgentFailure
from .openapi import route_docs
from .request import RequestRejected, parse_request, too_large

# Past these, per-request work moves to worker threads (below them it costs the loop well under a millisecond).
OFFLOAD_BYTES = 16 * 1024
OFFLOAD_ITEMS = 32

logger = logging.getLogger("kagent_mlflow.serve")
RETURN_TRACE_HEADER = "x-mlflow-return-trace-id"
JSON_TYPES = ("application/json",)


def add_agent_routes(app: Any, invoke: Callable, stream: Callable, limits: Limits) -> None:
    """Serve ``invoke``/``stream`` (see :mod:`.handlers`) at ``/invocations`` and ``/responses``."""
    from mlflow.genai.agent_server import set_request_headers

    async def endpoint(request: Request) -> Response:
        try:
            check_content_type(request.headers.get("content-type"))
            body = await read_body(request, limits)
            offload = len(body) > OFFLOAD_BYTES
            agent_request, streaming = await _maybe_off_loop(offload, parse_request, body, limits)
        except RequestRejected as exc:
            return error_response(exc.error)
        except Exception as exc:  # noqa: BLE001 - a bug in the checks themselves: still the documented JSON shape
            logger.error("could not check a request: %s", exc, exc_info=exc)
            return error_response(classify(exc))
        offload = offload or len(agent_request.input) > OFFLOAD_ITEMS
        set_request_headers(dict(request.headers))  # MLflow's: agents may read forwarded headers from it
        return_trace = (request.headers.get(RETURN_TRACE_HEADER) or "").lower() == "true"
        if streaming:
            events = _sse(stream, agent_request, return_trace, offload)
            return StreamingResponse(events, media_type="text/event-stream")
        try:
            payload = await _answer(invoke, agent_request, return_trace, offload)
        except AgentFailure as exc:
            return error_response(exc.error)
        except Exception as exc:  # noqa: BLE001 - e.g. an answer that is not a Responses answer: the agent's bug
            logger.error("request failed: %s", exc, exc_info=exc)
            return error_response(classify(exc))
        return Response(payload, media_type="application/json")

    for path in ("/invocations", "/responses"):
        app.add_api_route(path, endpoint, methods=["POST"], **route_docs(path))


def check_content_type(value: str | None) -> None:
    """JSON only (``application/json`` or ``application/*+json``, UTF-8); anything else is a 415."""
    media, _, params = (value or "").partition(";")
    media = media.strip().lower()
    charset = next((p.split("=", 1)[1].strip().strip('"').lower() for p in params.split(";") if "charset=" in p), "")
    json_media = media in JSON_TYPES or (media.startswith("application/") and media.endswith("+json"))
    if not json_media or charset not in ("", "utf-8", "utf8"):
        got = f"got {value!r}" if value else "none was given"
        raise RequestRejected(415, f"Content-Type must be application/json (UTF-8), {got}", "unsupported_media_type")


async def read_body(request: Any, limits: Limits) -> bytes:
    """The whole body, or 413 once it passes ``max_body_bytes``: the rest is still read (and dropped), so the
    connection stays usable and memory stays bounded."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size <= limits.max_body_bytes:
            chunks.append(chunk)
    if size > limits.max_body_bytes:
        raise too_large(limits)
    return b"".join(chunks)


async def _maybe_off_loop(offload: bool, func: Callable, *args: Any) -> Any:
    return await anyio.to_thread.run_sync(func, *args) if offload else func(*args)


@contextlib.asynccontextmanager
async def root_span(name: str, offload: bool) -> AsyncIterator[Any]:
    """The request's root span (``mlflow.start_span``). A big request's is ended on a worker thread: ending the root
    span turns the whole trace into its export payload (~1 s of CPU for a 10,000-message request)."""
    import mlflow

    if not offload:
        with mlflow.start_span(name=name) as span:
            yield span
        return
    from .._mlflow_compat import active_span

    span = mlflow.start_span_no_context(name)
    try:
        if isinstance(span, mlflow.entities.NoOpSpan):  # tracing off
            yield span
        else:
            with active_span(span):
                yield span
    except BaseException:
        span.set_status("ERROR")
        raise
    finally:
        with anyio.CancelScope(shield=True):  # a client that hangs up still gets its trace finished
            await anyio.to_thread.run_sync(span.end)


async def _answer(invoke: Callable, request: Any, return_trace: bool, offload: bool) -> bytes:
    """The agent's answer as JSON bytes, inside the request's root span (as MLflow's server records it)."""
    from mlflow.tracing.constant import SpanAttributeKey

    async with root_span(invoke.__name__, offload) as span:
        await _maybe_off_loop(offload, span.set_inputs, trace_inputs(request))
        result = await invoke(request, offload=offload)
        span.set_attribute(SpanAttributeKey.MESSAGE_FORMAT, "openai")
        trace_id = span.trace_id if return_trace else None
        return await _maybe_off_loop(offload, _finish, span, result, trace_id)


def trace_inputs(request: Any) -> dict[str, Any]:
    """The request as the root span records it: the same JSON as the request object, but serialised one item at
    a time (one ``model_dump`` of a 10,000-item request holds the GIL, and so the event loop, for tens of ms)."""
    return {"input": list(request.input)} | request.model_dump(exclude={"input"})


def _finish(span: Any, result: Any, trace_id: str | None) -> bytes:
    payload = _response_dict(result)
    if trace_id:
        payload["metadata"] = (payload.get("metadata") or {}) | {"trace_id": trace_id}
    span.set_outputs(payload)
    return json.dumps(payload).encode()


def _response_dict(result: Any) -> dict[str, Any]:
    from mlflow.types.responses import ResponsesAgentResponse

    if not isinstance(result, ResponsesAgentResponse):
        result = ResponsesAgentResponse.model_validate(result)
    return result.model_dump(exclude_none=True)


def _event_dict(event: Any) -> dict[str, Any]:
    from mlflow.types.responses import ResponsesAgentStreamEvent

    if not isinstance(event, ResponsesAgentStreamEvent):
        event = ResponsesAgentStreamEvent.model_validate(event)
    return event.model_dump(exclude_none=True)


async def _sse(stream: Callable, request: Any, return_trace: bool, offload: bool) -> AsyncIterator[str]:
    """Server-sent events: one ``data:`` line per event; a failure after the first event becomes an ``error``
    event (before it, :mod:`.middleware` turns it into a 502/504 answer)."""
    from mlflow.pyfunc import ResponsesAgent
    from mlflow.tracing.constant import SpanAttributeKey

    chunks: list[dict[str, Any]] = []
    try:
        async with root_span(stream.__name__, offload) as span:
            await _maybe_off_loop(offload, span.set_inputs, trace_inputs(request))
            async for event in stream(request, offload=offload):
                chunk = _event_dict(event)
                chunks.append(chunk)
                yield f"data: {json.dumps(chunk)}\n\n"
            span.set_attribute(SpanAttributeKey.MESSAGE_FORMAT, "openai")
            span.set_outputs(ResponsesAgent.responses_agent_output_reducer(chunks))
            if return_trace:
                yield f"data: {json.dumps({'trace_id': span.trace_id})}\n\n"
        yield "data: [DONE]\n\n"
    except Exception as exc:  # noqa: BLE001 - the client gets it as the stream's last event
        if not isinstance(exc, AgentFailure):  # (those are logged where they are classified)
            logger.error("stream failed: %s", exc, exc_info=exc)
        yield f"data: {json.dumps({'error': str(exc)})}\n\n"
        yield "data: [DONE]\n\n"


def error_response(error: ServeError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status)
