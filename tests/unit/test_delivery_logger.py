"""The logger's wiring to the recorder: the answer comes back before MLflow is touched; run keys resolve later."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from kagent_mlflow.a2a.models import AgentReply
from kagent_mlflow.config import Settings
from kagent_mlflow.delivery.pipeline import build_pipeline
from kagent_mlflow.errors import AgentTaskError
from kagent_mlflow.logger import KagentMLflowLogger

from .test_delivery_recorder import FakeSink


class FakeAgent:
    def __init__(self, fail: bool = False, delay: float = 0.0) -> None:
        self.fail = fail
        self.delay = delay
        self.headers: list[dict[str, str] | None] = []

    def ask(self, question: str, timeout: float = 120, headers: dict[str, str] | None = None) -> AgentReply:
        self.headers.append(headers)
        time.sleep(self.delay)
        reply = AgentReply(
            answer=f"echo {question}",
            agent_name="agent",
            url="http://127.0.0.1:1/",
            protocol_version="1.0",
            usage={"promptTokenCount": 3},
        )
        if self.fail:
            raise AgentTaskError("http://127.0.0.1:1/", "task failed", task_state="failed", reply=reply)
        return reply

    def close(self) -> None:
        pass


@pytest.fixture
def make_logger(tmp_path: Path):
    made: list[KagentMLflowLogger] = []

    def factory(sink: FakeSink, agent: FakeAgent | None = None) -> KagentMLflowLogger:
        settings = Settings(a2a_url="http://127.0.0.1:1/api/a2a/ns/agent/", home=tmp_path, tracking_uri="http://x:1")
        pipeline = build_pipeline(settings, sink_factory=lambda: sink)
        logger = KagentMLflowLogger(settings=settings, run_id_timeout=5, pipeline=pipeline)
        logger._agent_client = agent or FakeAgent()
        made.append(logger)
        return logger

    yield factory
    for logger in made:
        logger.close(timeout=1)


def test_answer_returns_while_mlflow_is_blocked_and_run_id_is_the_real_one(make_logger) -> None:
    sink = FakeSink()
    sink.gate = threading.Event()  # writes hang until released: the answer must not wait for them
    logger = make_logger(sink, FakeAgent(delay=0.4))  # a thinking agent: the run is opened meanwhile
    result = logger.send_question("hi")
    assert result.delivery.wait(0.05) is False
    assert dict.__getitem__(result, "answer") == "echo hi"
    run_id = result["run_id"]  # resolved from the run opened during the request, while writes still hang
    assert run_id == sink.runs[result["interaction_id"]]["run_id"]
    sink.gate.set()
    assert logger.flush(5) is True
    assert result.delivery.ref.run_id == run_id and len(sink.runs) == 1
    assert json.loads(json.dumps(result, default=str))["run_id"] == run_id
    assert dict(result)["run_id"] == run_id


def test_fast_answer_gets_its_run_id_from_the_background_write(make_logger) -> None:
    sink = FakeSink()
    sink.gate = threading.Event()
    logger = make_logger(sink)  # answers at once: no early open; the deliverer creates the run, then writes
    result = logger.send_question("hi")
    assert not result.delivery.wait(0.05)
    run_id = result["run_id"]  # known once the run exists, while the rest of the write still hangs
    assert run_id is not None and run_id == sink.runs[result["interaction_id"]]["run_id"]
    assert result["logging_error"] is None and not result.delivery.wait(0)
    sink.gate.set()
    assert logger.flush(5) and result.delivery.ref.run_id == run_id
    assert sink.opened == 1 and len(sink.runs) == 1


def test_mlflow_down_gives_the_answer_and_says_where_the_record_is(make_logger, tmp_path: Path) -> None:
    sink = FakeSink()
    sink.down = True
    logger = make_logger(sink)
    result = logger.send_question("hi")
    assert result["answer"] == "echo hi"
    assert result["run_id"] is None
    assert str(tmp_path / "spool") in result["logging_error"]
    assert logger.close(timeout=2) is False
    assert logger.close() is True  # second close: nothing left to do


def test_agent_failure_is_recorded_and_raised_with_the_run(make_logger) -> None:
    sink = FakeSink()
    logger = make_logger(sink, FakeAgent(fail=True))
    with pytest.raises(AgentTaskError) as info:
        logger.send_question("hi")
    assert logger.flush(5)
    err = info.value
    assert type(err) is AgentTaskError and err.task_state == "failed"
    assert err.run_id == sink.runs[err.interaction.interaction_id]["run_id"]
    assert err.interaction.status == "error" and sink.complete() == 1
    assert err.result["run_id"] == err.run_id and dict(err.result)["status"] == "error"
    assert "run_id" not in vars(err)  # typed: carried by the result given at construction, not patched on


def test_failure_is_raised_without_waiting_for_mlflow(make_logger) -> None:
    sink = FakeSink()
    sink.gate = threading.Event()  # MLflow hangs
    logger = make_logger(sink, FakeAgent(fail=True))
    logger.run_id_timeout = 30
    t0 = time.monotonic()
    with pytest.raises(AgentTaskError) as info:
        logger.send_question("hi")
    assert not info.value.result.delivery.wait(0)  # raised while MLflow still hangs: nothing waited for it
    assert info.value.result.outcome is None  # run keys not settled yet
    sink.gate.set()
    assert time.monotonic() - t0 < 25  # generous: the old code waited run_id_timeout (30 s) before raising


READS = {
    "item": lambda r: r["run_id"],
    "get": lambda r: r.get("run_id"),
    "dict": lambda r: dict(r)["run_id"],
    "unpack": lambda r: {**r}["run_id"],
    "json": lambda r: json.loads(json.dumps(r))["run_id"],
    "items": lambda r: dict(r.items())["run_id"],
    "values": lambda r: list(r.values())[list(r.keys()).index("run_id")],
    "copy": lambda r: r.copy()["run_id"],
    "to_dict": lambda r: r.to_dict()["run_id"],
    "pop": lambda r: r.pop("run_id"),
    "setdefault": lambda r: r.setdefault("run_id", "other"),
    "or": lambda r: (r | {})["run_id"],
    "pickle": lambda r: __import__("pickle").loads(__import__("pickle").dumps(r))["run_id"],
}


@pytest.mark.parametrize("way", sorted(READS))
def test_every_way_of_reading_the_result_gives_the_real_run_id(make_logger, way: str) -> None:
    sink = FakeSink()
    logger = make_logger(sink)
    result = logger.send_question("hi")
    assert dict.keys(result) >= {"answer", "run_id", "response", "latency_ms"}  # the seed's keys are kept
    # The first read of any kind settles the run keys (bounded wait), so each way sees the real id.
    assert READS[way](result) == sink.runs[dict.__getitem__(result, "interaction_id")]["run_id"]


def test_reading_the_answer_never_waits_for_mlflow(make_logger) -> None:
    sink = FakeSink()
    sink.gate = threading.Event()  # MLflow hangs
    logger = make_logger(sink)  # a fast answer: its run is created only after it, by the hanging deliverer
    result = logger.send_question("hi")
    assert result["answer"] == "echo hi" and result.get("status") == "ok" and "run_id" in result
    assert result.outcome is None  # none of that read the run keys, so nothing waited for MLflow
    sink.gate.set()
    assert logger.flush(5) and result["run_id"] == result.delivery.ref.run_id


def test_result_reads_agree_with_each_other(make_logger) -> None:
    logger = make_logger(FakeSink())
    result = logger.send_question("hi")
    first = {**result}
    assert dict(result) == first == json.loads(json.dumps(result, default=str)) == result.to_dict()
    assert result == first and repr(result) == repr(first)


def test_the_question_names_its_trace_in_traceparent(make_logger) -> None:
    """The ids the agent gets up front are the ones the sink's trace uses later (one distributed trace)."""
    from kagent_mlflow.sinks._trace import build_trace
    from kagent_mlflow.sinks.redact import Redactor

    agent = FakeAgent()
    logger = make_logger(FakeSink(), agent)
    result = logger.send_question("hi")
    headers = agent.headers[-1]
    assert headers is not None
    version, trace_hex, span_hex, flags = headers["traceparent"].split("-")
    assert (version, flags) == ("00", "01")  # sampled: an unsampled parent makes the runtime record nothing
    assert headers["tracestate"] == f"kagent-mlflow={result['interaction_id']}"
    built = build_trace(result.interaction, "1", "run", Redactor())
    root = built.spans[0]
    assert built.info.trace_id == f"tr-{trace_hex}"
    assert (root.trace_id, root.span_id, root.parent_id) == (f"tr-{trace_hex}", span_hex, None)
