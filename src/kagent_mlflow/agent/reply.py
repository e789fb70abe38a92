"""What the model said, independent of how it was fetched: token usage, tool-call requests, whole replies, and the
one parser that folds OpenAI ``chat.completion.chunk`` objects into a reply (fed by a sync or an async stream).

No I/O here: :mod:`.llm` makes the calls and feeds the chunks.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Usage:
    """Token counts, summed over model calls. ``reported`` is False until some call reported usage."""

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    reported: bool = False

    def add(self, other: Usage | None) -> None:
        if other is None or not other.reported:
            return
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.total_tokens += other.total_tokens
        self.reported = True

    @classmethod
    def from_openai(cls, usage: Any) -> Usage | None:
        if usage is None:
            return None
        prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion = int(getattr(usage, "completion_tokens", 0) or 0)
        total = int(getattr(usage, "total_tokens", 0) or 0) or prompt + completion
        return cls(prompt, completion, total, reported=True)

    def for_span(self) -> dict[str, int]:
        """MLflow's ``mlflow.chat.tokenUsage`` attribute shape."""
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
        }

    def for_response(self) -> dict[str, Any] | None:
        """The Responses ``usage`` object (MLflow requires both details objects)."""
        if not self.reported:
            return None
        return {
            "input_tokens": self.input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": self.output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": self.total_tokens,
        }


@dataclass
class ToolCallRequest:
    call_id: str
    name: str
    arguments: str


@dataclass
class ModelReply:
    """One model answer: text and/or tool calls, with its usage."""

    item_id: str
    text: str = ""
    tool_calls: list[ToolCallRequest] = field(default_factory=list)
    usage: Usage | None = None
    finish_reason: str | None = None
    model: str = ""

    def as_completion(self) -> dict[str, Any]:
        """A chat.completion-shaped dict, for the LLM span's outputs."""
        message: dict[str, Any] = {"role": "assistant", "content": self.text or None}
        if self.tool_calls:
            message["tool_calls"] = [
                {"id": c.call_id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in self.tool_calls
            ]
        out: dict[str, Any] = {
            "id": self.item_id,
            "object": "chat.completion",
            "model": self.model,
            "choices": [{"index": 0, "message": message, "finish_reason": self.finish_reason}],
        }
        if self.usage:
            out["usage"] = {
                "prompt_tokens": self.usage.input_tokens,
                "completion_tokens": self.usage.output_tokens,
                "total_tokens": self.usage.total_tokens,
            }
        return out


@dataclass
class TextDelta:
    item_id: str
    text: str


def _new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def reply_from_completion(completion: Any, model: str) -> ModelReply:
    if not getattr(completion, "choices", None):
        raise ValueError("the completion has no choices")
    choice = completion.choices[0]
    msg = choice.message
    calls = [
        ToolCallRequest(tc.id or _new_call_id(), tc.function.name, tc.function.arguments or "{}")
        for tc in (msg.tool_calls or [])
        if getattr(tc, "function", None) is not None
    ]
    return ModelReply(
        item_id=completion.id or f"msg_{uuid.uuid4().hex}",
        text=msg.content or "",
        tool_calls=calls,
        usage=Usage.from_openai(completion.usage),
        finish_reason=choice.finish_reason,
        model=completion.model or model,
    )


class StreamAccumulator:
    """Folds chat.completion.chunk objects into a :class:`ModelReply`, handing back text deltas as they come."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.item_id: str | None = None
        self.text: list[str] = []
        self.calls: dict[int, dict[str, str]] = {}
        self.usage: Usage | None = None
        self.finish_reason: str | None = None

    def add(self, chunk: Any) -> TextDelta | None:
        if self.item_id is None and getattr(chunk, "id", None):
            self.item_id = chunk.id
        if getattr(chunk, "usage", None):
            self.usage = Usage.from_openai(chunk.usage)
        if not chunk.choices:
            return None
        choice = chunk.choices[0]
        if choice.finish_reason:
            self.finish_reason = choice.finish_reason
        delta = choice.delta
        for tc in getattr(delta, "tool_calls", None) or []:
            slot = self.calls.setdefault(tc.index or 0, {"id": "", "name": "", "arguments": ""})
            if tc.id:
                slot["id"] = tc.id
            if tc.function is not None:
                slot["name"] += tc.function.name or ""
                slot["arguments"] += tc.function.arguments or ""
        if getattr(delta, "content", None):
            self.text.append(delta.content)
            return TextDelta(self.ensure_id(), delta.content)
        return None

    def ensure_id(self) -> str:
        if self.item_id is None:
            self.item_id = f"msg_{uuid.uuid4().hex}"
        return self.item_id

    def result(self) -> ModelReply:
        calls = [
            ToolCallRequest(c["id"] or _new_call_id(), c["name"], c["arguments"] or "{}")
            for _, c in sorted(self.calls.items())
        ]
        return ModelReply(self.ensure_id(), "".join(self.text), calls, self.usage, self.finish_reason, self.model)
