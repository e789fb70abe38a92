"""The workers: threads that take records off the hand-off queue and write them to MLflow through the sink.

Why they work this way: a record is tried ``attempts`` times with exponential backoff, then left in the spool (the
drain retries it later) and the circuit opens, so an outage costs one record's retries, not every record's. A fresh
record's run is created first (``open_run``: its id is known before the rest is written) unless the early opener
already did. Before each MLflow call a worker steps aside (bounded) while a live request is in flight: in one Python
process it would otherwise compete with the caller for the interpreter lock right when the answer arrives.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from .handoff import STOP, Handoff, Item
from .ledger import Circuit, Ledger
from .sink import RunRefLike, Sink, is_retryable

log = logging.getLogger("kagent_mlflow.delivery")


class Workers:
    """``count`` delivery threads; ``on_left`` is told when a record stays in the spool (the drain takes over)."""

    def __init__(
        self,
        handoff: Handoff,
        sink: Callable[[], Sink],
        ledger: Ledger,
        circuit: Circuit,
        *,
        count: int,
        attempts: int,
        backoff: float,
        open_run_wait: float,
        step_aside: Callable[[], None],
        on_left: Callable[[], None],
    ) -> None:
        self.handoff, self._sink, self.ledger, self.circuit = handoff, sink, ledger, circuit
        self.attempts, self.backoff, self.open_run_wait = max(1, attempts), backoff, open_run_wait
        self._step_aside, self._on_left = step_aside, on_left
        self._stop = threading.Event()
        self._last_warning = -1e9
        self._warn_lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._loop, name=f"kagent-mlflow-deliver-{i}", daemon=True)
            for i in range(max(1, count))
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop retrying (records in hand go back to the spool) and end the threads (bounded wait)."""
        self._stop.set()
        self.handoff.stop(len(self._threads))
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=0.5)

    def _loop(self) -> None:
        while True:
            item = self.handoff.queue.get()
            if item is STOP:
                return
            assert isinstance(item, Item)
            try:
                self._deliver(item)
            except Exception as err:  # never let a worker die; the record stays spooled
                log.exception("unexpected error delivering %s", item.interaction.interaction_id)
                self.leave_in_spool(item, f"unexpected error: {err}", retryable=True)

    def _deliver(self, item: Item) -> None:
        error: BaseException | None = None
        pending = item.pending
        early = pending is not None and not pending.take_over()  # an early open_run started: complete that run
        run_id: str | None = None
        for attempt in range(self.attempts):
            if self.circuit.is_open() or self._stop.is_set():
                break
            if attempt and self._stop.wait(self.backoff * 2 ** (attempt - 1)):
                break
            try:
                if early and pending is not None:
                    run_id = pending.run_id(self.open_run_wait)
                elif attempt == 0:
                    # A fresh record has no run yet: create it directly, sparing write() its search by
                    # interaction id. Later attempts let write() search (a failed create may have succeeded).
                    self._step_aside()
                    opened = self._sink().open_run(item.interaction)
                    run_id = opened.run_id
                    if pending is not None:
                        pending.resolve(opened)  # the run id is known before the rest is written
                self._step_aside()
                ref = self._sink().write(item.interaction, run_id=run_id)
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
            self.leave_in_spool(item, reason, retryable=True)
            return
        retryable = is_retryable(error)
        if retryable:
            self.circuit.trip()
        self.leave_in_spool(item, str(error), retryable=retryable)

    def _delivered(self, item: Item, ref: RunRefLike) -> None:
        self.circuit.reset()
        if item.entry is not None:
            self.handoff.spool.ack(item.entry)
        self.handoff.settle_provisional(item.provisional, superseded=True)
        if item.pending is not None:
            item.pending.resolve(ref)
        item.ticket.finish(ref)
        self.ledger.delivered()

    def leave_in_spool(self, item: Item, reason: str, *, retryable: bool) -> None:
        """This process stops trying the record: it waits in the spool, or is lost if it could not be journalled."""
        interaction_id = item.interaction.interaction_id
        lost = item.entry is None
        if lost:
            reason = f"not delivered ({reason}) and not spooled ({item.spool_error or 'no spool entry'})"
            log.error("record %s is lost: %s", interaction_id, reason)
        else:
            assert item.entry is not None
            self.handoff.spool.give_up(item.entry)
            self._warn_spooled(interaction_id, reason)
        self.handoff.settle_provisional(item.provisional, superseded=not lost)
        if item.pending is not None:
            item.pending.resolve(None, reason)
        item.ticket.finish(None, reason, rejected=not retryable, lost=lost)
        self.ledger.left(interaction_id, in_spool=not lost, retryable=retryable)
        self._on_left()

    def _warn_spooled(self, interaction_id: str, reason: str) -> None:
        """One warning per outage (at most every 30 s), not one per record; the rest at debug level."""
        now = time.monotonic()
        with self._warn_lock:
            loud = now - self._last_warning >= 30.0
            if loud:
                self._last_warning = now
        level = logging.WARNING if loud else logging.DEBUG
        spool = self.handoff.spool.directory
        log.log(level, "record %s kept in the spool at %s: %s", interaction_id, spool, reason)
