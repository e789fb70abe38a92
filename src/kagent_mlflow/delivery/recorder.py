"""The non-blocking recorder: the live path hands a record over and returns; background threads deliver it.

Life of a record:

1. ``record()`` journals it to the spool without fsync (one ``write``: it survives the process being killed) and
   puts it on a bounded queue. That is all the caller pays for (tens of microseconds).
2. A syncer thread fsyncs the journal in batches; worker threads call ``sink.write`` with bounded retries and
   exponential backoff, then ack the journal entry.
3. If delivery keeps failing (MLflow down, 5xx) or the queue is full, the record simply stays in the journal; a
   circuit opens so later records do not each wait through retries, and a retry thread drains the journal once
   MLflow answers again. ``kagent-mlflow replay`` does the same on demand.

``begin()`` is the other half, called when a question is sent: if the agent is still thinking after
``early_run_after`` (250 ms: an LLM-backed agent), a background thread creates the MLflow run (``sink.open_run``), so
its id is known by the time the answer arrives. A faster answer needs no head start: the deliverer creates the run
right after it. (Opening earlier would put the open's CPU work on the fast requests' tail, for nothing.)
``PendingRun.run_id(timeout)`` resolves it either way.

Deliverers step aside while a live request is in flight (``LiveGate``, bounded wait): in one Python process they
would otherwise compete with the caller for the interpreter lock right when its answer arrives.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..records import Interaction
from .early_open import EarlyOpener
from .handles import Delivery, LiveGate, PendingRun
from .replay import replay
from .sink import RunRefLike, Sink, is_retryable
from .spool import Spool, SpoolEntry

log = logging.getLogger("kagent_mlflow.delivery")

_STOP = object()
_MAX_TRACKED = 100_000  # ids remembered per process for flush(); past that only a count


@dataclass
class _Item:
    interaction: Interaction
    pending: PendingRun | None
    entry: SpoolEntry | None
    ticket: Delivery
    spool_error: str | None = None  # why the record is not in the spool (entry is None)


@dataclass
class RecorderStats:
    recorded: int = 0
    delivered: int = 0
    spooled: int = 0
    replayed: int = 0


class Recorder:
    """Bounded queue + worker threads + spool. ``flush``/``close`` are explicit and also run at interpreter exit."""

    def __init__(
        self,
        sink_factory: Callable[[], Sink],
        spool: Spool,
        *,
        workers: int = 2,
        queue_size: int = 1000,
        attempts: int = 3,
        backoff: float = 0.5,
        retry_interval: float = 15.0,
        retry_gap: float = 1.0,
        open_run_wait: float = 60.0,
        early_run_after: float = 0.25,
        yield_limit: float = 0.25,
        exit_timeout: float = 10.0,
        drain_on_start: bool = True,
    ) -> None:
        self._sink_factory = sink_factory
        self._sink: Sink | None = None
        self._sink_lock = threading.Lock()
        self.spool = spool
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.retry_interval = retry_interval
        self.retry_gap = retry_gap
        self.open_run_wait = open_run_wait
        self.early_run_after = early_run_after
        self.yield_limit = yield_limit
        self.gate = LiveGate()
        self.exit_timeout = exit_timeout
        self.stats = RecorderStats()
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._cv = threading.Condition()
        self._outstanding = 0
        self._stranded: set[str] = set()  # ids this process left in the spool and has not delivered since
        self._stranded_untracked = 0  # beyond _MAX_TRACKED ids only a count is kept (bounded memory)
        self._hopeless: set[str] = set()  # ids the sink rejected for good: the retry loop skips them
        self._down_until = 0.0
        self._last_warning = -1e9
        self._stop = threading.Event()
        self._wake_retry = threading.Event()
        self._wake_sync = threading.Event()
        self._closed = False
        self._close_lock = threading.Lock()
        self._drain_pending = drain_on_start
        self.opener = EarlyOpener(
            spool,
            self._get_sink,
            mlflow_down=self._circuit_open,
            on_journal=self._wake_sync.set,
            delay=early_run_after,
            queue_size=queue_size,
        )
        self._threads = [self._start(self._work, f"kagent-mlflow-deliver-{i}") for i in range(max(1, workers))]
        self._threads.append(self._start(self._sync_loop, "kagent-mlflow-spool-sync"))
        self._threads.append(self._start(self._retry_loop, "kagent-mlflow-retry"))
        atexit.register(self._atexit)

    @staticmethod
    def _start(target: Callable[[], None], name: str) -> threading.Thread:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        return thread

    # ---- live-path API ------------------------------------------------------------------------------------

    def begin(self, stub: Interaction) -> PendingRun:
        """Mark a live request as started and have its run created in the background; returns at once.

        The run is opened only if the agent has not answered within ``early_run_after`` s (a fast answer needs no
        head start, and opening it then would compete with the caller); otherwise the delivery's write creates it.
        Pass the handle to ``record`` (or call ``end()`` on it) when the request is over.
        """
        pending = PendingRun(stub.interaction_id, on_end=self.gate.enter())
        if self._closed or self._circuit_open():
            pending.take_over()
            return pending
        self.opener.submit(stub, pending)
        return pending

    def live_request(self) -> Any:
        """Context manager marking a live request that does not go through ``begin`` (delivery steps aside)."""
        return self.gate.request()

    def yield_to_live(self, *_: object) -> None:
        """Called by deliverers between MLflow calls: wait (bounded) while a live request is in flight."""
        self.gate.wait_idle(self.yield_limit)

    def record(self, interaction: Interaction, pending_run: PendingRun | None = None) -> Delivery:
        """Journal the record and queue it for delivery; never blocks on MLflow and never drops the record."""
        if pending_run is not None:
            pending_run.end()
        ticket = Delivery(interaction.interaction_id)
        with self._cv:
            self.stats.recorded += 1
        if self._closed:
            self._spool_synchronously(interaction, ticket, pending_run)
            return ticket
        entry: SpoolEntry | None = None
        spool_error: str | None = None
        try:
            entry = self.spool.append(interaction, sync=False)
            self._wake_sync.set()
        except Exception as err:  # unwritable directory, full disk, unserialisable data: never the caller's problem
            spool_error = f"could not write the spool at {self.spool.directory}: {err}"
            log.warning("%s; delivering from memory only", spool_error)
        self._supersede(pending_run, entry is not None)
        item = _Item(interaction, pending_run, entry, ticket, spool_error)
        with self._cv:
            self._outstanding += 1
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self._leave_in_spool(item, "delivery queue full", retryable=True)
        return ticket

    def _supersede(self, pending: PendingRun | None, recorded: bool) -> None:
        """The real record is journalled: ack the provisional one. If it is not, leave that for replay to close."""
        placeholder = pending.take_journal() if pending is not None else None
        if isinstance(placeholder, SpoolEntry):
            if recorded:
                self.spool.ack(placeholder)
            else:
                self.spool.give_up(placeholder)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every record so far is delivered or spooled. True when all of them reached MLflow."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            while self._outstanding > 0:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._cv.wait(remaining)
            done = self._outstanding == 0 and not self._stranded and not self._stranded_untracked
        self.spool.sync()
        return done

    def close(self, timeout: float | None = None) -> bool:
        """Flush (bounded by ``timeout``, default ``exit_timeout``), stop the threads, release the spool.

        Whatever was not delivered stays in the spool for ``kagent-mlflow replay``. Safe to call twice.
        """
        with self._close_lock:
            if self._closed:
                return not self._stranded and not self._stranded_untracked
            self._closed = True
        ok = self.flush(self.exit_timeout if timeout is None else timeout)
        self._stop.set()
        self._wake_retry.set()
        self._wake_sync.set()
        self.opener.stop()
        for _ in range(self._count("deliver")):
            try:
                self._queue.put_nowait(_STOP)
            except queue.Full:
                break
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=0.5)
        self.spool.close()
        sink_close = getattr(self._sink, "close", None)
        if callable(sink_close):
            try:
                sink_close()
            except Exception:  # closing is best effort
                log.debug("sink close failed", exc_info=True)
        atexit.unregister(self._atexit)
        return ok

    def _count(self, kind: str) -> int:
        return sum(1 for t in self._threads if kind in t.name)

    def _atexit(self) -> None:
        self.close()

    # ---- background -------------------------------------------------------------------------------------

    def _get_sink(self) -> Sink:
        if self._sink is None:
            with self._sink_lock:
                if self._sink is None:
                    self._sink = self._sink_factory()
        return self._sink

    def _circuit_open(self) -> bool:
        return time.monotonic() < self._down_until

    def _trip(self) -> None:
        self._down_until = time.monotonic() + self.retry_interval

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            assert isinstance(item, _Item)
            try:
                self._deliver(item)
            except Exception as err:  # never let a worker die; the record stays spooled
                log.exception("unexpected error delivering %s", item.interaction.interaction_id)
                self._leave_in_spool(item, f"unexpected error: {err}", retryable=True)

    def _deliver(self, item: _Item) -> None:
        error: BaseException | None = None
        pending = item.pending
        early = pending is not None and not pending.take_over()  # an early open_run started: complete that run
        run_id: str | None = None
        for attempt in range(self.attempts):
            if self._circuit_open() or self._stop.is_set():
                break
            if attempt and self._stop.wait(self.backoff * 2 ** (attempt - 1)):
                break
            try:
                if early and pending is not None:
                    run_id = pending.run_id(self.open_run_wait)
                elif attempt == 0:
                    # A fresh record has no run yet: create it directly, sparing write() its search by
                    # interaction id. Later attempts let write() search (a failed create may have succeeded).
                    self.yield_to_live()
                    opened = self._get_sink().open_run(item.interaction)
                    run_id = opened.run_id
                    if pending is not None:
                        pending.resolve(opened)  # the run id is known before the rest is written
                self.yield_to_live()
                ref = self._get_sink().write(item.interaction, run_id=run_id)
            except Exception as err:
                error = err
                log.debug("delivery attempt %d of %s failed: %s", attempt + 1, item.interaction.interaction_id, err)
                if not is_retryable(err):
                    break
                continue
            self._delivered(item, ref)
            return
        if error is None:
            reason = "recorder closed before delivery" if self._stop.is_set() else "MLflow unreachable (retrying later)"
            self._leave_in_spool(item, reason, retryable=True)
            return
        retryable = is_retryable(error)
        if retryable:
            self._trip()
        self._leave_in_spool(item, str(error), retryable=retryable)

    def _delivered(self, item: _Item, ref: RunRefLike) -> None:
        self._down_until = 0.0
        if item.entry is not None:
            self.spool.ack(item.entry)
        if item.pending is not None:
            item.pending.resolve(ref)
        item.ticket.finish(ref)
        with self._cv:
            self.stats.delivered += 1
            self._outstanding -= 1
            self._cv.notify_all()

    def _leave_in_spool(self, item: _Item, reason: str, *, retryable: bool) -> None:
        interaction_id = item.interaction.interaction_id
        lost = item.entry is None
        if lost:
            reason = f"not delivered ({reason}) and not spooled ({item.spool_error or 'no spool entry'})"
            log.error("record %s is lost: %s", interaction_id, reason)
        else:
            assert item.entry is not None
            self.spool.give_up(item.entry)
            self._warn_spooled(interaction_id, reason)
        if item.pending is not None:
            item.pending.resolve(None, reason)
        item.ticket.finish(None, reason, rejected=not retryable, lost=lost)
        with self._cv:
            self.stats.spooled += 1
            self._outstanding -= 1
            if item.entry is not None:
                if len(self._stranded) < _MAX_TRACKED:
                    self._stranded.add(interaction_id)
                else:
                    self._stranded_untracked += 1
            if not retryable and len(self._hopeless) < _MAX_TRACKED:
                self._hopeless.add(interaction_id)
            self._cv.notify_all()
        self._drain_pending = True
        self._wake_retry.set()

    def _warn_spooled(self, interaction_id: str, reason: str) -> None:
        """One warning per outage (at most every 30 s), not one per record; the rest at debug level."""
        now = time.monotonic()
        with self._cv:
            loud = now - self._last_warning >= 30.0
            if loud:
                self._last_warning = now
        level = logging.WARNING if loud else logging.DEBUG
        log.log(level, "record %s kept in the spool at %s: %s", interaction_id, self.spool.directory, reason)

    def _spool_synchronously(self, interaction: Interaction, ticket: Delivery, pending: PendingRun | None) -> None:
        try:
            entry = self.spool.append(interaction, sync=True)
            self._supersede(pending, True)
            self.spool.give_up(entry)
            self.spool.rotate()
            ticket.finish(None, "recorder closed; kept in the spool")
        except Exception as err:
            reason = f"the recorder was closed and the spool at {self.spool.directory} is unwritable: {err}"
            log.error("record %s is lost: %s", interaction.interaction_id, reason)
            ticket.finish(None, reason, lost=True)

    def _sync_loop(self) -> None:
        while not self._stop.is_set():
            self._wake_sync.wait()
            self._wake_sync.clear()
            try:
                self.spool.sync()
            except OSError as err:
                log.warning("spool fsync failed: %s", err)

    def _retry_loop(self) -> None:
        """Drain the spool when records wait there and MLflow looks reachable; idle otherwise."""
        next_try = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            due = max(next_try, self._down_until)
            if self._drain_pending and now >= due:
                try:
                    self._drain()
                except Exception as err:
                    log.warning("background spool retry failed: %s", err)
                    self._trip()
                next_try = time.monotonic() + self.retry_gap
                continue
            self._wake_retry.wait(due - now if self._drain_pending else self.retry_interval)
            self._wake_retry.clear()

    def _drain(self) -> None:
        if self.spool.own_given_up:
            self.spool.rotate()  # lets segments holding given-up records settle and become drainable
        if not self.spool.claimable_segments():
            self._drain_pending = self.spool.own_given_up > 0
            return
        with self._cv:
            skip = set(self._hopeless)
        sink = self._get_sink()
        report = replay(self.spool, sink, workers=2, stop=self._stop, skip=skip, on_delivered=self._replayed, total=0)
        if report.stopped_on_outage:
            self._trip()
            return
        with self._cv:
            if self.spool.own_given_up == 0:
                # Everything claimable was tried: what is still "stranded" was rejected for good or delivered
                # by another process (a concurrent replay).
                self._stranded &= self._hopeless
                self._stranded_untracked = 0
                self._drain_pending = False
            self._cv.notify_all()

    def _replayed(self, interaction_id: str) -> None:
        self._down_until = 0.0
        with self._cv:
            self.stats.replayed += 1
            self._stranded.discard(interaction_id)
            self._cv.notify_all()
