"""The agent loop without I/O: one generator that says what to do next and is told what happened.

One turn = model call -> (tool calls -> tool results -> model call)* -> final message, bounded by ``max_steps``.
:func:`turn_steps` yields three kinds of step and is resumed (``send``) with the outcome:

- a ``dict``: a Responses stream event to pass on; resume with ``None``;
- :class:`CallModel`: call the model with these messages and tools; resume with the :class:`ModelReply`;
- :class:`RunTools`: run these calls (all of them, results in call order); resume with a :class:`ToolRound`.

It never calls the model, runs a tool or touches a clock, so the blocking and the async drivers in :mod:`.drive`
(which do the I/O) produce the same events by construction, and it is unit-tested with scripted replies.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

from mlflow.types.responses import create_text_delta

from .reply import ModelReply, TextDelta, ToolCallRequest
from .tools import ToolResult
from .turn import Turn, done, final

COMPLETED = "response.completed"


@dataclass(frozen=True)
class CallModel:
    """Call the model once. ``stream``: as a stream (the driver passes text deltas on as they come)."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    overrides: dict[str, Any]
    stream: bool


@dataclass(frozen=True)
class RunTools:
    """Run these tool calls of one model reply (concurrently up to the agent's ``tool_concurrency``)."""

    calls: list[ToolCallRequest]


@dataclass
class ToolRound:
    """The outcome of a :class:`RunTools`: one result per call, in call order. ``streamed``: sub-agents' text deltas
    were passed into this stream while the tools ran (a routed answer is then not streamed a second time)."""

    results: list[ToolResult]
    streamed: bool = False


Step = dict[str, Any] | CallModel | RunTools
Outcome = ModelReply | ToolRound | None


def turn_steps(turn: Turn, tools: list[dict[str, Any]], stream: bool) -> Generator[Step, Outcome, None]:
    """The steps of one turn; the last one is the ``response.completed`` event."""
    while not turn.finished:
        if turn.over_limit:
            yield from final(turn.limit_answer(), stream)
            break
        reply = yield CallModel(turn.messages, tools, turn.overrides, stream)
        if not isinstance(reply, ModelReply):
            raise TypeError(f"CallModel must be answered with a ModelReply, got {type(reply).__name__}")
        for item in turn.add_reply(reply):
            yield done(item)
        if not reply.tool_calls:
            continue
        outcome = yield RunTools(list(reply.tool_calls))
        if not isinstance(outcome, ToolRound) or len(outcome.results) != len(reply.tool_calls):
            raise TypeError("RunTools must be answered with a ToolRound holding one result per call")
        for call, result in zip(reply.tool_calls, outcome.results, strict=True):
            yield done(turn.add_tool_result(call, result))
        if (direct := turn.direct_answer(reply, outcome.results)) is not None:
            yield from final(direct, stream and not outcome.streamed)
    yield {"type": COMPLETED, "response": turn.response()}


def delta_event(part: TextDelta) -> dict[str, Any]:
    """The stream event for a piece of model text."""
    return create_text_delta(part.text, part.item_id)


@dataclass
class Drive:
    """A driver's handle on a running core: the next step, and where to send its outcome."""

    steps: Generator[Step, Outcome, None]
    outcome: Outcome = field(default=None)

    def next(self) -> Step | None:
        """The next step (``None`` when the turn is over), after sending the previous step's outcome."""
        try:
            step = self.steps.send(self.outcome)
        except StopIteration:
            return None
        self.outcome = None
        return step
