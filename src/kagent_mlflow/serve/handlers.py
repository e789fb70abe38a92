"""The agent's predict/stream as the routes call them (:mod:`.routes`), made non-blocking.

Calling a blocking ``predict`` on the event loop (as MLflow's Agent Server does with a plain function) serialises
every request. :func:`async_handlers` uses the agent's own ``apredict``/``apredict_stream`` when it has them,
otherwise its sync methods run on a worker thread (one thread per stream, so the generator's tracing context stays in
one place). A request the routes mark ``offload`` (a big one) also runs the sync methods on a worker thread: turning
thousands of messages into a model request (ours and the OpenAI SDK's conversion) is CPU work that would hold the
loop. :func:`blocking_handlers` calls the sync methods on the loop - the naive way, kept only so the benchmark can
measure the difference in the same run. Both record failures for :mod:`.middleware` and re-raise them as
:class:`AgentFailure` with a one-line message.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from .deadline import within
from .errors import RequestTimeoutError, ServeError, classify
from .middleware import record_failure
from .root_span import completed_response, mark_agent, record_usage

_DONE = object()
TIMEOUT_SETTING = "KAGENT_MLFLOW_REQUEST_TIMEOUT"
logger = logging.getLogger("kagent_mlflow.serve")


class AgentFailure(Exception):
    """Raised in place of the agent's exception; ``error`` is the classified answer, its text the message."""

    def __init__(self, error: ServeError) -> None:
        super().__init__(error.message)
        self.error = error


def _fail(exc: BaseException) -> AgentFailure:
    """Classify, record for the middleware, log once (one line for a model outage, a traceback for a bug)."""
    error = classify(exc)
    record_failure(error)
    if error.status >= 500 and error.kind == "server_error":
        logger.error("request failed: %s", error.message, exc_info=exc)
    else:
        logger.warning("request failed (%s %s): %s", error.status, error.kind, error.message)
    return AgentFailure(error)


def async_handlers(agent: Any, request_timeout: float) -> tuple[Callable, Callable]:
    """``(invoke, stream)`` coroutine functions for ``agent`` (a ResponsesAgent, async entry points preferred)."""
    apredict = getattr(agent, "apredict", None)
    apredict_stream = getattr(agent, "apredict_stream", None)

    async def call(request: Any, offload: bool) -> Any:
        if apredict is not None and not offload:
            return await apredict(request)
        return await asyncio.to_thread(agent.predict, request)

    async def invoke(request: Any, offload: bool = False) -> Any:
        annotate_trace(request)
        try:
            result = await asyncio.wait_for(call(request, offload), request_timeout)
        except asyncio.TimeoutError as exc:
            raise _fail(RequestTimeoutError(_too_long(request_timeout))) from exc
        except Exception as exc:
            raise _fail(exc) from exc
        record_usage(result)
        return result

    async def stream(request: Any, offload: bool = False) -> AsyncIterator[Any]:
        annotate_trace(request)
        if apredict_stream is not None and not offload:
            events = apredict_stream(request)
        else:
            events = _in_thread(agent.predict_stream, request)
        events = within(events, request_timeout, _too_long(request_timeout))  # one deadline for the whole answer
        try:
            async for event in events:
                if (response := completed_response(event)) is not None:
                    record_usage(response)
                yield event
        except Exception as exc:
            raise _fail(exc) from exc

    _name(agent, invoke, stream)
    return invoke, stream


def blocking_handlers(agent: Any) -> tuple[Callable, Callable]:
    """``(invoke, stream)`` calling the agent's synchronous methods on the event loop (benchmark baseline; it
    ignores ``offload``)."""

    async def invoke(request: Any, offload: bool = False) -> Any:
        annotate_trace(request)
        try:
            result = agent.predict(request)
        except Exception as exc:
            raise _fail(exc) from exc
        record_usage(result)
        return result

    async def stream(request: Any, offload: bool = False) -> AsyncIterator[Any]:
        annotate_trace(request)
        try:
            for event in agent.predict_stream(request):
                yield event
        except Exception as exc:
            raise _fail(exc) from exc

    _name(agent, invoke, stream)
    return invoke, stream


def annotate_trace(request: Any) -> None:
    """Type the root span AGENT and group traces in MLflow's UI: the request's ``context.conversation_id`` becomes the
    trace's session and ``context.user_id`` its user (the Responses ``user`` field is the fallback)."""
    import mlflow

    if mlflow.get_current_active_span() is None:  # tracing off
        return
    mark_agent()
    context = getattr(request, "context", None)
    session = getattr(context, "conversation_id", None)
    user = getattr(context, "user_id", None) or getattr(request, "user", None)
    if session or user:
        mlflow.update_current_trace(session_id=session, user=user)


def _too_long(timeout: float) -> str:
    return f"the answer was not complete within {timeout:g} s; raise {TIMEOUT_SETTING} for longer answers"


def _name(agent: Any, invoke: Callable, stream: Callable) -> None:
    """The server names its root span after the function: make it say which agent answered."""
    invoke.__name__ = f"{type(agent).__name__}.invoke"
    stream.__name__ = f"{type(agent).__name__}.stream"


async def _in_thread(make_events: Callable[[Any], Iterator[Any]], request: Any) -> AsyncIterator[Any]:
    """Run a sync generator on its own thread (in a copy of this context) and yield its items here."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    stop = threading.Event()
    context = contextvars.copy_context()

    def put(item: Any) -> bool:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
            return True
        except RuntimeError:  # the loop is gone (server shutting down): nobody is listening any more
            return False

    def produce() -> None:
        try:
            for item in make_events(request):
                if stop.is_set() or not put(item):
                    return
            put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            put(exc)

    thread = threading.Thread(target=context.run, args=(produce,), name="agent-stream", daemon=True)
    thread.start()
    try:
        while True:
            item = await queue.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
