"""A bounded pool of daemon threads for blocking tools, which accounts for the tools it had to give up on.

Python cannot kill a thread: a blocking tool that hangs past its timeout keeps its thread until the call returns
(possibly never). So blocking tools never get a thread of their own; they run on this pool, whose threads are

- **bounded** (``KAGENT_MLFLOW_TOOL_THREADS``, default 32, per process): hung tools can occupy at most that many
  threads, never exhaust the process;
- **daemon** threads: a hung tool never blocks the process from exiting (``concurrent.futures`` would join it);
- **accounted for**: a call its caller gave up on (timed out) counts as *stuck* until it returns; each one logs a
  warning with the count, and once every thread is stuck new blocking tool calls fail at once with a clear error
  instead of queueing behind them.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from ..errors import ConfigError

DEFAULT_TOOL_THREADS = 32
logger = logging.getLogger("kagent_mlflow.agent")


class ToolThreadsExhausted(RuntimeError):
    """Every tool thread is held by a tool call that already timed out."""


class ToolThreads:
    """At most ``limit`` daemon threads running submitted callables; see the module docstring."""

    def __init__(self, limit: int = DEFAULT_TOOL_THREADS) -> None:
        if limit < 1:
            raise ValueError("the tool thread limit must be at least 1")
        self.limit = limit
        self._jobs: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0
        self._stuck: dict[Future[Any], str] = {}  # abandoned calls still running -> what they are

    @property
    def threads(self) -> int:
        """Threads started so far (never more than ``limit``)."""
        return self._threads

    @property
    def stuck(self) -> int:
        """Calls still running after their caller gave up on them."""
        return len(self._stuck)

    def submit(self, fn: Callable[[], Any]) -> Future[Any]:
        """Run ``fn()`` on a pool thread. Raises :class:`ToolThreadsExhausted` when every thread is stuck."""
        future: Future[Any] = Future()
        with self._lock:
            if len(self._stuck) >= self.limit:
                raise ToolThreadsExhausted(
                    f"all {self.limit} tool threads are stuck in blocking tools that timed out; fix the hanging "
                    "tool (give it its own I/O timeouts), restart the process or raise KAGENT_MLFLOW_TOOL_THREADS"
                )
            if self._idle:
                self._idle -= 1
            elif self._threads < self.limit:
                self._threads += 1
                name = f"kagent-tool-{self._threads}"
                threading.Thread(target=self._work, name=name, daemon=True).start()
            # else: every thread is busy; the job waits for the first free one (its caller's timeout still runs)
        self._jobs.put((future, fn))
        return future

    def abandon(self, future: Future[Any], what: str) -> None:
        """The caller stopped waiting for ``future`` (timeout): count it as stuck until it returns."""
        with self._lock:
            if future.cancel() or future.done():
                return
            self._stuck[future] = what
            stuck = len(self._stuck)
        logger.warning(
            "%s is still running after its timeout; %d of %d tool threads are stuck (Python cannot stop a "
            "thread: make the tool honour its own timeouts)",
            what,
            stuck,
            self.limit,
        )

    def _work(self) -> None:
        while True:
            future, fn = self._jobs.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                value, error = fn(), None
            except BaseException as exc:  # noqa: BLE001 - every failure goes back to the caller
                value, error = None, exc
            with self._lock:  # one step with abandon(): a call is either settled or counted stuck, never both
                what = self._stuck.pop(future, None)
                stuck = len(self._stuck)
                self._idle += 1
                if error is None:
                    future.set_result(value)
                else:
                    future.set_exception(error)
            if what is not None:
                logger.info("%s returned after all; %d tool threads still stuck", what, stuck)


_shared: ToolThreads | None = None
_shared_lock = threading.Lock()


def shared_tool_threads() -> ToolThreads:
    """The process's pool (size from ``KAGENT_MLFLOW_TOOL_THREADS``), made on first use."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = ToolThreads(_limit_from_env())
        return _shared


def _limit_from_env() -> int:
    raw = os.environ.get("KAGENT_MLFLOW_TOOL_THREADS")
    if not raw:
        return DEFAULT_TOOL_THREADS
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if limit < 1:
        raise ConfigError(f"KAGENT_MLFLOW_TOOL_THREADS={raw!r} must be a whole number >= 1, e.g. 32")
    return limit
