"""Find out how to talk to an agent: its card (name, protocol version) and the URL to send messages to.

kagent cards advertise an in-cluster URL (``http://kagent-controller.kagent:8083/...``) that a user's port-forward
cannot reach, so messages go to the URL the user gave; the card's own URL is used only when it is on the same
origin (then its path is the agent's real endpoint). Where no card is served, the agent is spoken to as kagent's
controller route does: A2A 0.3 JSON-RPC on the URL as given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from .._urls import safe_url

if TYPE_CHECKING:
    import httpx
    from a2a.types.a2a_pb2 import AgentCard

CARD_PATHS = (".well-known/agent-card.json", ".well-known/agent.json")  # current, then legacy


class CardUnavailable(Exception):
    """No usable card at any well-known path (the caller falls back to 0.3 JSON-RPC)."""


@dataclass(frozen=True)
class Endpoint:
    """Where and how to send messages to one agent."""

    url: str  # where JSON-RPC requests are POSTed
    name: str  # the agent's name: the card's, else the URL's last path segment
    protocol_version: str  # "1.0" or "0.3"
    card: AgentCard  # the SDK card the client is built from (interface URL already rewritten to ``url``)
    card_url: str | None  # where the card was found; None when the agent serves none


def agent_name_from_url(url: str) -> str:
    """kagent routes are ``.../api/a2a/<namespace>/<name>/``: the last path segment names the agent, else the
    host and port (never the URL's ``user:password@``)."""
    parts = urlsplit(url)
    segments = [s for s in parts.path.split("/") if s]
    return segments[-1] if segments else parts.netloc.rpartition("@")[2]


def short_version(version: str | None) -> str:
    """``0.3.0`` -> ``0.3``; anything at 1.0 or above (or unknown) -> ``1.0``; below 1.0 is the 0.3 compat layer."""
    from a2a.compat.v0_3.versions import is_legacy_version

    return "0.3" if is_legacy_version(version) else "1.0"


def same_origin(a: str, b: str) -> bool:
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.scheme, pa.hostname, pa.port) == (pb.scheme, pb.hostname, pb.port)


async def fetch_card(http: httpx.AsyncClient, url: str) -> tuple[AgentCard, str]:
    """The agent card from ``<url>/.well-known/agent-card.json``, else the legacy ``agent.json``.

    Network failures (refused, timeout) propagate as the SDK raised them, so the caller reports an unreachable
    agent instead of silently falling back; an HTTP error or an unreadable card moves on to the next path.
    """
    from a2a.client import A2ACardResolver, AgentCardResolutionError

    parts = urlsplit(url)  # a query (e.g. ``?api_key=``) goes with the card request, after the card's path
    resolver = A2ACardResolver(http, urlunsplit(parts._replace(query="", fragment="")))
    http_kwargs = {"params": parse_qsl(parts.query, keep_blank_values=True)} if parts.query else None
    reasons = []
    for path in CARD_PATHS:
        try:
            card = await resolver.get_agent_card(relative_card_path=path, http_kwargs=http_kwargs)
            return card, f"{resolver.base_url}/{path}"
        except AgentCardResolutionError as err:
            if _is_network_error(err):
                raise
            reasons.append(f"{path}: {err.status_code or 'unreadable'}")
    raise CardUnavailable("; ".join(reasons))


def _is_network_error(err: BaseException) -> bool:
    import httpx

    cause: BaseException | None = err
    while cause is not None:
        if isinstance(cause, httpx.RequestError) and not isinstance(cause, httpx.DecodingError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _keep_query(card_url: str, given: str) -> str:
    """The card's endpoint, carrying the query of the URL the user gave (e.g. an ``?api_key=`` a gateway wants)."""
    card, query = urlsplit(card_url), urlsplit(given).query
    return urlunsplit(card._replace(query=query)) if query and not card.query else card_url


def endpoint_from_card(card: AgentCard, url: str, card_url: str) -> Endpoint:
    """Pick the card's JSON-RPC interface (1.0 preferred) and point it at the URL we can reach."""
    from a2a.types.a2a_pb2 import AgentCard as Card
    from a2a.utils.constants import TransportProtocol

    interfaces = [i for i in card.supported_interfaces if i.protocol_binding in ("", TransportProtocol.JSONRPC)]
    if not interfaces:
        offered = ", ".join(sorted({i.protocol_binding for i in card.supported_interfaces})) or "none"
        raise CardUnavailable(f"the card offers no JSON-RPC interface (offers: {offered})")
    chosen = next((i for i in interfaces if short_version(i.protocol_version or "0.3") == "1.0"), interfaces[0])
    version = short_version(chosen.protocol_version or "0.3")
    target = _keep_query(chosen.url, url) if chosen.url and same_origin(chosen.url, url) else url
    rewritten = Card()
    rewritten.CopyFrom(card)
    del rewritten.supported_interfaces[:]
    iface = rewritten.supported_interfaces.add()
    iface.CopyFrom(chosen)
    iface.url = target
    iface.protocol_binding = TransportProtocol.JSONRPC
    iface.protocol_version = version
    return Endpoint(target, card.name or agent_name_from_url(url), version, rewritten, card_url)


def fallback_endpoint(url: str) -> Endpoint:
    """No card: A2A 0.3 JSON-RPC (``message/send``) on the URL as given, as kagent's controller route speaks."""
    from a2a.types.a2a_pb2 import AgentCard, AgentInterface
    from a2a.utils.constants import TransportProtocol

    card = AgentCard(
        name=agent_name_from_url(url),
        supported_interfaces=[
            AgentInterface(url=url, protocol_binding=TransportProtocol.JSONRPC, protocol_version="0.3")
        ],
    )
    return Endpoint(url, card.name, "0.3", card, None)


async def not_found_hint(http: httpx.AsyncClient, url: str) -> str:
    """What to add to an HTTP 404 from ``url``: where the same server serves an agent card, and the endpoint that card
    names, else that nothing answers at this path. Costs one or two GETs, on the failure path only."""
    import httpx

    parts = urlsplit(url)
    root = urlunsplit((parts.scheme, parts.netloc, "/", "", ""))
    for path in CARD_PATHS:
        try:
            response = await http.get(root + path, timeout=5)
            card = response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            continue
        if isinstance(card, dict):
            interfaces = card.get("supportedInterfaces") or card.get("additionalInterfaces") or []
            named = card.get("url") or next((i.get("url") for i in interfaces if isinstance(i, dict)), None)
            endpoint = f" naming the endpoint {safe_url(str(named))}" if named else ""
            return f"; an agent card is served at {safe_url(root + path)}{endpoint}: check the path of the A2A URL"
    return "; no agent card on that server either: check the host, port and path of the A2A URL"
