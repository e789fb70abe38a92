"""Which URL and protocol the client picks from a card (kagent's 0.3 card, a 1.0 card, none)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from a2a.client.card_resolver import parse_agent_card

from kagent_mlflow.a2a.card import (
    CardUnavailable,
    agent_name_from_url,
    endpoint_from_card,
    fallback_endpoint,
    same_origin,
    short_version,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
USER_URL = "http://localhost:8083/api/a2a/kagent/rh-analyze-simple/"


def card_from(fixture: str, **changes: object):  # noqa: ANN201 - an a2a-sdk AgentCard
    data = json.loads((FIXTURES / fixture).read_text())
    data.update(changes)
    return parse_agent_card(data)


def test_kagent_card_in_cluster_url_is_replaced_by_the_users_url() -> None:
    card = card_from(
        "kagent/agent-card.json", url="http://kagent-controller.kagent:8083/api/a2a/kagent/rh-analyze-simple/"
    )

    endpoint = endpoint_from_card(card, USER_URL, USER_URL + ".well-known/agent-card.json")

    assert endpoint.url == USER_URL
    assert endpoint.name == "rh-analyze-simple"
    assert endpoint.protocol_version == "0.3"
    [iface] = endpoint.card.supported_interfaces
    assert (iface.url, iface.protocol_binding, iface.protocol_version) == (USER_URL, "JSONRPC", "0.3")


def test_a_card_on_the_same_origin_keeps_its_path() -> None:
    card = card_from("a2a/v10-agent-card.json")
    card.supported_interfaces[0].url = "http://127.0.0.1:9999/a2a/jsonrpc"

    endpoint = endpoint_from_card(card, "http://127.0.0.1:9999/", "http://127.0.0.1:9999/.well-known/agent-card.json")

    assert endpoint.url == "http://127.0.0.1:9999/a2a/jsonrpc"
    assert endpoint.protocol_version == "1.0"
    assert endpoint.name == "test-agent"


def test_a_1_0_interface_is_preferred_over_0_3() -> None:
    interfaces = [
        {"url": "http://127.0.0.1:1/v03/", "protocolBinding": "JSONRPC", "protocolVersion": "0.3"},
        {"url": "http://127.0.0.1:1/", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"},
    ]
    card = card_from("a2a/v10-agent-card.json", supportedInterfaces=interfaces)

    endpoint = endpoint_from_card(card, "http://127.0.0.1:1/", "x")

    assert (endpoint.url, endpoint.protocol_version) == ("http://127.0.0.1:1/", "1.0")


def test_a_card_without_json_rpc_is_unusable() -> None:
    card = card_from("a2a/v10-agent-card.json")
    card.supported_interfaces[0].protocol_binding = "GRPC"

    with pytest.raises(CardUnavailable, match="no JSON-RPC interface .offers: GRPC."):
        endpoint_from_card(card, USER_URL, "x")


def test_card_without_a_name_is_named_after_the_url() -> None:
    card = card_from("kagent/agent-card.json", name="")
    assert endpoint_from_card(card, USER_URL, "x").name == "rh-analyze-simple"


def test_no_card_means_0_3_json_rpc_on_the_url_as_given() -> None:
    endpoint = fallback_endpoint(USER_URL)

    assert (endpoint.url, endpoint.name, endpoint.protocol_version, endpoint.card_url) == (
        USER_URL,
        "rh-analyze-simple",
        "0.3",
        None,
    )
    assert endpoint.card.supported_interfaces[0].url == USER_URL


@pytest.mark.parametrize(
    "url, name",
    [
        (USER_URL, "rh-analyze-simple"),
        ("http://localhost:8083/api/a2a/kagent/k8s-agent", "k8s-agent"),
        ("http://127.0.0.1:8080/", "127.0.0.1:8080"),
    ],
)
def test_agent_name_from_url(url: str, name: str) -> None:
    assert agent_name_from_url(url) == name


@pytest.mark.parametrize("version, short", [("0.3.0", "0.3"), ("0.3", "0.3"), ("1.0", "1.0"), ("1.0.0", "1.0")])
def test_short_version(version: str, short: str) -> None:
    assert short_version(version) == short


def test_same_origin() -> None:
    assert same_origin("http://127.0.0.1:80/a", "http://127.0.0.1:80/b/")
    assert not same_origin("http://localhost:8083/a", "http://127.0.0.1:8083/a")
    assert not same_origin("http://kagent-controller.kagent:8083/x/", "http://localhost:8083/x/")
