"""Turn an A2A reply body (protocol 1.0 or 0.3, Task or Message) into an ``AgentReply``.

Pure functions over the JSON exactly as received, so they are tested with recorded replies and never depend on
how an SDK version models the wire format. Shapes handled:

- 0.3: ``result`` is the object itself, tagged ``kind: task | message``; parts are ``{"kind": "text", "text"}``;
  states are ``completed``, ``input-required``; roles ``agent`` / ``user``.
- 1.0: ``result`` wraps it, ``{"task": {...}}`` or ``{"message": {...}}``; parts are ``{"text"}`` / ``{"data"}``;
  states are ``TASK_STATE_COMPLETED``; roles ``ROLE_AGENT`` / ``ROLE_USER``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from .models import AgentReply, ToolCall

# Task states that end a request without an answer the caller can use.
ERROR_STATES = frozenset({"failed", "rejected", "canceled", "input-required", "auth-required"})
# Task states that are not final: the client polls the task until it leaves them.
PENDING_STATES = frozenset({"submitted", "working", "unspecified", "unknown"})

USAGE_KEYS = ("kagent_usage_metadata", "adk_usage_metadata")  # kagent's key first; newer ADK uses the adk_ prefix
_TYPE_KEYS = ("kagent_type", "adk_type", "type")  # where kagent marks a data part as a function call/response


class ReplyShapeError(ValueError):
    """The body is JSON but not an A2A result we can read (the client reports it as a protocol error)."""


def parse_reply(
    body: Any,
    *,
    url: str,
    agent_name: str,
    protocol_version: str,
    latency_ms: float = 0.0,
) -> AgentReply:
    """Parse a JSON-RPC response body (or a bare result object) into an ``AgentReply``.

    ``raw`` is ``body`` itself, untouched. Raises ``ReplyShapeError`` when there is no Task or Message in it.
    """
    kind, obj = _unwrap(body)
    if kind == "message":
        return AgentReply(
            answer=message_text(obj) or explain_empty(kind, obj, None),
            agent_name=agent_name,
            url=url,
            protocol_version=protocol_version,
            task_id=_str(obj.get("taskId")),
            context_id=_str(obj.get("contextId")),
            task_state=None,
            usage=collect_usage([obj]),
            tool_calls=collect_tool_calls([obj]),
            raw=body,
            latency_ms=latency_ms,
        )
    status = obj.get("status") if isinstance(obj.get("status"), dict) else {}
    state = normalize_state(status.get("state"))
    task_id = _str(obj.get("id"))
    messages = _task_messages(obj, task_id)
    usage = collect_usage(messages) or collect_usage([obj])
    return AgentReply(
        answer=task_answer(obj) or explain_empty(kind, obj, state),
        agent_name=agent_name,
        url=url,
        protocol_version=protocol_version,
        task_id=task_id,
        context_id=_str(obj.get("contextId")),
        task_state=state,
        usage=usage,
        tool_calls=collect_tool_calls(messages, artifacts=_list(obj.get("artifacts"))),
        raw=body,
        latency_ms=latency_ms,
    )


def _unwrap(body: Any) -> tuple[str, dict[str, Any]]:
    """Return ("task" | "message", object) from a JSON-RPC envelope or a bare result, in either protocol."""
    if not isinstance(body, dict):
        raise ReplyShapeError(f"reply is a JSON {type(body).__name__}, not an object")
    result = body.get("result", body) if "jsonrpc" in body or "result" in body else body
    if not isinstance(result, dict):
        raise ReplyShapeError(f"JSON-RPC result is a {type(result).__name__}, not a Task or Message object")
    for kind in ("task", "message"):  # 1.0: {"task": {...}} / {"message": {...}}
        if isinstance(result.get(kind), dict):
            return kind, result[kind]
    kind = result.get("kind")  # 0.3: the object itself, tagged with kind
    if kind in ("task", "message"):
        return kind, result
    if "status" in result or "artifacts" in result:
        return "task", result
    if "messageId" in result or "parts" in result:
        return "message", result
    keys = ", ".join(sorted(result)[:8]) or "none"
    raise ReplyShapeError(f"JSON-RPC result is neither a Task nor a Message (keys: {keys})")


def normalize_state(state: Any) -> str | None:
    """``TASK_STATE_INPUT_REQUIRED`` (1.0) and ``input-required`` (0.3) both become ``input-required``."""
    if not isinstance(state, str) or not state:
        return None
    s = state.strip().lower()
    s = s.removeprefix("task_state_").replace("_", "-")
    return "canceled" if s == "cancelled" else s


def is_agent(message: dict[str, Any]) -> bool:
    return str(message.get("role", "")).lower() in ("agent", "role_agent")


def part_texts(parts: Any) -> list[str]:
    """The text of every text part (0.3 ``kind: text`` or 1.0 ``{"text": ...}``), in order."""
    texts = []
    for part in _list(parts):
        if not isinstance(part, dict):
            continue
        kind = part.get("kind")
        text = part.get("text")
        if isinstance(text, str) and kind in (None, "text"):
            texts.append(text)
    return texts


def message_text(message: Any) -> str:
    if not isinstance(message, dict):
        return ""
    return "\n".join(t for t in part_texts(message.get("parts")) if t)


def task_answer(task: dict[str, Any]) -> str:
    """Artifacts' text, else the status message's, else the last agent message with text in history."""
    texts = [t for artifact in _list(task.get("artifacts")) if isinstance(artifact, dict)
             for t in part_texts(artifact.get("parts")) if t]  # fmt: skip
    if texts:
        return "\n".join(texts)
    status = task.get("status")
    if isinstance(status, dict):
        text = message_text(status.get("message"))
        if text:
            return text
    for message in reversed(_list(task.get("history"))):
        if isinstance(message, dict) and is_agent(message):
            text = message_text(message)
            if text:
                return text
    return ""


def explain_empty(kind: str, obj: dict[str, Any], state: str | None) -> str:
    """Say why there is no answer text, so a log never shows a bare ``<empty>``."""
    if kind == "message":
        return f"(no answer text: the agent replied with a message of {_describe_parts(obj.get('parts'))})"
    artifacts = [a for a in _list(obj.get("artifacts")) if isinstance(a, dict)]
    pieces = [f"task state {state or 'not given'}"]
    if artifacts:
        parts = [p for a in artifacts for p in _list(a.get("parts"))]
        pieces.append(f"{len(artifacts)} artifact(s) with {_describe_parts(parts)}")
    else:
        pieces.append("no artifacts")
    status = obj.get("status")
    message = status.get("message") if isinstance(status, dict) else None
    pieces.append(f"status message with {_describe_parts(message.get('parts'))}" if isinstance(message, dict)
                  else "no status message")  # fmt: skip
    agent_messages = [m for m in _list(obj.get("history")) if isinstance(m, dict) and is_agent(m)]
    pieces.append(f"{len(agent_messages)} agent message(s) in history without text" if agent_messages
                  else "no agent message in history")  # fmt: skip
    return f"(no answer text: {'; '.join(pieces)})"


def _describe_parts(parts: Any) -> str:
    parts = [p for p in _list(parts) if isinstance(p, dict)]
    if not parts:
        return "no parts"
    kinds: dict[str, int] = {}
    for part in parts:
        kind = part.get("kind") or next((k for k in ("text", "data", "raw", "url", "file") if k in part), "unknown")
        if kind == "text" and not part.get("text"):
            kind = "empty text"
        kinds[kind] = kinds.get(kind, 0) + 1
    return ", ".join(f"{n} {kind} part(s)" for kind, n in kinds.items())


def _task_messages(task: dict[str, Any], task_id: str | None) -> list[dict[str, Any]]:
    """This task's agent messages (history, then the status message), each once: kagent repeats history entries."""
    seen: set[str] = set()
    found = []
    status = task.get("status")
    candidates = [*_list(task.get("history")), status.get("message") if isinstance(status, dict) else None]
    for message in candidates:
        if not isinstance(message, dict) or not is_agent(message):
            continue
        if task_id and message.get("taskId") not in (None, task_id):
            continue  # an earlier turn in the same context
        key = _str(message.get("messageId")) or str(id(message))
        if key in seen:
            continue
        seen.add(key)
        found.append(message)
    return found


def usage_of(metadata: Any) -> dict[str, float]:
    """Every numeric field of ``kagent_usage_metadata`` / ``adk_usage_metadata`` in one metadata object."""
    usage: dict[str, float] = {}
    if not isinstance(metadata, dict):
        return usage
    for key in reversed(USAGE_KEYS):  # kagent's values win over the adk_ duplicate of the same call
        block = metadata.get(key)
        if isinstance(block, dict):
            usage.update({k: float(v) for k, v in block.items() if _is_number(v)})
    return usage


def collect_usage(objects: Iterable[dict[str, Any]]) -> dict[str, float]:
    """Sum usage over objects that each report one model call's usage.

    kagent puts each model call's usage on the agent message it produced, and only the LAST call's on the task's
    metadata; summing the messages counts a tool round's calls too.
    """
    total: dict[str, float] = {}
    for obj in objects:
        for key, value in usage_of(obj.get("metadata")).items():
            total[key] = total.get(key, 0.0) + value
    return total


def collect_tool_calls(messages: Iterable[dict[str, Any]], artifacts: Iterable[Any] = ()) -> list[ToolCall]:
    """Function calls and their responses, as kagent reports them in data parts, paired by call id."""
    calls: list[ToolCall] = []
    by_id: dict[str, ToolCall] = {}
    parts = [p for m in messages for p in _list(m.get("parts"))]
    parts += [p for a in artifacts if isinstance(a, dict) for p in _list(a.get("parts"))]
    for kind, data in _function_parts(parts):
        call_id = _str(data.get("id"))
        name = _str(data.get("name")) or "unknown"
        if kind == "function_call":
            if call_id and call_id in by_id:
                continue  # the same call reported twice
            call = ToolCall(name=name, arguments=data.get("args", data.get("arguments")), call_id=call_id)
            calls.append(call)
            if call_id:
                by_id[call_id] = call
        else:
            result = data.get("response", data.get("result"))
            call = by_id.get(call_id) if call_id else None
            if call is None:
                call = ToolCall(name=name, call_id=call_id)
                calls.append(call)
                if call_id:
                    by_id[call_id] = call
            call.result = result
    return calls


def _function_parts(parts: Iterable[Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for part in parts:
        if not isinstance(part, dict) or not isinstance(part.get("data"), dict):
            continue
        metadata = part.get("metadata") if isinstance(part.get("metadata"), dict) else {}
        kind = next((metadata[k] for k in _TYPE_KEYS if isinstance(metadata.get(k), str)), None)
        if kind in ("function_call", "function_response"):
            yield kind, part["data"]


def one_line(text: str, limit: int = 300) -> str:
    """Collapse whitespace and cut long text, so an error message stays a single readable line."""
    text = re.sub(r"\s+", " ", str(text)).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
