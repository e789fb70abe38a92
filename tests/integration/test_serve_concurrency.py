"""Concurrent requests are not serialised: while one request waits on a model that hangs, another is answered.

No timing asserts: the checks are about order (which request finished while which was still open). The blocking
variant (the agent's sync predict registered directly) shows the failure this guards against.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import Future, ThreadPoolExecutor

import httpx
import pytest

from tests.support.agent_server import SYNC_ONLY_AGENT, TEST_AGENT

pytestmark = pytest.mark.integration

HANG_S = 8


def ask(url: str, text: str) -> httpx.Response:
    return httpx.post(f"{url}/invocations", json={"input": [{"role": "user", "content": text}]}, timeout=60)


def start_hanging_request(pool: ThreadPoolExecutor, url: str, scripted_model) -> Future:
    """Send a request whose model call hangs for HANG_S seconds; return once the model has received it."""
    slow = pool.submit(ask, url, "a slow question")
    deadline = time.monotonic() + 30
    while not any("slow" in str(r["messages"][-1]) for r in scripted_model.chat_requests()):
        assert time.monotonic() < deadline, "the slow request never reached the model"
        assert not slow.done(), slow.result().text
        time.sleep(0.05)
    return slow


@pytest.fixture
def hanging_model(scripted_model):
    # the quick answer takes 300 ms, so in the blocking case the slow request's client has long seen its reply
    scripted_model.set_script(
        [{"match": "slow", "hang": True, "hang_s": HANG_S}, {"match": "quick", "delay_ms": 300, "reply": "quick"}]
    )
    return scripted_model


@pytest.mark.parametrize("agent", [TEST_AGENT, SYNC_ONLY_AGENT], ids=["async-agent", "sync-only-agent"])
def test_async_server_answers_while_another_request_waits_on_the_model(agent_server_factory, hanging_model, agent):
    env = {"LLAMA_STACK_TIMEOUT": "60", "KAGENT_MLFLOW_AGENT": agent}
    server = agent_server_factory(hanging_model.root, extra_env=env)
    with ThreadPoolExecutor(2) as pool:
        slow = start_hanging_request(pool, server.url, hanging_model)
        fast = ask(server.url, "a quick question")
        assert fast.status_code == 200, fast.text
        assert not slow.done()  # answered while the first request was still waiting on its model
        assert slow.result().status_code == 502  # the hanging model finally dropped the connection


def test_blocking_server_makes_the_second_request_wait_for_the_first(agent_server_factory, hanging_model):
    server = agent_server_factory(hanging_model.root, extra_env={"LLAMA_STACK_TIMEOUT": "60"}, args=["--blocking"])
    with ThreadPoolExecutor(2) as pool:
        slow = start_hanging_request(pool, server.url, hanging_model)
        fast = ask(server.url, "a quick question")
        assert fast.status_code == 200
        assert slow.done()  # the quick one could only be answered after the slow one ended


def test_a_sync_only_agent_streams_and_is_traced_through_worker_threads(
    agent_server_factory, scripted_model, mlflow_server
):
    from mlflow import MlflowClient

    scripted_model.set_script([{"match": "stream", "reply": "Streamed from a worker thread."}])
    server = agent_server_factory(
        scripted_model.root, tracking_uri=mlflow_server.url, extra_env={"KAGENT_MLFLOW_AGENT": SYNC_ONLY_AGENT}
    )
    payload = {"input": [{"role": "user", "content": "stream please"}], "stream": True}
    resp = httpx.post(
        f"{server.url}/invocations", json=payload, headers={"x-mlflow-return-trace-id": "true"}, timeout=60
    )
    assert resp.status_code == 200
    events = [json.loads(line[6:]) for line in resp.text.splitlines() if line.startswith("data: {")]
    deltas = [e["delta"] for e in events if e.get("type") == "response.output_text.delta"]
    assert len(deltas) > 1 and "".join(deltas) == "Streamed from a worker thread."
    trace_id = next(e["trace_id"] for e in events if "trace_id" in e)

    client = MlflowClient(tracking_uri=mlflow_server.url)
    deadline = time.monotonic() + 60
    while True:
        try:
            trace = client.get_trace(trace_id)
            if trace and trace.data.spans:
                break
        except Exception:  # noqa: BLE001 - not exported yet
            pass
        assert time.monotonic() < deadline, "trace did not reach MLflow"
        time.sleep(0.5)
    # the agent ran on a worker thread, yet its spans sit in the request's one trace, under the server's root span
    spans = trace.data.spans
    root = next(s for s in spans if s.parent_id is None)
    assert {s.span_type for s in spans} >= {"LLM"}
    assert all(s.parent_id is not None for s in spans if s is not root)
