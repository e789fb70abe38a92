"""End to end through the user's entry points: the seed-compatible script and `kagent-mlflow ask`, run as subprocesses
against the REAL kagent runtime (kagent-adk 0.10.x, A2A 0.3, in front of the model server) and a REAL MLflow server.

Each test reads back what a user would look at in MLflow: the run's tags, token metrics, the three artifacts and
the linked trace with its token usage.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.kagent_runtime import AGENT_NAME, FAIL_RULE, TOOL_RULE, KagentRuntime, expected_usage
from tests.support.model_server import ModelServerClient

REPO_ROOT = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).with_name("kagent-mlflow"))
SEED_SCRIPT = str(REPO_ROOT / "kagent_mlflow_logger.py")
RUN_TIMEOUT_S = 240  # a subprocess imports MLflow on a loaded 2-core machine; never a timing assert
_DROP_ENV = (
    "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID", "MLFLOW_S3_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "A2A_TOKEN",
)  # fmt: skip


@dataclass
class Setup:
    """Where one test's subprocesses point: the runtime, the MLflow server, a fresh experiment, private dirs."""

    runtime: KagentRuntime
    model: ModelServerClient
    tracking_uri: str
    experiment: str
    env: dict[str, str]

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(argv), cwd=REPO_ROOT, env=self.env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S
        )

    def seed(self, question: str) -> subprocess.CompletedProcess[str]:
        return self.run(sys.executable, SEED_SCRIPT, question)

    def ask_json(self, question: str) -> subprocess.CompletedProcess[str]:
        # A generous flush bound: on a loaded CI machine MLflow may need more than the 10 s default.
        return self.run(CLI, "ask", question, "--json", "--flush-timeout", "120")


@pytest.fixture
def setup(
    kagent_runtime: KagentRuntime, mlflow_server: Any, scripted_model: ModelServerClient, tmp_path: Path
) -> Setup:
    experiment = f"kagent-e2e-{uuid.uuid4().hex[:10]}"
    env = {k: v for k, v in os.environ.items() if k not in _DROP_ENV}
    env.update(
        MLFLOW_TRACKING_URI=mlflow_server.url,
        A2A_URL=kagent_runtime.url,
        MLFLOW_EXPERIMENT=experiment,
        KAGENT_MLFLOW_HOME=str(tmp_path / "home"),
        KAGENT_MLFLOW_SPOOL_DIR=str(tmp_path / "spool"),
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    return Setup(kagent_runtime, scripted_model, mlflow_server.url, experiment, env)


def only_run(setup: Setup) -> tuple[Any, Any, str]:
    """(client, run, experiment_id) of the single run the test's experiment must hold."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=setup.tracking_uri)
    experiment = client.get_experiment_by_name(setup.experiment)
    assert experiment is not None, f"experiment {setup.experiment} was not created"
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1, [r.info.run_id for r in runs]
    return client, runs[0], experiment.experiment_id


def artifact_text(client: Any, run_id: str, name: str, tmp_path: Path) -> str:
    return Path(client.download_artifacts(run_id, name, str(tmp_path))).read_text(encoding="utf-8")


def only_trace(client: Any, experiment_id: str) -> Any:
    traces = client.search_traces(locations=[experiment_id])
    assert len(traces) == 1
    return client.get_trace(traces[0].info.trace_id, display=False)


def check_logged_ok_run(setup: Setup, question: str, answer: str, tmp_path: Path) -> tuple[Any, Any, str]:
    """Tags, token metrics, artifacts and trace of a successful interaction, read back through MLflow's API."""
    client, run, experiment_id = only_run(setup)
    run_id = run.info.run_id
    assert run.info.status == "FINISHED"
    tags = run.data.tags
    raw = json.loads(artifact_text(client, run_id, "a2a_response.json", tmp_path))
    result = raw["result"]
    assert tags["agent"] == AGENT_NAME
    assert tags["a2a_url"] == setup.runtime.url
    assert tags["kagent_task_id"] == result["id"]
    assert tags["kagent_context_id"] == result["contextId"]
    assert re.fullmatch(r"[0-9a-f]{32}", tags["interaction_id"])
    assert tags["status"] == "ok"
    assert tags["task_state"] == "completed"
    assert tags["protocol_version"] == "0.3"

    usage = expected_usage(setup.model, answer)  # summed over the model calls (kagent reports each on its message)
    per_call = [
        m["metadata"]["kagent_usage_metadata"]
        for m in result["history"]
        if "kagent_usage_metadata" in m.get("metadata", {})
    ]
    assert len(per_call) == len(setup.model.chat_requests())
    metrics = run.data.metrics
    assert {k: metrics[k] for k in usage} == usage
    assert metrics["input_tokens"] == usage["promptTokenCount"]
    assert metrics["output_tokens"] == usage["candidatesTokenCount"]
    assert metrics["total_tokens"] == usage["totalTokenCount"]
    assert metrics["latency_ms"] > 0

    assert artifact_text(client, run_id, "question.txt", tmp_path) == question
    assert artifact_text(client, run_id, "answer.txt", tmp_path) == answer

    trace = only_trace(client, experiment_id)
    assert trace.info.request_metadata["mlflow.sourceRun"] == run_id
    assert trace.info.state.value == "OK"
    assert trace.info.token_usage == {
        "input_tokens": usage["promptTokenCount"],
        "output_tokens": usage["candidatesTokenCount"],
        "total_tokens": usage["totalTokenCount"],
    }
    (root,) = [s for s in trace.data.spans if s.parent_id is None]
    assert root.span_type == "AGENT"
    assert (root.inputs, root.outputs) == (question, answer)
    assert root.get_attribute("mlflow.chat.tokenUsage") == trace.info.token_usage
    return client, run, experiment_id


def test_seed_script_prints_the_answer_and_logs_the_run(setup: Setup, tmp_path: Path) -> None:
    question = "What is Kubernetes?"
    answer = f"Scripted answer to: {question}"

    proc = setup.seed(question)

    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    _, run, experiment_id = check_logged_ok_run(setup, question, answer, tmp_path)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert lines[:3] == [f"Question: {question}", f"MLflow URI: {setup.tracking_uri}", f"A2A URL: {setup.runtime.url}"]
    assert f"Answer: {answer}" in lines
    assert any(re.fullmatch(r"Latency: \d+ ms", line) for line in lines), lines
    assert f"Run: {setup.tracking_uri}/#/experiments/{experiment_id}/runs/{run.info.run_id}" in lines
    assert experiment_id != "0"


def test_cli_ask_json_logs_the_run(setup: Setup, tmp_path: Path) -> None:
    question = "In one sentence, what is OpenShift?"
    answer = f"Scripted answer to: {question}"

    proc = setup.ask_json(question)

    assert proc.returncode == 0, proc.stderr
    payload = json.loads(proc.stdout)
    _, run, experiment_id = check_logged_ok_run(setup, question, answer, tmp_path)
    assert payload["answer"] == answer
    assert payload["status"] == "ok"
    assert payload["agent"] == AGENT_NAME
    assert payload["run_id"] == run.info.run_id
    assert payload["run_url"] == f"{setup.tracking_uri}/#/experiments/{experiment_id}/runs/{run.info.run_id}"
    assert payload["interaction_id"] == run.data.tags["interaction_id"]
    assert payload["task_id"] == run.data.tags["kagent_task_id"]
    assert payload["context_id"] == run.data.tags["kagent_context_id"]
    assert payload["usage"] == expected_usage(setup.model, answer)
    assert payload["latency_ms"] > 0


def test_tool_call_reaches_metrics_and_trace(setup: Setup, tmp_path: Path) -> None:
    setup.model.set_script([TOOL_RULE])
    question = "Which pods run in the default namespace?"
    answer = f"Scripted answer to: {question} | tool results: pods in default: web-1, web-2"

    proc = setup.ask_json(question)

    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["answer"] == answer
    client, run, experiment_id = check_logged_ok_run(setup, question, answer, tmp_path)
    assert run.data.metrics["tool_calls"] == 1
    trace = only_trace(client, experiment_id)
    (tool,) = [s for s in trace.data.spans if s.span_type == "TOOL"]
    assert tool.name == "get_pods"
    assert tool.inputs == {"namespace": "default"}
    assert "pods in default: web-1, web-2" in json.dumps(tool.outputs)


def test_failed_task_exits_non_zero_with_one_line_and_logs_a_failed_run(setup: Setup, tmp_path: Path) -> None:
    setup.model.set_script([FAIL_RULE])
    question = "Please fail: the model answers HTTP 500"

    proc = setup.seed(question)

    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert setup.runtime.url.rstrip("/") in errors[0]
    assert "failed" in errors[0] and "500" in errors[0]

    client, run, experiment_id = only_run(setup)
    run_id = run.info.run_id
    assert run.info.status == "FAILED"
    tags = run.data.tags
    raw = json.loads(artifact_text(client, run_id, "a2a_response.json", tmp_path))
    assert raw["result"]["status"]["state"] == "failed"
    assert tags["status"] == "error"
    assert tags["task_state"] == "failed"
    assert tags["agent"] == AGENT_NAME
    assert tags["kagent_task_id"] == raw["result"]["id"]
    assert "500" in tags["error"]
    assert artifact_text(client, run_id, "question.txt", tmp_path) == question
    assert "500" in artifact_text(client, run_id, "answer.txt", tmp_path)
    trace = only_trace(client, experiment_id)
    assert trace.info.state.value == "ERROR"
    assert trace.info.request_metadata["mlflow.sourceRun"] == run_id
