"""`kagent-mlflow ask --stream` and `kagent-mlflow chat` as a user runs them - in a pseudo-terminal (pexpect) or with
stdin piped - against the REAL kagent runtime (A2A 0.3, streaming) and the a2a-sdk 1.x test agent, with a REAL MLflow
server. Each test reads back what the user would look at: runs, tags, metrics, the event list artifact, traces and
their session."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pexpect
import pytest

from tests.support.a2a_agents import A2AAgent, answer_for
from tests.support.kagent_runtime import TOOL_RULE, KagentRuntime
from tests.support.model_server import ModelServerClient

REPO_ROOT = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).with_name("kagent-mlflow"))
WAIT_S = 240  # subprocesses import MLflow on a loaded 2-core machine; never a timing assert
_DROP_ENV = ("MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID", "MLFLOW_S3_ENDPOINT_URL", "A2A_TOKEN")


@dataclass
class Setup:
    tracking_uri: str
    experiment: str
    env: dict[str, str]
    tmp: Path

    def run(self, *argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([CLI, *argv], cwd=REPO_ROOT, env=self.env, input=stdin, capture_output=True, text=True,
                              timeout=WAIT_S)  # fmt: skip

    def spawn(self, *argv: str) -> pexpect.spawn:
        child = pexpect.spawn(CLI, list(argv), cwd=str(REPO_ROOT), env=self.env, encoding="utf-8", timeout=WAIT_S,
                              dimensions=(40, 200))  # fmt: skip
        child.logfile_read = open(self.tmp / "pty.log", "a")  # noqa: SIM115 - closed with the child
        return child

    def runs(self) -> list[Any]:
        """The experiment's runs, oldest first."""
        client = self.client()
        experiment = client.get_experiment_by_name(self.experiment)
        assert experiment is not None, f"experiment {self.experiment} was not created"
        runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
        return list(runs)

    def trace_of(self, run: Any) -> Any:
        client = self.client()
        traces = client.search_traces(locations=[run.info.experiment_id], run_id=run.info.run_id)
        assert len(traces) == 1, traces
        return client.get_trace(traces[0].info.trace_id, display=False)

    def artifact(self, run: Any, name: str) -> str:
        path = self.client().download_artifacts(run.info.run_id, name, str(self.tmp))
        return Path(path).read_text(encoding="utf-8")

    def client(self) -> Any:
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri)


def make_setup(a2a_url: str, mlflow_server: Any, tmp_path: Path) -> Setup:
    experiment = f"chat-{uuid.uuid4().hex[:10]}"
    env = {k: v for k, v in os.environ.items() if k not in _DROP_ENV}
    env.update(
        MLFLOW_TRACKING_URI=mlflow_server.url,
        A2A_URL=a2a_url,
        MLFLOW_EXPERIMENT=experiment,
        KAGENT_MLFLOW_HOME=str(tmp_path / "home"),
        KAGENT_MLFLOW_SPOOL_DIR=str(tmp_path / "spool"),
        KAGENT_MLFLOW_FLUSH_TIMEOUT="120",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        TERM="dumb",
    )
    return Setup(mlflow_server.url, experiment, env, tmp_path)


@pytest.fixture
def kagent(kagent_runtime: KagentRuntime, mlflow_server: Any, scripted_model: ModelServerClient, tmp_path: Path):
    return make_setup(kagent_runtime.url, mlflow_server, tmp_path)


@pytest.fixture
def sdk_agent(a2a_agent: A2AAgent, mlflow_server: Any, tmp_path: Path) -> Setup:
    return make_setup(a2a_agent.stream_url, mlflow_server, tmp_path)


def test_ask_stream_on_the_kagent_runtime_prints_progress_and_logs_the_events(
    kagent: Setup, scripted_model: ModelServerClient
) -> None:
    scripted_model.set_script([TOOL_RULE])
    question = "Which pods run in the default namespace?"
    done = kagent.run("ask", "--stream", question)
    assert done.returncode == 0, done.stderr
    assert "tool call: get_pods" in done.stderr and "tool result: get_pods" in done.stderr
    answer_lines = [line for line in done.stdout.splitlines() if line.startswith("Answer: ")]
    assert len(answer_lines) == 1, done.stdout  # kagent repeats the answer as an artifact: shown once
    assert "first event" in done.stdout and "first text" in done.stdout

    (run,) = kagent.runs()
    assert run.info.status == "FINISHED" and run.data.tags["streamed"] == "true"
    metrics = run.data.metrics
    assert 0 < metrics["first_event_ms"] <= metrics["ttft_ms"] <= metrics["latency_ms"]
    events = json.loads(kagent.artifact(run, "a2a_response.json"))
    kinds = [e["result"].get("kind") for e in events]
    assert kinds[0] == "status-update" and "artifact-update" in kinds and events[-1]["result"]["final"] is True
    assert run.data.tags["kagent_task_id"] == events[-1]["result"]["taskId"]
    assert metrics["tool_calls"] == 1
    trace = kagent.trace_of(run)
    assert trace.info.state.value == "OK"


def test_chat_in_a_terminal_keeps_the_context_and_groups_turns_as_one_session(
    kagent: Setup, scripted_model: ModelServerClient
) -> None:
    child = kagent.spawn("chat")
    questions = ["What is Kubernetes?", "And what is OpenShift?", "/new", "What is kagent?"]
    for question in questions:
        child.expect_exact("you> ")
        child.sendline(question)
        if not question.startswith("/"):
            child.expect_exact(f"Scripted answer to: {question}")
            child.expect(r"turn \d")
    child.expect_exact("you> ")
    child.sendline("/exit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, (kagent.tmp / "pty.log").read_text()
    history = (kagent.tmp / "home" / "chat_history").read_text()  # readline history, for the next chat
    assert "What is Kubernetes?" in history and "/new" in history

    # kagent kept the session: the second turn's model request carried the first turn's question
    requests = scripted_model.chat_requests()
    second = [r for r in requests if any("OpenShift" in str(m.get("content")) for m in r["messages"])][0]
    assert any("What is Kubernetes?" in str(m.get("content")) for m in second["messages"])

    runs = kagent.runs()
    assert [r.data.tags["turn"] for r in runs] == ["1", "2", "1"]
    contexts = [r.data.tags["kagent_context_id"] for r in runs]
    assert contexts[0] == contexts[1] != contexts[2]
    assert [r.data.tags["conversation_id"] for r in runs] == contexts
    sessions = [kagent.trace_of(r).info.trace_metadata["mlflow.trace.session"] for r in runs]
    assert sessions == contexts  # MLflow's Sessions view shows turns 1-2 as one conversation
    assert [kagent.trace_of(r).info.tags["turn"] for r in runs] == ["1", "2", "1"]


def test_chat_with_piped_stdin_answers_one_question_per_line(sdk_agent: Setup) -> None:
    done = sdk_agent.run("chat", stdin="What is Kubernetes?\n\n[chunks] And OpenShift?\n")
    assert done.returncode == 0, done.stderr
    assert answer_for("What is Kubernetes?") in done.stdout
    assert answer_for("[chunks] And OpenShift?") in done.stdout
    assert "2 of 2 turn(s) logged to MLflow" in done.stderr
    runs = sdk_agent.runs()
    assert [r.data.tags["turn"] for r in runs] == ["1", "2"]
    assert runs[0].data.tags["kagent_context_id"] == runs[1].data.tags["kagent_context_id"]


def test_chat_input_required_is_answered_by_the_next_line_in_the_same_task(sdk_agent: Setup) -> None:
    done = sdk_agent.run("chat", stdin="[input] Restart the pod\nthe default namespace\n")
    assert done.returncode == 0, done.stderr
    assert "Which namespace do you mean?" in done.stdout
    assert "your next line answers it" in done.stderr
    first, second = sdk_agent.runs()
    assert first.data.tags["task_state"] == "input-required" and first.info.status == "FINISHED"
    assert second.data.tags["kagent_task_id"] == first.data.tags["kagent_task_id"]
    assert second.data.tags["task_state"] == "completed"
    assert "(continuing task" in sdk_agent.artifact(second, "answer.txt")


def test_ctrl_c_cancels_the_task_and_logs_the_run_as_cancelled(sdk_agent: Setup) -> None:
    child = sdk_agent.spawn("ask", "--stream", "[long:60000] Watch the cluster")
    child.expect_exact("tool call: collect_metrics")
    child.kill(signal.SIGINT)
    child.expect_exact("cancelled (Ctrl-C)")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130, (sdk_agent.tmp / "pty.log").read_text()
    (run,) = sdk_agent.runs()
    assert run.info.status == "KILLED"
    assert run.data.tags["status"] == "cancelled" and run.data.tags["task_state"] == "canceled"
    assert "cancelled by the user" in run.data.tags["error"]
    assert sdk_agent.trace_of(run).info.state.value == "ERROR"


def test_ask_without_stream_shows_the_answer_at_the_end_of_a_long_task(sdk_agent: Setup) -> None:
    done = sdk_agent.run("ask", "--json", "[long:400] Collect the metrics")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["answer"] == answer_for("[long:400] Collect the metrics") and "ttft_ms" not in result


def test_chat_hostile_stdin_lines_are_questions_or_refused_commands_never_a_traceback(sdk_agent: Setup) -> None:
    long_line = "why " * 25_000
    data = b"bad \xff\xfe bytes\n/frobnicate\n\x00 nul and \x1b[31m escape\n" + long_line.encode()
    data += b"\n/exit\nunsent\n"
    done = subprocess.run([CLI, "chat"], cwd=REPO_ROOT, env=sdk_agent.env, input=data, capture_output=True,
                          timeout=WAIT_S)  # fmt: skip
    out, err = done.stdout.decode("utf-8", "replace"), done.stderr.decode("utf-8", "replace")
    assert done.returncode == 0, err
    assert "Traceback" not in err and "unknown command /frobnicate" in err
    assert "Answer to: bad \\xff\\xfe bytes" in out  # shown escaped, as typed
    assert "unsent" not in out  # /exit ended the chat
    runs = sdk_agent.runs()
    assert [r.data.tags["turn"] for r in runs] == ["1", "2", "3"]
    assert sdk_agent.artifact(runs[0], "question.txt") == "bad \\xff\\xfe bytes"
    assert sdk_agent.artifact(runs[2], "question.txt") == long_line.rstrip("\n")


def test_ctrl_c_on_the_kagent_runtime_cancels_while_the_model_thinks(
    kagent: Setup, scripted_model: ModelServerClient
) -> None:
    scripted_model.set_script([], delay_ms=60_000)  # the model takes a minute: the task stays working
    child = kagent.spawn("ask", "--stream", "What is a very slow question?")
    deadline = 0
    while not scripted_model.chat_requests() and deadline < 2400:  # the runtime is now waiting for the model
        child.expect([pexpect.TIMEOUT, pexpect.EOF], timeout=0.1)
        deadline += 1
    assert scripted_model.chat_requests(), (kagent.tmp / "pty.log").read_text()
    child.kill(signal.SIGINT)
    child.expect_exact("cancelled (Ctrl-C)")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130, (kagent.tmp / "pty.log").read_text()
    (run,) = kagent.runs()
    assert run.info.status == "KILLED" and run.data.tags["status"] == "cancelled"
    error = run.data.tags["error"]
    assert error.startswith("cancelled by the user")
    # kagent-adk 0.10 refuses tasks/cancel (JSON-RPC -32603 "Cancellation is not supported"): the run says so
    assert run.data.tags["task_state"] == "canceled" or "tasks/cancel failed" in error, error
    events = json.loads(kagent.artifact(run, "a2a_response.json"))
    states = [e["result"]["status"]["state"] for e in events]
    assert states[0] == "submitted" and set(states) <= {"submitted", "working"}, states  # never an answer


def test_ctrl_c_in_chat_cancels_that_turn_and_the_chat_goes_on(sdk_agent: Setup) -> None:
    child = sdk_agent.spawn("chat")
    child.expect_exact("you> ")
    child.sendline("[long:60000] Watch the cluster")
    child.expect_exact("tool call: collect_metrics")
    child.sendintr()
    child.expect_exact("turn cancelled")
    child.expect_exact("you> ")
    child.sendline("What is Kubernetes?")
    child.expect_exact(answer_for("What is Kubernetes?"))
    child.expect_exact("you> ")
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, (sdk_agent.tmp / "pty.log").read_text()
    first, second = sdk_agent.runs()
    assert (first.info.status, first.data.tags["status"]) == ("KILLED", "cancelled")
    assert (second.info.status, second.data.tags["turn"]) == ("FINISHED", "2")
    assert second.data.tags["kagent_context_id"] == first.data.tags["kagent_context_id"]
