"""Export finished traces to MLflow many per request, with a bounded memory backlog that spills to disk.

Why not MLflow's own exporter: it makes two or more tracking-server calls per trace (``start_trace``, then spans in
batches), and the server's CPU per call is the limit (measured ~14-17 ms for one trace per OTLP request, ~4.5 ms per
trace at 10-100 traces per request). Its queue also grows without bound when the server falls behind.

Here MLflow's span processor still does the trace bookkeeping; when a root span ends, the exporter of
:mod:`.otlp_exporter` turns the whole trace into one OTLP ``ExportTraceServiceRequest`` and hands the bytes to
:class:`ExportPool`. The pool's ``exporters`` threads post batches of up to ``batch_traces`` traces (concatenated
payloads are one valid request). Past ``memory_bytes`` (queued + in flight) a trace goes to the on-disk spill
(:mod:`.trace_spill`) instead, which idle exporters drain. On shutdown :meth:`ExportPool.close` exports what fits
before the deadline and writes the rest to the spill.

Retries are safe: MLflow upserts spans by (trace id, span id), so a batch re-sent after a timeout never stores a trace
twice. A batch MLflow refuses as invalid (400/413/422) is split until the offending trace is alone; that one is kept in
``rejected/`` of the spill directory, never dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import trace_spill
from .trace_spill import Record

logger = logging.getLogger("kagent_mlflow.serve")

_INVALID = (400, 413, 422)  # the payload itself is refused: retrying the same bytes cannot help
_MAX_BACKOFF_S = 10.0
DISK_RECHECK_S = 30.0  # with nothing spilled by this process, look for claimable segments this often

Sender = Callable[[str, str, bytes, float], int]  # (tracking_uri, experiment_id, body, timeout) -> HTTP status


@dataclass(frozen=True)
class ExportLimits:
    """How traces are exported; defaults measured on a 2-core machine against one MLflow worker."""

    exporters: int = 4
    batch_traces: int = 100
    batch_bytes: int = 4 << 20
    linger_s: float = 0.5  # wait this long for a batch to fill before sending a partial one
    memory_bytes: int = 16 << 20  # queued + in-flight payloads; past it traces spill to disk
    request_timeout_s: float = 30.0


@dataclass
class ExportStats:
    exported: int = 0
    spilled: int = 0
    rejected: int = 0
    failures: int = 0


@dataclass
class ShutdownReport:
    exported: int
    persisted: int
    seconds: float


@dataclass
class _Item:
    record: Record
    queued_at: float = field(default_factory=time.monotonic)


class ExportPool:
    """Bounded in-memory queue + exporter threads + spill; thread-safe."""

    def __init__(
        self, tracking_uri: str, spill_dir: Path, limits: ExportLimits | None = None, send: Sender | None = None
    ) -> None:
        from .._urls import safe_url

        self.tracking_uri = tracking_uri
        self.spill_dir = spill_dir
        self.limits = limits or ExportLimits()
        self._send = send or _post_otlp
        self._public_uri = safe_url(tracking_uri)
        self._writer = trace_spill.SpillWriter(spill_dir, self._public_uri)
        self._cond = threading.Condition()
        self._memory: deque[_Item] = deque()
        self._memory_bytes = 0
        self._inflight: dict[int, list[Record]] = {}
        self._inflight_bytes = 0
        self._next_job = 0
        self._backoff_until = 0.0
        self._backoff = 0.0
        self._draining = False
        self._closed = False
        self._disk_possible = True  # segments from an earlier run may be waiting
        self._disk_busy = False
        self._disk_recheck_at = 0.0
        self._segment: trace_spill.ClaimedSegment | None = None
        self._foreign: set[Path] = set()  # segments for another tracking server: left for `kagent-mlflow replay`
        self.stats = ExportStats()
        self._threads = [
            threading.Thread(target=self._work, name=f"trace-export-{i}", daemon=True)
            for i in range(self.limits.exporters)
        ]

    def start(self) -> ExportPool:
        for thread in self._threads:
            thread.start()
        return self

    # -- producer side ---------------------------------------------------------------------------------------------

    def put(self, record: Record) -> None:
        """Queue one trace; never blocks on MLflow. Past the memory limit (or after close) it goes to disk."""
        with self._cond:
            size = len(record.payload)
            if self._closed or self._memory_bytes + self._inflight_bytes + size > self.limits.memory_bytes:
                self._spill([record])
                if self._closed:
                    self._writer.rotate()
                return
            self._memory.append(_Item(record))
            self._memory_bytes += size
            if len(self._memory) >= self.limits.batch_traces or self._memory_bytes >= self.limits.batch_bytes:
                self._cond.notify()

    def backlog(self) -> tuple[int, int]:
        """(traces, bytes) held in memory, queued or in flight."""
        with self._cond:
            return len(self._memory) + sum(map(len, self._inflight.values())), self._memory_bytes + self._inflight_bytes

    def _spill(self, records: list[Record]) -> None:
        try:
            self._writer.append(records)
        except OSError as exc:  # disk full/read-only: say so loudly; nothing else can hold them
            logger.error("cannot spill %d trace(s) to %s: %s", len(records), self.spill_dir, exc)
            return
        self.stats.spilled += len(records)
        self._disk_possible = True

    # -- shutdown --------------------------------------------------------------------------------------------------

    def close(self, deadline: float) -> ShutdownReport:
        """Export what fits before ``deadline`` (``time.monotonic()``), persist the rest to disk, stop the threads.
        Stops early when MLflow fails during the drain: waiting would only delay the same result."""
        started = time.monotonic()
        exported_before = self.stats.exported
        with self._cond:
            self._draining = True
            self._backoff_until = 0.0
            failures = self.stats.failures
            self._cond.notify_all()
            while (self._memory or self._inflight) and self.stats.failures == failures:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(min(remaining, 0.1))
            self._closed = True
            leftovers = [item.record for item in self._memory]
            for records in self._inflight.values():  # may still succeed: re-exporting them later is harmless
                leftovers.extend(records)
            self._memory.clear()
            self._inflight.clear()
            self._memory_bytes = self._inflight_bytes = 0
            self._spill(leftovers)
            self._writer.close()
            self._cond.notify_all()
        return ShutdownReport(self.stats.exported - exported_before, len(leftovers), time.monotonic() - started)

    # -- exporter threads ------------------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            job = self._take()
            if job is None:
                return
            if job == "disk":
                self._export_from_disk()
                continue
            job_id, experiment, records = job
            ok = self._deliver(experiment, records)
            with self._cond:
                # close() takes over batches still in flight (they are on disk already): nothing left to do here
                if self._inflight.pop(job_id, None) is not None:
                    self._inflight_bytes -= sum(len(r.payload) for r in records)
                    if not ok:
                        self._requeue(records)
                self._cond.notify_all()

    def _take(self) -> Any:
        limits = self.limits
        with self._cond:
            while True:
                if self._closed:
                    return None
                now = time.monotonic()
                if self._backoff_until > now:
                    self._cond.wait(self._backoff_until - now)
                    continue
                if self._memory and (
                    self._draining
                    or len(self._memory) >= limits.batch_traces
                    or self._memory_bytes >= limits.batch_bytes
                    or now - self._memory[0].queued_at >= limits.linger_s
                ):
                    return self._batch_from_memory()
                if not self._disk_possible and now >= self._disk_recheck_at:
                    self._disk_possible = True  # a segment briefly locked by `status`/`replay`, or a new file
                if self._disk_possible and not self._disk_busy and not self._draining:
                    self._disk_busy = True
                    return "disk"
                wait = limits.linger_s - (now - self._memory[0].queued_at) if self._memory else 1.0
                self._cond.wait(max(wait, 0.01))

    def _batch_from_memory(self) -> tuple[int, str, list[Record]]:
        experiment = self._memory[0].record.experiment_id
        records: list[Record] = []
        size = 0
        keep: list[_Item] = []
        while self._memory and len(records) < self.limits.batch_traces and size < self.limits.batch_bytes:
            item = self._memory.popleft()
            if item.record.experiment_id != experiment:
                keep.append(item)
                continue
            records.append(item.record)
            size += len(item.record.payload)
        self._memory.extendleft(reversed(keep))
        self._memory_bytes -= size
        self._next_job += 1
        self._inflight[self._next_job] = records
        self._inflight_bytes += size
        return self._next_job, experiment, records

    def _requeue(self, records: list[Record]) -> None:
        """A batch that could not be sent goes back to the front, or to disk if memory is full."""
        size = sum(len(r.payload) for r in records)
        if self._memory_bytes + self._inflight_bytes + size > self.limits.memory_bytes:
            self._spill(records)
            return
        self._memory.extendleft(_Item(r, queued_at=0.0) for r in reversed(records))
        self._memory_bytes += size

    def _export_from_disk(self) -> None:
        """Export one batch from the spill (only one thread at a time does this)."""
        try:
            segment = self._disk_segment()
            if segment is not None and self.export_batch(segment) and segment.exhausted:
                segment.release()
                self._segment = None
        except OSError as exc:
            logger.error("cannot read the trace spill %s: %s", self.spill_dir, exc)
            self._drop_segment()
        finally:
            with self._cond:
                self._disk_busy = False
                self._cond.notify_all()

    def export_batch(self, segment: trace_spill.ClaimedSegment) -> bool:
        """Export the next batch of a claimed segment and commit it; False (nothing committed) if MLflow failed."""
        start = segment.position
        records, end = segment.read(self.limits.batch_traces, self.limits.batch_bytes)
        if all(self._deliver(exp, group) for exp, group in _by_experiment(records)):
            segment.commit(end)
            return True
        segment.position = start  # read again after the backoff
        return False

    def _disk_segment(self) -> trace_spill.ClaimedSegment | None:
        if self._segment is not None:
            return self._segment
        for rotate in (False, True):
            if rotate:
                with self._cond:
                    if not self._writer.open_records:
                        break
                    self._writer.rotate()
            for segment in trace_spill.claim(self.spill_dir):
                if segment.path in self._foreign:
                    segment.release()
                elif segment.tracking_uri != self._public_uri:
                    logger.info("trace spill %s is for %s: left for replay", segment.path, segment.tracking_uri)
                    self._foreign.add(segment.path)
                    segment.release()
                elif segment.exhausted:
                    segment.commit(segment.position)
                    segment.release()
                else:
                    self._segment = segment
                    return segment
        with self._cond:
            self._disk_possible = False
            self._disk_recheck_at = time.monotonic() + DISK_RECHECK_S
        return None

    def _drop_segment(self) -> None:
        if self._segment is not None:
            self._segment.release()
            self._segment = None

    # -- sending ---------------------------------------------------------------------------------------------------

    def _deliver(self, experiment: str, records: list[Record]) -> bool:
        """True once every record is in MLflow or kept as rejected; False on a failure worth retrying."""
        status = self._post(experiment, records)
        if status == 200:
            self._succeeded(len(records))
            return True
        if status in _INVALID:
            if len(records) == 1:
                logger.error("MLflow refused a trace (HTTP %d); kept in %s/rejected", status, self.spill_dir)
                trace_spill.reject(self.spill_dir, self._public_uri, records[0])
                self.stats.rejected += 1
                return True
            half = len(records) // 2
            return self._deliver(experiment, records[:half]) and self._deliver(experiment, records[half:])
        self._failed(status)
        return False

    def _post(self, experiment: str, records: list[Record]) -> int | str:
        timeout = self.limits.request_timeout_s
        try:
            return self._send(self.tracking_uri, experiment, b"".join(r.payload for r in records), timeout)
        except Exception as exc:  # noqa: BLE001 - connection refused, timeout, TLS ...: retried later
            return f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"

    def _succeeded(self, count: int) -> None:
        with self._cond:
            self.stats.exported += count
            if self._backoff:
                logger.info("MLflow at %s accepts traces again", self._public_uri)
            self._backoff = 0.0

    def _failed(self, status: int | str) -> None:
        with self._cond:
            self.stats.failures += 1
            if not self._backoff:
                logger.warning(
                    "exporting traces to %s failed (%s); keeping them (memory, then %s) and retrying",
                    self._public_uri,
                    status,
                    self.spill_dir,
                )
            self._backoff = min(max(self._backoff * 2, 0.5), _MAX_BACKOFF_S)
            self._backoff_until = time.monotonic() + self._backoff
            self._cond.notify_all()


@dataclass
class ReplayReport:
    exported: int = 0
    rejected: int = 0
    segments: int = 0
    in_use: int = 0
    problem: str | None = None


def replay_spilled(directory: Path, tracking_uri: str | None = None) -> ReplayReport:
    """Export every spilled trace no running server holds, each to the tracking server it was recorded for
    (credentials from the environment, or from ``tracking_uri`` when it names that same server). Stops at the
    first segment MLflow does not accept; safe to repeat (what is exported is committed, re-sending is harmless)."""
    from .._urls import safe_url

    report = ReplayReport(in_use=trace_spill.status(directory).in_use_segments)
    for segment in trace_spill.claim(directory):
        report.segments += 1
        same = tracking_uri and safe_url(tracking_uri) == segment.tracking_uri
        pool = ExportPool(tracking_uri if same else segment.tracking_uri, directory, ExportLimits(exporters=0))
        try:
            while True:  # at least once: a fully exported segment is deleted by the last commit
                if not pool.export_batch(segment):
                    report.problem = f"MLflow at {segment.tracking_uri} is not accepting traces right now"
                    break
                if segment.exhausted:
                    break
        finally:
            segment.release()
            report.exported += pool.stats.exported
            report.rejected += pool.stats.rejected
        if report.problem:
            break
    return report


def _by_experiment(records: list[Record]) -> list[tuple[str, list[Record]]]:
    groups: dict[str, list[Record]] = {}
    for record in records:
        groups.setdefault(record.experiment_id, []).append(record)
    return list(groups.items())


def _post_otlp(tracking_uri: str, experiment_id: str, body: bytes, timeout: float) -> int:
    from .._mlflow_compat import post_otlp

    return post_otlp(tracking_uri, experiment_id, body, timeout)
