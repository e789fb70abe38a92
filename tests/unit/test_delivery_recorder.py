"""The recorder: hands off at once, delivers in the background, keeps what it cannot deliver, never duplicates."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from kagent_mlflow.delivery import Recorder, Spool
from kagent_mlflow.errors import DeliveryError
from kagent_mlflow.records import Destination, Interaction

DEST = Destination(tracking_uri="http://fake-mlflow:5000", experiment_name="e")


@dataclass(frozen=True)
class Ref:
    run_id: str
    experiment_id: str = "0"
    url: str | None = None


def fail(message: str, retryable: bool) -> DeliveryError:
    err = DeliveryError(message)
    err.retryable = retryable  # type: ignore[attr-defined]
    return err


class FakeSink:
    """In-process stand-in for MlflowSink with the same idempotency contract: one run per interaction id."""

    def __init__(self, destination: Destination = DEST) -> None:
        self.destination = destination
        self.lock = threading.Lock()
        self.runs: dict[str, dict] = {}
        self.down = False
        self.reject: set[str] = set()
        self.gate: threading.Event | None = None
        self.write_run_ids: list[str | None] = []
        self.opened = 0
        self.open_ids: list[str] = []  # interaction id of every open_run call, in order
        self.attempts: dict[str, int] = {}  # interaction id -> open_run/write calls

    def _check(self, interaction: Interaction) -> None:
        with self.lock:
            self.attempts[interaction.interaction_id] = self.attempts.get(interaction.interaction_id, 0) + 1
        if self.down:
            raise fail("connection refused", retryable=True)
        if interaction.interaction_id in self.reject:
            raise fail("invalid record", retryable=False)

    def _run(self, interaction: Interaction) -> dict:
        with self.lock:
            return self.runs.setdefault(
                interaction.interaction_id, {"run_id": uuid.uuid4().hex, "complete": False, "writes": 0}
            )

    def open_run(self, interaction: Interaction) -> Ref:
        self._check(interaction)
        self.opened += 1
        self.open_ids.append(interaction.interaction_id)
        return Ref(self._run(interaction)["run_id"])

    def write(self, interaction: Interaction, run_id: str | None = None) -> Ref:
        if self.gate is not None:
            self.gate.wait(10)
        self._check(interaction)
        run = self._run(interaction)
        assert run_id in (None, run["run_id"])
        with self.lock:
            run["complete"] = True
            run["writes"] += 1
            self.write_run_ids.append(run_id)
        return Ref(run["run_id"], url=f"http://mlflow/runs/{run['run_id']}")

    def complete(self) -> int:
        return sum(1 for r in self.runs.values() if r["complete"])


def make(i: int = 0, destination: Destination | None = DEST) -> Interaction:
    return Interaction(
        question=f"q{i}",
        answer="a",
        agent_name="agent",
        a2a_url="http://x/",
        experiment_name="e",
        destination=destination,
    )


def wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


@pytest.fixture
def sink() -> FakeSink:
    return FakeSink()


@pytest.fixture
def recorder_factory(tmp_path: Path):
    made: list[Recorder] = []

    def factory(sink: FakeSink, **kw) -> Recorder:
        kw.setdefault("backoff", 0.01)
        kw.setdefault("retry_interval", 0.2)
        kw.setdefault("retry_gap", 0.05)
        recorder = Recorder(lambda: sink, Spool(tmp_path / "spool"), **kw)
        made.append(recorder)
        return recorder

    yield factory
    for recorder in made:
        recorder.close(timeout=1)


def test_record_returns_before_delivery_and_flush_waits(sink: FakeSink, recorder_factory) -> None:
    sink.gate = threading.Event()
    recorder = recorder_factory(sink)
    ticket = recorder.record(make())
    assert not ticket.wait(0.05)  # the sink is still blocked: record() did not wait for it
    assert recorder.flush(0.05) is False
    sink.gate.set()
    assert recorder.flush(5) is True
    assert ticket.delivered and ticket.ref.url.endswith(ticket.ref.run_id)
    assert recorder.spool.pending() == 0


def test_begin_creates_the_run_early_and_write_completes_that_same_run(sink: FakeSink, recorder_factory) -> None:
    recorder = recorder_factory(sink)
    interaction = make()
    pending = recorder.begin(interaction)
    run_id = pending.run_id(5)
    assert run_id is not None and sink.runs[interaction.interaction_id]["complete"] is False
    ticket = recorder.record(interaction, pending)
    assert recorder.flush(5)
    assert ticket.ref.run_id == run_id and sink.write_run_ids == [run_id]
    assert len(sink.runs) == 1


def test_delivery_steps_aside_while_a_live_request_is_in_flight(sink: FakeSink, recorder_factory) -> None:
    recorder = recorder_factory(sink, yield_limit=5)
    with recorder.live_request():
        ticket = recorder.record(make())
        assert not ticket.wait(0.3)  # the deliverer waits for the live request to end
    assert ticket.wait(5) and ticket.delivered


def test_live_requests_never_starve_delivery(sink: FakeSink, recorder_factory) -> None:
    recorder = recorder_factory(sink, yield_limit=0.1)
    with recorder.live_request():
        ticket = recorder.record(make())
        assert ticket.wait(5) and ticket.delivered  # bounded wait: delivery proceeds anyway


def test_fast_answer_skips_the_early_open(sink: FakeSink, recorder_factory) -> None:
    recorder = recorder_factory(sink, early_run_after=0.2)
    interaction = make()
    pending = recorder.begin(interaction)
    ticket = recorder.record(interaction, pending)  # the answer came before the grace period ended
    assert ticket.wait(5) and pending.run_id(5) == ticket.ref.run_id
    # The early opener takes questions in order: once a later, unanswered question has been opened early, it has
    # decided about the first one for good (no fixed sleep standing in for "nothing happened").
    slow = make(1)
    assert recorder.begin(slow).run_id(5) is not None
    assert sink.open_ids == [interaction.interaction_id, slow.interaction_id]
    # No early open of the first: the deliverer created its run itself (one create, no search) and wrote that run.
    assert sink.write_run_ids == [ticket.ref.run_id]


def test_mlflow_down_keeps_every_record_then_delivers_them_when_it_returns(
    sink: FakeSink, recorder_factory, tmp_path: Path
) -> None:
    sink.down = True
    recorder = recorder_factory(sink, retry_interval=0.3)
    asked = [make(100 + i) for i in range(3)]
    pendings = [recorder.begin(stub) for stub in asked]  # three slow questions still waiting for their answers
    tickets = [recorder.record(make(i)) for i in range(20)]
    assert recorder.flush(5) is False  # everything is accounted for (spooled), not delivered
    assert all(t.spooled for t in tickets)
    assert [p.run_id(5) for p in pendings] == [None, None, None]
    status = Spool(tmp_path / "spool").status()  # a slow one opened early waits as a provisional record
    assert status.pending - status.unanswered == 20
    tickets += [recorder.record(stub, pending) for stub, pending in zip(asked, pendings, strict=True)]
    assert recorder.flush(5) is False
    status = Spool(tmp_path / "spool").status()  # the answers superseded the provisional records
    assert (status.pending, status.unanswered) == (23, 0)

    sink.down = False
    assert wait_for(lambda: sink.complete() == 23)
    assert recorder.flush(5) is True
    assert all(r["writes"] == 1 for r in sink.runs.values())
    assert wait_for(lambda: Spool(tmp_path / "spool").status().pending == 0)


def test_full_queue_spools_instead_of_dropping(sink: FakeSink, recorder_factory) -> None:
    sink.gate = threading.Event()
    recorder = recorder_factory(sink, workers=1, queue_size=2)
    tickets = [recorder.record(make(i)) for i in range(10)]
    assert sum(t.spooled for t in tickets) >= 7
    sink.gate.set()
    assert wait_for(lambda: sink.complete() == 10)
    assert recorder.flush(5)


def test_rejected_record_is_kept_and_not_retried_forever(sink: FakeSink, recorder_factory) -> None:
    bad = make(1)
    sink.reject.add(bad.interaction_id)
    recorder = recorder_factory(sink)
    recorder.record(make(0))
    ticket = recorder.record(bad)
    assert recorder.flush(5) is False
    assert ticket.spooled and "invalid record" in ticket.error
    # A record that waits because MLflow was down, journalled after the rejected one: once the background retry has
    # delivered it, that drain has gone past the rejected record, which must not have been tried again.
    sink.down = True
    later = recorder.record(make(2))
    assert recorder.flush(5) is False and later.spooled
    sink.down = False
    assert wait_for(lambda: sink.complete() == 2)
    assert recorder.close(timeout=5) is False  # the rejected record stays in the spool
    assert sink.attempts[bad.interaction_id] == 1
    assert recorder.spool.status().pending == 1


def test_close_is_idempotent_and_later_records_still_reach_the_spool(sink: FakeSink, recorder_factory) -> None:
    recorder = recorder_factory(sink)
    recorder.record(make(0))
    assert recorder.close(timeout=5) is True
    assert recorder.close() is True
    ticket = recorder.record(make(1))
    assert ticket.spooled
    assert recorder.spool.status().pending == 1


def test_close_with_mlflow_down_leaves_records_for_replay(sink: FakeSink, recorder_factory, tmp_path: Path) -> None:
    sink.down = True
    recorder = recorder_factory(sink)
    for i in range(5):
        recorder.record(make(i))
    assert recorder.close(timeout=5) is False
    assert Spool(tmp_path / "spool").status().pending == 5
    assert Spool(tmp_path / "spool").status().in_use_segments == 0


def test_a_new_recorder_drains_what_an_earlier_process_left(sink: FakeSink, recorder_factory, tmp_path: Path) -> None:
    old = Spool(tmp_path / "spool")
    for i in range(4):
        old.append(make(i))
    old.close()
    recorder_factory(sink)
    assert wait_for(lambda: sink.complete() == 4)
    assert wait_for(lambda: Spool(tmp_path / "spool").status().pending == 0)


def test_an_early_opened_run_is_journalled_first_and_the_answer_supersedes_it(
    sink: FakeSink, recorder_factory, tmp_path: Path
) -> None:
    recorder = recorder_factory(sink)
    stub = make(7)
    pending = recorder.begin(stub)
    run_id = pending.run_id(5)  # the agent is still thinking: the run was opened early
    assert run_id is not None and sink.opened == 1
    status = Spool(tmp_path / "spool").status()
    assert (status.pending, status.unanswered) == (1, 1)  # journalled: a crash now leaves a record to close it
    ticket = recorder.record(stub.model_copy(update={"answer": "late answer"}), pending)
    assert ticket.wait(5) and ticket.ref.run_id == run_id
    assert recorder.close(timeout=5) is True
    assert Spool(tmp_path / "spool").status().pending == 0  # real record delivered, provisional one acked


def test_no_early_open_when_it_cannot_be_journalled(
    sink: FakeSink, recorder_factory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "spool").write_text("a file where the spool directory should be")
    recorder = recorder_factory(sink)
    stub = make(8)
    with caplog.at_level(logging.WARNING, logger="kagent_mlflow.delivery"):
        pending = recorder.begin(stub)
        assert wait_for(lambda: "no early run open" in caplog.text)
    assert sink.opened == 0  # an unjournalled run could be orphaned by a crash: it is not opened
    ticket = recorder.record(stub, pending)
    assert ticket.wait(5) and ticket.delivered and sink.opened == 1  # the deliverer created it after the answer
