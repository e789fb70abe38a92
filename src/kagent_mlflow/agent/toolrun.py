"""Running one model reply's tool calls, blocking or async, the same way: each call in a TOOL span, at most
``concurrency`` at a time, results in call order, and sub-agents' text deltas passed on while the calls run.

A blocking tool runs on the bounded thread pool of :mod:`.threads` in both modes; an ``async def`` tool is awaited
(and cancelled on timeout) by the async driver, and gets its own event loop on a pool thread in the blocking one.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import queue
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import mlflow
from mlflow.entities import SpanType

from .llm import dumps_arguments
from .loop import ToolRound
from .reply import ToolCallRequest, Usage
from .threads import ToolThreads, ToolThreadsExhausted
from .tools import PreparedCall, Tool, ToolResult, prepare_call


@dataclass
class Caller:
    """What a running tool knows of the turn that called it: a sub-agent adds its tokens to ``usage`` and, when the
    caller streams, passes its text deltas to ``emit`` (thread-safe)."""

    usage: Usage
    emit: Callable[[dict[str, Any]], None] | None = None  # set by the runner for one round, None: not streaming
    forwarded: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_usage(self, usage: Usage) -> None:
        with self._lock:
            self.usage.add(usage)

    def forward(self, event: dict[str, Any]) -> None:
        if self.emit is not None:
            with self._lock:
                self.forwarded += 1
            self.emit(event)


CALLER: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("kagent_mlflow_caller", default=None)


@dataclass(frozen=True)
class ToolSettings:
    tools: Mapping[str, Tool]
    default_timeout: float
    concurrency: int
    threads: ToolThreads


@contextlib.contextmanager
def _tool_span(call: ToolCallRequest, caller: Caller) -> Iterator[list[ToolResult]]:
    """A TOOL span, current in this context with ``caller``; the body appends the call's result."""
    with mlflow.start_span(name=call.name, span_type=SpanType.TOOL) as span:
        span.set_inputs(dumps_arguments(call.arguments))
        token = CALLER.set(caller)
        box: list[ToolResult] = []
        try:
            yield box
        finally:
            CALLER.reset(token)
            if box:
                span.set_outputs(box[0].output)
                if box[0].error is not None:
                    span.record_exception(box[0].error)


def _submit(prepared: PreparedCall, threads: ToolThreads) -> Future[Any] | ToolResult:
    """Start a blocking call on the pool in a copy of this context (so sub-agent spans nest under the tool's); a
    sub-agent delegation on a daemon thread of its own (see ``Tool.delegates``)."""
    context = contextvars.copy_context()
    if prepared.tool.delegates:
        return _on_own_thread(lambda: context.run(prepared.blocking()), prepared.label)
    try:
        return threads.submit(lambda: context.run(prepared.blocking()))
    except ToolThreadsExhausted as exc:
        return ToolResult(f"Error: {prepared.label} not started: {exc}", error=str(exc))


def _on_own_thread(fn: Callable[[], Any], label: str) -> Future[Any]:
    future: Future[Any] = Future()

    def run() -> None:
        future.set_running_or_notify_cancel()
        try:
            future.set_result(fn())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            future.set_exception(exc)

    threading.Thread(target=run, name=f"kagent-{label}", daemon=True).start()
    return future


def _give_up(settings: ToolSettings, prepared: PreparedCall, future: Future[Any], what: str) -> None:
    """The caller stops waiting: a pool call counts as stuck (a delegation is bounded by its own timeouts)."""
    if not prepared.tool.delegates:
        settings.threads.abandon(future, what)


def _settled(prepared: PreparedCall, future: Future[Any]) -> ToolResult:
    try:
        return prepared.returned(future.result(timeout=0))
    except Exception as exc:  # noqa: BLE001 - every failure goes back to the model
        return prepared.raised(exc)


# -- blocking --------------------------------------------------------------------------------------------------


@dataclass
class _Running:
    prepared: PreparedCall
    future: Future[Any]
    deadline: float
    context: contextvars.Context
    span: contextlib.AbstractContextManager[list[ToolResult]]
    box: list[ToolResult]


def run_blocking(
    settings: ToolSettings, calls: list[ToolCallRequest], caller: Caller, stream: bool
) -> Generator[dict, None, ToolRound]:
    """Run ``calls``; yields sub-agents' stream events as they arrive (``stream``), returns the :class:`ToolRound`."""
    wake: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()  # events, or None = "a call finished"
    caller.emit, caller.forwarded = (wake.put if stream else None), 0
    results: list[ToolResult | None] = [None] * len(calls)
    waiting = deque(enumerate(calls))
    running: dict[int, _Running] = {}
    try:
        yield from _wait_blocking(settings, calls, caller, wake, results, waiting, running)
    finally:  # the consumer stopped reading: close the spans, count hung calls
        for run in running.values():
            _end_blocking(settings, run)
    while not wake.empty():  # events sent just before their call finished
        if (event := wake.get_nowait()) is not None:
            yield event
    return ToolRound([r for r in results if r is not None], streamed=caller.forwarded > 0)


def _wait_blocking(
    settings: ToolSettings,
    calls: list[ToolCallRequest],
    caller: Caller,
    wake: queue.SimpleQueue,
    results: list[ToolResult | None],
    waiting: deque,
    running: dict[int, _Running],
) -> Iterator[dict]:
    while waiting or running:
        while waiting and len(running) < settings.concurrency:
            index, call = waiting.popleft()
            started = _start_blocking(settings, call, caller, wake)
            if isinstance(started, ToolResult):
                results[index] = started
            else:
                running[index] = started
        if not running:
            continue
        timeout = min(r.deadline for r in running.values()) - time.monotonic()
        try:
            event = wake.get(timeout=max(timeout, 0.0))
        except queue.Empty:
            event = None
        if event is not None:
            yield event
        now = time.monotonic()
        for index, run in list(running.items()):
            if run.future.done() or now >= run.deadline:
                del running[index]
                results[index] = _end_blocking(settings, run)


def _start_blocking(
    settings: ToolSettings, call: ToolCallRequest, caller: Caller, wake: queue.SimpleQueue
) -> _Running | ToolResult:
    context = contextvars.copy_context()  # one per call: concurrent calls' spans must not nest in each other
    span = _tool_span(call, caller)
    box = context.run(span.__enter__)
    prepared = prepare_call(settings.tools, call.name, call.arguments, settings.default_timeout)
    if not isinstance(prepared, ToolResult):
        future = context.run(_submit, prepared, settings.threads)
        if not isinstance(future, ToolResult):
            future.add_done_callback(lambda _: wake.put(None))
            return _Running(prepared, future, time.monotonic() + prepared.timeout, context, span, box)
        prepared = future
    box.append(prepared)
    context.run(span.__exit__, None, None, None)
    return prepared


def _end_blocking(settings: ToolSettings, run: _Running) -> ToolResult:
    if run.future.done():
        result = _settled(run.prepared, run.future)
    else:
        _give_up(settings, run.prepared, run.future, run.prepared.label)
        result = run.prepared.timed_out()
    run.box.append(result)
    run.context.run(run.span.__exit__, None, None, None)
    return result


# -- async -----------------------------------------------------------------------------------------------------


async def run_async(
    settings: ToolSettings, calls: list[ToolCallRequest], caller: Caller, stream: bool, out: list[ToolRound]
) -> AsyncIterator[dict]:
    """Async :func:`run_blocking`: yields sub-agents' stream events, appends the :class:`ToolRound` to ``out``."""
    loop = asyncio.get_running_loop()
    events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    caller.forwarded = 0
    caller.emit = (lambda e: loop.call_soon_threadsafe(events.put_nowait, e)) if stream else None
    gate = asyncio.Semaphore(settings.concurrency)

    async def one(call: ToolCallRequest) -> ToolResult:
        async with gate:
            with _tool_span(call, caller) as box:  # this task's own context: spans of concurrent calls stay apart
                box.append(await _run_one(settings, call))
            return box[0]

    gathered = asyncio.gather(*(one(call) for call in calls))
    try:
        while not gathered.done():
            getter = asyncio.ensure_future(events.get())
            await asyncio.wait({getter, gathered}, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                yield getter.result()
            else:
                getter.cancel()
        while not events.empty():  # sent before their call finished, so already queued
            yield events.get_nowait()
        out.append(ToolRound(list(gathered.result()), streamed=caller.forwarded > 0))
    finally:
        if not gathered.done():
            gathered.cancel()


async def _run_one(settings: ToolSettings, call: ToolCallRequest) -> ToolResult:
    prepared = prepare_call(settings.tools, call.name, call.arguments, settings.default_timeout)
    if isinstance(prepared, ToolResult):
        return prepared
    afunc = prepared.tool.afunc
    if afunc is not None:
        try:
            return prepared.returned(await asyncio.wait_for(afunc(**prepared.kwargs), prepared.timeout))
        except asyncio.TimeoutError:
            return prepared.timed_out()
        except Exception as exc:  # noqa: BLE001
            return prepared.raised(exc)
    future = _submit(prepared, settings.threads)
    if isinstance(future, ToolResult):
        return future
    try:
        await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), prepared.timeout)
    except asyncio.TimeoutError:
        _give_up(settings, prepared, future, prepared.label)
        return prepared.timed_out()
    except asyncio.CancelledError:  # the request was cancelled (e.g. its deadline): the thread runs on, counted
        _give_up(settings, prepared, future, f"{prepared.label} (request cancelled)")
        raise
    except Exception:  # noqa: BLE001 - reported by _settled
        pass
    return _settled(prepared, future)
