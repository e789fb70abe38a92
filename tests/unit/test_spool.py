"""The spool journal: what is appended can be read back, acked records go away, damage is contained."""

from __future__ import annotations

import json
import logging
import multiprocessing
from pathlib import Path

from kagent_mlflow.delivery.spool import Spool
from kagent_mlflow.records import Interaction


def make(i: int = 0, **kw: object) -> Interaction:
    return Interaction(
        question=f"q{i}", answer=f"a{i}", agent_name="agent", a2a_url="http://127.0.0.1:1/", experiment_name="e", **kw
    )


def drain_all(spool: Spool) -> list[Interaction]:
    """Read and ack everything claimable, the way replay does."""
    seen = []
    for claimed in spool.claim():
        for interaction in claimed.records():
            seen.append(interaction)
            claimed.ack(interaction.interaction_id)
        claimed.release(complete=True)
    return seen


def test_records_round_trip_and_acked_segments_are_deleted(tmp_path: Path) -> None:
    writer = Spool(tmp_path)
    records = [make(i, usage={"promptTokenCount": i}) for i in range(5)]
    for r in records:
        writer.append(r)
    writer.close()  # nothing acked: the segment stays for replay

    reader = Spool(tmp_path)
    assert reader.status().pending == 5
    assert drain_all(reader) == records
    assert list(tmp_path.glob("*.jsonl")) == []
    assert reader.status().pending == 0


def test_segment_fully_acked_by_its_writer_is_deleted_on_close(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    entries = [spool.append(make(i), sync=False) for i in range(3)]
    for entry in entries:
        spool.ack(entry)
    spool.close()
    assert list(tmp_path.iterdir()) == []


def test_only_unacked_records_are_replayed(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    records = [make(i) for i in range(4)]
    entries = [spool.append(r) for r in records]
    spool.ack(entries[0])
    spool.ack(entries[2])
    spool.close()
    replayed = [r.interaction_id for r in drain_all(Spool(tmp_path))]
    assert replayed == [records[1].interaction_id, records[3].interaction_id]


def test_a_live_writer_keeps_its_segment_from_other_readers(tmp_path: Path) -> None:
    writer = Spool(tmp_path)
    writer.append(make())
    other = Spool(tmp_path)  # another open file description: flock conflicts as it would across processes
    assert drain_all(other) == []
    assert other.status().in_use_segments == 1
    writer.close()
    assert len(drain_all(other)) == 1


def test_torn_last_line_and_corrupted_line_are_skipped_with_a_warning(tmp_path: Path, caplog) -> None:
    spool = Spool(tmp_path)
    good = [make(i) for i in range(3)]
    for r in good:
        spool.append(r)
    spool.close()
    (segment,) = tmp_path.glob("*.jsonl")
    lines = segment.read_bytes().splitlines(keepends=True)
    damaged = lines[0] + b'{"interaction_id": "x", "questi\xff\n' + lines[1] + lines[2] + lines[0][:40]
    segment.write_bytes(damaged)

    with caplog.at_level(logging.WARNING, logger="kagent_mlflow.delivery"):
        assert Spool(tmp_path).status().corrupt_lines == 2
        delivered = drain_all(Spool(tmp_path))
    assert [r.interaction_id for r in delivered] == [r.interaction_id for r in good]
    messages = " ".join(rec.getMessage() for rec in caplog.records)
    assert "corrupted line 2" in messages and "torn last line" in messages
    assert not list(tmp_path.glob("*.jsonl"))
    kept = (tmp_path / "corrupt").glob("*.bad")
    assert len(next(kept).read_bytes().splitlines()) == 2


def test_status_reports_count_and_oldest(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append(make(0, started_at_ms=2_000))
    spool.append(make(1, started_at_ms=1_000))
    status = spool.status()
    assert (status.pending, status.oldest_ms, status.path) == (2, 1_000, tmp_path)
    assert Spool(tmp_path / "missing").status().pending == 0


def test_segments_rotate_so_a_huge_backlog_is_read_in_bounded_pieces(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_records=10)
    for i in range(25):
        spool.append(make(i), sync=False)
    spool.close()
    assert len(list(tmp_path.glob("*.jsonl"))) == 3
    assert [r.question for r in drain_all(Spool(tmp_path))] == [f"q{i}" for i in range(25)]


def _append_many(directory: str, worker: int, count: int) -> None:
    spool = Spool(directory, segment_records=7)
    for i in range(count):
        spool.append(make(i, run_name=f"w{worker}"), sync=i % 5 == 0)
    spool.close()


def test_concurrent_processes_append_without_losing_or_mixing_lines(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_append_many, args=(str(tmp_path), w, 40)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    for segment in tmp_path.glob("*.jsonl"):
        for line in segment.read_bytes().splitlines():
            json.loads(line)
    delivered = drain_all(Spool(tmp_path))
    assert len(delivered) == 160
    assert len({r.interaction_id for r in delivered}) == 160


def test_a_provisional_record_is_superseded_by_the_answer_in_the_same_segment(tmp_path: Path) -> None:
    asked, orphan = make(1), make(2)
    writer = Spool(tmp_path)
    writer.append(asked.provisional_copy())  # journalled before its early run open ...
    writer.append(orphan.provisional_copy())  # ... and one whose client died before the answer
    writer.append(asked)  # the answer arrived, but the process died before acking the provisional record
    writer.close()

    status = Spool(tmp_path).status()
    assert (status.pending, status.unanswered) == (2, 1)  # as replay sees it: the answer supersedes its provisional
    seen = []
    for claimed in Spool(tmp_path).claim():
        for interaction in claimed.records():
            seen.append(interaction)
            claimed.ack(interaction)
        claimed.release(complete=True)
    # The answered question is delivered as answered; only the orphan goes out as a failed, provisional record.
    assert [(r.interaction_id, r.provisional) for r in seen] == [
        (asked.interaction_id, False),
        (orphan.interaction_id, True),
    ]
    assert seen[1].status == "error" and "client stopped" in (seen[1].error or "")
    assert Spool(tmp_path).status().pending == 0


def test_text_that_is_not_valid_unicode_round_trips_exactly(tmp_path: Path) -> None:
    odd = make(3).model_copy(update={"question": "bad \udcff\udcfe and \ud800", "raw_response": {"k\ud800": "v"}})
    writer = Spool(tmp_path)
    writer.append(odd)
    writer.close()
    assert drain_all(Spool(tmp_path)) == [odd]
