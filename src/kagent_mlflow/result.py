"""What ``send_question`` returns: the seed's dict, typed, whose every way of reading gives the same values.

Why a dict subclass that settles once: the seed returned a plain dict, and callers do ``result["run_id"]``,
``dict(result)``, ``{**result}`` and ``json.dumps(result)``; a ``Mapping`` that is not a dict breaks ``json.dumps``
and ``isinstance(r, dict)``. The run keys (``run_id``, ``run_url``, ``logging_error``) depend on MLflow, which the
answer must never wait for, so they are filled on the first read that involves them, of *any* kind (the key itself,
``get``, ``pop``, ``setdefault``, ``dict(r)``, ``{**r}``, ``items``/``values``, ``copy``, ``==``, ``repr``,
``json.dumps``, pickling) — all three at once, waiting at most ``run_id_timeout`` — and never change afterwards.
Reading another key (``r["answer"]``) never waits. ``dict(r)`` and ``{**r}`` go through ``keys()`` and
``__getitem__`` because ``__iter__`` is overridden (CPython only copies a dict subclass's storage directly when it
does not); ``json.dumps`` calls ``items()``. ``to_dict()`` is the explicit, plain copy.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from .delivery.handles import Delivery, PendingRun
    from .records import Interaction

RUN_KEYS = ("run_id", "run_url", "logging_error")
State = Literal["delivered", "on_its_way", "spooled", "rejected", "lost"]


@dataclass(frozen=True)
class RunOutcome:
    """Where the record stands: its run (when known) and, unless it reached MLflow or is on its way, why not."""

    state: State
    run_id: str | None = None
    run_url: str | None = None
    logging_error: str | None = None


def outcome_of(delivery: Delivery, pending: PendingRun | None, spool_dir: Path | str) -> RunOutcome:
    """The record's outcome as known right now (no waiting)."""
    if delivery.ref is not None:
        return RunOutcome("delivered", delivery.ref.run_id, delivery.ref.url)
    opened = pending.ref if pending is not None and pending.done() else None  # replay completes this same run
    run = {"run_id": opened.run_id, "run_url": opened.url} if opened is not None else {}
    if delivery.lost:
        return RunOutcome("lost", logging_error=f"record lost: {delivery.error}")
    if delivery.wait(0):
        state: State = "rejected" if delivery.rejected else "spooled"
        return RunOutcome(state, **run, logging_error=f"{delivery.error}; record kept in the spool {spool_dir}")
    if opened is not None:  # the run exists; the rest of the record is being written
        return RunOutcome("on_its_way", **run)
    reason = (pending.error if pending is not None else None) or "not delivered yet"
    return RunOutcome("on_its_way", logging_error=f"{reason}; record kept in the spool {spool_dir}")


def wait_for_run(delivery: Delivery, pending: PendingRun | None, timeout: float) -> None:
    """Wait (at most ``timeout`` s) until the run id is known or the record's fate is."""
    deadline = time.monotonic() + timeout
    if pending is not None and pending.wait(timeout) is not None:
        return
    delivery.wait(max(deadline - time.monotonic(), 0.0))


class QuestionResult(dict):  # type: ignore[type-arg]
    """The seed's result keys plus typed attributes: ``interaction``, ``delivery``, ``pending_run``, ``outcome``.

    Keys: ``answer``, ``run_id``, ``response`` (raw A2A reply), ``latency_ms``, ``interaction_id``, ``status``,
    ``agent``, ``usage``, ``task_id``, ``context_id``, ``run_url``, ``logging_error``.
    """

    def __init__(
        self,
        fields: dict[str, Any],
        *,
        interaction: Interaction,
        delivery: Delivery,
        pending_run: PendingRun | None,
        spool_dir: Path | str,
        run_id_timeout: float,
    ) -> None:
        super().__init__(fields)
        dict.update(self, dict.fromkeys(RUN_KEYS))
        self.interaction = interaction
        self.delivery = delivery
        self.pending_run = pending_run
        self.spool_dir = spool_dir
        self.run_id_timeout = run_id_timeout
        self.outcome: RunOutcome | None = None
        self._lock = threading.Lock()

    def settle(self, timeout: float | None = None) -> QuestionResult:
        """Fill the run keys now (once), waiting at most ``timeout`` (default ``run_id_timeout``) s for MLflow."""
        if self.outcome is None:
            with self._lock:
                if self.outcome is None:
                    wait = self.run_id_timeout if timeout is None else timeout
                    wait_for_run(self.delivery, self.pending_run, wait)
                    outcome = outcome_of(self.delivery, self.pending_run, self.spool_dir)
                    dict.update(self, run_id=outcome.run_id, run_url=outcome.run_url)
                    dict.__setitem__(self, "logging_error", outcome.logging_error)
                    self.outcome = outcome
        return self

    def to_dict(self) -> dict[str, Any]:
        """A plain dict with the seed's keys (run keys settled)."""
        return dict(dict.items(self.settle()))

    # Every read (or change) that involves a run key settles the run keys first, so no two reads can disagree;
    # the other keys are plain values and never wait (reading the answer must not wait for MLflow).
    def _settled_for(self, key: Any) -> QuestionResult:
        return self.settle() if key in RUN_KEYS else self

    def __getitem__(self, key: Any) -> Any:
        return dict.__getitem__(self._settled_for(key), key)

    def get(self, key: Any, default: Any = None) -> Any:
        return dict.get(self._settled_for(key), key, default)

    def __iter__(self) -> Iterator[Any]:
        # Overridden on purpose (keys never change): dict(r) and {**r} then read each value through __getitem__.
        return dict.__iter__(self)

    def items(self) -> Any:
        return dict.items(self.settle())

    def values(self) -> Any:
        return dict.values(self.settle())

    def copy(self) -> dict[str, Any]:
        return self.to_dict()

    def pop(self, key: Any, *default: Any) -> Any:
        return dict.pop(self._settled_for(key), key, *default)

    def popitem(self) -> tuple[Any, Any]:
        return dict.popitem(self.settle())

    def setdefault(self, key: Any, default: Any = None) -> Any:
        return dict.setdefault(self._settled_for(key), key, default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        changes = dict(*args, **kwargs)
        if RUN_KEYS & changes.keys():
            self.settle()
        dict.update(self, changes)

    def __setitem__(self, key: Any, value: Any) -> None:
        dict.__setitem__(self._settled_for(key), key, value)

    def __delitem__(self, key: Any) -> None:
        dict.__delitem__(self._settled_for(key), key)

    def __ior__(self, other: Any) -> QuestionResult:
        self.update(other)
        return self

    def __or__(self, other: Any) -> dict[str, Any]:
        return self.to_dict() | dict(other)

    def __ror__(self, other: Any) -> dict[str, Any]:
        return dict(other) | self.to_dict()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, QuestionResult):
            other.settle()
        return dict.__eq__(self.settle(), other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __repr__(self) -> str:
        return dict.__repr__(self.settle())

    def __reduce__(self) -> tuple[Callable[..., dict[str, Any]], tuple[dict[str, Any]]]:
        return dict, (self.to_dict(),)  # copies and pickles are plain dicts

    __hash__ = None  # type: ignore[assignment]
