"""What an evaluation asks: an A2A agent (kagent or any A2A agent) or an MLflow Agent Server (``.../invocations``).

Both give back an :class:`Answer` (plain data, journalled as one JSON line). The A2A side is the Pattern 1 client
(:class:`~kagent_mlflow.a2a.AgentClient`); the Agent Server side streams the OpenAI Responses events over one shared
``httpx.AsyncClient`` so the time to the first token is measured. Failures become :class:`AskFailure` with
``transient`` set when asking again may help (nothing listening, HTTP 429/5xx, connection dropped).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .._urls import safe_url
from ..config import check_http_url
from ..errors import ConfigError

_TRANSIENT_HTTP = re.compile(r"\bHTTP (429|5\d\d)\b")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


@dataclass(frozen=True)
class Target:
    name: str
    url: str  # as given, credentials included (never stored or shown: see ``shown_url``)
    kind: str  # "a2a" or "agent_server"

    @property
    def shown_url(self) -> str:
        return safe_url(self.url)


def parse_target(text: str) -> Target:
    """``URL`` or ``NAME=URL``; a URL whose path ends in ``/invocations`` is an Agent Server, any other A2A."""
    name, sep, url = text.partition("=")
    if not sep or "://" in name:
        name, url = "", text
    url = url.strip()
    check_http_url(url, "--agent URL")
    path = urlsplit(url).path.rstrip("/")
    kind = "agent_server" if path.endswith("/invocations") else "a2a"
    if name:
        if not _NAME.match(name):
            raise ConfigError(f"--agent name {name!r}: use letters, digits, '.', '_' or '-' (at most 63)")
    else:
        name = _default_name(url, kind)
    return Target(name=name, url=url, kind=kind)


def _default_name(url: str, kind: str) -> str:
    parts = urlsplit(url)
    segments = [s for s in parts.path.split("/") if s]
    if kind == "a2a" and segments:
        base = segments[-1]
    elif kind == "agent_server":
        base = f"agent-server-{parts.port or parts.hostname}"
    else:
        base = f"agent-{parts.hostname}-{parts.port}" if parts.port else f"agent-{parts.hostname}"
    return re.sub(r"[^A-Za-z0-9._-]", "-", base)[:63] or "agent"


def unique_targets(targets: list[Target]) -> list[Target]:
    """Targets with distinct names (``name``, ``name-2`` ...): a name keys its run and its journal lines."""
    seen: dict[str, int] = {}
    out = []
    for target in targets:
        count = seen[target.name] = seen.get(target.name, 0) + 1
        out.append(target if count == 1 else Target(f"{target.name}-{count}", target.url, target.kind))
    return out


@dataclass
class Answer:
    """One question asked of one target: the journal line and the trace's content."""

    qid: str
    target: str
    status: str  # "ok" or "error"
    answer: str | None = None
    error: str | None = None
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    raw: Any = None
    started_at_ms: int = 0
    attempts: int = 1
    scores: dict[str, dict[str, Any]] = field(default_factory=dict)  # scorer name -> {"value", "rationale"}


class AskFailure(Exception):
    def __init__(self, message: str, *, transient: bool, raw: Any = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.raw = raw


class A2AAsker:
    """The Pattern 1 client, one per target (one keep-alive pool, card resolved once)."""

    def __init__(self, target: Target, *, timeout: float, token: str | None = None) -> None:
        from ..a2a.client import AgentClient

        self.target = target
        self._client = AgentClient(target.url, timeout=timeout, token=token)

    async def ask(self, question: str, timeout: float) -> Answer:
        from ..errors import AgentError, AgentProtocolError, AgentUnreachableError
        from ..records import _INPUT_KEYS, _OUTPUT_KEYS, _TOTAL_KEYS

        try:
            reply = await self._client.aask(question, timeout=timeout)
        except AgentError as err:
            transient = isinstance(err, AgentUnreachableError) or (
                isinstance(err, AgentProtocolError)
                and (bool(_TRANSIENT_HTTP.search(err.cause)) or "connection broken" in err.cause)
            )
            raise AskFailure(err.cause, transient=transient, raw=err.raw) from None
        usage = reply.usage

        def first(keys: tuple[str, ...]) -> int | None:
            return next((int(usage[k]) for k in keys if k in usage), None)

        inp, out, total = first(_INPUT_KEYS), first(_OUTPUT_KEYS), first(_TOTAL_KEYS)
        if total is None and (inp is not None or out is not None):
            total = (inp or 0) + (out or 0)
        return Answer(
            qid="",
            target=self.target.name,
            status="ok",
            answer=reply.answer,
            latency_ms=reply.latency_ms,
            input_tokens=inp,
            output_tokens=out,
            total_tokens=total,
            tool_calls=[{"name": c.name, "arguments": c.arguments, "result": c.result} for c in reply.tool_calls],
            raw=reply.raw,
        )

    async def aclose(self) -> None:
        self._client.close()


class AgentServerAsker:
    """``POST /invocations`` with ``"stream": true``: answer text, first-token time, usage, tool calls."""

    def __init__(self, target: Target, *, timeout: float, token: str | None = None, connections: int = 64) -> None:
        import httpx

        self.target = target
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        )

    async def ask(self, question: str, timeout: float) -> Answer:
        import httpx

        body = {"input": [{"role": "user", "content": question}], "stream": True}
        started = time.perf_counter()
        state = _StreamState()
        try:
            async with self._http.stream("POST", self.target.url, json=body, timeout=timeout) as response:
                if response.status_code != 200:
                    text = (await response.aread())[:300].decode("utf-8", "replace")
                    transient = response.status_code == 429 or response.status_code >= 500
                    raise AskFailure(
                        f"HTTP {response.status_code} from the Agent Server: {' '.join(text.split())}",
                        transient=transient,
                        raw=text,
                    )
                async for line in response.aiter_lines():
                    if line.startswith("data:"):
                        state.feed(line[5:].strip(), started)
        except httpx.ConnectError as err:
            raise AskFailure(f"cannot connect ({err}); is the Agent Server running?", transient=True) from None
        except (httpx.RemoteProtocolError, httpx.ReadError) as err:
            raise AskFailure(f"connection broken before the answer ended ({err})", transient=True) from None
        except httpx.TimeoutException:
            raise AskFailure(f"no complete answer within {timeout:g} s (timeout)", transient=False) from None
        if state.error:
            raise AskFailure(f"the Agent Server reported: {state.error}", transient=False, raw=state.events)
        usage = state.usage or {}
        return Answer(
            qid="",
            target=self.target.name,
            status="ok",
            answer="".join(state.text) if state.text else state.final_text,
            latency_ms=(time.perf_counter() - started) * 1000,
            ttft_ms=state.ttft_ms,
            input_tokens=usage.get("input_tokens"),
            output_tokens=usage.get("output_tokens"),
            total_tokens=usage.get("total_tokens"),
            tool_calls=state.tool_calls,
            raw=state.events[-20:],
        )

    async def aclose(self) -> None:
        await self._http.aclose()


class _StreamState:
    """Folds the Responses events of one stream."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.final_text = ""
        self.ttft_ms: float | None = None
        self.usage: dict[str, int] | None = None
        self.tool_calls: list[dict[str, Any]] = []
        self.error: str | None = None
        self.events: list[Any] = []

    def feed(self, data: str, started: float) -> None:
        if data == "[DONE]":
            return
        try:
            event = json.loads(data)
        except json.JSONDecodeError:
            self.error = f"unreadable event {data[:100]!r}"
            return
        if not isinstance(event, dict):
            return
        kind = event.get("type")
        if kind in ("response.output_text.delta",) and isinstance(event.get("delta"), str):
            if self.ttft_ms is None:
                self.ttft_ms = (time.perf_counter() - started) * 1000
            self.text.append(event["delta"])
            return  # deltas are not kept in the raw reply: the answer holds them
        self.events.append(event)
        if "error" in event and kind is None:
            self.error = str(event["error"])[:300]
        item = event.get("item") if kind == "response.output_item.done" else None
        if isinstance(item, dict):
            if item.get("type") == "function_call":
                self.tool_calls.append({"name": item.get("name"), "arguments": item.get("arguments")})
            elif item.get("type") == "message" and not self.text:
                for part in item.get("content") or []:
                    if isinstance(part, dict) and isinstance(part.get("text"), str):
                        self.final_text += part["text"]
        response = event.get("response") if kind == "response.completed" else None
        if isinstance(response, dict) and isinstance(response.get("usage"), dict):
            self.usage = {k: int(v) for k, v in response["usage"].items() if isinstance(v, (int, float))}
        elif isinstance(event.get("usage"), dict):
            self.usage = {k: int(v) for k, v in event["usage"].items() if isinstance(v, (int, float))}


def make_asker(target: Target, *, timeout: float, token: str | None, connections: int) -> Any:
    if target.kind == "agent_server":
        return AgentServerAsker(target, timeout=timeout, token=token, connections=connections)
    return A2AAsker(target, timeout=timeout, token=token)
