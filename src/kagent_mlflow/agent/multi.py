"""Multi-agent orchestration: a supervisor agent whose tools are specialist agents.

Two shapes, both one trace: *agents-as-tools* (the supervisor may consult several specialists and writes the final
answer itself) and *router* (``route=True``: the supervisor picks one specialist, whose answer is returned as is).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .agent import LlamaStackAgent
from .tools import Tool

DEFAULT_SUPERVISOR_INSTRUCTIONS = (
    "You coordinate specialist agents. For each part of the user's request, call the specialist best suited to "
    "it with a self-contained request, then answer the user using what they returned."
)
DEFAULT_ROUTER_INSTRUCTIONS = (
    "You route each user request to exactly one specialist agent. Call the single best-suited specialist with the "
    "user's request; do not answer yourself."
)


def supervisor(
    specialists: Iterable[LlamaStackAgent],
    *,
    name: str = "supervisor",
    instructions: str | None = None,
    route: bool = False,
    extra_tools: Iterable[Tool | Any] = (),
    **agent_kwargs: Any,
) -> LlamaStackAgent:
    """A :class:`LlamaStackAgent` whose tools are ``ask_<specialist>`` delegations (plus ``extra_tools``).

    ``agent_kwargs`` (model, base_url, max_steps, ...) configure the supervisor itself; each specialist keeps its own
    settings, instructions and tools.
    """
    tools: list[Tool | Any] = [s.as_tool(return_direct=route) for s in specialists]
    tools.extend(extra_tools)
    default = DEFAULT_ROUTER_INSTRUCTIONS if route else DEFAULT_SUPERVISOR_INSTRUCTIONS
    return LlamaStackAgent(name=name, instructions=instructions or default, tools=tools, **agent_kwargs)
