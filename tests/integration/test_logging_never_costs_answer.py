"""Logging never costs the answer (issue 8, Why #2 and #3), as a user sees it: ``kagent-mlflow ask`` as a subprocess
and the library, against the real a2a-sdk test agent and a real MLflow server; what was stored is read back from
MLflow.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from kagent_mlflow.config import Settings
from kagent_mlflow.delivery import Spool, replay
from kagent_mlflow.logger import KagentMLflowLogger
from kagent_mlflow.records import Destination
from kagent_mlflow.sinks.mlflow import MlflowSink
from tests.support.a2a_agents import A2AAgent
from tests.support.mlflow_server import MlflowServer, free_port

pytestmark = pytest.mark.integration

CLI = Path(sys.executable).with_name("kagent-mlflow")
CLIENT_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT", "MLFLOW_EXPERIMENT_NAME", "A2A_URL")
CLIENT_ENV += ("KAGENT_MLFLOW_SPOOL_DIR",)


def cli(args: list[str | bytes], home: Path, **env: str) -> subprocess.CompletedProcess[bytes]:
    """Run ``kagent-mlflow`` with raw bytes in and out (a terminal passes undecodable bytes through as they are)."""
    full_env = {k: v for k, v in os.environ.items() if k not in CLIENT_ENV}
    full_env.update(KAGENT_MLFLOW_HOME=str(home), LC_ALL="C.UTF-8", **env)
    return subprocess.run([str(CLI), *args], env=full_env, capture_output=True, timeout=240)


def the_run(tracking_uri: str, experiment: str) -> tuple[object, dict[str, str]]:
    """The only run of ``experiment`` and the text of its artifacts."""
    client = MlflowClient(tracking_uri=tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    texts = {}
    for name in ("question.txt", "answer.txt"):
        path = client.download_artifacts(run.info.run_id, name)
        texts[name] = Path(path).read_text(encoding="utf-8")
    return run, texts


def test_ask_with_non_utf8_bytes_prints_the_answer_and_logs_the_question_as_typed(
    a2a_agent: A2AAgent, mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    experiment = f"bytes-{uuid.uuid4().hex[:8]}"
    args: list[str | bytes] = ["ask", b"bad \xff\xfe", "--a2a-url", a2a_agent.url, "--experiment", experiment]
    proc = cli([*args, "--tracking-uri", mlflow_server.url, "--flush-timeout", "120"], tmp_path / "home")

    out, err = proc.stdout.decode("utf-8"), proc.stderr.decode("utf-8")
    assert proc.returncode == 0, out + err
    assert "Traceback" not in err
    assert "Question: bad \\xff\\xfe" in out  # shown as the user typed it
    assert "Answer: Answer to: bad \\xff\\xfe" in out
    run, texts = the_run(mlflow_server.url, experiment)
    assert run.info.status == "FINISHED"
    assert texts["question.txt"] == "bad \\xff\\xfe"


def test_terminal_control_sequences_in_an_answer_are_shown_escaped_and_logged_as_sent(
    a2a_agent: A2AAgent, mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    """An agent's answer cannot clear, recolour or retitle the user's terminal; MLflow keeps the text exactly."""
    experiment = f"ansi-{uuid.uuid4().hex[:8]}"
    question = "red \x1b[31m clear \x1b[2J title \x1b]0;pwned\x07"
    args: list[str | bytes] = ["ask", question, "--a2a-url", a2a_agent.url, "--experiment", experiment]
    proc = cli([*args, "--tracking-uri", mlflow_server.url, "--flush-timeout", "120"], tmp_path / "home")

    out, err = proc.stdout.decode("utf-8"), proc.stderr.decode("utf-8")
    assert proc.returncode == 0, out + err
    assert "\x1b" not in out and "\x07" not in out
    assert "Answer: Answer to: red \\x1b[31m clear \\x1b[2J title \\x1b]0;pwned\\x07" in out
    run, texts = the_run(mlflow_server.url, experiment)
    assert run.info.status == "FINISHED"
    assert texts["answer.txt"] == f"Answer to: {question}"


def test_library_question_with_a_lone_surrogate_is_answered_spooled_exactly_and_replayed(
    a2a_agent: A2AAgent, mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    experiment = f"surrogate-{uuid.uuid4().hex[:8]}"
    settings = Settings(
        a2a_url=a2a_agent.url,
        tracking_uri=f"http://127.0.0.1:{free_port()}",  # MLflow down: the record must wait in the spool
        experiment_name=experiment,
        home=tmp_path / "home",
    )
    with KagentMLflowLogger(settings=settings, flush_timeout=5) as logger:
        result = logger.send_question("x \ud800")
        assert result["answer"] == "Answer to: x \\ud800"  # the agent got the question as shown (UTF-8 only)
        assert "kept in the spool" in result["logging_error"]
    # An agent's raw reply can hold lone surrogates too (JSON "\ud800" escapes), even in its keys.
    odd_reply = result.interaction.model_copy(
        update={"interaction_id": uuid.uuid4().hex, "raw_response": {"k\ud800": "v \udcff"}, "question": "raw"}
    )
    extra = Spool(settings.effective_spool_dir)
    extra.append(odd_reply)
    extra.close()

    spool = Spool(settings.effective_spool_dir)
    kept = []
    for claimed in spool.claim():
        kept += list(claimed.records())
        claimed.release(complete=False)
    assert {k.question: k.raw_response for k in kept}["raw"] == {"k\ud800": "v \udcff"}  # lossless
    assert "x \ud800" in {k.question for k in kept}  # the exact text comes back from the journal

    up = settings.model_copy(update={"tracking_uri": mlflow_server.url})
    moved = Destination.from_settings(up)  # re-targeting is explicit: the record was made for the dead port
    report = replay(spool, MlflowSink(up), attempts=3, route=lambda record: record.to(moved))
    assert report.delivered == 2 and report.failed == 0, report.errors
    client = MlflowClient(tracking_uri=mlflow_server.url)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert {r.info.status for r in runs} == {"FINISHED"} and len(runs) == 2
    texts = {}
    for run in runs:
        for name in ("question.txt", "answer.txt", "a2a_response.json"):
            texts.setdefault(name, []).append(Path(client.download_artifacts(run.info.run_id, name)).read_text("utf-8"))
    assert sorted(texts["question.txt"]) == ["raw", "x \\ud800"]
    assert "Answer to: x \\ud800" in texts["answer.txt"]
    assert any('"k\\\\ud800": "v \\\\xff"' in t for t in texts["a2a_response.json"]), texts["a2a_response.json"]


def test_record_neither_delivered_nor_spooled_is_reported_lost_with_its_own_exit_code(
    a2a_agent: A2AAgent, tmp_path: Path
) -> None:
    not_a_dir = tmp_path / "spool-is-a-file"
    not_a_dir.write_text("not a directory\n")
    down = f"http://127.0.0.1:{free_port()}"
    args = ["ask", "What is lost?", "--a2a-url", a2a_agent.url, "--tracking-uri", down, "--flush-timeout", "30"]
    proc = cli(args, tmp_path / "home", KAGENT_MLFLOW_SPOOL_DIR=str(not_a_dir))

    out, err = proc.stdout.decode(), proc.stderr.decode()
    assert proc.returncode == 5, out + err
    assert "Answer: Answer to: What is lost?" in out
    assert "kept in the spool" not in out + err and "retried automatically" not in out + err
    assert "record lost" in err and str(not_a_dir) in err and "Traceback" not in err


def test_library_reports_a_lost_record_in_logging_error(a2a_agent: A2AAgent, tmp_path: Path) -> None:
    not_a_dir = tmp_path / "spool-is-a-file"
    not_a_dir.write_text("not a directory\n")
    settings = Settings(
        a2a_url=a2a_agent.url,
        tracking_uri=f"http://127.0.0.1:{free_port()}",
        home=tmp_path / "home",
        spool_dir=not_a_dir,
    )
    with KagentMLflowLogger(settings=settings, run_id_timeout=30) as logger:
        result = logger.send_question("Where did it go?")
    assert result["answer"] == "Answer to: Where did it go?"
    assert result["run_id"] is None
    assert result["logging_error"].startswith("record lost")
    assert str(not_a_dir) in result["logging_error"] and "kept in the spool" not in result["logging_error"]
