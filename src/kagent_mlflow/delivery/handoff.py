"""The hand-off: what the live path pays for recording — one journal write and a put on a bounded queue.

Why: the caller must get its answer back at once, whatever MLflow does. ``journal`` appends the record to the spool
without fsync (one ``write``: it survives the process being killed) and takes along the question's provisional
record (see ``early_open``; a worker acks it later, off the live path); ``offer`` queues it for the workers, and a
full queue leaves the record in the spool for the drain. A syncer thread fsyncs the journal a few ms later, in
batches (survives power loss).
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass

from ..records import Interaction
from .handles import Delivery, PendingRun
from .spool import Spool, SpoolEntry

log = logging.getLogger("kagent_mlflow.delivery")

STOP = object()


@dataclass
class Item:
    """One record on its way: where it is journalled (``entry``), its ticket, and its early-opened run if any."""

    interaction: Interaction
    pending: PendingRun | None
    entry: SpoolEntry | None
    ticket: Delivery
    spool_error: str | None = None  # why the record is not in the spool (entry is None)
    provisional: object | None = None  # the early open's provisional record, settled once this one is


class Handoff:
    """Journal + bounded queue between the live path and the workers."""

    def __init__(self, spool: Spool, queue_size: int) -> None:
        self.spool = spool
        self.queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self.syncer = Syncer(spool)

    def journal(self, interaction: Interaction, pending: PendingRun | None) -> Item:
        """Append the record to the spool (never raises); it carries its provisional record's entry along."""
        ticket = Delivery(interaction.interaction_id)
        entry: SpoolEntry | None = None
        spool_error: str | None = None
        try:
            entry = self.spool.append(interaction, sync=False)
            self.syncer.wake()
        except Exception as err:  # unwritable directory, full disk, unserialisable data: never the caller's problem
            spool_error = f"could not write the spool at {self.spool.directory}: {err}"
            log.warning("%s; delivering from memory only", spool_error)
        provisional = pending.take_journal() if pending is not None else None
        return Item(interaction, pending, entry, ticket, spool_error, provisional)

    def offer(self, item: Item) -> bool:
        """Queue for the workers; False when the queue is full (the record waits in the spool)."""
        try:
            self.queue.put_nowait(item)
        except queue.Full:
            return False
        return True

    def settle_provisional(self, provisional: object | None, *, superseded: bool) -> None:
        """Ack the provisional record once the real one is delivered or journalled (``superseded``); otherwise leave
        it to replay, which closes the early-opened run as FAILED. Until then, replay prefers the real record."""
        if isinstance(provisional, SpoolEntry):
            if superseded:
                self.spool.ack(provisional)
            else:
                self.spool.give_up(provisional)

    def stop(self, workers: int) -> None:
        for _ in range(workers):
            try:
                self.queue.put_nowait(STOP)
            except queue.Full:
                break
        self.syncer.stop()


class Syncer:
    """One thread that fsyncs the journal shortly after writes, in batches (a group commit)."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="kagent-mlflow-spool-sync", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(0.5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            try:
                self.spool.sync()
            except OSError as err:
                log.warning("spool fsync failed: %s", err)
