"""The A2A face of the Agent Server: the served ``ResponsesAgent`` as an A2A agent on the same port.

Mounted at ``--a2a-path`` (default ``/a2a/``): ``POST <path>`` speaks A2A JSON-RPC, protocol 1.0 (``SendMessage``,
``SendStreamingMessage``, ``GetTask``, ... with the ``A2A-Version: 1.0`` header) and 0.3 (``message/send``,
``message/stream``, ``tasks/get``, ...) as the caller asks, through a2a-sdk 1.x's server classes and its 0.3
compatibility layer; ``GET <path>.well-known/agent-card.json`` and the legacy ``<path>.well-known/agent.json``
serve the card (:mod:`.card`). Each message is one turn of the agent (:mod:`.executor`) with the conversation's
earlier turns (:mod:`.memory`), answered kagent-style (:mod:`.report`), behind the server's request limits
(:mod:`.endpoint`).
"""

from __future__ import annotations

import os

# a2a-sdk wraps every server method in an OpenTelemetry span (~2.3 of the ~9 ms of CPU an A2A request costs here,
# benchmarks/a2a_face.py) and, with a global tracer provider configured, its spans would become parents of the
# request's MLflow root span. The server's trace is MLflow's: the SDK's spans are off unless asked for. Read by
# a2a-sdk when it is first imported, hence before the imports below.
os.environ.setdefault("OTEL_INSTRUMENTATION_A2A_SDK_ENABLED", "false")

from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass
from typing import Any

from ..config import ServeConfig
from .card import CARD_PATHS, CardServer, build_card
from .endpoint import BoundedTaskStore, guarded, quiet_sdk_logs
from .executor import ResponsesAgentExecutor
from .memory import ConversationMemory

__all__ = ["A2AFace", "add_a2a_routes"]


@dataclass
class A2AFace:
    """What the app keeps of its A2A face (``app.state.a2a``): for shutdown and for tests' introspection."""

    path: str
    handler: Any
    memory: ConversationMemory
    tasks: BoundedTaskStore


def add_a2a_routes(app: Any, agent: Any, invoke: Callable, stream: Callable, config: ServeConfig) -> A2AFace:
    """Serve ``agent`` (through the route handlers ``invoke``/``stream``) over A2A at ``config.a2a_path``."""
    from a2a.server.request_handlers import DefaultRequestHandler
    from a2a.server.routes.jsonrpc_dispatcher import JsonRpcDispatcher

    path = config.a2a_path
    memory = ConversationMemory(config.a2a_max_contexts, config.a2a_max_turns)
    tasks = BoundedTaskStore(config.a2a_max_contexts)
    handler = DefaultRequestHandler(
        agent_executor=ResponsesAgentExecutor(invoke, stream, memory),
        task_store=tasks,
        agent_card=build_card(
            agent, config.a2a_url or f"http://{config.host}:{config.port}{path}", config.a2a_protocols
        ),
    )
    dispatcher = JsonRpcDispatcher(
        handler, enable_v0_3_compat=True, shutdown_grace_period=max(config.shutdown_grace / 2, 1.0)
    )
    endpoint = guarded(dispatcher.handle_requests, config.limits)
    app.add_route(path, endpoint, methods=["POST"], include_in_schema=False)
    if path != "/":
        app.add_route(path.rstrip("/"), endpoint, methods=["POST"], include_in_schema=False)
    cards = CardServer(agent, path, config.a2a_protocols, config.a2a_url)
    for card_path in CARD_PATHS:
        app.add_route(path + card_path, cards.endpoint, methods=["GET"], include_in_schema=False)
    quiet_sdk_logs()
    face = A2AFace(path, handler, memory, tasks)
    app.state.a2a = face
    return face
