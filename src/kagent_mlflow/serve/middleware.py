"""ASGI middleware in front of the agent routes: every error answer gets one JSON shape.

(Bodies are checked by the routes themselves, see :mod:`.request`.)

- When the agent failed (the invoke/stream wrappers record a :class:`ServeError` in :data:`FAILURE`) and no byte of
  the answer has left yet, the response becomes that error's status (502/504/500) and JSON body. This also covers a
  stream that fails before its first event: the client gets a 502/504, not a ``200`` with an error event.
- Every other 4xx/5xx from these routes gets the same body shape: ``{"error": {"message", "type", "code"},
  "detail": message}``.
"""

from __future__ import annotations

import json
from contextvars import ContextVar
from typing import Any

from .errors import ServeError

Scope = dict[str, Any]
Message = dict[str, Any]

AGENT_PATHS = frozenset({"/invocations", "/responses"})

# A mutable holder per request: set here, filled by the invoke/stream wrappers (child tasks share the object).
FAILURE: ContextVar[dict[str, ServeError] | None] = ContextVar("kagent_mlflow_serve_failure", default=None)


def record_failure(error: ServeError) -> None:
    """Remember why this request failed, for :class:`ErrorMiddleware` to answer with."""
    holder = FAILURE.get()
    if holder is not None:
        holder["error"] = error


class ErrorMiddleware:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"].rstrip("/") not in AGENT_PATHS:
            await self.app(scope, receive, send)
            return
        holder: dict[str, ServeError] = {}
        token = FAILURE.set(holder)
        try:
            await self.app(scope, receive, _RewritingSend(send, holder))
        finally:
            FAILURE.reset(token)


class _RewritingSend:
    """Holds back the response start until the first body chunk shows whether the answer is an error."""

    def __init__(self, send: Any, holder: dict[str, ServeError]) -> None:
        self.send = send
        self.holder = holder
        self.start: Message | None = None
        self.mode = "undecided"  # -> "pass" | "rewrite" | "done"
        self.buffer = bytearray()

    async def __call__(self, message: Message) -> None:
        if self.mode == "done":
            return
        if message["type"] == "http.response.start":
            self.start = message
            return
        if message["type"] != "http.response.body":
            await self.send(message)
            return
        if self.mode == "undecided":
            status = self.start["status"] if self.start else 500
            if "error" in self.holder:
                self.mode = "done"
                await _send_json(self.send, self.holder["error"])
                return
            self.mode = "rewrite" if status >= 400 else "pass"
            if self.mode == "pass":
                await self.send(self.start)
        if self.mode == "pass":
            await self.send(message)
            return
        self.buffer += message.get("body", b"")
        if not message.get("more_body", False):
            self.mode = "done"
            body = bytes(self.buffer)
            if self.start is not None and _shaped(body):  # the routes' own error answers: keep them as they are
                await self.send(self.start)
                await self.send({"type": "http.response.body", "body": body, "more_body": False})
                return
            status = self.start["status"] if self.start else 500
            await _send_json(self.send, ServeError(status, _kind(status), _detail(body)))


def _shaped(body: bytes) -> bool:
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and isinstance(data.get("error"), dict) and "detail" in data


def _kind(status: int) -> str:
    if status == 404:
        return "not_found_error"
    if status == 413:
        return "request_too_large"
    if status == 415:
        return "unsupported_media_type"
    return "server_error" if status >= 500 else "invalid_request_error"


def _detail(body: bytes) -> str:
    """The message inside an error body (FastAPI's ``detail``), whitespace collapsed to one line."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return " ".join(body.decode(errors="replace").split()) or "error"
    detail = data.get("detail", data) if isinstance(data, dict) else data
    if not isinstance(detail, str):
        detail = json.dumps(detail)
    return " ".join(detail.split())


async def _send_json(send: Any, error: ServeError) -> None:
    payload = json.dumps(error.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": payload, "more_body": False})
