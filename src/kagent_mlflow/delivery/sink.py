"""What the delivery layer needs from a sink: two calls, both idempotent by ``interaction_id``.

The MLflow sink (``kagent_mlflow.sinks.mlflow.MlflowSink``) satisfies this; unit tests use an in-process fake.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from ..records import Destination, Interaction


class RunRefLike(Protocol):
    """Where a record landed (``sinks.mlflow.RunRef`` is one)."""

    @property
    def run_id(self) -> str: ...

    @property
    def url(self) -> str | None: ...


@runtime_checkable
class Sink(Protocol):
    @property
    def destination(self) -> Destination:
        """The server this sink writes to: only records meant for it are delivered through it."""
        ...

    def open_run(self, interaction: Interaction) -> RunRefLike:
        """Create (or find) the run for ``interaction.interaction_id``: one cheap round trip."""
        ...

    def write(self, interaction: Interaction, run_id: str | None = None) -> RunRefLike:
        """Write everything; completes or replaces a run left half-written, never duplicates it."""
        ...


def is_retryable(err: BaseException) -> bool:
    """Whether trying again later can help (server down, 5xx, timeouts) rather than the record being unusable."""
    for name in ("retryable", "transient", "retriable"):
        value = getattr(err, name, None)
        if isinstance(value, bool):
            return value
    return True


def shared(factory: Callable[[], Sink]) -> Callable[[], Sink]:
    """``factory`` called once, on first use, from whichever thread needs the sink first (MLflow imports lazily)."""
    made: list[Sink] = []
    lock = threading.Lock()

    def get() -> Sink:
        if not made:
            with lock:
                if not made:
                    made.append(factory())
        return made[0]

    return get
