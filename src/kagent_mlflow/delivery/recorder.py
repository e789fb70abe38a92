"""The recorder: the live path hands a record over and returns; background parts deliver it.

It only assembles the parts and owns their lifecycle (``flush`` and ``close`` are explicit, and also run at
interpreter exit), in the spirit of langfuse's task manager but with each consumer in its own module:

* ``early_open.EarlyOpener`` — opens the run of a slow question while the agent thinks (journalled first);
* ``handoff.Handoff`` — journals the record and queues it (all the caller pays), plus the batched fsync;
* ``workers.Workers`` — deliver queued records to MLflow with retries, backoff and a circuit breaker;
* ``drain.SpoolDrain`` — delivers what waits in the spool once MLflow answers again;
* ``ledger.Ledger`` / ``ledger.Circuit`` — the bookkeeping they share (what ``flush`` waits for; MLflow down?).
"""

from __future__ import annotations

import atexit
import logging
import threading
from collections.abc import Callable
from typing import Any

from ..records import Interaction
from .drain import SpoolDrain
from .early_open import EarlyOpener
from .handles import Delivery, LiveGate, PendingRun
from .handoff import Handoff
from .ledger import Circuit, Ledger, RecorderStats
from .sink import Sink, shared
from .spool import Spool
from .workers import Workers

log = logging.getLogger("kagent_mlflow.delivery")


class Recorder:
    """Early opener + hand-off + workers + spool drain over one spool and one sink."""

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
        gate: LiveGate | None = None,
    ) -> None:
        sink_factory = shared(sink_factory)  # one sink for every part: it remembers runs it opened
        self.spool = spool
        self.gate = gate or LiveGate()
        self.yield_limit = yield_limit
        self.exit_timeout = exit_timeout
        self.ledger = Ledger()
        self.circuit = Circuit(retry_interval)
        self._closed = False
        self._close_lock = threading.Lock()
        self.handoff = Handoff(spool, queue_size)
        self.drain = SpoolDrain(spool, sink_factory, self.ledger, self.circuit, gap=retry_gap, pending=drain_on_start)
        self.workers = Workers(
            self.handoff,
            sink_factory,
            self.ledger,
            self.circuit,
            count=workers,
            attempts=attempts,
            backoff=backoff,
            open_run_wait=open_run_wait,
            step_aside=self.yield_to_live,
            on_left=self.drain.wake,
        )
        self.opener = EarlyOpener(
            spool,
            sink_factory,
            mlflow_down=self.circuit.is_open,
            delay=early_run_after,
            queue_size=queue_size,
        )
        atexit.register(self._atexit)

    @property
    def stats(self) -> RecorderStats:
        return self.ledger.stats

    # ---- live-path API ------------------------------------------------------------------------------------

    def begin(self, stub: Interaction) -> PendingRun:
        """Mark a live request as started and have its run created in the background; returns at once.

        The run is opened only if the agent has not answered within ``early_run_after`` s (a fast answer needs no
        head start, and opening it then would compete with the caller); otherwise the delivery's write creates it.
        Pass the handle to ``record`` (or call ``end()`` on it) when the request is over.
        """
        pending = PendingRun(stub.interaction_id, on_end=self.gate.enter())
        if self._closed or self.circuit.is_open():
            pending.take_over()
        else:
            self.opener.submit(stub, pending)
        return pending

    def live_request(self) -> Any:
        """Context manager marking a live request that does not go through ``begin`` (delivery steps aside)."""
        return self.gate.request()

    def yield_to_live(self, *_: object) -> None:
        """Called by deliverers between MLflow calls: wait (bounded) while a live request is in flight."""
        self.gate.wait_idle(self.yield_limit)

    def record(self, interaction: Interaction, pending_run: PendingRun | None = None) -> Delivery:
        """Journal the record and queue it for delivery; never blocks on MLflow and never raises."""
        if pending_run is not None:
            pending_run.end()
        if self._closed:
            return self._spool_synchronously(interaction, pending_run)
        item = self.handoff.journal(interaction, pending_run)
        self.ledger.handed_over()
        if not self.handoff.offer(item):
            self.workers.leave_in_spool(item, "delivery queue full", retryable=True)
        return item.ticket

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every record so far is delivered or spooled. True when all of them reached MLflow."""
        done = self.ledger.wait_settled(timeout)
        self.spool.sync()
        return done

    def close(self, timeout: float | None = None) -> bool:
        """Flush (bounded by ``timeout``, default ``exit_timeout``), stop the threads, release the spool.

        Whatever was not delivered stays in the spool for ``kagent-mlflow replay``. Safe to call twice.
        """
        with self._close_lock:
            if self._closed:
                return self.ledger.all_delivered()
            self._closed = True
        ok = self.flush(self.exit_timeout if timeout is None else timeout)
        self.drain.stop()
        self.opener.stop()
        self.workers.stop()
        self.spool.close()
        atexit.unregister(self._atexit)
        return ok

    def _atexit(self) -> None:
        self.close()

    def _spool_synchronously(self, interaction: Interaction, pending: PendingRun | None) -> Delivery:
        """After ``close``: journal with fsync and leave the record for replay (no thread is left to deliver it)."""
        ticket = Delivery(interaction.interaction_id)
        self.ledger.counted()
        try:
            entry = self.spool.append(interaction, sync=True)
            self.handoff.settle_provisional(pending.take_journal() if pending else None, superseded=True)
            self.spool.give_up(entry)
            self.spool.rotate()
            ticket.finish(None, "recorder closed; kept in the spool")
        except Exception as err:
            reason = f"the recorder was closed and the spool at {self.spool.directory} is unwritable: {err}"
            log.error("record %s is lost: %s", interaction.interaction_id, reason)
            ticket.finish(None, reason, lost=True)
        return ticket
