"""The state of one agent turn and the Responses events it produces (kept apart from the loop that drives it)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from mlflow.types.responses import (
    ResponsesAgentRequest,
    create_function_call_item,
    create_function_call_output_item,
    create_text_delta,
    create_text_output_item,
)

from .history import to_chat_messages
from .reply import ModelReply, ToolCallRequest, Usage
from .tools import ToolResult

if TYPE_CHECKING:
    from .agent import LlamaStackAgent


def done(item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "response.output_item.done", "item": item}


def final(item: dict[str, Any], stream: bool) -> Iterator[dict[str, Any]]:
    """Events for an answer the agent wrote itself (step limit, routed answer): streamed as one delta, then done."""
    if stream:
        yield create_text_delta(item["content"][0]["text"], item["id"])
    yield done(item)


class Turn:
    """The state of one request: chat messages sent so far, output items, summed usage, steps taken."""

    def __init__(self, agent: LlamaStackAgent, request: ResponsesAgentRequest) -> None:
        self.agent = agent
        self.messages = to_chat_messages(request.input, agent.instructions)
        self.overrides: dict[str, Any] = {}
        if request.temperature is not None:
            self.overrides["temperature"] = request.temperature
        if request.max_output_tokens is not None:
            self.overrides["max_tokens"] = request.max_output_tokens
        self.output: list[dict[str, Any]] = []
        self.usage = Usage()
        self.steps = 0
        self.model = ""
        self.stop_reason: str | None = None

    @property
    def over_limit(self) -> bool:
        return self.steps >= self.agent.max_steps

    def add_reply(self, reply: ModelReply) -> list[dict[str, Any]]:
        """Record a model answer; returns its output items (text message first, then one per tool call)."""
        self.steps += 1
        self.model = reply.model
        self.usage.add(reply.usage)
        message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
        items: list[dict[str, Any]] = []
        if reply.text or not reply.tool_calls:
            items.append(create_text_output_item(reply.text, reply.item_id))
        if reply.tool_calls:
            message["tool_calls"] = []
            for call in reply.tool_calls:
                function = {"name": call.name, "arguments": call.arguments}
                message["tool_calls"].append({"id": call.call_id, "type": "function", "function": function})
                items.append(create_function_call_item(f"fc_{call.call_id}", call.call_id, call.name, call.arguments))
        else:
            self.stop_reason = "final_answer"
        self.messages.append(message)
        self.output.extend(items)
        return items

    def add_tool_result(self, call: ToolCallRequest, result: ToolResult) -> dict[str, Any]:
        self.messages.append({"role": "tool", "tool_call_id": call.call_id, "content": result.output})
        item = create_function_call_output_item(call.call_id, result.output)
        self.output.append(item)
        return item

    def direct_answer(self, reply: ModelReply, results: list[ToolResult]) -> dict[str, Any] | None:
        """If a ``return_direct`` tool succeeded, its output is the final answer (routing to a specialist)."""
        for call, result in zip(reply.tool_calls, results, strict=True):
            found = self.agent.tools.get(call.name)
            if found is not None and found.return_direct and result.error is None:
                self.stop_reason = "return_direct"
                return self._final_text(result.output, f"msg_{call.call_id}")
        return None

    def limit_answer(self) -> dict[str, Any]:
        self.stop_reason = "max_steps"
        text = (
            f"Stopped: reached the limit of {self.agent.max_steps} model calls before a final answer. "
            "Ask a narrower question or raise max_steps."
        )
        return self._final_text(text, f"msg_{uuid.uuid4().hex}")

    def _final_text(self, text: str, item_id: str) -> dict[str, Any]:
        item = create_text_output_item(text, item_id)
        self.output.append(item)
        return item

    @property
    def finished(self) -> bool:
        return self.stop_reason is not None

    def response(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": f"resp_{uuid.uuid4().hex}",
            "object": "response",
            "status": "completed",
            "model": self.model or None,
            "output": self.output,
            "custom_outputs": {"agent": self.agent.name, "steps": self.steps, "stop_reason": self.stop_reason},
        }
        if (usage := self.usage.for_response()) is not None:
            out["usage"] = usage
        return out
