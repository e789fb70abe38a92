"""What waits in a spool, per destination: the counts ``kagent-mlflow status`` shows and ``replay`` plans with.

Read without locking (cheap; a record being delivered right now is still counted), streaming line by line, with
each distinct destination parsed once.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .._files import try_lock
from ..records import Destination
from .spool import _iter_lines, _read_acks, journal_key


@dataclass
class Waiting:
    """Records waiting for one destination. ``destination`` is None for records spooled before records carried
    their destination (they name only their experiment)."""

    destination: Destination | None
    experiment_name: str
    pending: int = 0
    oldest_ms: int | None = None


@dataclass
class SpoolStatus:
    """What ``kagent-mlflow status`` shows: totals, and ``waiting`` per destination (oldest first)."""

    path: Path
    pending: int = 0
    oldest_ms: int | None = None
    segments: int = 0
    corrupt_lines: int = 0
    in_use_segments: int = 0  # locked by a live process (records may still be in its memory queue)
    unanswered: int = 0  # of ``pending``: provisional records of questions whose client has not recorded an answer
    waiting: list[Waiting] = field(default_factory=list)


def scan(directory: Path, segment_paths: list[Path]) -> SpoolStatus:
    """Totals and per-destination groups of the unacked records in ``segment_paths`` (oldest first)."""
    status = SpoolStatus(path=directory)
    groups: dict[tuple[Destination | None, str], Waiting] = {}
    destinations = _DestinationCache()
    for path in segment_paths:
        acked = _read_acks(path)
        # (id, provisional, destination, experiment, started) per unacked line; small, bounded by the segment's size
        unacked: list[tuple[str, bool, Destination | None, str, object]] = []
        answered: set[str] = set()
        try:
            for line in _iter_lines(path):
                try:
                    data = json.loads(line.raw)
                    interaction_id, provisional = data["interaction_id"], data.get("provisional") is True
                    key = journal_key(interaction_id, provisional)
                    destination = destinations.get(data.get("destination"))
                    experiment = str(data["experiment_name"])
                except (ValueError, KeyError, TypeError, RecursionError):  # RecursionError: absurdly deep JSON
                    status.corrupt_lines += 1
                    continue
                if not provisional:
                    answered.add(interaction_id)
                if key not in acked:
                    unacked.append((interaction_id, provisional, destination, experiment, data.get("started_at_ms")))
        except FileNotFoundError:  # delivered and deleted while we read
            continue
        counted = 0
        for interaction_id, provisional, destination, experiment, started in unacked:
            if provisional and interaction_id in answered:
                continue  # superseded by the answer in the same segment: replay never sends it (Spool.records)
            counted += 1
            status.unanswered += provisional
            group = groups.setdefault((destination, experiment), Waiting(destination, experiment))
            group.pending += 1
            if isinstance(started, int):
                if status.oldest_ms is None or started < status.oldest_ms:
                    status.oldest_ms = started
                if group.oldest_ms is None or started < group.oldest_ms:
                    group.oldest_ms = started
        if counted:
            status.pending += counted
            status.segments += 1
            if _is_locked(path):
                status.in_use_segments += 1
    status.waiting = sorted(groups.values(), key=lambda w: (w.oldest_ms or 0, w.experiment_name))
    return status


class _DestinationCache:
    """Parses each distinct destination of a spool once (a backlog has thousands of records and few of these)."""

    def __init__(self) -> None:
        self._seen: dict[str, Destination] = {}

    def get(self, raw: object) -> Destination | None:
        """The destination of a record's JSON; ValueError when it is malformed (the line counts as corrupt)."""
        if raw is None:
            return None
        key = json.dumps(raw, sort_keys=True)
        if key not in self._seen:
            self._seen[key] = Destination.model_validate(raw)  # a ValidationError is a ValueError
        return self._seen[key]


def _is_locked(path: Path) -> bool:
    fd = try_lock(path)
    if fd is None:
        return path.exists()
    os.close(fd)
    return False
