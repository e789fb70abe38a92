"""Responses-format input (messages, function calls, their outputs) -> chat-completions messages, faithfully.

MLflow's ``prep_msgs_for_cc_llm`` turns every ``function_call`` into its own assistant message with placeholder
content; chat-completions servers expect the calls of one model turn in ONE assistant message, followed by their tool
results. So this module merges consecutive calls (and the assistant text just before them) into one message and keeps
everything else in order.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

_ROLE_MAP = {"developer": "system"}  # Llama Stack's chat API knows system, user, assistant, tool


def _as_dict(item: Any) -> dict[str, Any]:
    if isinstance(item, BaseModel):
        return item.model_dump(exclude_none=True)
    return dict(item)


def content_text(content: Any) -> str:
    """Text of a Responses ``content``: a string, or parts with ``text`` (input_text / output_text)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = []
    for part in content:
        part = _as_dict(part) if not isinstance(part, str) else {"text": part}
        if part.get("type") == "refusal":
            parts.append(str(part.get("refusal") or ""))
        elif part.get("text") is not None:
            parts.append(str(part["text"]))
    return "".join(parts)


def _output_text(output: Any) -> str:
    if isinstance(output, str):
        return output
    try:
        return json.dumps(output)
    except (TypeError, ValueError):
        return str(output)


def to_chat_messages(items: Iterable[Any], instructions: str | None = None) -> list[dict[str, Any]]:
    """Chat messages for ``items`` (a ResponsesAgentRequest's ``input``), preceded by ``instructions`` if given."""
    messages: list[dict[str, Any]] = []
    if instructions:
        messages.append({"role": "system", "content": instructions})
    open_call_turn = False  # True while the last message is an assistant turn that may still collect calls
    for raw in items:
        item = _as_dict(raw)
        kind = item.get("type", "message")
        if kind == "function_call":
            call = {
                "id": item["call_id"],
                "type": "function",
                "function": {"name": item["name"], "arguments": item.get("arguments") or "{}"},
            }
            if open_call_turn:
                messages[-1].setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
            open_call_turn = True
        elif kind == "function_call_output":
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": _output_text(item["output"])})
            open_call_turn = False
        elif kind == "message":
            role = _ROLE_MAP.get(item.get("role", "user"), item.get("role", "user"))
            messages.append({"role": role, "content": content_text(item.get("content"))})
            open_call_turn = role == "assistant"
        # reasoning, web/file search and other item kinds carry nothing a chat-completions model accepts: skipped
    return messages
