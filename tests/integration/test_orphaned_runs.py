"""No orphaned run (issue 8, Why #5): a client killed while a slow agent answers leaves its early-opened run to be
closed by ``kagent-mlflow replay`` (FAILED, with a tag saying why), never RUNNING forever. Real a2a-sdk agent, real
MLflow server, the client and replay as the user runs them (subprocesses); the run is read back from MLflow.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.support.a2a_agents import A2AAgent
from tests.support.mlflow_server import MlflowServer

pytestmark = pytest.mark.integration

CLI = Path(sys.executable).with_name("kagent-mlflow")


def env_for(home: Path, tracking_uri: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "A2A_", "KAGENT_MLFLOW_"))}
    return env | {"KAGENT_MLFLOW_HOME": str(home), "MLFLOW_TRACKING_URI": tracking_uri}


def runs_of(client: MlflowClient, experiment: str) -> list:
    exp = client.get_experiment_by_name(experiment)
    return [] if exp is None else client.search_runs([exp.experiment_id])


def test_client_killed_while_the_agent_thinks_then_replay_closes_its_run_as_failed(
    a2a_agent: A2AAgent, mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    experiment = f"orphan-{uuid.uuid4().hex[:8]}"
    env = env_for(tmp_path / "home", mlflow_server.url)
    client = MlflowClient(tracking_uri=mlflow_server.url)
    question = "Why is the pod pending? [slow:120000]"  # the agent thinks for two minutes
    proc = subprocess.Popen(
        [str(CLI), "ask", question, "--a2a-url", a2a_agent.url, "--experiment", experiment],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not runs_of(client, experiment) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        (run,) = runs_of(client, experiment)  # opened early, while the agent is still thinking
        assert run.info.status == "RUNNING"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)

    status = subprocess.run([str(CLI), "status", "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["unanswered"] == 1

    replay = subprocess.run([str(CLI), "replay"], env=env, capture_output=True, text=True, timeout=240)
    assert replay.returncode == 0, replay.stdout + replay.stderr

    (closed,) = runs_of(client, experiment)  # the same run, never a second one
    assert closed.info.run_id == run.info.run_id
    assert closed.info.status == "FAILED"
    assert "client stopped before the agent answered" in closed.data.tags["error"]
    assert closed.data.tags["status"] == "error"
    again = subprocess.run([str(CLI), "status", "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert json.loads(again.stdout)["pending"] == 0
