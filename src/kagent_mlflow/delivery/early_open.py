"""Early run open: the MLflow run of a slow question is created while the agent is still thinking.

Why: an LLM-backed agent takes seconds; creating the run meanwhile makes ``result["run_id"]`` known when the answer
arrives, at no cost to the live path. Only questions still unanswered after ``delay`` (250 ms) are opened: for a fast
answer the deliverer creates the run right after it, and an early open would only compete with the caller.

Why journal first: a run opened before the answer exists in MLflow before any record of it exists on disk. If the
client then dies, nothing would ever end that run (it stays RUNNING). So a *provisional* record (the question,
status error, "the client stopped before the agent answered") is appended to the spool before ``open_run``. The
answer's real record supersedes it (acked once that record is delivered or kept); if the client dies, ``replay``
(or any later logger's drain) delivers it and the run ends FAILED with that reason. No journal, no early open.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from collections.abc import Callable

from ..records import Interaction
from .handles import PendingRun
from .sink import Sink
from .spool import Spool, SpoolEntry

log = logging.getLogger("kagent_mlflow.delivery")

_STOP = object()


class EarlyOpener:
    """One thread that opens runs of questions still unanswered after ``delay`` s, each journalled first."""

    def __init__(
        self,
        spool: Spool,
        sink: Callable[[], Sink],
        *,
        mlflow_down: Callable[[], bool],
        delay: float = 0.25,
        queue_size: int = 1000,
    ) -> None:
        self.spool, self._sink, self._mlflow_down = spool, sink, mlflow_down
        self.delay = delay
        self._jobs: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._thread = threading.Thread(target=self._loop, name="kagent-mlflow-open-run", daemon=True)
        self._thread.start()

    def submit(self, stub: Interaction, pending: PendingRun) -> None:
        """Consider ``stub`` for an early open; never blocks (a full queue means the deliverer creates the run)."""
        try:
            self._jobs.put_nowait((stub, pending, time.monotonic()))
        except queue.Full:
            pending.take_over()

    def stop(self, timeout: float = 0.5) -> None:
        try:
            self._jobs.put_nowait(_STOP)
        except queue.Full:
            pass
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is _STOP:
                return
            stub, pending, submitted = job  # type: ignore[misc]
            if pending.wait_ended(submitted + self.delay - time.monotonic()):
                continue  # answered already: the delivery's write creates the run
            if self._mlflow_down():
                pending.take_over()
                continue
            if not pending.start_open(functools.partial(self._journal, stub)):
                continue
            try:
                pending.resolve(self._sink().open_run(stub))
            except Exception as err:
                log.debug("open_run for %s failed: %s", stub.interaction_id, err)
                pending.resolve(None, str(err))

    def _journal(self, stub: Interaction) -> SpoolEntry | None:
        try:
            entry = self.spool.append(stub.provisional_copy(), sync=False)
        except Exception as err:
            log.warning("no early run open for %s: could not journal it (%s)", stub.interaction_id, err)
            return None
        return entry  # no fsync of its own: one write survives a kill; the answer's batch fsyncs it
