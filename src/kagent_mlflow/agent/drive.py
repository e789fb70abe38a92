"""The two drivers of the loop core (:mod:`.loop`): they do its I/O, blocking or async, and nothing else.

Each takes the core's steps in order: events are passed on, :class:`~.loop.CallModel` goes to the model (streamed
text deltas passed on as they arrive), :class:`~.loop.RunTools` goes to :mod:`.toolrun` (the same concurrency limit
in both). The only difference between the two is ``await``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import mlflow
from mlflow.types.responses import ResponsesAgentRequest

from .loop import COMPLETED, CallModel, Drive, RunTools, ToolRound, delta_event, turn_steps
from .reply import TextDelta
from .toolrun import Caller, ToolSettings, run_async, run_blocking
from .turn import Turn

if TYPE_CHECKING:
    from .agent import LlamaStackAgent


def events(agent: LlamaStackAgent, request: ResponsesAgentRequest, stream: bool) -> Iterator[dict[str, Any]]:
    """The blocking driver: one turn's Responses events."""
    turn, core, caller, tools = _start(agent, request, stream)
    while (step := core.next()) is not None:
        if isinstance(step, CallModel):
            if step.stream:
                for part in agent.client.stream(step.messages, step.tools, **step.overrides):
                    if isinstance(part, TextDelta):
                        yield delta_event(part)
                    else:
                        core.outcome = part
            else:
                core.outcome = agent.client.complete(step.messages, step.tools, **step.overrides)
        elif isinstance(step, RunTools):
            core.outcome = yield from run_blocking(tools, step.calls, caller, stream)
        else:
            yield _passed_on(turn, step)


async def aevents(agent: LlamaStackAgent, request: ResponsesAgentRequest, stream: bool) -> AsyncIterator[dict]:
    """The async driver: the same steps, awaited."""
    turn, core, caller, tools = _start(agent, request, stream)
    while (step := core.next()) is not None:
        if isinstance(step, CallModel):
            if step.stream:
                async for part in agent.client.astream(step.messages, step.tools, **step.overrides):
                    if isinstance(part, TextDelta):
                        yield delta_event(part)
                    else:
                        core.outcome = part
            else:
                core.outcome = await agent.client.acomplete(step.messages, step.tools, **step.overrides)
        elif isinstance(step, RunTools):
            rounds: list[ToolRound] = []
            async for event in run_async(tools, step.calls, caller, stream, rounds):
                yield event
            core.outcome = rounds[0]
        else:
            yield _passed_on(turn, step)


def _start(
    agent: LlamaStackAgent, request: ResponsesAgentRequest, stream: bool
) -> tuple[Turn, Drive, Caller, ToolSettings]:
    turn = Turn(agent, request)
    core = Drive(turn_steps(turn, agent.tool_specs(), stream))
    settings = ToolSettings(agent.tools, agent.tool_timeout, agent.tool_concurrency, agent.tool_threads)
    return turn, core, Caller(turn.usage), settings


def _passed_on(turn: Turn, event: dict[str, Any]) -> dict[str, Any]:
    if event["type"] == COMPLETED:  # before the last event: a consumer may stop reading right after it
        span = mlflow.get_current_active_span()
        if span is not None:
            span.set_attributes({"agent.name": turn.agent.name, "agent.steps": turn.steps})
    return event
