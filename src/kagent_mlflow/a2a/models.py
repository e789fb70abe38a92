"""What the live path hands back: a parsed agent reply, free of any wire-format detail."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field


class ToolCall(BaseModel):
    """One tool call the agent reported making (kagent puts these in data parts)."""

    name: str
    arguments: Any = None
    result: Any = None
    call_id: str | None = None


class ToolStep(ToolCall):
    """A tool call as one step of the agent's work: when the agent's events say it started and ended.

    Times are epoch milliseconds on the agent's clock, from the timestamps of the events that reported the call and
    its response; None when the reply carries no timestamps (a plain ``message/send`` task).
    """

    kind: Literal["tool"] = "tool"
    started_at_ms: int | None = None
    ended_at_ms: int | None = None


class LlmStep(BaseModel):
    """One model call the agent reported: the agent message it produced, with that call's usage metadata.

    ``usage`` keeps the agent's own key names (``promptTokenCount`` ...); ``output`` is the message's text and the
    function calls it asked for. Times as in ``ToolStep``: the call starts when the previous step ended.
    """

    kind: Literal["llm"] = "llm"
    usage: dict[str, float] = Field(default_factory=dict)
    output: Any = None
    error: str | None = None  # the model call failed (kagent's error code and message)
    author: str | None = None
    started_at_ms: int | None = None
    ended_at_ms: int | None = None


Step = Annotated[ToolStep | LlmStep, Field(discriminator="kind")]


class AgentReply(BaseModel):
    """A parsed A2A reply.

    ``usage`` holds every numeric field of the reply's usage metadata under its own key
    (``promptTokenCount`` ...); ``raw`` is the JSON-RPC response body exactly as received - for a streamed reply
    (``message/stream``), the list of every event body as received, in order, with ``event_times_ms`` the
    arrival time of each (ms after the request was sent; polled ``tasks/get`` replies after an early end included).
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
    streamed: bool = False
    event_times_ms: list[float] = Field(default_factory=list)
    first_event_ms: float | None = None  # streamed: when the first event arrived
    ttft_ms: float | None = None  # streamed: when the first event carrying agent text arrived
