"""Extra HTTP headers for the requests of one question (W3C ``traceparent`` / ``tracestate``).

The SDK's transports send through the client's shared ``httpx.AsyncClient``; an httpx request hook adds the headers
the current question asked for. They travel in a context variable set inside the question's own task on the
client's loop, so concurrent questions each send their own and the SDK needs no per-call plumbing: every request of
the question (the message, ``tasks/get`` polls, a stream) carries them.
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping

import httpx

_outgoing: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "kagent_mlflow_a2a_headers", default=None
)


def send_headers(headers: Mapping[str, str] | None) -> None:
    """Add ``headers`` to every request made from now on in the current task (None: none)."""
    if headers:
        for name, value in headers.items():
            if not isinstance(name, str) or not isinstance(value, str) or "\r" in value or "\n" in value:
                raise ValueError(f"invalid extra header {name!r}: names and values are single-line strings")
    _outgoing.set(dict(headers) if headers else None)


async def add_headers(request: httpx.Request) -> None:
    """httpx request hook: put the current question's headers on the request."""
    headers = _outgoing.get()
    if headers:
        request.headers.update(headers)
