"""The A2A JSON-RPC endpoint behind the same guards as ``/invocations``, answering every bad request in JSON-RPC.

a2a-sdk's dispatcher reads the whole body with ``json.loads``: no size limit, unbounded nesting (a deep body is a
``RecursionError``), ``NaN`` accepted, invalid UTF-8 reported as an internal error. So the body is read and checked
here first, with the server's limits (``--max-body-bytes``, ``--max-json-depth``), and a bad one gets a JSON-RPC error
(HTTP 200, as JSON-RPC over HTTP answers): ``-32700`` not JSON (syntax, invalid UTF-8, lone surrogates, ``NaN``),
``-32600`` too large or too deep. The checked body is then handed to the dispatcher, which answers wrong types
(``-32602``/``-32600``) and unknown methods (``-32601``) itself.

Also here: :class:`BoundedTaskStore`, so the tasks kept for ``tasks/get`` do not grow without end, and a log filter
that keeps the SDK from logging a traceback for every malformed request (a caller's mistake, not a server bug).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from a2a.server.tasks import InMemoryTaskStore, TaskStore
from pydantic_core import from_json

from ..config import Limits
from ..request import RequestRejected, check_json_text
from ..routes import OFFLOAD_BYTES, _maybe_off_loop, read_body

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
INTERNAL_ERROR = -32603
logger = logging.getLogger("kagent_mlflow.serve")


def rpc_error(code: int, message: str, request_id: Any = None) -> Any:
    """A JSON-RPC error response (HTTP 200: JSON-RPC over HTTP reports errors in the body)."""
    from starlette.responses import JSONResponse

    return JSONResponse({"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}})


def check_body(body: bytes, limits: Limits) -> tuple[int, str] | None:
    """``(code, message)`` of the JSON-RPC error for a body that must not reach the dispatcher, else None."""
    if not body.strip():
        return PARSE_ERROR, "request body is empty; send a JSON-RPC 2.0 request object"
    try:
        check_json_text(body, limits.max_json_depth)
    except RequestRejected as exc:
        code = PARSE_ERROR if "NaN" in exc.error.message else INVALID_REQUEST
        return code, exc.error.message
    try:
        from_json(body, allow_inf_nan=False)
    except ValueError as exc:
        return PARSE_ERROR, f"request body is not valid JSON: {' '.join(str(exc).split())[:200]}"
    return None


def _request_id(body: bytes) -> Any:
    """The request's id, from a body that passed :func:`check_body`."""
    try:
        data = from_json(body)
    except ValueError:
        return None
    value = data.get("id") if isinstance(data, dict) else None
    return value if isinstance(value, (str, int)) and not isinstance(value, bool) else None


def guarded(handle: Callable[[Any], Awaitable[Any]], limits: Limits) -> Callable[[Any], Awaitable[Any]]:
    """``handle`` (the SDK dispatcher's ``handle_requests``) behind the body checks; see the module docstring."""
    from mlflow.genai.agent_server import set_request_headers
    from starlette.requests import Request

    async def endpoint(request: Any) -> Any:
        try:
            body = await read_body(request, limits)
        except RequestRejected as exc:
            return rpc_error(INVALID_REQUEST, exc.error.message)
        problem = await _maybe_off_loop(len(body) > OFFLOAD_BYTES, check_body, body, limits)
        if problem is not None:
            return rpc_error(*problem)  # id null: the body was not read as JSON (it may nest without end)
        set_request_headers(dict(request.headers))  # as /invocations: X-Request-ID tags the trace, agents read them
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return await request.receive()  # (a disconnect, for streaming responses that wait for one)
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            return await handle(Request(request.scope, replay))
        except Exception as exc:  # noqa: BLE001 - the dispatcher answers its own errors; this is a last resort
            logger.error("A2A request failed: %s", exc, exc_info=exc)
            return rpc_error(INTERNAL_ERROR, "internal error; see the server log", _request_id(body))

    return endpoint


class BoundedTaskStore(TaskStore):
    """The SDK's in-memory task store, keeping only the ``max_tasks`` most recently saved tasks."""

    def __init__(self, max_tasks: int) -> None:
        self.max_tasks = max_tasks
        self._inner = InMemoryTaskStore()
        self._order: OrderedDict[str, Any] = OrderedDict()  # task id -> the call context it was saved with

    def __len__(self) -> int:
        return len(self._order)

    async def save(self, task: Any, context: Any) -> None:
        await self._inner.save(task, context)
        self._order[task.id] = context
        self._order.move_to_end(task.id)
        while len(self._order) > self.max_tasks:
            old_id, old_context = self._order.popitem(last=False)
            await self._inner.delete(old_id, old_context)

    async def get(self, task_id: str, context: Any) -> Any:
        return await self._inner.get(task_id, context)

    async def list(self, params: Any, context: Any) -> Any:
        return await self._inner.list(params, context)

    async def delete(self, task_id: str, context: Any) -> None:
        self._order.pop(task_id, None)
        await self._inner.delete(task_id, context)


class CallerMistakes(logging.Filter):
    """The SDK logs a malformed request with ``logger.exception``: keep its one line, drop the traceback."""

    QUIET = ("Failed to validate", "Failed to parse request params")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and str(record.msg).startswith(self.QUIET):
            exc = record.exc_info[1]
            record.msg = f"{record.msg}: {' '.join(str(exc).split())[:300]}"
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def quiet_sdk_logs() -> None:
    """Install :class:`CallerMistakes` on the SDK's loggers once, though create_app may run again."""
    for name in ("a2a.server.routes.jsonrpc_dispatcher", "a2a.compat.v0_3.jsonrpc_adapter"):
        sdk_logger = logging.getLogger(name)
        if not any(isinstance(f, CallerMistakes) for f in sdk_logger.filters):
            sdk_logger.addFilter(CallerMistakes())
