"""The library's streaming API - ``logger.stream_question`` (sync and async) and ``logger.conversation()`` - against
the REAL a2a-sdk 1.x streaming test agent, the REAL kagent runtime and a REAL MLflow server; what was stored is read
back from MLflow. Also: a dead MLflow never costs a streamed answer, and leaving a ``with`` block early cancels."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from kagent_mlflow.errors import AgentTaskError, ConfigError
from kagent_mlflow.logger import KagentMLflowLogger
from tests.support.a2a_agents import INPUT_QUESTION, A2AAgent, answer_for
from tests.support.kagent_runtime import KagentRuntime
from tests.support.mlflow_server import MlflowServer


def make_logger(url: str, tracking_uri: str, tmp_path: Path) -> tuple[KagentMLflowLogger, str]:
    experiment = f"stream-{uuid.uuid4().hex[:8]}"
    from kagent_mlflow.config import Settings

    settings = Settings.from_env(
        tracking_uri=tracking_uri, a2a_url=url, experiment_name=experiment, spool_dir=str(tmp_path / "spool")
    )
    return KagentMLflowLogger(settings=settings, flush_timeout=120, run_id_timeout=120), experiment


def runs_of(tracking_uri: str, experiment: str) -> list[Any]:
    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None
    return list(client.search_runs([found.experiment_id], order_by=["attributes.start_time ASC"]))


def trace_of(tracking_uri: str, run: Any) -> Any:
    client = MlflowClient(tracking_uri=tracking_uri)
    (trace,) = client.search_traces(locations=[run.info.experiment_id], run_id=run.info.run_id)
    return client.get_trace(trace.info.trace_id, display=False)


def test_stream_question_yields_events_then_logs_the_run(
    a2a_agent: A2AAgent, mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    logger, experiment = make_logger(a2a_agent.stream_url, mlflow_server.url, tmp_path)
    question = "[chunks] What is Kubernetes?"
    with logger:
        answer = logger.stream_question(question)
        texts = [event.text for event in answer if event.kind == "artifact-update"]
        result = answer.result
        assert "".join(texts) == result["answer"] == answer_for(question)
        assert isinstance(result["response"], list) and len(result["response"]) == len(texts) + 2
        run_id = result["run_id"]
        assert logger.flush(120)
    (run,) = runs_of(mlflow_server.url, experiment)
    assert run.info.run_id == run_id and run.info.status == "FINISHED"
    assert run.data.metrics["ttft_ms"] <= run.data.metrics["latency_ms"]
    assert run.data.tags["streamed"] == "true" and "turn" not in run.data.tags


def test_async_iteration(a2a_agent: A2AAgent, mlflow_server: MlflowServer, tmp_path: Path) -> None:
    logger, _ = make_logger(a2a_agent.stream_url, mlflow_server.url, tmp_path)

    async def main() -> tuple[list[str], Any]:
        answer = logger.stream_question("[tool] Which pods run?")
        kinds = [event.kind async for event in answer]
        return kinds, answer.result

    with logger:
        kinds, result = asyncio.run(main())
    assert kinds[0] == "task" and kinds[-1] == "status-update"
    assert result["answer"] == answer_for("[tool] Which pods run?")
    assert [c.name for c in result.interaction.tool_calls] == ["get_pods"]


def test_failures_raise_with_the_recorded_result(
    a2a_agent: A2AAgent, mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    logger, experiment = make_logger(a2a_agent.stream_url, mlflow_server.url, tmp_path)
    with logger:
        with pytest.raises(AgentTaskError) as caught:
            for _ in logger.stream_question("[input] Restart the pod"):
                pass
        assert caught.value.result["answer"] == INPUT_QUESTION
        assert caught.value.result["status"] == "error"
        with pytest.raises(ConfigError):
            logger.stream_question("   ")  # nothing sent
        logger.flush(120)
    (run,) = runs_of(mlflow_server.url, experiment)
    assert run.info.status == "FAILED" and run.data.tags["task_state"] == "input-required"


def test_leaving_a_with_block_early_cancels_and_logs_the_run_as_cancelled(
    a2a_agent: A2AAgent, mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    logger, experiment = make_logger(a2a_agent.stream_url, mlflow_server.url, tmp_path)
    with logger:
        with logger.stream_question("[long:60000] Watch the cluster") as answer:
            for event in answer:
                if event.state == "working":
                    break
        assert answer.result["status"] == "cancelled"
        assert answer.result.interaction.task_state == "canceled"
        logger.flush(120)
    (run,) = runs_of(mlflow_server.url, experiment)
    assert run.info.status == "KILLED" and run.data.tags["status"] == "cancelled"


def test_breaking_out_of_the_loop_cancels_too(a2a_agent: A2AAgent, mlflow_server: MlflowServer, tmp_path: Path) -> None:
    logger, _ = make_logger(a2a_agent.stream_url, mlflow_server.url, tmp_path)
    with logger:
        answer = logger.stream_question("[long:60000] Watch the cluster")
        for event in answer:
            if event.state == "working":
                break
        assert answer.result is not None and answer.result["status"] == "cancelled"


def test_a_dead_mlflow_never_costs_a_streamed_answer(a2a_agent: A2AAgent, tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"  # bound, not listening: connections refused
        logger, _ = make_logger(a2a_agent.stream_url, dead, tmp_path)
        with logger:
            answer = logger.stream_question("What is Kubernetes?")
            texts = [event.text for event in answer if event.text]
            assert texts == [answer_for("What is Kubernetes?")]
            assert answer.result["answer"] == answer_for("What is Kubernetes?")
            assert not logger.flush(5)
        kept = [json.loads(line) for p in (tmp_path / "spool").rglob("*.jsonl") for line in p.read_text().splitlines()]
    streamed = [r for r in kept if r.get("streamed")]
    assert streamed and all(isinstance(r["raw_response"], list) for r in streamed)


def test_conversation_on_the_kagent_runtime_is_one_session(
    kagent_runtime: KagentRuntime, scripted_model: Any, mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    logger, experiment = make_logger(kagent_runtime.url, mlflow_server.url, tmp_path)
    with logger:
        chat = logger.conversation()
        first = chat.ask("What is Kubernetes?")
        second = chat.ask("And what is OpenShift?")
        assert first["context_id"] == second["context_id"] == chat.id
        assert second["answer"] == "Scripted answer to: And what is OpenShift?"
        chat.new()
        third = chat.ask("What is kagent?")
        assert third["context_id"] != first["context_id"]
        logger.flush(120)
    runs = runs_of(mlflow_server.url, experiment)
    sessions = [trace_of(mlflow_server.url, r).info.trace_metadata.get("mlflow.trace.session") for r in runs]
    assert sessions == [first["context_id"], first["context_id"], third["context_id"]]
    assert [r.data.tags["turn"] for r in runs] == ["1", "2", "1"]
