"""An overall deadline for a streamed answer: the stream ends with a clear error once it has run too long.

A per-event ``wait_for`` would run each step of the agent's generator in a task of its own (and so in a different
context each time, which MLflow's span bookkeeping does not survive); an ``asyncio.timeout`` around ``yield`` would
fire in the consumer's code. So the whole stream runs in ONE producer task that hands events over through a small
queue, and the consumer waits for each event at most until the deadline. On expiry the producer is cancelled (the
agent's model call and tool tasks with it, their spans closed as errors) and :class:`RequestTimeoutError` is raised.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from .errors import RequestTimeoutError

_END = object()


async def within(events: AsyncIterator[Any], timeout: float, message: str) -> AsyncIterator[Any]:
    """``events`` as long as they arrive within ``timeout`` seconds from now; then :class:`RequestTimeoutError`
    with ``message``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=1)  # the producer stays at most one event ahead

    async def produce() -> None:
        try:
            async for event in events:
                await queue.put(event)
        except Exception as exc:  # noqa: BLE001 - raised again by the consumer, in its place
            await queue.put(exc)
            return
        await queue.put(_END)

    producer = asyncio.ensure_future(produce())
    try:
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), max(deadline - loop.time(), 0.0))
            except asyncio.TimeoutError:
                raise RequestTimeoutError(message) from None
            if item is _END:
                return
            if isinstance(item, Exception):
                raise item
            yield item
    finally:
        producer.cancel()
        with contextlib.suppress(BaseException):
            await producer
