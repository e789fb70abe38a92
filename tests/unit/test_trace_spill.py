"""The trace spill (serve/trace_spill.py) and the export pool (serve/trace_export.py) with an in-process sender.

Issue 9 Why #4: the backlog grew without bound (RSS 211 -> 409 MB) and SIGTERM took 76 s. Here: memory stays under
its limit and the rest goes to disk; close() returns by its deadline with everything unexported on disk; the disk is
drained once the sender works again; a refused trace is kept, never dropped; a torn record never blocks the rest.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from kagent_mlflow.serve import trace_spill
from kagent_mlflow.serve.trace_export import ExportLimits, ExportPool
from kagent_mlflow.serve.trace_spill import Record, SpillWriter

URI = "http://mlflow.example:5000"


class Sender:
    """Records what was posted; ``status`` (or an exception) decides the answer; ``gate`` can hold requests."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.bodies: list[bytes] = []
        self.gate = threading.Event()
        self.gate.set()
        self.lock = threading.Lock()

    def __call__(self, uri: str, experiment: str, body: bytes, timeout: float) -> int:
        self.gate.wait()
        if isinstance(self.status, Exception):
            raise self.status
        with self.lock:
            if self.status == 200:
                self.bodies.append(body)
        return self.status

    def delivered(self) -> set[bytes]:
        out = set()
        for body in self.bodies:
            out.update(split(body))
        return out


def payload(i: int) -> bytes:
    """A fake trace payload of exactly 100 bytes, so a posted batch splits back into its traces."""
    return f"{i:04d}|".encode() + b"x" * 95


def split(body: bytes) -> list[bytes]:
    return [body[i : i + 100] for i in range(0, len(body), 100)]


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def spilled(directory: Path) -> int:
    return trace_spill.status(directory).traces


def test_memory_is_bounded_and_the_rest_spills_to_disk(tmp_path):
    sender = Sender()
    sender.gate.clear()  # MLflow hangs
    limits = ExportLimits(exporters=2, batch_traces=10, memory_bytes=2_000, linger_s=0.01)
    pool = ExportPool(URI, tmp_path, limits, send=sender).start()
    for i in range(200):
        pool.put(Record("1", payload(i)))
        _, in_memory = pool.backlog()
        assert in_memory <= 2_000
    assert spilled(tmp_path) >= 200 - 20
    sender.gate.set()  # MLflow is back: memory and disk both drain
    wait_until(lambda: len(sender.delivered()) == 200)
    wait_until(lambda: spilled(tmp_path) == 0)
    report = pool.close(time.monotonic() + 1)
    assert report.persisted == 0
    assert sender.delivered() == {payload(i) for i in range(200)}


def test_batches_many_traces_per_request(tmp_path):
    sender = Sender()
    pool = ExportPool(URI, tmp_path, ExportLimits(batch_traces=50, linger_s=5.0), send=sender).start()
    for i in range(150):
        pool.put(Record("1", payload(i)))
    wait_until(lambda: len(sender.delivered()) == 150)
    assert len(sender.bodies) == 3
    pool.close(time.monotonic() + 1)


def test_close_keeps_its_deadline_and_persists_the_rest(tmp_path):
    sender = Sender()
    sender.gate.clear()  # every export hangs: nothing can be confirmed
    pool = ExportPool(URI, tmp_path, ExportLimits(exporters=2, batch_traces=5, linger_s=0.01), send=sender).start()
    for i in range(40):
        pool.put(Record("7", payload(i)))
    started = time.monotonic()
    report = pool.close(started + 0.5)
    assert time.monotonic() - started < 3
    assert report.persisted == 40  # the in-flight batches too: they may still succeed, re-sending is harmless
    st = trace_spill.status(tmp_path)
    assert (st.traces, st.in_use_segments) == (40, 0)
    sender.gate.set()


def test_close_stops_early_when_mlflow_refuses_connections(tmp_path):
    sender = Sender(status=ConnectionRefusedError("refused"))
    pool = ExportPool(URI, tmp_path, ExportLimits(linger_s=0.01), send=sender).start()
    for i in range(10):
        pool.put(Record("1", payload(i)))
    started = time.monotonic()
    report = pool.close(started + 30)
    assert time.monotonic() - started < 10
    assert report.persisted == 10 and spilled(tmp_path) == 10


def test_next_start_exports_what_an_earlier_run_spilled(tmp_path):
    down = Sender(status=503)
    first = ExportPool(URI, tmp_path, ExportLimits(linger_s=0.01), send=down).start()
    for i in range(30):
        first.put(Record("1", payload(i)))
    first.close(time.monotonic() + 0.3)
    assert spilled(tmp_path) == 30

    up = Sender()
    second = ExportPool(URI, tmp_path, ExportLimits(), send=up).start()
    wait_until(lambda: spilled(tmp_path) == 0 and len(up.delivered()) == 30)
    assert not list(tmp_path.glob("*.otlp"))
    second.close(time.monotonic() + 1)


def test_segments_for_another_tracking_server_are_left_alone(tmp_path):
    writer = SpillWriter(tmp_path, "http://other:5000")
    writer.append([Record("1", payload(1))])
    writer.close()
    sender = Sender()
    pool = ExportPool(URI, tmp_path, ExportLimits(), send=sender).start()
    pool.put(Record("1", payload(2)))
    wait_until(lambda: sender.delivered() == {payload(2)})
    pool.close(time.monotonic() + 1)
    assert spilled(tmp_path) == 1


def test_a_refused_trace_is_isolated_and_kept_the_rest_exported(tmp_path):
    bad = payload(13)

    def send(uri: str, experiment: str, body: bytes, timeout: float) -> int:
        if bad in body:
            return 400
        sender.bodies.append(body)
        return 200

    sender = Sender()
    pool = ExportPool(URI, tmp_path, ExportLimits(batch_traces=20, linger_s=0.01), send=send).start()
    for i in range(20):
        pool.put(Record("1", payload(i)))
    wait_until(lambda: len(sender.delivered()) == 19)
    assert trace_spill.status(tmp_path).rejected == 1
    pool.close(time.monotonic() + 1)


def test_a_torn_record_is_quarantined_and_the_records_before_it_survive(tmp_path):
    writer = SpillWriter(tmp_path, URI)
    writer.append([Record("1", payload(i)) for i in range(3)])
    writer.close()
    segment = next(tmp_path.glob("*.otlp"))
    with open(segment, "ab") as fh:  # a crash in the middle of a write
        fh.write(trace_spill.encode(Record("1", payload(3)))[:-20])
    os.sync()
    assert spilled(tmp_path) == 3
    sender = Sender()
    pool = ExportPool(URI, tmp_path, ExportLimits(), send=sender).start()
    wait_until(lambda: len(sender.delivered()) == 3)
    wait_until(lambda: not list(tmp_path.glob("*.otlp")))
    assert list((tmp_path / "corrupt").iterdir())
    pool.close(time.monotonic() + 1)


def test_a_segment_that_appears_later_is_found_by_a_running_server(tmp_path, monkeypatch):
    from kagent_mlflow.serve import trace_export

    monkeypatch.setattr(trace_export, "DISK_RECHECK_S", 0.2)
    sender = Sender()
    pool = ExportPool(URI, tmp_path, ExportLimits(), send=sender).start()
    time.sleep(0.1)  # let it look at the empty directory first
    writer = SpillWriter(tmp_path, URI)  # e.g. copied in, or unlocked again by `kagent-mlflow status`
    writer.append([Record("1", payload(5))])
    writer.close()
    wait_until(lambda: sender.delivered() == {payload(5)})
    pool.close(time.monotonic() + 1)
