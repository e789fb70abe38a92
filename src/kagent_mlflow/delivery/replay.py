"""Deliver what waits in the spool. Used by ``kagent-mlflow replay`` and by the recorder's background retry.

Each record goes only where it was meant to go: by default a record is delivered only when its ``destination`` is
the sink's own server; the others (and records spooled before records carried a destination) stay in the spool,
untouched, for a process or a ``replay`` pass that writes to their server. Re-targeting is explicit: pass a
``route`` that maps a record to the record to deliver (``Interaction.to``), as ``replay --to`` does.

Idempotent: the sink finds the run of an ``interaction_id`` (even one left half-written by a crash) and completes
or replaces it, and a record is acked only after the sink returned. Replaying twice, or in two processes at once
(each locks the segments it works on), never produces a second run.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from ..records import Interaction
from .sink import Sink, is_retryable
from .spool import ClaimedSegment, Spool

log = logging.getLogger("kagent_mlflow.delivery")

_MAX_ERRORS = 5


@dataclass
class ReplayReport:
    """What a replay did. ``total`` is the number waiting when it started (for a progress bar)."""

    total: int = 0
    delivered: int = 0
    failed: int = 0
    corrupt: int = 0
    skipped: int = 0
    elsewhere: int = 0  # records left for another destination
    stopped_on_outage: bool = False
    errors: list[str] = field(default_factory=list)

    @property
    def done(self) -> int:
        return self.delivered + self.failed

    def _error(self, message: str) -> None:
        if message not in self.errors and len(self.errors) < _MAX_ERRORS:
            self.errors.append(message)


ProgressFn = Callable[[ReplayReport], None]
Route = Callable[[Interaction], "Interaction | None"]  # the record to deliver through this sink, or None: leave it


def for_sink(sink: Sink) -> Route:
    """The default route: a record whose destination is the sink's server, as it is; nothing else."""
    server = sink.destination.server

    def route(interaction: Interaction) -> Interaction | None:
        meant = interaction.destination
        return interaction if meant is not None and meant.server == server else None

    return route


def replay(
    spool: Spool,
    sink: Sink,
    *,
    workers: int = 4,
    attempts: int = 1,
    backoff: float = 0.5,
    progress: ProgressFn | None = None,
    stop: threading.Event | None = None,
    skip: Collection[str] = (),
    on_delivered: Callable[[str], None] | None = None,
    total: int | None = None,
    route: Route | None = None,
) -> ReplayReport:
    """Deliver every spooled record meant for ``sink`` (see ``route``) that no live process is using, oldest first.

    Stops early (``stopped_on_outage``) when a record still fails after ``attempts`` with an error a later retry
    could fix (MLflow down, 5xx): the rest stays spooled. Records the sink rejects for good are counted in
    ``failed`` and stay spooled too, so nothing is lost.
    """
    report = ReplayReport(total=spool.status().pending if total is None else total)
    stop = stop or threading.Event()
    route = route or for_sink(sink)
    run = _SegmentRun(sink, report, workers, attempts, backoff, progress, stop, skip, on_delivered, route)
    for claimed in spool.claim():
        complete = run.deliver(claimed)
        claimed.release(complete=complete)
        report.corrupt += claimed.corrupt_lines
        if report.stopped_on_outage or stop.is_set():
            break
    return report


class _SegmentRun:
    """Delivers one claimed segment with a few threads and a bounded hand-off queue (bounded memory)."""

    def __init__(
        self,
        sink: Sink,
        report: ReplayReport,
        workers: int,
        attempts: int,
        backoff: float,
        progress: ProgressFn | None,
        stop: threading.Event,
        skip: Collection[str],
        on_delivered: Callable[[str], None] | None,
        route: Route,
    ) -> None:
        self.sink, self.report, self.workers = sink, report, max(1, workers)
        self.attempts, self.backoff = max(1, attempts), backoff
        self.progress, self.stop, self.skip, self.on_delivered = progress, stop, skip, on_delivered
        self.route = route
        self.lock = threading.Lock()
        self.abort = threading.Event()

    def deliver(self, claimed: ClaimedSegment) -> bool:
        """Deliver the segment's unacked records; True when every record was read (none left unattempted)."""
        jobs: queue.Queue[Interaction | None] = queue.Queue(maxsize=self.workers * 2)
        threads = [
            threading.Thread(target=self._worker, args=(claimed, jobs), daemon=True, name=f"kagent-mlflow-replay-{i}")
            for i in range(self.workers)
        ]
        for thread in threads:
            thread.start()
        complete = True
        try:
            for interaction in claimed.records():
                if self.abort.is_set() or self.stop.is_set():
                    complete = False
                    break
                if interaction.interaction_id in self.skip:
                    with self.lock:
                        self.report.skipped += 1
                    continue
                routed = self.route(interaction)
                if routed is None:  # meant for another MLflow: left untouched (unacked, so the segment stays)
                    with self.lock:
                        self.report.elsewhere += 1
                    continue
                jobs.put(routed)
        finally:
            for _ in threads:
                jobs.put(None)
            for thread in threads:
                thread.join()
        return complete and not self.abort.is_set()

    def _worker(self, claimed: ClaimedSegment, jobs: queue.Queue[Interaction | None]) -> None:
        while True:
            interaction = jobs.get()
            if interaction is None:
                return
            if self.abort.is_set() or self.stop.is_set():
                continue
            error = self._write(interaction)
            with self.lock:
                if error is None:
                    claimed.ack(interaction)
                    self.report.delivered += 1
                else:
                    self.report.failed += 1
                    self.report._error(str(error))
                    if is_retryable(error):
                        self.report.stopped_on_outage = True
                        self.abort.set()
                if self.progress is not None:
                    self.progress(self.report)
            if error is None and self.on_delivered is not None:
                self.on_delivered(interaction.interaction_id)

    def _write(self, interaction: Interaction) -> BaseException | None:
        error: BaseException | None = None
        for attempt in range(self.attempts):
            if attempt and self.stop.wait(self.backoff * 2 ** (attempt - 1)):
                break
            try:
                self.sink.write(interaction)
                return None
            except Exception as err:
                error = err
                log.debug("replay of %s failed (attempt %d): %s", interaction.interaction_id, attempt + 1, err)
                if not is_retryable(err):
                    break
        return error
