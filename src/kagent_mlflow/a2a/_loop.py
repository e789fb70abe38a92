"""One background event loop thread per client, so synchronous callers reuse one async HTTP connection pool."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")


class LoopThread:
    """Runs coroutines on a private event loop in a daemon thread; safe to call from any thread."""

    def __init__(self, name: str = "kagent-mlflow-a2a") -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop (started on first use)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the A2A client is closed")
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()
                thread = threading.Thread(target=self._run, args=(loop, ready), name=self._name, daemon=True)
                thread.start()
                ready.wait()
                self._loop, self._thread = loop, thread
            return self._loop

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        loop.run_forever()

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        try:
            loop = self.loop
        except RuntimeError:
            coro.close()
            raise
        return asyncio.run_coroutine_threadsafe(coro, loop)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and wait for it (the coroutine enforces its own deadline)."""
        if self._thread is not None and threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("AgentClient.ask called from its own event loop thread; use aask")
        return self.submit(coro).result()

    def close(self, final: Coroutine[Any, Any, Any] | None = None, timeout: float = 5.0) -> None:
        """Run ``final`` (e.g. closing the HTTP client) on the loop, then stop it and join the thread."""
        with self._lock:
            if self._closed:
                if final is not None:
                    final.close()
                return
            self._closed = True
            loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            if final is not None:
                final.close()
            return
        try:
            asyncio.run_coroutine_threadsafe(_finish(final), loop).result(timeout)
        except Exception:  # noqa: BLE001 - closing must not fail the caller
            pass
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        if not thread.is_alive():
            loop.close()


async def _finish(final: Coroutine[Any, Any, Any] | None) -> None:
    """Cancel calls still in flight (their callers get CancelledError instead of waiting forever), then ``final``."""
    for _ in range(5):  # cancelling may spawn clean-up tasks (e.g. a connect attempt): repeat until none are left
        pending = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        if not pending:
            break
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    if final is not None:
        await final
