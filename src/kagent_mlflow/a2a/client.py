"""AgentClient: ask an A2A agent a question and get back a parsed ``AgentReply`` (the live path).

Built on a2a-sdk 1.x: its card resolver, its client factory and JSON-RPC transports (protocol 1.0, or 0.3 through
``a2a.compat.v0_3``). One client resolves the card once and keeps one ``httpx.AsyncClient`` (a keep-alive pool) on
a private event loop thread, so the many synchronous ``ask`` calls of a benchmark or a batch pay no set-up cost,
and any number of threads may call ``ask`` at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from .._urls import safe_url
from ..config import check_http_url, check_question
from ..errors import AgentError, AgentProtocolError, AgentTaskError, AgentTimeoutError
from ._loop import LoopThread
from .card import CardUnavailable, Endpoint, endpoint_from_card, fallback_endpoint, fetch_card, not_found_hint
from .headers import add_headers, send_headers
from .models import AgentReply
from .parse import ERROR_STATES, PENDING_STATES, ReplyShapeError, message_text, one_line, parse_reply
from .wire import Exchange, body_problem, classify, record_response, start_exchange

if TYPE_CHECKING:
    import httpx
    from a2a.client import Client

    from .streaming import ReplyStream

logger = logging.getLogger(__name__)
T = TypeVar("T")

_POLL_FIRST_S = 0.05  # first wait before polling a task the agent left running; doubles up to _POLL_MAX_S
_POLL_MAX_S = 1.0


@dataclass
class _Call:
    """Per-ask state shared with the deadline wrapper: the last exchange, for error reports."""

    exchange: Exchange | None = None
    reply: AgentReply | None = None  # the last parsed reply (a task still working when the deadline passed)


class AgentClient:
    """A client for one A2A agent URL (e.g. ``http://localhost:8083/api/a2a/kagent/rh-analyze-simple/``).

    ``ask`` (sync) and ``aask`` (async) send one question and return an ``AgentReply``; they raise
    ``AgentUnreachableError``, ``AgentTimeoutError``, ``AgentProtocolError`` or ``AgentTaskError`` (carrying the
    partial reply) with a one-line message naming the URL and the cause. ``token`` is sent as a bearer token and
    never appears in replies or errors. Close the client (or use it as a context manager) to release its thread.
    """

    def __init__(self, url: str, *, timeout: float = 120, token: str | None = None) -> None:
        check_http_url(url, "A2A URL")
        self.url = url  # as given (credentials included): the request needs them
        self._shown_url = safe_url(url)  # for logs and repr
        self.timeout = float(timeout)
        self._token = token or None
        self._runner = LoopThread()
        self._http: httpx.AsyncClient | None = None
        self._sdk: Client | None = None
        self._sdk_stream: Client | None = None  # the same, speaking message/stream (when the card says it streams)
        self._endpoint: Endpoint | None = None
        self._setup_lock: asyncio.Lock | None = None

    # -- public API -----------------------------------------------------------------------------------------------

    @property
    def endpoint(self) -> Endpoint | None:
        """How the agent is spoken to (URL, name, protocol version), once the first call resolved it."""
        return self._endpoint

    def connect(self, *, timeout: float | None = None) -> Endpoint:
        """Resolve the card and load the SDK now; otherwise the first ``ask`` does it (and its latency shows it)."""
        t = self._timeout(timeout)
        return self._runner.run(self._guarded(self._connect_endpoint(), _Call(), t))

    def ask(
        self,
        question: str,
        *,
        context_id: str | None = None,
        timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> AgentReply:
        """Send ``question`` and wait for the agent's answer (at most ``timeout`` seconds in all).

        ``headers`` go on every HTTP request of this question (e.g. W3C ``traceparent``/``tracestate``)."""
        question = check_question(question)
        return self._runner.run(self._ask(question, context_id, self._timeout(timeout), headers))

    async def aask(
        self,
        question: str,
        *,
        context_id: str | None = None,
        timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> AgentReply:
        """``ask`` for async callers; runs on the client's own loop, so any caller loop may await it."""
        question = check_question(question)
        future = self._runner.submit(self._ask(question, context_id, self._timeout(timeout), headers))
        return await asyncio.wrap_future(future)

    def stream(
        self,
        question: str,
        *,
        context_id: str | None = None,
        task_id: str | None = None,
        timeout: float | None = None,
        prefer_stream: bool = True,
        input_required_ok: bool = False,
        headers: Mapping[str, str] | None = None,
    ) -> ReplyStream:
        """Send ``question`` and iterate over the agent's events (``StreamEvent``) as they arrive.

        Uses ``message/stream`` when ``prefer_stream`` and the card says the agent streams, else ``message/send``;
        a task left unfinished (stream ended early, connection dropped, a working task) is followed with
        ``tasks/resubscribe`` (an agent that streams) or ``tasks/get`` until it ends or ``timeout`` passes. After
        the iteration ``.reply`` is the ``AgentReply``; a failure is raised at the end of the iteration
        (``AgentError``). ``.cancel()`` cancels the task.
        ``input_required_ok``: a task waiting for the user's input is an answer (its question), not an error.
        ``headers`` go on every HTTP request of this question (as for ``ask``).
        """
        from .streaming import ReplyStream

        question = check_question(question)
        options = dict(prefer_stream=prefer_stream, input_required_ok=input_required_ok, headers=headers)
        return ReplyStream(self, question, context_id, task_id, self._timeout(timeout), **options)

    def close(self) -> None:
        """Close the HTTP connections and stop the client's thread. Idempotent."""
        self._runner.close(self._aclose())

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"AgentClient({self._shown_url!r}, timeout={self.timeout:g})"

    # -- the work, on the client's loop ---------------------------------------------------------------------------

    def _timeout(self, timeout: float | None) -> float:
        return float(timeout) if timeout is not None else self.timeout

    async def _ask(
        self, question: str, context_id: str | None, timeout: float, headers: Mapping[str, str] | None = None
    ) -> AgentReply:
        send_headers(headers)  # this question's task only (see headers.py)
        call = _Call()
        return await self._guarded(self._ask_within(question, context_id, timeout, call), call, timeout)

    async def _guarded(self, work: Coroutine[Any, Any, T], call: _Call, timeout: float) -> T:
        """Run ``work`` within ``timeout`` seconds; any failure leaves as one of our errors, without SDK traceback."""
        try:
            return await asyncio.wait_for(work, timeout)
        except AgentError as err:
            raise self._redact(err) from None
        except Exception as err:  # noqa: BLE001 - every failure becomes one of our errors, no SDK traceback
            logger.debug("A2A call to %s failed", self._shown_url, exc_info=True)
            mapped = classify(err, self.url, call.exchange, timeout)
            if isinstance(mapped, AgentTimeoutError) and call.reply is not None:
                mapped = AgentTimeoutError(  # the task the agent left running, so a failed run names it
                    self.url,
                    f"{mapped.cause} (task {call.reply.task_id} still {call.reply.task_state})",
                    task_state=call.reply.task_state,
                    raw=call.reply.raw,
                    reply=call.reply,
                )
            if call.exchange is not None and call.exchange.status == 404:
                mapped = await self._with_not_found_hint(mapped)
            raise self._redact(mapped) from None

    async def _with_not_found_hint(self, err: AgentError) -> AgentError:
        """An HTTP 404 usually means a wrong path: say where the server's agent card is, if it serves one."""
        import httpx

        async with httpx.AsyncClient(headers=self._http.headers if self._http else None) as http:  # no response hook
            hint = await not_found_hint(http, self.url)
        return type(err)(err.url, err.cause + hint, task_state=err.task_state, raw=err.raw, reply=err.reply)

    async def _ask_within(self, question: str, context_id: str | None, timeout: float, call: _Call) -> AgentReply:
        sdk, endpoint = await self._connect()
        started = time.perf_counter()
        body = await self._send(sdk, self._message_request(question, context_id), timeout, call)
        reply = call.reply = self._parse(body, endpoint, started)
        delay = _POLL_FIRST_S
        while reply.task_state in PENDING_STATES and reply.task_id:
            await asyncio.sleep(delay)  # a non-blocking agent: poll the task until it leaves submitted/working
            delay = min(delay * 2, _POLL_MAX_S)
            body = await self._send(sdk, self._get_task_request(reply.task_id), timeout, call)
            reply = call.reply = self._parse(body, endpoint, started)
        if reply.task_state in ERROR_STATES:
            raise AgentTaskError(
                endpoint.url,
                _task_failure(reply),
                task_state=reply.task_state,
                raw=reply.raw,
                reply=reply,
            )
        return reply

    async def _connect_endpoint(self) -> Endpoint:
        return (await self._connect())[1]

    async def _connect(self) -> tuple[Client, Endpoint]:
        """Resolve the card and build the SDK client, once per AgentClient."""
        if self._sdk is not None and self._endpoint is not None:
            return self._sdk, self._endpoint
        if self._setup_lock is None:
            self._setup_lock = asyncio.Lock()
        async with self._setup_lock:
            if self._sdk is None or self._endpoint is None:
                from a2a.client import ClientConfig, ClientFactory
                from a2a.utils.constants import TransportProtocol

                http = self._http_client()
                try:
                    card, card_url = await fetch_card(http, self.url)
                    endpoint = endpoint_from_card(card, self.url, card_url)
                except CardUnavailable as why:
                    shown = self._shown_url
                    logger.info("no A2A card at %s (%s); speaking A2A 0.3 JSON-RPC to the URL as given", shown, why)
                    endpoint = fallback_endpoint(self.url)
                config = ClientConfig(
                    streaming=False, httpx_client=http, supported_protocol_bindings=[TransportProtocol.JSONRPC]
                )
                self._sdk = ClientFactory(config).create(endpoint.card)
                config = ClientConfig(
                    streaming=True, httpx_client=http, supported_protocol_bindings=[TransportProtocol.JSONRPC]
                )
                self._sdk_stream = ClientFactory(config).create(endpoint.card)
                self._endpoint = endpoint
                logger.debug("A2A %s agent %r at %s", endpoint.protocol_version, endpoint.name, safe_url(endpoint.url))
        return self._sdk, self._endpoint

    def _http_client(self) -> httpx.AsyncClient:
        import httpx

        if self._http is None:
            headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
            self._http = httpx.AsyncClient(
                headers=headers,
                timeout=httpx.Timeout(self.timeout),
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
                follow_redirects=True,
                event_hooks={"request": [add_headers], "response": [record_response]},
            )
        return self._http

    @staticmethod
    def _message_request(question: str, context_id: str | None, task_id: str | None = None) -> Any:
        """The message; ``task_id`` continues a task that asked for input (its ``input-required`` question)."""
        from a2a.types.a2a_pb2 import Message, Part, Role, SendMessageRequest

        message = Message(role=Role.ROLE_USER, message_id=uuid.uuid4().hex, parts=[Part(text=question)])
        if context_id:
            message.context_id = context_id
        if task_id:
            message.task_id = task_id
        return SendMessageRequest(message=message)

    @staticmethod
    def _get_task_request(task_id: str) -> Any:
        from a2a.types.a2a_pb2 import GetTaskRequest

        return GetTaskRequest(id=task_id)

    async def _send(self, sdk: Client, request: Any, timeout: float, call: _Call) -> Any:
        """Send one request through the SDK; return the JSON body exactly as received."""
        from a2a.client import ClientCallContext
        from a2a.types.a2a_pb2 import CancelTaskRequest, GetTaskRequest

        exchange = call.exchange = start_exchange()
        context = ClientCallContext(timeout=timeout)
        try:
            if isinstance(request, GetTaskRequest):
                await sdk.get_task(request, context=context)
            elif isinstance(request, CancelTaskRequest):
                await sdk.cancel_task(request, context=context)
            else:
                async for _event in sdk.send_message(request, context=context):
                    pass
        except Exception as err:
            # The SDK validates results more strictly than we read them: a well-formed JSON-RPC result it could
            # not model is still an answer. Anything else is classified from what arrived.
            if not exchange.arrived or body_problem(exchange) is not None:
                raise
            shown = self._shown_url
            logger.debug("a2a-sdk could not model the reply from %s; parsing it ourselves", shown, exc_info=err)
        if not exchange.arrived:
            raise AgentProtocolError(self.url, "no HTTP response was recorded for the request")
        problem = body_problem(exchange)
        if problem:
            raise AgentProtocolError(self.url, problem, raw=exchange.raw())
        body = exchange.json()
        if self._token and self._token.encode() in exchange.body:
            body = self._redact_raw(body)  # the agent echoed the token: it must not reach a log
        return body

    def _parse(self, body: Any, endpoint: Endpoint, started: float) -> AgentReply:
        try:
            return parse_reply(
                body,
                url=endpoint.url,
                agent_name=endpoint.name,
                protocol_version=endpoint.protocol_version,
                latency_ms=(time.perf_counter() - started) * 1000,
            )
        except ReplyShapeError as err:
            raise AgentProtocolError(endpoint.url, str(err), raw=body) from None

    async def _aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    # -- secrets --------------------------------------------------------------------------------------------------

    def _redact(self, err: AgentError) -> AgentError:
        """The bearer token never appears in an error (message or raw), even if the server echoed it."""
        if not self._token or (self._token not in err.cause and self._token not in repr(err.raw)):
            return err
        return type(err)(
            err.url,
            err.cause.replace(self._token, "***"),
            task_state=err.task_state,
            raw=self._redact_raw(err.raw),
            reply=err.reply,
        )

    def _redact_raw(self, value: Any) -> Any:
        token = self._token
        if not token:
            return value
        if isinstance(value, str):
            return value.replace(token, "***")
        if isinstance(value, dict):
            return {k: self._redact_raw(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._redact_raw(v) for v in value]
        return value


def _task_failure(reply: AgentReply) -> str:
    """``task 1f2e ended in state failed: Error code: 500 ...`` (the agent's own words when it gave any)."""
    status = reply.raw.get("result") if isinstance(reply.raw, dict) else None
    detail = reply.answer
    if isinstance(status, dict):
        task = status.get("task") if isinstance(status.get("task"), dict) else status
        message = task.get("status", {}).get("message") if isinstance(task.get("status"), dict) else None
        detail = message_text(message) or reply.answer
    return one_line(f"task {reply.task_id or '?'} ended in state {reply.task_state}: {detail}")
