"""The durable spool: an on-disk journal of interactions not yet known to be in MLflow.

Layout (one directory, ``Settings.effective_spool_dir``)::

    <time_ns>-<pid>-<rand>.jsonl   a segment: one Interaction JSON per line, append-only
    <segment>.acks                 interaction ids of that segment already delivered (one per line)
    corrupt/<segment>.bad          lines that could not be parsed, kept for inspection

Why it is shaped like this:

* Every process writes only to segments it created and holds an exclusive ``flock`` on them while it may still
  deliver their records itself. Another process (``kagent-mlflow replay``, or a second logger) only touches segments
  it can lock, so two processes never race on one file. The kernel drops the lock when a process dies, even by
  SIGKILL, so a crashed writer's segment becomes replayable at once.
* A line is written with one ``os.write`` (it reaches the kernel, so it survives the process being killed) and
  ``fsync``'d either at once or by a background syncer in batches (survives power loss a few ms later).
* A torn last line (crash in the middle of a write) or a corrupted line is skipped with a warning and kept in
  ``corrupt/``; it never blocks the records around it.
* Acks are not fsync'd: losing one only means the record is delivered again, and delivery is idempotent by
  ``interaction_id``. A segment whose records are all acked is deleted.
* Readers stream line by line, so memory stays bounded whatever the backlog; a segment holds at most
  ``segment_records`` records, which bounds the ack set held while draining one.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic_core import PydanticSerializationError

from .._files import try_lock, write_all
from ..records import Interaction

if TYPE_CHECKING:
    from .spool_status import SpoolStatus

log = logging.getLogger("kagent_mlflow.delivery")

SEGMENT_SUFFIX = ".jsonl"
ACK_SUFFIX = ".acks"
CORRUPT_DIR = "corrupt"
_MAX_KEPT_BAD_BYTES = 1 << 20  # corrupt lines kept per segment; beyond this they are only counted


@dataclass(frozen=True)
class SpoolEntry:
    """Where one appended record lives, so the writer can ack it."""

    segment: str
    interaction_id: str
    provisional: bool = False

    @property
    def key(self) -> str:
        return journal_key(self.interaction_id, self.provisional)


def journal_key(interaction_id: str, provisional: bool = False) -> str:
    """What an ack line names: a provisional record (``Interaction.provisional``) is acked apart from the real one."""
    return f"{interaction_id}/provisional" if provisional else interaction_id


@dataclass
class _OwnSegment:
    """A segment this process writes; it keeps the lock until every record is acked or given up."""

    path: Path
    fd: int
    written: int = 0
    acked: int = 0
    given_up: int = 0
    rotated: bool = False
    unsynced: bool = False

    @property
    def settled(self) -> bool:
        return self.rotated and self.acked + self.given_up >= self.written


def encode_line(interaction: Interaction) -> bytes:
    """One journal line. Text that is not valid Unicode (lone surrogates) is kept exactly, as JSON escapes."""
    try:
        return interaction.model_dump_json().encode("utf-8") + b"\n"
    except PydanticSerializationError:  # surrogates: pydantic's JSON writer refuses them, json escapes them
        data = interaction.model_dump()  # python mode: mode="json" refuses surrogates in mapping keys too
        return json.dumps(data, ensure_ascii=True, default=str).encode("ascii") + b"\n"


def decode_line(raw: bytes) -> Interaction:
    """The record of one journal line (``ValueError`` when it does not parse)."""
    try:
        return Interaction.model_validate_json(raw)
    except ValueError:
        if b"\\u" not in raw:
            raise
        return Interaction.model_validate(json.loads(raw))  # escaped surrogates: only json reads them back


def _ack_path(segment: Path) -> Path:
    return segment.with_name(segment.name + ACK_SUFFIX)


def _read_acks(segment: Path) -> set[str]:
    try:
        with open(_ack_path(segment), encoding="utf-8", errors="replace") as fh:
            return {line.strip() for line in fh if line.strip()}
    except FileNotFoundError:
        return set()


@dataclass
class _Line:
    number: int
    raw: bytes
    torn: bool


def _iter_lines(path: Path) -> Iterator[_Line]:
    """Stream a segment's non-blank lines; ``torn`` marks a last line without its newline."""
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            torn = not raw.endswith(b"\n")
            raw = raw.strip()
            if raw:
                yield _Line(number, raw, torn)


class ClaimedSegment:
    """A segment locked by this process for draining (replay or background retry)."""

    def __init__(self, spool: Spool, path: Path, fd: int) -> None:
        self.spool = spool
        self.path = path
        self._fd = fd
        self._acked = _read_acks(path)
        self._ack_fh = open(_ack_path(path), "a", encoding="utf-8")  # noqa: SIM115 - closed in release()
        self._valid_unacked = 0
        self._bad: list[bytes] = []
        self._bad_bytes = 0
        self.corrupt_lines = 0

    def records(self) -> Iterator[Interaction]:
        """Stream the records not yet acked, skipping (and keeping aside) lines that do not parse.

        Provisional records (an early-opened run's question, journalled before the answer) come last, and only
        when the segment holds no real record of the same interaction: the real record supersedes them.
        """
        provisional: dict[str, Interaction] = {}  # bounded by the segment's size
        for line in _iter_lines(self.path):
            try:
                interaction = decode_line(line.raw)
            except ValueError as err:
                self._keep_bad(line, err)
                continue
            if interaction.provisional:
                if journal_key(interaction.interaction_id, True) not in self._acked:
                    provisional[interaction.interaction_id] = interaction
                continue
            provisional.pop(interaction.interaction_id, None)
            if interaction.interaction_id in self._acked:
                continue
            self._valid_unacked += 1
            yield interaction
        for interaction in provisional.values():
            self._valid_unacked += 1
            yield interaction

    def _keep_bad(self, line: _Line, err: Exception) -> None:
        self.corrupt_lines += 1
        what = "torn last line (a write was interrupted)" if line.torn else "corrupted line"
        log.warning("spool %s: skipping %s %d: %s", self.path.name, what, line.number, str(err).splitlines()[0])
        if self._bad_bytes + len(line.raw) <= _MAX_KEPT_BAD_BYTES:
            self._bad.append(line.raw)
            self._bad_bytes += len(line.raw)

    def ack(self, record: Interaction | str) -> None:
        """The record reached MLflow (an ``Interaction``, or the id of a non-provisional one)."""
        key = record if isinstance(record, str) else journal_key(record.interaction_id, record.provisional)
        self._acked.add(key)
        self._valid_unacked -= 1
        self._ack_fh.write(key + "\n")
        self._ack_fh.flush()

    def release(self, *, complete: bool) -> bool:
        """Unlock; when ``complete`` (every record read) and all acked, delete the segment. True if deleted."""
        deleted = False
        try:
            self._ack_fh.close()
            if complete and self._valid_unacked <= 0:
                self.spool._quarantine(self.path, self._bad)
                self.path.unlink(missing_ok=True)
                _ack_path(self.path).unlink(missing_ok=True)
                deleted = True
        finally:
            os.close(self._fd)
        return deleted


class Spool:
    """Append-only journal of interactions, shared safely by several threads and processes."""

    def __init__(self, directory: Path | str, *, segment_records: int = 1000) -> None:
        self.directory = Path(directory)
        self.segment_records = segment_records
        self._lock = threading.Lock()
        self._own: dict[str, _OwnSegment] = {}
        self._active: _OwnSegment | None = None

    # ---- writing (this process's own segments) -------------------------------------------------------------

    def append(self, interaction: Interaction, *, sync: bool = True) -> SpoolEntry:
        """Journal one record. With ``sync=False`` the fsync is left to ``sync()`` (a background syncer)."""
        line = encode_line(interaction)
        with self._lock:
            segment = self._active_segment()
            write_all(segment.fd, line)
            segment.written += 1
            segment.unsynced = True
            if sync:
                os.fsync(segment.fd)
                segment.unsynced = False
            if segment.written >= self.segment_records:
                segment.rotated = True
                self._active = None
            return SpoolEntry(segment.path.name, interaction.interaction_id, interaction.provisional)

    def sync(self) -> None:
        """fsync every own segment written since the last sync (group commit)."""
        with self._lock:
            dirty = [s for s in self._own.values() if s.unsynced]
            for segment in dirty:
                segment.unsynced = False
        for segment in dirty:
            try:
                os.fsync(segment.fd)
            except OSError:  # closed meanwhile: close() synced it
                pass

    def ack(self, entry: SpoolEntry) -> None:
        """The record reached MLflow: it will not be replayed."""
        with self._lock:
            segment = self._own.get(entry.segment)
            if segment is None:
                return
            with open(_ack_path(segment.path), "a", encoding="utf-8") as fh:
                fh.write(entry.key + "\n")
            segment.acked += 1
            self._settle_if_done(segment)

    def give_up(self, entry: SpoolEntry) -> None:
        """This process stops trying the record; it stays in the journal for the retry loop or replay."""
        with self._lock:
            segment = self._own.get(entry.segment)
            if segment is None:
                return
            segment.given_up += 1
            self._settle_if_done(segment)

    def rotate(self) -> None:
        """Start a new segment for new records, so the current one can settle and be drained."""
        with self._lock:
            if self._active is not None:
                self._active.rotated = True
                self._settle_if_done(self._active)
                self._active = None

    def close(self) -> None:
        """Release every own segment: fully delivered ones are deleted, the rest wait for replay."""
        with self._lock:
            for segment in list(self._own.values()):
                segment.rotated = True
                segment.given_up = max(segment.given_up, segment.written - segment.acked)
                self._settle_if_done(segment)
            self._active = None

    def _active_segment(self) -> _OwnSegment:
        if self._active is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            name = f"{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(3)}{SEGMENT_SUFFIX}"
            path = self.directory / name
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_EXCL, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._active = _OwnSegment(path, fd)
            self._own[name] = self._active
        return self._active

    def _settle_if_done(self, segment: _OwnSegment) -> None:
        if not segment.settled:
            return
        del self._own[segment.path.name]
        if segment.unsynced:
            os.fsync(segment.fd)
        if segment.acked >= segment.written:
            segment.path.unlink(missing_ok=True)
            _ack_path(segment.path).unlink(missing_ok=True)
        os.close(segment.fd)  # releases the lock: what is left is now replayable by anyone

    @property
    def own_given_up(self) -> int:
        """Records this process gave up on that still sit in one of its locked segments."""
        with self._lock:
            return sum(s.given_up for s in self._own.values())

    # ---- draining (any process) ----------------------------------------------------------------------------

    def segment_paths(self) -> list[Path]:
        """Segments oldest first; ack files whose segment is gone are tidied away."""
        if not self.directory.is_dir():
            return []
        segments = sorted(self.directory.glob("*" + SEGMENT_SUFFIX))
        names = {p.name for p in segments}
        for ack in self.directory.glob("*" + SEGMENT_SUFFIX + ACK_SUFFIX):
            if ack.name[: -len(ACK_SUFFIX)] not in names:
                ack.unlink(missing_ok=True)
        return segments

    def claimable_segments(self) -> list[Path]:
        """Segments not written by this process (they may still be locked by another live process)."""
        paths = self.segment_paths()
        with self._lock:
            return [p for p in paths if p.name not in self._own]

    def claim(self) -> Iterator[ClaimedSegment]:
        """Lock and yield, one at a time, every segment no live process is using."""
        for path in self.segment_paths():
            with self._lock:
                if path.name in self._own:
                    continue
            fd = try_lock(path)
            if fd is None:
                continue
            yield ClaimedSegment(self, path, fd)

    def _quarantine(self, segment: Path, bad: list[bytes]) -> None:
        if not bad:
            return
        target = self.directory / CORRUPT_DIR
        target.mkdir(exist_ok=True)
        with open(target / (segment.stem + ".bad"), "ab") as fh:
            fh.write(b"\n".join(bad) + b"\n")

    # ---- status --------------------------------------------------------------------------------------------

    def status(self) -> SpoolStatus:
        """Count waiting records without locking (cheap; a record being delivered right now is still counted)."""
        from .spool_status import scan

        return scan(self.directory, self.segment_paths())

    def pending(self) -> int:
        return self.status().pending
