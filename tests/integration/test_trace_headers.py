"""The client's W3C trace context on the wire: every HTTP request of a question carries that question's headers.

Against a real HTTP server that records what it receives (``a2a_bad_server``, route ``v03only``: kagent-shaped 0.3
replies, ``[working]`` leaves the task working so the client polls it with ``tasks/get``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kagent_mlflow.a2a.client import AgentClient
from kagent_mlflow.trace_context import trace_headers
from tests.support.a2a_agents import BadServer


def posts_since(server: BadServer, start: int) -> list[tuple[str, dict[str, str], Any]]:
    return server.requests[start:]


def lower(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def test_every_request_of_a_question_carries_its_traceparent(a2a_bad_server: BadServer) -> None:
    start = len(a2a_bad_server.requests)
    headers = trace_headers("0123456789abcdef0123456789abcdef")
    with AgentClient(a2a_bad_server.url("v03only"), timeout=30) as client:
        reply = client.ask("[working] which pods?", headers=headers)
        plain = client.ask("no trace context")
    assert reply.task_state == "completed" and plain.answer
    sent = posts_since(a2a_bad_server, start)
    methods = [body["method"] for _, _, body in sent]
    assert methods[0] == "message/send" and "tasks/get" in methods  # the question, then its polls
    traced, untraced = sent[:-1], sent[-1]
    for _, received, _ in traced:
        assert lower(received)["traceparent"] == headers["traceparent"]
        assert lower(received)["tracestate"] == headers["tracestate"]
    assert "traceparent" not in lower(untraced[1])  # the next question did not inherit them


def test_concurrent_questions_each_send_their_own(a2a_bad_server: BadServer) -> None:
    start = len(a2a_bad_server.requests)
    ids = [f"{i:032x}" for i in range(1, 9)]

    async def ask_all(client: AgentClient) -> None:
        await asyncio.gather(*(client.aask(f"question {i}", headers=trace_headers(i)) for i in ids))

    with AgentClient(a2a_bad_server.url("v03only"), timeout=30) as client:
        asyncio.run(ask_all(client))
    seen = {}
    for _, received, body in posts_since(a2a_bad_server, start):
        text = body["params"]["message"]["parts"][0]["text"]
        seen[text.removeprefix("question ")] = lower(received)["traceparent"]
    assert seen == {i: trace_headers(i)["traceparent"] for i in ids}


@pytest.mark.parametrize("bad", [{"traceparent": "00-x\r\nX-Injected: 1"}, {"x": 5}])
def test_a_header_that_could_split_the_request_is_refused(a2a_bad_server: BadServer, bad: Any) -> None:
    start = len(a2a_bad_server.requests)
    with AgentClient(a2a_bad_server.url("v03only"), timeout=30) as client, pytest.raises(ValueError, match="header"):
        client.ask("hello", headers=bad)
    assert posts_since(a2a_bad_server, start) == []
