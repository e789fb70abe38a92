"""Replay: delivers the spool once, stops on an outage without losing anything, never makes a second run."""

from __future__ import annotations

from pathlib import Path

from kagent_mlflow.delivery import Spool, replay
from kagent_mlflow.records import Interaction

from .test_delivery_recorder import FakeSink, make


def spooled(tmp_path: Path, n: int, **kw) -> list[Interaction]:
    spool = Spool(tmp_path, **kw)
    records = [make(i) for i in range(n)]
    for r in records:
        spool.append(r, sync=False)
    spool.close()
    return records


def test_replay_delivers_everything_once_and_reports_progress(tmp_path: Path) -> None:
    spooled(tmp_path, 25, segment_records=10)
    sink = FakeSink()
    seen: list[int] = []
    report = replay(Spool(tmp_path), sink, workers=3, progress=lambda r: seen.append(r.done))
    assert (report.total, report.delivered, report.failed, report.stopped_on_outage) == (25, 25, 0, False)
    assert sorted(seen) == list(range(1, 26))
    assert sink.complete() == 25 and all(r["writes"] == 1 for r in sink.runs.values())
    again = replay(Spool(tmp_path), sink)
    assert (again.total, again.delivered) == (0, 0)
    assert list(tmp_path.glob("*.jsonl")) == []


def test_replay_stops_on_outage_and_keeps_the_rest(tmp_path: Path) -> None:
    spooled(tmp_path, 10)
    sink = FakeSink()
    sink.down = True
    report = replay(Spool(tmp_path), sink, workers=2, attempts=2, backoff=0.01)
    assert report.stopped_on_outage and report.delivered == 0
    assert "connection refused" in report.errors[0]
    assert Spool(tmp_path).status().pending == 10
    sink.down = False
    assert replay(Spool(tmp_path), sink).delivered == 10


def test_rejected_records_stay_spooled_and_the_rest_is_delivered(tmp_path: Path) -> None:
    records = spooled(tmp_path, 5)
    sink = FakeSink()
    sink.reject.add(records[2].interaction_id)
    report = replay(Spool(tmp_path), sink)
    assert (report.delivered, report.failed, report.stopped_on_outage) == (4, 1, False)
    assert Spool(tmp_path).status().pending == 1


def test_run_opened_before_a_crash_is_completed_not_duplicated(tmp_path: Path) -> None:
    records = spooled(tmp_path, 3)
    sink = FakeSink()
    opened = sink.open_run(records[0]).run_id  # the process died after creating the run, before writing it
    replay(Spool(tmp_path), sink)
    assert len(sink.runs) == 3 and sink.runs[records[0].interaction_id]["run_id"] == opened
    assert sink.complete() == 3


def test_corrupt_lines_are_counted_and_do_not_block_the_rest(tmp_path: Path) -> None:
    spooled(tmp_path, 3)
    (segment,) = tmp_path.glob("*.jsonl")
    with open(segment, "ab") as fh:
        fh.write(b"not json at all\n")
    report = replay(Spool(tmp_path), FakeSink())
    assert (report.delivered, report.corrupt) == (3, 1)
