"""ReplyStream: one question whose events are handed out as they arrive, then followed to the task's end.

Why its own object: a streamed answer is read piece by piece (a sync or async iterator), the task may outlive the
stream (the agent closes it early, the connection drops, ``message/send`` returns a working task), and the user may
cancel it half-way (Ctrl-C -> ``tasks/cancel``). A task outliving its stream is followed with ``tasks/resubscribe``
when the agent streams, else (or when that fails) with ``tasks/get`` polls (backoff). The events are read by
a2a-sdk's SSE client; the bytes it reads are copied as they pass (``wire._SSETee``), so the reply keeps every event
exactly as received.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import AgentError, AgentProtocolError, AgentTaskError
from .headers import send_headers
from .models import AgentReply
from .parse import ERROR_STATES, ReplyShapeError, one_line, parse_reply
from .stream import StreamEvent, TaskFold, read_event
from .wire import Exchange, jsonrpc_error, start_exchange

if TYPE_CHECKING:
    from .card import Endpoint
    from .client import AgentClient

logger = logging.getLogger(__name__)

_POLL_FIRST_S = 0.05  # first wait before polling a task that is not finished; doubles up to _POLL_MAX_S
_POLL_MAX_S = 2.0
_CANCEL_TIMEOUT_S = 5.0
_UNSUPPORTED = (-32601, -32004)  # method not found, unsupported operation: the agent cannot stream after all


class ReplyStream:
    """The events of one question (see ``AgentClient.stream``). Iterate once, sync or async; then read ``reply``."""

    def __init__(
        self,
        client: AgentClient,
        question: str,
        context_id: str | None,
        task_id: str | None,
        timeout: float,
        *,
        prefer_stream: bool = True,
        input_required_ok: bool = False,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        from .client import _Call

        self._client = client
        self.question = question
        self._context_id = context_id
        self._task_id = task_id
        self.timeout = timeout
        self._prefer_stream = prefer_stream
        self._input_ok = input_required_ok
        self._headers = dict(headers) if headers else None
        self._call = _Call()
        self.fold = TaskFold()
        self.bodies: list[Any] = []  # every body received, in order (events, polled tasks, the cancel reply)
        self.times_ms: list[float] = []
        self.streamed = False
        self.first_event_ms: float | None = None
        self.ttft_ms: float | None = None
        self.reply: AgentReply | None = None
        self.error: AgentError | None = None
        self.ignored_after_end = 0  # events that came after the task's final one (not kept)
        self._endpoint: Endpoint | None = None
        self._started: float | None = None
        self._deadline: float | None = None
        self._agen: Any = None
        self._current: asyncio.Task[Any] | None = None
        self._ended = False
        self._fallback = False
        self._done = False

    # -- iteration ------------------------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[StreamEvent]:
        while (event := self._client._runner.run(self._next())) is not None:
            yield event
        if self.error is not None:
            raise self.error

    async def __aiter__(self) -> AsyncIterator[StreamEvent]:
        while (event := await asyncio.wrap_future(self._client._runner.submit(self._next()))) is not None:
            yield event
        if self.error is not None:
            raise self.error

    @property
    def task_id(self) -> str | None:
        return self.fold.task_id

    @property
    def context_id(self) -> str | None:
        return self.fold.context_id

    def cancel(self) -> AgentReply | None:
        """Stop reading, ask the agent to cancel the task (``tasks/cancel``), return what was received."""
        return self._client._runner.run(self._cancel())

    async def acancel(self) -> AgentReply | None:
        return await asyncio.wrap_future(self._client._runner.submit(self._cancel()))

    # -- on the client's loop -------------------------------------------------------------------------------------

    async def _next(self) -> StreamEvent | None:
        if self._done:
            return None
        send_headers(self._headers)  # each step runs in its own task: the headers go with each
        self._current = asyncio.current_task()
        if self._agen is None:
            self._deadline = time.monotonic() + self.timeout
            self._agen = self._events()
        try:
            remaining = max(self._deadline - time.monotonic(), 0.001)  # type: ignore[operator]
            event = await self._client._guarded(self._step(), self._call, remaining)
            if event is not None:
                return event
            self._done = True
            try:
                self.reply = self._finish()
            except AgentError as err:
                self.error = err
            return None
        except AgentError as err:
            self._done = True
            await self._close_agen()
            self.error = err if err.reply is not None else _with_reply(err, self._partial())
            return None
        finally:
            self._current = None

    async def _step(self) -> StreamEvent | None:
        try:
            return await self._agen.__anext__()
        except StopAsyncIteration:
            return None

    async def _events(self) -> AsyncIterator[StreamEvent]:
        client = self._client
        sdk, endpoint = await client._connect()
        self._endpoint = endpoint
        self._started = time.perf_counter()
        if self._prefer_stream and endpoint.card.capabilities.streaming and client._sdk_stream is not None:
            async for event in self._read_stream(client._sdk_stream):
                yield event
            if self.streamed and not self._ended and self.fold.task_id:
                # The stream ended before the task did (closed early, connection dropped): tasks/resubscribe
                # hands out the rest as it happens; an agent that cannot is polled below.
                async for event in self._read_stream(client._sdk_stream, resubscribe=True):
                    yield event
        if not self.streamed or self._fallback:
            request = client._message_request(self.question, self._context_id, self._task_id)
            body = await client._send(sdk, request, self._remaining(), self._call)
            yield self._add(body, "send")
        delay = _POLL_FIRST_S
        while not self._ended and self.fold.task_id:
            await asyncio.sleep(delay)  # the task goes on without a stream: poll it until it ends
            delay = min(delay * 2, _POLL_MAX_S)
            from a2a.types.a2a_pb2 import GetTaskRequest

            before = (self.fold.state, len(self.fold.history), len(self.fold.artifacts))
            body = await client._send(sdk, GetTaskRequest(id=self.fold.task_id), self._remaining(), self._call)
            event = self._add(body, "poll")
            if (self.fold.state, len(self.fold.history), len(self.fold.artifacts)) != before or self._ended:
                yield event

    async def _read_stream(self, sdk: Any, resubscribe: bool = False) -> AsyncIterator[StreamEvent]:
        """``message/stream`` (or ``tasks/resubscribe``): hand out each event as the tee sees it; stop at the task's
        final event. A resubscription that fails only leaves the task to polling."""
        from a2a.client import ClientCallContext
        from a2a.types.a2a_pb2 import SubscribeToTaskRequest

        exchange = self._call.exchange = start_exchange()
        taken = 0
        context = ClientCallContext(timeout=self._remaining())
        if resubscribe:
            agen = sdk.subscribe(SubscribeToTaskRequest(id=self.fold.task_id), context=context)
        else:
            request = self._client._message_request(self.question, self._context_id, self._task_id)
            agen = sdk.send_message(request, context=context)
        source = "resubscribe" if resubscribe else "stream"
        try:
            try:
                async for _ in agen:
                    self.streamed = self.streamed or exchange.streamed
                    for event in self._take(exchange, taken, source):
                        taken += 1
                        yield event
                    if self._ended:
                        break
            finally:
                await agen.aclose()
        except Exception as err:  # noqa: BLE001 - decided from what arrived
            self.streamed = self.streamed or exchange.streamed
            if resubscribe:
                logger.debug("tasks/resubscribe at %s: %s; polling instead", self._client._shown_url, err)
                for event in self._take(exchange, taken, source):
                    taken += 1
                    yield event
                return
            if not exchange.streamed:
                if _unsupported(exchange):
                    logger.info("the agent at %s cannot stream after all; using message/send", self._client._shown_url)
                    self._fallback = True
                    return
                raise
            logger.debug("stream from %s broke: %s", self._client._shown_url, err, exc_info=True)
        self.streamed = self.streamed or exchange.streamed
        for event in self._take(exchange, taken, source):
            taken += 1
            yield event
        if resubscribe:
            return
        error = jsonrpc_error(self.bodies[-1]) if self.bodies else None
        if error and self.fold.state not in _FINAL:  # the agent ended the stream with a JSON-RPC error
            raise AgentProtocolError(self._client.url, error, raw=list(self.bodies))
        if not self._ended and not self.fold.task_id:
            why = "no event" if not self.bodies else "no task id"
            raise AgentProtocolError(self._client.url, f"the stream ended with {why} to follow", raw=list(self.bodies))

    def _take(self, exchange: Exchange, taken: int, source: str = "stream") -> Iterator[StreamEvent]:
        for at, body in exchange.events[taken:]:
            if self._ended:
                self.ignored_after_end += 1
                continue
            if source == "resubscribe" and isinstance(body, dict) and jsonrpc_error(body):
                continue  # the agent cannot resubscribe (no such task in its queue): polling follows
            yield self._add(body, source, at)

    def _add(self, body: Any, source: str, at: float | None = None) -> StreamEvent:
        if self._client._token:
            body = self._client._redact_raw(body)
        at_ms = ((at or time.perf_counter()) - (self._started or 0.0)) * 1000
        event = read_event(body, at_ms=at_ms, source=source)
        self.bodies.append(body)
        self.times_ms.append(round(at_ms, 3))
        resumed = source == "stream" and event.kind == "task" and self._task_id and event.task_id == self._task_id
        if resumed and not self.fold.task_id:
            # Our reply to a task that asked for input: the stream opens with the task as it was (still
            # input-required). That is not this turn's end, and its earlier messages are not this turn's.
            event.state = None
            self.fold.add(event, baseline=True)
        else:
            self.fold.add(event)
        if source == "stream":
            if self.first_event_ms is None:
                self.first_event_ms = at_ms
            if self.ttft_ms is None and event.text:
                self.ttft_ms = at_ms
        ours = not event.task_id or not self.fold.task_id or event.task_id == self.fold.task_id
        streaming = source in ("stream", "resubscribe")
        if (event.terminal and ours) or (not streaming and self.fold.state not in (None, *_PENDING)):
            self._ended = True
        if event.kind == "invalid":
            logger.debug("unreadable event from %s: %s", self._client._shown_url, event.error)
        return event

    def _remaining(self) -> float:
        return max((self._deadline or time.monotonic()) - time.monotonic(), 0.001)

    def _partial(self) -> AgentReply | None:
        """What was received so far as a reply (None when nothing usable arrived)."""
        if self.fold.empty or self._endpoint is None:
            return None
        try:
            return self._reply()
        except AgentError:
            return None

    def _reply(self) -> AgentReply:
        endpoint = self._endpoint
        assert endpoint is not None
        latency_ms = (time.perf_counter() - (self._started or time.perf_counter())) * 1000
        try:
            # Not streamed: the last reply itself (message/send, or the last tasks/get), read as ``ask`` reads it.
            body = self.fold.body() if self.streamed or not self.bodies else self.bodies[-1]
            reply = parse_reply(
                body,
                url=endpoint.url,
                agent_name=endpoint.name,
                protocol_version=endpoint.protocol_version,
                latency_ms=latency_ms,
            )
        except ReplyShapeError as err:
            raise AgentProtocolError(endpoint.url, str(err), raw=list(self.bodies)) from None
        reply.raw = list(self.bodies) if self.streamed else self.bodies[-1]
        reply.streamed = self.streamed
        reply.event_times_ms = list(self.times_ms)
        reply.first_event_ms = self.first_event_ms
        reply.ttft_ms = self.ttft_ms
        return reply

    def _finish(self) -> AgentReply:
        reply = self._reply()
        state = reply.task_state
        if state in ERROR_STATES and not (self._input_ok and state == "input-required"):
            from .client import _task_failure

            raise AgentTaskError(reply.url, _task_failure(reply), task_state=state, raw=reply.raw, reply=reply)
        return reply

    async def _close_agen(self) -> None:
        if self._agen is not None:
            try:
                await self._agen.aclose()
            except Exception:  # noqa: BLE001 - a generator interrupted mid-request may complain while closing
                logger.debug("closing the event stream failed", exc_info=True)

    async def _cancel(self) -> AgentReply | None:
        send_headers(self._headers)
        if self._current is not None and not self._current.done():
            self._current.cancel()
            await asyncio.gather(self._current, return_exceptions=True)
        self._done = True
        await self._close_agen()
        if self.fold.task_id and not self._ended:
            from a2a.types.a2a_pb2 import CancelTaskRequest

            sdk, _ = await self._client._connect()
            try:
                request = CancelTaskRequest(id=self.fold.task_id)
                body = await self._client._guarded(
                    self._client._send(sdk, request, _CANCEL_TIMEOUT_S, self._call), self._call, _CANCEL_TIMEOUT_S
                )
                self._add(body, "cancel")
            except AgentError as err:  # the agent would not cancel: the run still ends as cancelled by the user
                logger.info("tasks/cancel for task %s failed: %s", self.fold.task_id, err)
                self.cancel_error = one_line(str(err), 300)
        self.reply = self._partial()
        return self.reply

    cancel_error: str | None = None


_PENDING = ("submitted", "working", "unspecified", "unknown")
_FINAL = ("completed", "failed", "rejected", "canceled", "input-required", "auth-required")


def _unsupported(exchange: Exchange) -> bool:
    """The agent answered message/stream with an error saying it does not do that (not an event stream)."""
    if exchange.status in (404, 405, 501) and not exchange.body.strip().startswith(b"{"):
        return False  # a wrong URL: message/send would fail the same way
    body = exchange.json()
    error = body.get("error") if isinstance(body, dict) else None
    return isinstance(error, dict) and error.get("code") in _UNSUPPORTED


def _with_reply(err: AgentError, reply: AgentReply | None) -> AgentError:
    if reply is None:
        return err
    state = err.task_state or reply.task_state
    return type(err)(err.url, err.cause, task_state=state, raw=err.raw if err.raw is not None else reply.raw,
                     reply=reply)  # fmt: skip
