"""What the delivery parts share: the ledger of records not yet settled (``flush`` waits on it) and the circuit.

Why a separate part: the hand-off, the workers and the spool drain each settle records, and ``flush`` must know when
all of them are done and whether everything reached MLflow. Keeping that bookkeeping in one small object lets each
part stay ignorant of the others.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

_MAX_TRACKED = 100_000  # ids remembered per process for flush(); past that only a count (bounded memory)


@dataclass
class RecorderStats:
    recorded: int = 0
    delivered: int = 0
    spooled: int = 0
    replayed: int = 0


class Circuit:
    """Open after a record failed all its retries: later records go straight to the spool instead of each waiting
    through retries. Closes on the next success; the spool drain probes again once ``interval`` s have passed."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._until = 0.0

    def is_open(self) -> bool:
        return time.monotonic() < self._until

    @property
    def reopens_at(self) -> float:
        return self._until

    def trip(self) -> None:
        self._until = time.monotonic() + self.interval

    def reset(self) -> None:
        self._until = 0.0


class Ledger:
    """Records handed over and not settled yet; ids this process left in the spool and ids MLflow rejected."""

    def __init__(self) -> None:
        self.stats = RecorderStats()
        self._cv = threading.Condition()
        self._outstanding = 0
        self._stranded: set[str] = set()  # left in the spool by this process and not delivered since
        self._stranded_untracked = 0
        self._hopeless: set[str] = set()  # rejected for good: the drain skips them

    def handed_over(self) -> None:
        with self._cv:
            self.stats.recorded += 1
            self._outstanding += 1

    def counted(self) -> None:
        """A record that never entered the queue (recorder closed): counted, not outstanding."""
        with self._cv:
            self.stats.recorded += 1

    def delivered(self) -> None:
        with self._cv:
            self.stats.delivered += 1
            self._outstanding -= 1
            self._cv.notify_all()

    def left(self, interaction_id: str, *, in_spool: bool, retryable: bool) -> None:
        with self._cv:
            self.stats.spooled += 1
            self._outstanding -= 1
            if in_spool:
                if len(self._stranded) < _MAX_TRACKED:
                    self._stranded.add(interaction_id)
                else:
                    self._stranded_untracked += 1
            if not retryable and len(self._hopeless) < _MAX_TRACKED:
                self._hopeless.add(interaction_id)
            self._cv.notify_all()

    def replayed(self, interaction_id: str) -> None:
        with self._cv:
            self.stats.replayed += 1
            self._stranded.discard(interaction_id)
            self._cv.notify_all()

    def hopeless(self) -> set[str]:
        with self._cv:
            return set(self._hopeless)

    def drained(self) -> None:
        """Everything claimable was tried: what is still stranded was rejected, or delivered by another process."""
        with self._cv:
            self._stranded &= self._hopeless
            self._stranded_untracked = 0
            self._cv.notify_all()

    def all_delivered(self) -> bool:
        with self._cv:
            return self._outstanding == 0 and not self._stranded and not self._stranded_untracked

    def wait_settled(self, timeout: float | None) -> bool:
        """Wait until no record is outstanding; True when every record so far reached MLflow."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            while self._outstanding > 0:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._cv.wait(remaining)
        return self.all_delivered()
