"""Interaction: the one record that crosses from the live path to the observability path.

It is plain data (JSON round-trips exactly), so it can wait in the on-disk spool and be replayed.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from ._urls import safe_url, scrub_urls
from .a2a.models import ToolCall

# Usage keys as the kagent runtime (and newer ADK) report them, mapped to MLflow's token-usage names.
_INPUT_KEYS = ("promptTokenCount", "prompt_tokens", "input_tokens")
_OUTPUT_KEYS = ("candidatesTokenCount", "completion_tokens", "output_tokens")
_TOTAL_KEYS = ("totalTokenCount", "total_tokens")


CLIENT_STOPPED = (
    "the client stopped before the agent answered (process killed or crashed); the run was closed by replay"
)


def new_interaction_id() -> str:
    return uuid.uuid4().hex


class TokenUsage(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0


class Interaction(BaseModel):
    """A question, its answer (or the error), and everything measured about it."""

    interaction_id: str = Field(default_factory=new_interaction_id)
    question: str
    answer: str | None = None
    status: Literal["ok", "error"] = "ok"
    error: str | None = None
    agent_name: str
    a2a_url: str
    protocol_version: str | None = None
    task_id: str | None = None
    context_id: str | None = None
    task_state: str | None = None
    usage: dict[str, float] = Field(default_factory=dict)
    tool_calls: list[ToolCall] = Field(default_factory=list)
    raw_response: Any = None
    latency_ms: float = 0.0
    started_at_ms: int = Field(default_factory=lambda: int(time.time() * 1000))
    experiment_name: str
    run_name: str | None = None
    # Journalled when the run is opened early, before the answer: it stands for the question until the real record
    # supersedes it. Only if the client dies first is it delivered (by replay): the run then ends FAILED, never
    # RUNNING forever.
    provisional: bool = False

    @field_validator("a2a_url")
    @classmethod
    def _safe_url(cls, url: str) -> str:
        """The record outlives the request (spool, MLflow): it keeps the URL without credentials."""
        return safe_url(url)

    @field_validator("error", "agent_name")
    @classmethod
    def _safe_text(cls, text: str | None) -> str | None:
        return scrub_urls(text) if text else text

    def provisional_copy(self) -> Interaction:
        """The record journalled before an early run open: a failed interaction saying the client went away."""
        return self.model_copy(update={"provisional": True, "status": "error", "error": CLIENT_STOPPED})

    @property
    def ended_at_ms(self) -> int:
        return self.started_at_ms + int(round(self.latency_ms))

    @property
    def token_usage(self) -> TokenUsage | None:
        """Token counts in MLflow's vocabulary, or None when the agent reported none."""

        def first(keys: tuple[str, ...]) -> int | None:
            for key in keys:
                if key in self.usage:
                    return int(self.usage[key])
            return None

        inp, out, total = first(_INPUT_KEYS), first(_OUTPUT_KEYS), first(_TOTAL_KEYS)
        if inp is None and out is None and total is None:
            return None
        inp, out = inp or 0, out or 0
        return TokenUsage(input_tokens=inp, output_tokens=out, total_tokens=total if total is not None else inp + out)
