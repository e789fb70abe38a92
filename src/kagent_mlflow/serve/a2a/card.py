"""The agent card of the A2A face: who the agent is and where to send messages, for 1.0 and 0.3 callers alike.

One card is served at both ``<path>.well-known/agent-card.json`` and the legacy ``<path>.well-known/agent.json``
(kagent's BYO agents and a2a-sdk 0.3 clients read the latter). It lists one JSON-RPC interface per offered protocol
version (``--a2a-protocols``, preferred first); the SDK's ``agent_card_to_dict`` adds the 0.3 fields (``url``,
``protocolVersion``, ``preferredTransport``) from the first 0.3 interface, so both generations read the same body.

The card's URL is ``--a2a-url`` when given (the address clients reach through an ingress or kagent), else the URL
the card was fetched through (scheme, host and port of the request, as uvicorn's proxy-header handling sees them).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from ... import __version__

CARD_PATHS = (".well-known/agent-card.json", ".well-known/agent.json")  # current, legacy
_MAX_CACHED = 16  # cards kept per public URL; the Host header is the caller's to choose, so the cache is bounded


def agent_name(agent: Any) -> str:
    """The card's name: the agent's own ``name`` when it has one, else its class name (as ``/invocations`` says)."""
    return str(getattr(agent, "name", None) or type(agent).__name__)


def build_card(agent: Any, url: str, protocols: tuple[str, ...]) -> Any:
    """The ``AgentCard`` (a2a-sdk 1.x proto) of ``agent`` served at ``url``."""
    from a2a.types.a2a_pb2 import AgentCapabilities, AgentCard, AgentInterface, AgentSkill
    from a2a.utils.constants import TransportProtocol

    name = agent_name(agent)
    description = str(getattr(agent, "description", None) or f"The {name} agent (MLflow ResponsesAgent).")
    tools = getattr(agent, "tools", None)
    tags = sorted(tools)[:20] if isinstance(tools, dict) else []
    return AgentCard(
        name=name,
        description=description,
        version=__version__,
        capabilities=AgentCapabilities(streaming=True),
        default_input_modes=["text"],
        default_output_modes=["text"],
        skills=[AgentSkill(id="answer", name="Answer", description=description, tags=["chat", *tags])],
        supported_interfaces=[
            AgentInterface(url=url, protocol_binding=TransportProtocol.JSONRPC, protocol_version=version)
            for version in protocols
        ],
    )


class CardServer:
    """Serves the card as JSON; the dict is built once per public URL."""

    def __init__(self, agent: Any, path: str, protocols: tuple[str, ...], public_url: str | None) -> None:
        self.agent = agent
        self.path = path
        self.protocols = protocols
        self.public_url = public_url
        self._cache: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def url_for(self, request: Any) -> str:
        if self.public_url:
            return self.public_url
        return str(request.base_url).rstrip("/") + self.path

    def card_dict(self, url: str) -> dict[str, Any]:
        from a2a.server.request_handlers.response_helpers import agent_card_to_dict

        card = self._cache.get(url)
        if card is None:
            card = self._cache[url] = agent_card_to_dict(build_card(self.agent, url, self.protocols))
            while len(self._cache) > _MAX_CACHED:
                self._cache.popitem(last=False)
        return card

    async def endpoint(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        return JSONResponse(self.card_dict(self.url_for(request)))
