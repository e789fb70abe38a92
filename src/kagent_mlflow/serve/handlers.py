"""The functions registered with MLflow's Agent Server: the agent's predict/stream, made non-blocking.

MLflow's Agent Server calls a plain (non-async) invoke function directly on the event loop, so a blocking
``predict`` serialises every request. :func:`async_handlers` registers coroutines instead: the agent's own
``apredict``/``apredict_stream`` when it has them, otherwise its sync methods run on a worker thread (one thread per
stream, so the generator's tracing context stays in one place). :func:`blocking_handlers` registers the sync methods
directly - the naive way, kept only so the benchmark can measure the difference in the same run.
Both record failures for :mod:`.middleware` and re-raise them with a one-line message.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from .errors import RequestTimeoutError, classify
from .middleware import record_failure

_DONE = object()
logger = logging.getLogger("kagent_mlflow.serve")


class AgentFailure(Exception):
    """Raised to MLflow's server in place of the agent's exception; its text is the classified message."""


def _fail(exc: BaseException) -> AgentFailure:
    """Classify, record for the middleware, log once (one line for a model outage, a traceback for a bug)."""
    error = classify(exc)
    record_failure(error)
    if error.status >= 500 and error.kind == "server_error":
        logger.error("request failed: %s", error.message, exc_info=exc)
    else:
        logger.warning("request failed (%s %s): %s", error.status, error.kind, error.message)
    return AgentFailure(error.message)


class DropReported(logging.Filter):
    """For MLflow's Agent Server logger: drop its traceback of a failure :func:`_fail` has already logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], AgentFailure))


def async_handlers(agent: Any, request_timeout: float) -> tuple[Callable, Callable]:
    """``(invoke, stream)`` coroutine functions for ``agent`` (a ResponsesAgent, async entry points preferred)."""
    apredict = getattr(agent, "apredict", None)
    apredict_stream = getattr(agent, "apredict_stream", None)

    async def call(request: Any) -> Any:
        if apredict is not None:
            return await apredict(request)
        return await asyncio.to_thread(agent.predict, request)

    async def invoke(request: Any) -> Any:
        annotate_trace(request)
        try:
            return await asyncio.wait_for(call(request), request_timeout)
        except asyncio.TimeoutError as exc:
            raise _fail(RequestTimeoutError(f"no answer within {request_timeout:g}s")) from exc
        except Exception as exc:
            raise _fail(exc) from exc

    async def stream(request: Any) -> AsyncIterator[Any]:
        annotate_trace(request)
        events = apredict_stream(request) if apredict_stream is not None else _in_thread(agent.predict_stream, request)
        try:
            async for event in events:
                yield event
        except Exception as exc:
            raise _fail(exc) from exc

    _name(agent, invoke, stream)
    return invoke, stream


def blocking_handlers(agent: Any) -> tuple[Callable, Callable]:
    """``(invoke, stream)`` calling the agent's synchronous methods on the event loop (benchmark baseline)."""

    def invoke(request: Any) -> Any:
        annotate_trace(request)
        try:
            return agent.predict(request)
        except Exception as exc:
            raise _fail(exc) from exc

    def stream(request: Any) -> Iterator[Any]:
        annotate_trace(request)
        try:
            yield from agent.predict_stream(request)
        except Exception as exc:
            raise _fail(exc) from exc

    _name(agent, invoke, stream)
    return invoke, stream


def annotate_trace(request: Any) -> None:
    """Group traces in MLflow's UI: the request's ``context.conversation_id`` becomes the trace's session and
    ``context.user_id`` its user (the Responses ``user`` field is the fallback)."""
    import mlflow

    if mlflow.get_current_active_span() is None:  # tracing off
        return
    context = getattr(request, "context", None)
    session = getattr(context, "conversation_id", None)
    user = getattr(context, "user_id", None) or getattr(request, "user", None)
    if session or user:
        mlflow.update_current_trace(session_id=session, user=user)


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
