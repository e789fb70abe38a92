"""MLflow down never costs an answer: not when it dies under a running server, not when it is down at start-up
(the server serves without traces and turns tracing on once MLflow answers)."""

from __future__ import annotations

import time

import httpx
import pytest
from mlflow import MlflowClient

pytestmark = pytest.mark.integration

HEADERS = {"x-mlflow-return-trace-id": "true"}


def ask(url: str, text: str) -> httpx.Response:
    # 30 s: far below MLflow's own retry budget, so a request stuck on MLflow would fail here
    return httpx.post(
        f"{url}/invocations", json={"input": [{"role": "user", "content": text}]}, headers=HEADERS, timeout=30
    )


def wait_for_trace(tracking_uri: str, trace_id: str, timeout: float = 90):
    client = MlflowClient(tracking_uri=tracking_uri)
    deadline = time.monotonic() + timeout
    while True:
        try:
            trace = client.get_trace(trace_id)
            if trace is not None and trace.data.spans:
                return trace
        except Exception:  # noqa: BLE001 - not exported yet
            pass
        assert time.monotonic() < deadline, f"trace {trace_id} never reached MLflow"
        time.sleep(0.5)


def test_answers_continue_when_mlflow_dies_under_a_running_server(
    agent_server_factory, mlflow_server_factory, scripted_model
):
    mlflow = mlflow_server_factory()
    server = agent_server_factory(scripted_model.root, tracking_uri=mlflow.url, experiment="outage-runtime")
    first = ask(server.url, "before the outage")
    assert first.status_code == 200
    wait_for_trace(mlflow.url, first.json()["metadata"]["trace_id"])

    mlflow.kill()
    for i in range(3):
        resp = ask(server.url, f"during the outage {i}")
        assert resp.status_code == 200, resp.text
        assert resp.json()["output"][-1]["content"][0]["text"] == f"Scripted answer to: during the outage {i}"


def test_server_starts_and_answers_with_mlflow_down_then_traces_once_it_is_back(
    agent_server_factory, mlflow_server_factory, scripted_model
):
    mlflow = mlflow_server_factory()
    mlflow.stop()
    server = agent_server_factory(scripted_model.root, tracking_uri=mlflow.url, experiment="outage-startup")
    assert any("serving WITHOUT traces" in line for line in server.output)
    resp = ask(server.url, "while MLflow is down")
    assert resp.status_code == 200, resp.text

    mlflow.start()
    deadline = time.monotonic() + 60
    while not any("tracing is on" in line for line in server.output):
        assert time.monotonic() < deadline, server.log_tail()
        time.sleep(0.5)
    resp = ask(server.url, "after MLflow is back")
    assert resp.status_code == 200
    trace = wait_for_trace(mlflow.url, resp.json()["metadata"]["trace_id"])
    experiment = MlflowClient(tracking_uri=mlflow.url).get_experiment_by_name("outage-startup")
    assert trace.info.experiment_id == experiment.experiment_id
