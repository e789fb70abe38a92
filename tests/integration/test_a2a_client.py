"""AgentClient against real servers on 127.0.0.1: the a2a-sdk 1.x agent (1.0, and its 0.3 face) and misbehaving ones.

What a user would check: the answer, the agent's name, the protocol spoken, ids, state, usage and tool calls of a
reply; and for every failure, the error type and a one-line message naming the URL and the cause.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import CancelledError

import pytest

from kagent_mlflow.a2a.client import AgentClient
from kagent_mlflow.errors import (
    AgentError,
    AgentProtocolError,
    AgentTaskError,
    AgentTimeoutError,
    AgentUnreachableError,
    ConfigError,
)
from tests.support.a2a_agents import AGENT_NAME, INPUT_QUESTION, A2AAgent, BadServer, answer_for, usage_for

pytestmark = pytest.mark.integration

TOKEN = "s3cr3t-bearer-token-for-tests"


@pytest.fixture(scope="module")
def client(a2a_agent: A2AAgent) -> Iterator[AgentClient]:
    with AgentClient(a2a_agent.url, timeout=30) as agent:
        yield agent


def assert_one_line_naming(err: AgentError, url: str, *needles: str) -> None:
    message = str(err)
    assert "\n" not in message
    assert message.startswith(f"agent at {url}: ")
    for needle in needles:
        assert needle in message, (needle, message)
    assert err.__cause__ is None and err.__suppress_context__  # no a2a-sdk / httpx traceback attached


# -- the a2a-sdk 1.x agent, protocol 1.0 ------------------------------------------------------------------------------


def test_completed_task_over_protocol_1_0(client: AgentClient, a2a_agent: A2AAgent) -> None:
    question = "What is Kubernetes?"

    reply = client.ask(question)

    assert reply.answer == answer_for(question)
    assert (reply.agent_name, reply.protocol_version, reply.task_state) == (AGENT_NAME, "1.0", "completed")
    task = reply.raw["result"]["task"]
    assert (reply.task_id, reply.context_id) == (task["id"], task["contextId"])
    assert reply.usage == usage_for(question, reply.answer)
    assert reply.tool_calls == []
    assert reply.url == a2a_agent.url and reply.latency_ms > 0
    sent = task["history"][0]  # the agent echoes the message it received
    assert sent["role"] == "ROLE_USER" and re.fullmatch(r"[0-9a-f]{32}", sent["messageId"])
    assert client.endpoint is not None and client.endpoint.card_url == f"{a2a_agent.url}.well-known/agent-card.json"


def test_connect_resolves_the_card_ahead_of_the_first_question(a2a_agent: A2AAgent, unreachable_url: str) -> None:
    with AgentClient(a2a_agent.v03_url, timeout=30) as agent:
        endpoint = agent.connect()

        assert (endpoint.name, endpoint.protocol_version, endpoint.url) == (AGENT_NAME, "0.3", a2a_agent.v03_url)
        assert agent.endpoint is endpoint
    with AgentClient(unreachable_url, timeout=5) as agent:
        with pytest.raises(AgentUnreachableError):
            agent.connect()


def test_direct_message_result(client: AgentClient) -> None:
    reply = client.ask("[message] hello")

    assert reply.answer == answer_for("[message] hello")
    assert reply.task_id is None and reply.task_state is None
    assert reply.context_id == reply.raw["result"]["message"]["contextId"]
    assert reply.usage["totalTokenCount"] == usage_for("[message] hello", reply.answer)["totalTokenCount"]


def test_tool_calls_and_per_call_usage(client: AgentClient) -> None:
    reply = client.ask("[tool] Which pods run?")

    assert [(c.name, c.arguments, c.result, c.call_id) for c in reply.tool_calls] == [
        ("get_pods", {"namespace": "default"}, {"result": "web-1, web-2"}, "call_test_0")
    ]
    final = usage_for("[tool] Which pods run?", reply.answer)
    assert reply.usage["totalTokenCount"] == 6 + final["totalTokenCount"]  # the tool-choosing call + the final call


def test_follow_up_in_the_same_context(client: AgentClient) -> None:
    first = client.ask("First question?")
    second = client.ask("Second question?", context_id=first.context_id)

    assert second.context_id == first.context_id
    assert second.task_id != first.task_id
    assert second.answer == answer_for("Second question?")


def test_empty_parts_are_explained(client: AgentClient) -> None:
    reply = client.ask("[empty] say nothing")

    assert reply.task_state == "completed"
    assert reply.answer.startswith("(no answer text: task state completed; 1 artifact(s) with no parts")


@pytest.mark.parametrize(
    "question, state, detail",
    [
        ("[fail] please", "failed", "Scripted failure for: [fail] please"),
        ("[reject] please", "rejected", "I do not answer questions like that."),
        ("[cancel] please", "canceled", "Canceled by the agent."),
        ("[input] restart it", "input-required", INPUT_QUESTION),
    ],
)
def test_unfinished_tasks_raise_with_the_partial_reply(
    client: AgentClient, a2a_agent: A2AAgent, question: str, state: str, detail: str
) -> None:
    with pytest.raises(AgentTaskError) as caught:
        client.ask(question)

    err = caught.value
    assert_one_line_naming(err, a2a_agent.url, f"ended in state {state}: {detail}")
    assert err.task_state == state
    reply = err.reply
    assert reply is not None and reply.task_state == state and reply.answer == detail
    assert reply.task_id and reply.task_id in str(err)
    assert err.raw is reply.raw and reply.raw["result"]["task"]["id"] == reply.task_id
    if state in ("failed", "input-required"):  # these carry usage on their status message
        assert reply.usage == usage_for(question, detail)


def test_in_cluster_card_url_is_not_used(a2a_agent: A2AAgent) -> None:
    with AgentClient(a2a_agent.incluster_url, timeout=30) as agent:
        reply = agent.ask("Through a port-forward?")

        assert reply.answer == answer_for("Through a port-forward?")
        assert agent.endpoint is not None and agent.endpoint.url == a2a_agent.incluster_url
        assert reply.protocol_version == "1.0"


def test_a_query_in_the_url_goes_with_the_card_request_and_the_messages(a2a_agent: A2AAgent) -> None:
    """``?api_key=...`` (a gateway's credential): the card is still found after its path, and the card's endpoint
    keeps the query. Before, the card was looked for under ``/?api_key=.../.well-known/...`` and the agent fell back
    to A2A 0.3 under the URL's host name."""
    url = f"{a2a_agent.url}?api_key=QUERYSECRET456"
    with AgentClient(url, timeout=30) as agent:
        reply = agent.ask("With a key?")

        assert agent.endpoint is not None and agent.endpoint.url == url
        assert agent.endpoint.card_url == f"{a2a_agent.url}.well-known/agent-card.json"
    assert (reply.answer, reply.protocol_version, reply.agent_name) == (answer_for("With a key?"), "1.0", "test-agent")


def test_legacy_card_and_protocol_0_3(a2a_agent: A2AAgent) -> None:
    with AgentClient(a2a_agent.v03_url, timeout=30) as agent:
        reply = agent.ask("Old protocol?")
        tools = agent.ask("[tool] pods?")

        assert agent.endpoint is not None and agent.endpoint.card_url == f"{a2a_agent.v03_url}.well-known/agent.json"
    assert (reply.answer, reply.protocol_version, reply.task_state) == (answer_for("Old protocol?"), "0.3", "completed")
    result = reply.raw["result"]
    assert result["kind"] == "task" and reply.task_id == result["id"]
    assert re.fullmatch(r"[0-9a-f]{32}", result["history"][0]["messageId"])
    assert reply.usage == usage_for("Old protocol?", reply.answer)
    assert [c.name for c in tools.tool_calls] == ["get_pods"]


def test_many_threads_share_one_client(client: AgentClient) -> None:
    answers: dict[str, str] = {}
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(8):
                question = f"thread {n} question {i}"
                answers[question] = client.ask(question).answer
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []
    assert len(answers) == 48 and all(answer == answer_for(q) for q, answer in answers.items())


def test_aask_from_another_event_loop(client: AgentClient) -> None:
    async def ask_all() -> list[str]:
        replies = await asyncio.gather(*(client.aask(f"async {i}") for i in range(5)))
        return [r.answer for r in replies]

    assert asyncio.run(ask_all()) == [answer_for(f"async {i}") for i in range(5)]


def test_bearer_token_is_sent_and_never_echoed_back(a2a_agent: A2AAgent) -> None:
    with AgentClient(a2a_agent.url, timeout=30, token=TOKEN) as agent:
        reply = agent.ask("[auth] who am I?")

    assert reply.answer == "Authorization: Bearer ***"  # the agent saw the token; the reply does not keep it
    assert TOKEN not in json.dumps(reply.raw) and TOKEN not in reply.model_dump_json()


def test_slow_agent_times_out_per_call(client: AgentClient, a2a_agent: A2AAgent) -> None:
    with pytest.raises(AgentTimeoutError) as caught:
        client.ask("[slow:3000] take your time", timeout=0.5)

    assert_one_line_naming(caught.value, a2a_agent.url, "no reply within 0.5 s")
    assert client.ask("still there?").answer == answer_for("still there?")  # the client is still usable


# -- misbehaving servers ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "route, error, cause",
    [
        ("http500", AgentProtocolError, "HTTP 500 Internal Server Error: 'internal failure of the test server'"),
        (
            "http404",
            AgentProtocolError,
            "HTTP 404 Not Found: 'no agent here'; no agent card on that server either: "
            "check the host, port and path of the A2A URL",
        ),
        ("notjson", AgentProtocolError, "reply is not JSON (HTTP 200, text/html): '<html><body>not an agent"),
        ("rpcerror", AgentProtocolError, "JSON-RPC error -32602: Invalid parameters (params.message.messageId"),
        ("badresult", AgentProtocolError, "JSON-RPC result is a str, not a Task or Message object"),
    ],
)
def test_broken_replies(a2a_bad_server: BadServer, route: str, error: type[AgentError], cause: str) -> None:
    url = a2a_bad_server.url(route)
    with AgentClient(url, timeout=10, token=TOKEN) as agent:
        with pytest.raises(error) as caught:
            agent.ask("hello")

    err = caught.value
    assert type(err) is error
    assert_one_line_naming(err, url, cause)
    assert err.raw is not None  # the body that arrived is kept for the failed run
    assert TOKEN not in str(err) and TOKEN not in repr(err.raw)


def test_a_404_names_the_card_the_server_serves_at_its_root(a2a_agent: A2AAgent) -> None:
    """A URL with a wrong path: the 404 says where the agent card is and which endpoint it names."""
    url = f"{a2a_agent.url}api/a2a/kagent/wrong-agent/"
    with AgentClient(url, timeout=10) as agent:
        with pytest.raises(AgentProtocolError) as caught:
            agent.ask("hello")

    assert_one_line_naming(
        caught.value,
        url,
        "HTTP 404 Not Found: 'Not Found'",
        f"; an agent card is served at {a2a_agent.url}.well-known/agent-card.json naming the endpoint {a2a_agent.url}"
        ": check the path of the A2A URL",
    )


def test_hanging_agent_times_out(a2a_bad_server: BadServer) -> None:
    url = a2a_bad_server.url("hang")
    with AgentClient(url, timeout=1) as agent:
        with pytest.raises(AgentTimeoutError) as caught:
            agent.ask("hello")

    assert_one_line_naming(caught.value, url, "no reply within 1 s (timeout)")
    assert caught.value.raw is None


def test_unreachable_agent(unreachable_url: str) -> None:
    with AgentClient(unreachable_url, timeout=5) as agent:
        with pytest.raises(AgentUnreachableError) as caught:
            agent.ask("anyone?")

    assert_one_line_naming(caught.value, unreachable_url, "cannot connect", "refused")


def test_no_card_falls_back_to_0_3_json_rpc(a2a_bad_server: BadServer) -> None:
    url = a2a_bad_server.url("v03only")
    with AgentClient(url, timeout=10) as agent:
        reply = agent.ask("What is OpenShift?")

        assert agent.endpoint is not None and agent.endpoint.card_url is None

    assert (reply.answer, reply.protocol_version, reply.agent_name) == (
        answer_for("What is OpenShift?"),
        "0.3",
        "v03only",
    )
    path, _headers, body = [r for r in a2a_bad_server.requests if r[0] == "/v03only/"][-1]
    assert body["method"] == "message/send" and body["params"]["message"]["messageId"]
    assert body["params"]["message"]["parts"] == [{"kind": "text", "text": "What is OpenShift?"}]


def test_a_task_left_working_is_polled_until_done(a2a_bad_server: BadServer) -> None:
    url = a2a_bad_server.url("v03only")
    with AgentClient(url, timeout=10) as agent:
        reply = agent.ask("slow one [working]")

    assert (reply.answer, reply.task_state) == (answer_for("slow one [working]"), "completed")
    methods = [r[2]["method"] for r in a2a_bad_server.requests if r[0] == "/v03only/"][-2:]
    assert methods == ["message/send", "tasks/get"]
    assert reply.raw["id"] and reply.raw["result"]["id"] == reply.task_id  # raw is the final tasks/get body


def test_a_task_that_never_finishes_times_out_naming_it(a2a_bad_server: BadServer) -> None:
    url = a2a_bad_server.url("v03only")
    with AgentClient(url, timeout=1) as agent:
        with pytest.raises(AgentTimeoutError) as caught:
            agent.ask("never done [stuck]")

    err = caught.value
    assert err.reply is not None and err.reply.task_id
    assert_one_line_naming(err, url, "no reply within 1 s", f"(task {err.reply.task_id} still working)")
    assert err.task_state == "working" and err.raw["result"]["status"]["state"] == "working"


def test_legacy_card_only_with_in_cluster_url(a2a_bad_server: BadServer) -> None:
    url = a2a_bad_server.url("legacy")
    with AgentClient(url, timeout=10) as agent:
        reply = agent.ask("legacy?")

        assert agent.endpoint is not None and agent.endpoint.card_url == f"{url}.well-known/agent.json"
    assert (reply.agent_name, reply.protocol_version, reply.answer) == ("legacy-agent", "0.3", answer_for("legacy?"))
    assert [r for r in a2a_bad_server.requests if r[0] == "/legacy/"]  # sent to the user's URL, not the card's


def test_token_reaches_a_0_3_agent_and_is_redacted_from_its_echo(a2a_bad_server: BadServer) -> None:
    with AgentClient(a2a_bad_server.url("echo"), timeout=10, token=TOKEN) as agent:
        reply = agent.ask("echo")

    _path, headers, _body = [r for r in a2a_bad_server.requests if r[0] == "/echo/"][-1]
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert reply.answer == answer_for("Authorization: Bearer ***")
    assert TOKEN not in json.dumps(reply.raw)


def test_url_credentials_are_used_for_the_request_and_kept_out_of_errors(a2a_bad_server: BadServer) -> None:
    """``user:password@`` and ``?api_key=`` reach the agent as given; what is shown of the URL has neither."""
    scheme, rest = a2a_bad_server.url("echo").split("://", 1)
    with AgentClient(f"{scheme}://alice:URLPASS789@{rest}?api_key=QUERYSECRET456", timeout=10) as agent:
        agent.ask("echo")
        assert "URLPASS789" not in repr(agent)
    path, headers, _body = [r for r in a2a_bad_server.requests if r[0].startswith("/echo/")][-1]
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"alice:URLPASS789").decode()
    assert path == "/echo/?api_key=QUERYSECRET456"


# -- misuse is rejected before any network call -----------------------------------------------------------------------


@pytest.mark.parametrize("url", ["localhost:8083/api", "ftp://host/x", ""])
def test_malformed_url_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="is not an http"):
        AgentClient(url)


def test_empty_question_is_a_config_error(unreachable_url: str) -> None:
    with AgentClient(unreachable_url) as agent:
        with pytest.raises(ConfigError, match="question is empty"):
            agent.ask("   ")


def test_closed_client_refuses_to_ask(unreachable_url: str) -> None:
    agent = AgentClient(unreachable_url)
    agent.close()
    agent.close()  # idempotent

    with pytest.raises(RuntimeError, match="closed"):
        agent.ask("hello?")


def test_close_while_a_call_is_in_flight_does_not_hang_the_caller(a2a_bad_server: BadServer) -> None:
    agent = AgentClient(a2a_bad_server.url("hang"), timeout=60)
    outcome: list[BaseException] = []

    def ask() -> None:
        try:
            agent.ask("hello")
        except BaseException as err:  # noqa: BLE001 - recorded for the assertion
            outcome.append(err)

    caller = threading.Thread(target=ask)
    caller.start()
    deadline = time.monotonic() + 10
    while not any(r[0] == "/hang/" for r in a2a_bad_server.requests) and time.monotonic() < deadline:
        time.sleep(0.01)
    agent.close()
    caller.join(10)

    assert not caller.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], CancelledError)
