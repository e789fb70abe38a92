"""What actually came over the wire, and how a failure is told to the user.

The a2a-sdk transports hand back parsed SDK objects and raise their own exception types; we need the body exactly as
received (for ``AgentReply.raw`` and for errors) and one-line messages naming the cause. An httpx response hook
records the last response of the request in flight (``Exchange``); ``classify`` maps any exception raised while
sending, together with that record, to our error hierarchy.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from ..errors import AgentError, AgentProtocolError, AgentTimeoutError, AgentUnreachableError
from .parse import one_line

_NO_BODY = object()


@dataclass
class Exchange:
    """The last HTTP response seen for one request (set by the response hook)."""

    status: int | None = None
    reason: str = ""
    content_type: str = ""
    body: bytes = b""
    # A streamed (text/event-stream) reply: each event's data as it arrived, (perf_counter time, JSON or text).
    events: list[tuple[float, Any]] = field(default_factory=list)
    streamed: bool = False
    dropped: int = 0  # events past MAX_EVENTS, not kept
    kept_bytes: int = 0

    @property
    def arrived(self) -> bool:
        return self.status is not None

    def json(self) -> Any:
        """The body as JSON, or ``_NO_BODY`` when it is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError:
            return _NO_BODY

    def raw(self) -> Any:
        """What to keep as ``raw``: the JSON value, else the text (None when nothing arrived)."""
        if not self.arrived:
            return None
        value = self.json()
        return self.body.decode("utf-8", "replace") if value is _NO_BODY else value


_current: contextvars.ContextVar[Exchange | None] = contextvars.ContextVar("kagent_mlflow_a2a_exchange", default=None)


def start_exchange() -> Exchange:
    """Record responses of the request about to be sent (in this task) into a fresh ``Exchange``."""
    exchange = Exchange()
    _current.set(exchange)
    return exchange


async def record_response(response: httpx.Response) -> None:
    """httpx response hook: read the body and note it on the request's ``Exchange``, if one is open.

    A server-sent event stream is not read here (that would wait for its end): its bytes are copied into
    ``Exchange.events`` while the SDK reads them, so every event is kept exactly as it arrived.
    """
    exchange = _current.get()
    if exchange is None:
        return
    exchange.status = response.status_code
    exchange.reason = response.reason_phrase
    exchange.content_type = response.headers.get("content-type", "")
    if response.status_code < 400 and "text/event-stream" in exchange.content_type:
        exchange.streamed = True
        response.stream = _SSETee(response.stream, exchange)  # type: ignore[assignment]
        return
    await response.aread()
    exchange.body = response.content


MAX_EVENT_BYTES = 4 * 1024 * 1024  # an event's data kept in full up to this size, else as a note of its size
MAX_EVENTS = 10_000  # events kept per request (a runaway stream must not fill the memory or the spool)
MAX_STREAM_BYTES = 16 * 1024 * 1024  # all events of one request kept in full up to this size, later ones as notes


class _SSETee(httpx.AsyncByteStream):
    """Wraps an httpx response stream: passes the bytes through untouched and splits a copy into SSE events."""

    def __init__(self, inner: Any, exchange: Exchange) -> None:
        self._inner = inner
        self._exchange = exchange
        self._buffer = b""
        self._data: list[bytes] = []
        self._size = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            try:
                self._feed(chunk)
            except Exception:  # noqa: BLE001 - keeping a copy must never break the stream the SDK reads
                pass
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()

    def _feed(self, chunk: bytes) -> None:
        self._buffer += chunk
        while True:
            cut = min((i for i in (self._buffer.find(b"\n"), self._buffer.find(b"\r")) if i >= 0), default=-1)
            if cut < 0:
                if len(self._buffer) > MAX_EVENT_BYTES:  # one endless line: count it, keep no more of it
                    self._size += len(self._buffer)
                    self._buffer = b""
                return
            line = self._buffer[:cut]
            skip = 2 if self._buffer[cut : cut + 2] == b"\r\n" else 1
            self._buffer = self._buffer[cut + skip :]
            self._line(line)

    def _line(self, line: bytes) -> None:
        if not line:
            self._dispatch()
        elif line.startswith(b"data:"):
            value = line[5:]
            value = value[1:] if value.startswith(b" ") else value
            self._size += len(value)
            if self._size <= MAX_EVENT_BYTES:
                self._data.append(value)

    def _dispatch(self) -> None:
        if not self._data and not self._size:
            return
        data, size = b"\n".join(self._data), self._size
        self._data, self._size = [], 0
        exchange = self._exchange
        if len(exchange.events) >= MAX_EVENTS:
            exchange.dropped += 1
            return
        exchange.kept_bytes += min(size, MAX_EVENT_BYTES)
        if size > MAX_EVENT_BYTES:
            value: Any = f"(event of {size} bytes not kept: larger than {MAX_EVENT_BYTES} bytes)"
        elif exchange.kept_bytes > MAX_STREAM_BYTES:
            value = f"(event of {size} bytes not kept: the stream passed {MAX_STREAM_BYTES} bytes)"
        else:
            text = data.decode("utf-8", "replace")
            try:
                value = json.loads(text)
            except ValueError:
                value = text
        exchange.events.append((time.perf_counter(), value))


def jsonrpc_error(body: Any) -> str | None:
    """``JSON-RPC error -32602: Invalid parameters`` when the body is a JSON-RPC error response."""
    if not isinstance(body, dict) or "error" not in body or body.get("error") is None:
        return None
    error = body["error"]
    if not isinstance(error, dict):
        return f"JSON-RPC error: {one_line(json.dumps(error), 200)}"
    detail = one_line(str(error.get("message") or "no message"), 200)
    data = error.get("data")
    if isinstance(data, list) and data and isinstance(data[0], dict) and data[0].get("loc"):
        detail += f" ({'.'.join(map(str, data[0]['loc']))}: {data[0].get('msg', 'invalid')})"
    return f"JSON-RPC error {error.get('code', '?')}: {detail}"


def body_problem(exchange: Exchange) -> str | None:
    """Why the body that arrived is not a usable JSON-RPC reply (None when it is one)."""
    if exchange.status is not None and exchange.status >= 400:
        error = jsonrpc_error(exchange.json())
        snippet = f": {error}" if error else _snippet(exchange)
        return f"HTTP {exchange.status} {exchange.reason}".rstrip() + snippet
    body = exchange.json()
    if body is _NO_BODY:
        kind = exchange.content_type.split(";")[0] or "no content-type"
        return f"reply is not JSON (HTTP {exchange.status}, {kind}){_snippet(exchange)}"
    error = jsonrpc_error(body)
    if error:
        return error
    if not isinstance(body, dict) or "result" not in body:
        return f"reply is not a JSON-RPC response (no 'result' or 'error'){_snippet(exchange)}"
    return None


def _snippet(exchange: Exchange) -> str:
    text = one_line(exchange.body.decode("utf-8", "replace"), 120)
    return f": {text!r}" if text else " (empty body)"


def classify(err: BaseException, url: str, exchange: Exchange | None, timeout: float) -> AgentError:
    """Map an exception from sending (SDK, httpx, asyncio) plus what arrived to one of our errors."""
    raw = exchange.raw() if exchange else None
    if _caused_by(err, (asyncio.TimeoutError, httpx.TimeoutException)) or type(err).__name__ == "A2AClientTimeoutError":
        return AgentTimeoutError(url, f"no reply within {timeout:g} s (timeout); is the agent stuck or slow?", raw=raw)
    if exchange is not None and exchange.arrived and not exchange.streamed:
        problem = body_problem(exchange)
        if problem:
            return AgentProtocolError(url, problem, raw=raw)
    if _caused_by(err, (httpx.ConnectError,)):
        return AgentUnreachableError(
            url, f"cannot connect ({_connect_failure(err)}); is the agent running and the URL/port-forward right?"
        )
    if _caused_by(err, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)):
        return AgentProtocolError(url, f"connection broken before a reply arrived ({_root_text(err)})", raw=raw)
    return AgentProtocolError(url, f"unusable reply ({type(err).__name__}: {one_line(str(err), 200)})", raw=raw)


def _caused_by(err: BaseException, types: tuple[type[BaseException], ...]) -> bool:
    seen = 0
    cause: BaseException | None = err
    while cause is not None and seen < 20:
        if isinstance(cause, types):
            return True
        cause, seen = cause.__cause__ or cause.__context__, seen + 1
    return False


def _root(err: BaseException) -> BaseException:
    cause, seen = err, 0
    while (cause.__cause__ or cause.__context__) is not None and seen < 20:
        cause, seen = cause.__cause__ or cause.__context__, seen + 1  # type: ignore[assignment]
    return cause


def _root_text(err: BaseException) -> str:
    """The innermost cause's message (``Server disconnected without sending a response``)."""
    cause = _root(err)
    return one_line(str(cause) or type(cause).__name__, 160)


def _connect_failure(err: BaseException) -> str:
    """``connection refused`` / ``host name not found: ...`` rather than asyncio's ``Connect call failed``."""
    cause = _root(err)
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused"
    if isinstance(cause, socket.gaierror):
        return f"host name not found: {one_line(str(cause), 120)}"
    return _root_text(err)
