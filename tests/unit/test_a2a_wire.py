"""How a failed A2A request is reported: error type and one-line cause, from the exception and what arrived."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import httpx
import pytest
from a2a.client.errors import A2AClientError, A2AClientTimeoutError

from kagent_mlflow.a2a.wire import Exchange, body_problem, classify, jsonrpc_error
from kagent_mlflow.errors import AgentProtocolError, AgentTimeoutError, AgentUnreachableError

URL = "http://localhost:8083/api/a2a/kagent/rh-analyze-simple/"
KAGENT = Path(__file__).resolve().parents[1] / "fixtures" / "kagent"


def arrived(status: int, body: bytes, content_type: str = "application/json") -> Exchange:
    reasons = {200: "OK", 404: "Not Found", 500: "Internal Server Error", 502: "Bad Gateway"}
    return Exchange(status=status, reason=reasons.get(status, ""), content_type=content_type, body=body)


def chained(outer: BaseException, inner: BaseException) -> BaseException:
    outer.__cause__ = inner
    return outer


def test_kagent_missing_message_id_error_names_code_message_and_field() -> None:
    body = json.loads((KAGENT / "error-missing-message-id.json").read_text())
    assert jsonrpc_error(body) == "JSON-RPC error -32602: Invalid parameters (params.message.messageId: Field required)"


@pytest.mark.parametrize(
    "exchange, problem",
    [
        (arrived(500, b"boom\nstack", "text/plain"), "HTTP 500 Internal Server Error: 'boom stack'"),
        (arrived(404, b""), "HTTP 404 Not Found (empty body)"),
        (
            arrived(502, b'{"jsonrpc":"2.0","error":{"code":-32603,"message":"upstream down"}}'),
            "HTTP 502 Bad Gateway: JSON-RPC error -32603: upstream down",
        ),
        (
            arrived(200, b"<html>hi</html>", "text/html; charset=utf-8"),
            "reply is not JSON (HTTP 200, text/html): '<html>hi</html>'",
        ),
        (arrived(200, b'{"jsonrpc":"2.0","id":1}'), "reply is not a JSON-RPC response (no 'result' or 'error')"),
        (arrived(200, b'{"jsonrpc":"2.0","id":1,"result":{"kind":"task"}}'), None),
    ],
)
def test_body_problems(exchange: Exchange, problem: str | None) -> None:
    found = body_problem(exchange)
    if problem is None:
        assert found is None
    else:
        assert found is not None and found.startswith(problem)


def test_connection_refused_is_unreachable_and_says_what_to_check() -> None:
    refused = ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 1)")
    err = chained(A2AClientError("Network communication error"), chained(httpx.ConnectError("x"), refused))

    mapped = classify(err, URL, Exchange(), 5)

    assert isinstance(mapped, AgentUnreachableError)
    assert str(mapped) == (
        f"agent at {URL}: cannot connect (connection refused); is the agent running and the URL/port-forward right?"
    )
    assert mapped.raw is None


def test_unknown_host_is_unreachable() -> None:
    err = chained(httpx.ConnectError("x"), socket.gaierror(-2, "Name or service not known"))

    mapped = classify(err, URL, Exchange(), 5)

    assert isinstance(mapped, AgentUnreachableError)
    assert "cannot connect (host name not found: [Errno -2] Name or service not known)" in str(mapped)


@pytest.mark.parametrize(
    "err",
    [
        asyncio.TimeoutError(),
        A2AClientTimeoutError("Client Request timed out"),
        chained(A2AClientError("x"), httpx.ReadTimeout("t")),
    ],
)
def test_timeouts(err: BaseException) -> None:
    mapped = classify(err, URL, Exchange(), 2.5)

    assert isinstance(mapped, AgentTimeoutError)
    assert mapped.cause == "no reply within 2.5 s (timeout); is the agent stuck or slow?"


def test_http_error_keeps_the_body_as_raw() -> None:
    mapped = classify(A2AClientError("HTTP Error: 500"), URL, arrived(500, b"boom", "text/plain"), 5)

    assert isinstance(mapped, AgentProtocolError)
    assert "HTTP 500" in str(mapped) and mapped.raw == "boom"


def test_any_other_sdk_error_is_a_protocol_error_in_one_line() -> None:
    mapped = classify(ValueError("Response has neither\ntask nor message"), URL, Exchange(), 5)

    assert isinstance(mapped, AgentProtocolError)
    assert "\n" not in str(mapped)
    assert mapped.cause == "unusable reply (ValueError: Response has neither task nor message)"
