"""The trace spill: a durable on-disk queue of OTLP trace payloads not yet known to be in MLflow.

The Agent Server keeps at most a configured number of bytes of finished traces in memory; past that, and for
whatever is still unexported when it shuts down, traces go here. The running server exports them once MLflow keeps
up, its next start does, or ``kagent-mlflow replay``. It is the Pattern 1 spool's twin for binary payloads:

    <time_ns>-<pid>-<rand>.otlp     a segment: a header line, then records, append-only
    <segment>.done                  byte offset up to which records are in MLflow (rewritten atomically)
    corrupt/<segment>.bad           the unreadable rest of a segment (torn write, disk damage), kept for inspection
    rejected/<segment>.otlp         traces MLflow refused as invalid (HTTP 400/422), kept for inspection

Header: ``KAGENT-TRACES 1 <tracking URI without credentials>\\n``. Record: ``>IIH`` payload length, CRC32 of the
payload, experiment id length; the experiment id (ASCII); the payload (one serialized ``ExportTraceServiceRequest``
holding one trace: concatenated payloads are themselves a valid request, so a batch is a plain join).

As in the spool, a process only reads segments it holds an exclusive ``flock`` on; the writer holds one on the
segment it appends to until it rotates it, and the kernel drops a dead process's locks. Records are written with one
``os.write`` (survives the process being killed) and fsync'd on rotate/close. Re-exporting a record after a crash
between export and the ``.done`` update is harmless: MLflow keys traces and spans by their ids (an upsert), so a trace
is never stored twice.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .._files import try_lock, write_all

logger = logging.getLogger("kagent_mlflow.serve")

MAGIC = b"KAGENT-TRACES 1 "
SUFFIX = ".otlp"
DONE_SUFFIX = ".done"
_RECORD = struct.Struct(">IIH")
_MAX_PAYLOAD = 256 << 20  # a length beyond this is damage, not a trace


@dataclass(frozen=True)
class Record:
    """One spilled trace: where it goes and its OTLP bytes."""

    experiment_id: str
    payload: bytes


@dataclass
class SpillStatus:
    """What ``kagent-mlflow status`` shows for traces."""

    path: Path
    traces: int = 0
    bytes: int = 0
    segments: int = 0
    in_use_segments: int = 0
    rejected: int = 0
    corrupt_files: int = 0


def encode(record: Record) -> bytes:
    experiment = record.experiment_id.encode("ascii")
    return _RECORD.pack(len(record.payload), zlib.crc32(record.payload), len(experiment)) + experiment + record.payload


class SpillWriter:
    """Appends records to segments of this process; thread-safe callers hold the owner's lock."""

    def __init__(self, directory: Path, tracking_uri: str, *, segment_records: int = 2000) -> None:
        self.directory = directory
        self._header = MAGIC + tracking_uri.encode("utf-8", "replace").replace(b"\n", b" ") + b"\n"
        self._segment_records = segment_records
        self._fd: int | None = None
        self._path: Path | None = None
        self._count = 0

    def append(self, records: list[Record]) -> None:
        """Write records durably enough to survive this process being killed (fsync on rotate/close)."""
        if not records:
            return
        if self._fd is None:
            self._open()
        assert self._fd is not None
        write_all(self._fd, b"".join(encode(r) for r in records))
        self._count += len(records)
        if self._count >= self._segment_records:
            self.rotate()

    @property
    def open_records(self) -> int:
        """Records in the segment being written (not claimable until :meth:`rotate`)."""
        return self._count

    def rotate(self) -> None:
        """Close the current segment (fsync, unlock) so any reader, this process's included, may export it."""
        if self._fd is None:
            return
        os.fsync(self._fd)
        os.close(self._fd)  # drops the flock
        self._fd, self._path, self._count = None, None, 0

    close = rotate

    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns()}-{os.getpid()}-{secrets.token_hex(3)}{SUFFIX}"
        path = self.directory / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        write_all(fd, self._header)
        self._fd, self._path = fd, path


class ClaimedSegment:
    """A segment this process holds the lock on: read records from the last committed offset, commit, release."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd
        self._file = os.fdopen(os.dup(fd), "rb")
        header = self._file.readline()
        if not header.startswith(MAGIC) or not header.endswith(b"\n"):
            raise ValueError("not a trace segment")
        self.tracking_uri = header[len(MAGIC) : -1].decode("utf-8", "replace")
        self._file.seek(max(_read_done(path), self._file.tell()))
        self.position = self._file.tell()

    def read(self, max_records: int, max_bytes: int, *, keep_bad: bool = True) -> tuple[list[Record], int]:
        """Up to ``max_records`` records (at least one if any is left) from the read position; returns them and the
        offset after them (commit it once they are in MLflow). A damaged record ends the segment: its rest is kept
        in ``corrupt/``."""
        records: list[Record] = []
        size = 0
        self._file.seek(self.position)
        while len(records) < max_records and (not records or size < max_bytes):
            start = self._file.tell()
            head = self._file.read(_RECORD.size)
            if not head:
                break
            try:
                record = self._decode(head)
            except ValueError as exc:
                if keep_bad:
                    self._quarantine(start, str(exc))
                else:
                    self._file.seek(0, os.SEEK_END)
                break
            records.append(record)
            size += len(record.payload)
        self.position = self._file.tell()
        return records, self.position

    def _decode(self, head: bytes) -> Record:
        if len(head) < _RECORD.size:
            raise ValueError("torn record header")
        length, crc, exp_len = _RECORD.unpack(head)
        if length > _MAX_PAYLOAD:
            raise ValueError("record length out of range")
        experiment = self._file.read(exp_len)
        payload = self._file.read(length)
        if len(experiment) < exp_len or len(payload) < length:
            raise ValueError("torn record")
        if zlib.crc32(payload) != crc:
            raise ValueError("checksum mismatch")
        return Record(experiment.decode("ascii", "replace"), payload)

    def _quarantine(self, offset: int, why: str) -> None:
        self._file.seek(offset)
        rest = self._file.read()
        bad = self.path.parent / "corrupt" / (self.path.name + ".bad")
        bad.parent.mkdir(exist_ok=True)
        with open(bad, "ab") as fh:
            fh.write(rest)
        logger.warning("trace spill %s: %s at byte %d; the rest is kept in %s", self.path.name, why, offset, bad)
        self._file.seek(0, os.SEEK_END)

    def commit(self, offset: int) -> None:
        """Records before ``offset`` are in MLflow: remember it (atomically), delete the segment once all are."""
        if offset >= os.fstat(self._fd).st_size:
            self.path.unlink(missing_ok=True)
            _done_path(self.path).unlink(missing_ok=True)
            return
        tmp = _done_path(self.path).with_suffix(".tmp")
        tmp.write_text(str(offset))
        os.replace(tmp, _done_path(self.path))

    @property
    def exhausted(self) -> bool:
        return self.position >= os.fstat(self._fd).st_size

    def release(self) -> None:
        self._file.close()
        os.close(self._fd)


def _done_path(segment: Path) -> Path:
    return segment.with_name(segment.name + DONE_SUFFIX)


def _read_done(segment: Path) -> int:
    try:
        return int(_done_path(segment).read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def segments(directory: Path) -> list[Path]:
    """Segments oldest first."""
    try:
        return sorted(p for p in directory.iterdir() if p.name.endswith(SUFFIX) and p.is_file())
    except FileNotFoundError:
        return []


def claim(directory: Path) -> Iterator[ClaimedSegment]:
    """Lock and open each segment no other process (or writer) holds; the caller releases each."""
    for path in segments(directory):
        fd = try_lock(path, os.O_RDONLY)
        if fd is None:
            continue
        try:
            yield ClaimedSegment(path, fd)
        except ValueError as exc:
            os.close(fd)
            logger.warning("skipping %s: %s", path, exc)


def reject(directory: Path, tracking_uri: str, record: Record) -> None:
    """Keep a trace MLflow refused as invalid where a person can look at it; it is never silently dropped."""
    writer = SpillWriter(directory / "rejected", tracking_uri)
    writer.append([record])
    writer.close()


def status(directory: Path) -> SpillStatus:
    """Count waiting traces by reading every segment's record headers (read-only: a segment a process is still
    appending to is counted too, and marked in use)."""
    st = SpillStatus(path=directory)
    for path in segments(directory):
        st.segments += 1
        fd = try_lock(path, os.O_RDONLY)
        if fd is None:
            st.in_use_segments += 1
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
        try:
            seg = ClaimedSegment(path, fd)
        except ValueError:
            os.close(fd)
            continue
        try:
            while True:
                records, _ = seg.read(1000, 1 << 30, keep_bad=False)
                if not records:
                    break
                st.traces += len(records)
                st.bytes += sum(len(r.payload) for r in records)
        finally:
            seg.release()
    st.rejected = len(segments(directory / "rejected"))
    try:
        st.corrupt_files = sum(1 for _ in (directory / "corrupt").iterdir())
    except FileNotFoundError:
        pass
    return st
