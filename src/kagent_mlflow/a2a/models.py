"""What the live path hands back: a parsed agent reply, free of any wire-format detail."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ToolCall(BaseModel):
    """One tool call the agent reported making (kagent puts these in data parts)."""

    name: str
    arguments: Any = None
    result: Any = None
    call_id: str | None = None


class AgentReply(BaseModel):
    """A parsed A2A reply.

    ``usage`` holds every numeric field of the reply's usage metadata under its own key
    (``promptTokenCount`` ...); ``raw`` is the JSON-RPC response body exactly as received.
    """

    answer: str
    agent_name: str
    url: str
    protocol_version: str
    task_id: str | None = None
    context_id: str | None = None
    task_state: str | None = None
    usage: dict[str, float] = Field(default_factory=dict)
    tool_calls: list[ToolCall] = Field(default_factory=list)
    raw: Any = None
    latency_ms: float = 0.0
