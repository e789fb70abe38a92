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
from dataclasses import dataclass
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
    """httpx response hook: read the body and note it on the request's ``Exchange``, if one is open."""
    exchange = _current.get()
    if exchange is None:
        return
    await response.aread()
    exchange.status = response.status_code
    exchange.reason = response.reason_phrase
    exchange.content_type = response.headers.get("content-type", "")
    exchange.body = response.content


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
    if exchange is not None and exchange.arrived:
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
