"""``kagent-mlflow up`` / ``ps`` / ``logs`` / ``down`` as a user runs them, with the scripted model behind
``--model-url`` (fast); the bundled real model is tested in ``test_up_real_model.py``.

With the stack up, ``ask`` and the seed script run with no flags and no environment pointing anywhere: they must
find the stack's agent and its MLflow server by themselves, and what they logged is read back from that server.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient

from kagent_mlflow.local.state import pid_alive
from tests.support.local_stack import REPO, LocalStack
from tests.support.model_server import ModelServerClient

pytestmark = pytest.mark.integration

TOOL_SCRIPT = [
    {"has_tool": "glossary", "after_tool": False, "tool_calls": [{"name": "glossary", "arguments": {"term": "pod"}}]},
    {"after_tool": True, "reply": "A pod is the unit Kubernetes runs. Glossary: {tool_outputs}"},
]


@pytest.fixture(scope="module")
def stack(model_server: ModelServerClient, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    stack = LocalStack.create(tmp_path_factory.mktemp("up"))
    stack.up("--model-url", model_server.url)
    yield stack
    stack.down()


def question_of(client: MlflowClient, run_id: str) -> str:
    path = client.download_artifacts(run_id, "question.txt")
    return Path(path).read_text()


def test_up_then_ask_and_seed_script_with_no_flags_log_to_the_stack(
    stack: LocalStack, scripted_model: ModelServerClient, tmp_path: Path
) -> None:
    status = stack.ps()
    assert status["up"] is True
    assert [p["name"] for p in status["processes"]] == ["mlflow", "agent"]
    assert status["urls"] == {"mlflow": stack.mlflow_url, "a2a": stack.a2a_url, "model": scripted_model.url}
    assert httpx.get(f"{stack.mlflow_url}/health", timeout=10).status_code == 200
    card = httpx.get(f"{stack.a2a_url}.well-known/agent-card.json", timeout=10).json()
    assert card["name"] == "rh-analyze-simple"

    scripted_model.set_script(TOOL_SCRIPT)
    result = stack.ask_json("What is a pod?")
    assert result["answer"].startswith("A pod is the unit Kubernetes runs. Glossary: The smallest unit")
    assert result["run_url"].startswith(f"{stack.mlflow_url}/#/experiments/")

    client = MlflowClient(tracking_uri=stack.mlflow_url)
    run = client.get_run(result["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["a2a_url"] == stack.a2a_url
    assert run.data.tags["agent"] == "rh-analyze-simple"
    assert run.data.metrics["tool_calls"] == 1
    assert run.data.metrics["total_tokens"] > 0
    assert question_of(client, run.info.run_id) == "What is a pod?"

    # The seed's script, from the repository, no argument: its default question, the same stack.
    seed = stack.run([sys.executable, str(REPO / "kagent_mlflow_logger.py")], cwd=REPO)
    assert seed.returncode == 0, seed.stderr
    assert f"MLflow URI: {stack.mlflow_url}" in seed.stdout
    assert f"A2A URL: {stack.a2a_url}" in seed.stdout
    run_line = next(line for line in seed.stdout.splitlines() if line.startswith("Run: "))
    seed_run = client.get_run(run_line.rsplit("/", 1)[-1].split()[0])
    assert question_of(client, seed_run.info.run_id) == "In one sentence, what is OpenShift?"
    assert seed_run.info.experiment_id == run.info.experiment_id

    # `chat` (questions piped in) and `eval` (a question set), no flags either.
    scripted_model.set_script([])
    chat = stack.cli("chat", stdin="What is a node?\n")
    assert chat.returncode == 0, chat.stdout + chat.stderr
    assert "Scripted answer to: What is a node?" in chat.stdout
    assert f"logged to MLflow ({stack.mlflow_url}" in chat.stdout + chat.stderr
    questions = tmp_path / "questions.jsonl"
    questions.write_text(json.dumps({"id": "q1", "question": "What is a service?", "expected": "service"}) + "\n")
    evaluated = stack.cli("eval", str(questions))
    assert evaluated.returncode == 0, evaluated.stdout + evaluated.stderr
    assert f"run rh-analyze-simple: {stack.mlflow_url}/#/experiments/" in evaluated.stdout

    logs = stack.cli("logs", "agent", "-n", "500")
    assert logs.returncode == 0 and f"READY http://127.0.0.1:{stack.agent_port}" in logs.stdout


def test_up_twice_says_it_is_already_up(stack: LocalStack) -> None:
    again = stack.up("--model-url", "http://127.0.0.1:9/v1")
    assert "already up" in again.stdout
    assert stack.ps()["up"] is True


def test_down_stops_everything_and_commands_fall_back_to_their_defaults(
    model_server: ModelServerClient, tmp_path: Path
) -> None:
    stack = LocalStack.create(tmp_path)
    stack.up("--model-url", model_server.url)
    pids = [p["pid"] for p in stack.ps()["processes"]]
    done = stack.down()
    assert done.returncode == 0 and "The local stack is stopped." in done.stdout
    assert stack.cli("ps").returncode == 1
    for port in (stack.mlflow_port, stack.agent_port):
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as a server binds it (TIME_WAIT is fine)
            sock.bind(("127.0.0.1", port))  # free again
    assert not any(pid_alive(pid) for pid in pids)
    # No stack: `ask` is back to the seed's A2A URL and the embedded store.
    bad = stack.cli("ask", "--json", "--timeout", "5", "hello?")
    assert bad.returncode == 3
    assert "8083/api/a2a/kagent/rh-analyze-simple" in bad.stderr + bad.stdout
    # ... and the failed run is written to the embedded store the stack's server used (same experiment, whose
    # artifact location the embedded client can write without a server).
    assert "logging_error" not in json.loads(bad.stdout.strip().splitlines()[-1])
    assert stack.cli("down").stdout.strip() == "The local stack is not running."


def test_a_taken_port_is_one_line_and_starts_nothing(tmp_path: Path) -> None:
    stack = LocalStack.create(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", stack.mlflow_port))
        taken.listen()
        done = stack.cli("up", *stack.port_args, "--model-url", "http://127.0.0.1:9/v1")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert f"port {stack.mlflow_port} (mlflow) is taken" in done.stderr
    assert "--mlflow-port" in done.stderr and "Traceback" not in done.stderr
    assert not (stack.home / "stack" / "state.json").exists()
    assert stack.cli("ps").returncode == 1


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--model-url", "ftp://example/v1"], "is not an http(s) URL"),
        (["--model-url", ""], "is not an http(s) URL"),
        (["--runtime", "docker"], "is not agent-server or kagent"),
        (["--llama-stack", "/no/such/llama"], "is not auto, off or the path"),
        (["--experiment", "  "], "experiment name"),
        (["--experiment", "bad\x07name"], "control characters"),
    ],
)
def test_bad_up_options_are_one_line_errors(tmp_path: Path, args: list[str], expected: str) -> None:
    stack = LocalStack.create(tmp_path)
    done = stack.cli("up", *stack.port_args[:-2], *args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert expected in done.stderr and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert not (stack.home / "stack" / "state.json").exists()


@pytest.mark.parametrize("args", [["--port", "0"], ["--mlflow-port", "70000"], ["--timeout", "nan"]])
def test_out_of_range_numbers_are_refused(tmp_path: Path, args: list[str]) -> None:
    done = LocalStack.create(tmp_path).cli("up", *args)
    assert done.returncode == 2 and "Traceback" not in done.stderr


def test_logs_of_an_unknown_process_or_no_stack(tmp_path: Path) -> None:
    stack = LocalStack.create(tmp_path)
    unknown = stack.cli("logs", "../../etc/passwd")
    assert unknown.returncode == 2 and "no process" in unknown.stderr and "Traceback" not in unknown.stderr
    none = stack.cli("logs")
    assert none.returncode == 1 and "no logs in" in none.stderr
    assert json.loads(stack.cli("ps", "--json").stdout)["up"] is False


@pytest.mark.kagent
def test_runtime_kagent_serves_the_real_kagent_runtime_at_the_seeds_path(
    model_server: ModelServerClient, scripted_model: ModelServerClient, tmp_path: Path
) -> None:
    from tests.support.kagent_runtime import kagent_executable

    if not kagent_executable().exists():
        reason = f"kagent runtime not installed ({kagent_executable()}): run scripts/setup-kagent-runtime.sh"
        if os.environ.get("KAGENT_MLFLOW_CI") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    stack = LocalStack.create(tmp_path)
    try:
        stack.up("--runtime", "kagent", "--model-url", model_server.url)
        assert [p["name"] for p in stack.ps()["processes"]] == ["mlflow", "kagent-runtime", "agent"]
        result = stack.ask_json("What is a pod?")
        assert result["answer"] == "Scripted answer to: What is a pod?"
        assert result["usage"]["totalTokenCount"] > 0
        run = MlflowClient(tracking_uri=stack.mlflow_url).get_run(result["run_id"])
        assert run.data.tags["protocol_version"].startswith("0.3")
        assert run.data.tags["a2a_url"] == stack.a2a_url
    finally:
        stack.down()
