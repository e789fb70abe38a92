"""Handles the live path holds while the recorder works in the background: PendingRun, Delivery, LiveGate."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from .sink import RunRefLike


class PendingRun:
    """The MLflow run of one interaction, created in the background; ``run_id(timeout)`` resolves it.

    Created by ``Recorder.begin`` when the question is sent. If the agent is still working after a short grace
    period, the early opener journals a provisional record and creates the run (``sink.open_run``) so it exists by
    the time the answer arrives. If the answer comes first (a fast agent), the early open is skipped and the
    deliverer's write creates the run; either way this handle resolves to the one run of the interaction.
    The methods below the line are the delivery parts' side of the hand-shake.
    """

    def __init__(self, interaction_id: str, on_end: Callable[[], None] | None = None) -> None:
        self.interaction_id = interaction_id
        self.ref: RunRefLike | None = None
        self.error: str | None = None
        self._resolved = threading.Event()
        self._ended = threading.Event()
        self._lock = threading.Lock()
        self._state = "waiting"  # -> "opening" (open_run started) or "skipped" (the write creates the run)
        self._journal: object | None = None  # the provisional record's spool entry, while it stands for the question
        self._on_end = on_end

    def end(self) -> None:
        """The live request is over (answer, error or abandon). Idempotent."""
        self._ended.set()
        with self._lock:
            callback, self._on_end = self._on_end, None
        if callback is not None:
            callback()

    def done(self) -> bool:
        return self._resolved.is_set()

    def wait(self, timeout: float | None = None) -> RunRefLike | None:
        self._resolved.wait(timeout)
        return self.ref

    def run_id(self, timeout: float | None = None) -> str | None:
        """The run id, waiting at most ``timeout`` s; None when MLflow could not be reached in time."""
        ref = self.wait(timeout)
        return ref.run_id if ref is not None else None

    # ---- the delivery parts' side ----

    def wait_ended(self, timeout: float | None) -> bool:
        """Wait until the live request is over; True when it is."""
        return self._ended.wait(timeout)

    def resolve(self, ref: RunRefLike | None, error: str | None = None) -> None:
        """The run exists (``ref``) or cannot be known now (``error``); the first call wins."""
        with self._lock:
            if self._resolved.is_set():
                return
            self.ref, self.error = ref, error
            self._resolved.set()

    def start_open(self, journal: Callable[[], object | None]) -> bool:
        """The early opener claims the open; ``journal()`` writes the provisional record first (None: not written).

        Under the handle's lock, so the answer's ``take_journal`` either sees the entry or the open never starts.
        False (and nothing journalled) when the request is over or the deliverer took over already.
        """
        with self._lock:
            if self._state != "waiting" or self._ended.is_set():
                return False
            entry = journal()
            if entry is None:  # not journalled: do not open a run nothing could close after a crash
                self._state = "skipped"
                return False
            self._journal, self._state = entry, "opening"
            return True

    def take_over(self) -> bool:
        """The deliverer takes over; True when no early open started (so the write must create the run)."""
        with self._lock:
            if self._state == "waiting":
                self._state = "skipped"
            return self._state == "skipped"

    def take_journal(self) -> object | None:
        """The provisional record's spool entry (once): the real record supersedes it."""
        with self._lock:
            entry, self._journal = self._journal, None
            return entry


class Delivery:
    """The fate of one recorded interaction: delivered (``ref``), kept in the spool (``spooled``) or ``lost``."""

    def __init__(self, interaction_id: str) -> None:
        self.interaction_id = interaction_id
        self._event = threading.Event()
        self.ref: RunRefLike | None = None
        self.spooled = False
        self.rejected = False  # the sink refused the record for good: replaying it as is will not help
        self.lost = False  # neither delivered nor spooled: nothing will bring it to MLflow
        self.error: str | None = None

    def finish(
        self, ref: RunRefLike | None, error: str | None = None, *, rejected: bool = False, lost: bool = False
    ) -> None:
        """Set by the delivery parts once the outcome is known."""
        self.ref, self.error, self.rejected, self.lost = ref, error, rejected, lost
        self.spooled = ref is None and not lost
        self._event.set()

    def wait(self, timeout: float | None = None) -> bool:
        """True once the outcome is known (delivered or spooled)."""
        return self._event.wait(timeout)

    @property
    def delivered(self) -> bool:
        return self.ref is not None


class LiveGate:
    """Counts live requests in flight so background delivery can step aside while one is running.

    Python threads share one interpreter lock: a deliverer parsing an MLflow response at the moment the agent's
    answer arrives delays the caller by up to the switch interval (5 ms). Deliverers therefore wait (a bounded
    time) for the live path to be idle before each MLflow call.
    """

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._live = 0

    def enter(self) -> Callable[[], None]:
        """Mark a request in flight; returns the idempotent function that ends it."""
        with self._cv:
            self._live += 1
        done = threading.Event()

        def leave() -> None:
            if done.is_set():
                return
            done.set()
            with self._cv:
                self._live -= 1
                if self._live == 0:
                    self._cv.notify_all()

        return leave

    @contextmanager
    def request(self) -> Iterator[None]:
        leave = self.enter()
        try:
            yield
        finally:
            leave()

    def wait_idle(self, limit: float) -> None:
        """Wait until no live request is in flight, at most ``limit`` s (delivery must not starve)."""
        if self._live == 0:
            return
        with self._cv:
            self._cv.wait_for(lambda: self._live == 0, timeout=limit)
