"""The spool drain: one thread that delivers what waits in the journal once MLflow looks reachable again.

Why: records left in the spool (MLflow down, queue full, or left by an earlier process that died) must reach
MLflow without the user running ``replay``. The drain sleeps while there is nothing to do, waits out the circuit
while MLflow is down, and otherwise replays every segment no live process holds (this process's own segments once
they settle), skipping records MLflow rejected for good.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from .ledger import Circuit, Ledger
from .replay import replay
from .sink import Sink
from .spool import Spool

log = logging.getLogger("kagent_mlflow.delivery")


class SpoolDrain:
    """Background retry of the journal; ``wake()`` when a record was left there."""

    def __init__(
        self,
        spool: Spool,
        sink: Callable[[], Sink],
        ledger: Ledger,
        circuit: Circuit,
        *,
        gap: float,
        pending: bool,
    ) -> None:
        self.spool, self._sink, self.ledger, self.circuit = spool, sink, ledger, circuit
        self.gap = gap  # pause between two drains
        self._pending = pending  # records may wait in the spool (at start: left by earlier processes)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="kagent-mlflow-retry", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._pending = True
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(0.5)

    def _loop(self) -> None:
        next_try = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            due = max(next_try, self.circuit.reopens_at)
            if self._pending and now >= due:
                try:
                    self._drain()
                except Exception as err:
                    log.warning("background spool retry failed: %s", err)
                    self.circuit.trip()
                next_try = time.monotonic() + self.gap
                continue
            self._wake.wait(due - now if self._pending else self.circuit.interval)
            self._wake.clear()

    def _drain(self) -> None:
        if self.spool.own_given_up:
            self.spool.rotate()  # lets segments holding given-up records settle and become drainable
        if not self.spool.claimable_segments():
            self._pending = self.spool.own_given_up > 0
            return
        report = replay(
            self.spool,
            self._sink(),
            workers=2,
            stop=self._stop,
            skip=self.ledger.hopeless(),
            on_delivered=self._replayed,
            total=0,
        )
        if report.stopped_on_outage:
            self.circuit.trip()
            return
        if self.spool.own_given_up == 0:
            self.ledger.drained()
            self._pending = False

    def _replayed(self, interaction_id: str) -> None:
        self.circuit.reset()
        self.ledger.replayed(interaction_id)
