"""Streamed A2A replies (``message/stream``): read each event as received, fold them into one task.

Pure functions over the JSON exactly as received (like ``parse``), for both wire shapes:

- 0.3 (kagent): ``result`` is the event itself, tagged ``kind: status-update | artifact-update | task | message``;
  a status update carries ``final: true`` on the last one.
- 1.0: ``result`` wraps it: ``{"statusUpdate": ...}``, ``{"artifactUpdate": ...}``, ``{"task": ...}``,
  ``{"message": ...}``; the end is a terminal state (there is no ``final`` flag).

``fold`` keeps what the events said (status, artifacts with their chunks appended, every agent message) as a task
object that ``parse.parse_reply`` reads like any other reply, so a streamed answer, its usage and its tool calls
come out exactly as the same task returned by ``message/send`` would give them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .models import ToolCall
from .parse import collect_tool_calls, is_agent, message_text, normalize_state, one_line, part_texts
from .wire import jsonrpc_error

# States after which the agent sends nothing more for this task (input-required waits for the user's reply).
TERMINAL_STATES = frozenset({"completed", "failed", "rejected", "canceled", "input-required", "auth-required"})
_PARTIAL_KEYS = ("kagent_adk_partial", "adk_partial")  # kagent marks token-by-token chunks of a model reply


@dataclass
class StreamEvent:
    """One event of a streamed reply, as a progress display needs it; ``body`` is the envelope as received.

    ``kind``: ``status-update``, ``artifact-update``, ``task``, ``message``, ``error`` (a JSON-RPC error event) or
    ``invalid`` (not JSON, or no A2A object in it). ``source``: ``stream``, or ``poll`` for a ``tasks/get`` reply
    read after the stream ended early.
    """

    kind: str
    body: Any
    at_ms: float = 0.0
    source: str = "stream"
    task_id: str | None = None
    context_id: str | None = None
    state: str | None = None
    final: bool = False
    text: str = ""  # the agent's text in this event (status message, artifact chunk, message)
    partial: bool = False  # a token-by-token chunk of a model reply (kagent's streaming mode)
    append: bool = False  # an artifact chunk to append to the artifact's earlier parts
    tool_calls: list[ToolCall] = field(default_factory=list)  # function calls / responses reported in this event
    error: str | None = None

    @property
    def terminal(self) -> bool:
        return self.final or self.state in TERMINAL_STATES or self.kind in ("message", "error")


def read_event(body: Any, *, at_ms: float = 0.0, source: str = "stream") -> StreamEvent:
    """Classify one event body (a JSON-RPC envelope, or a bare result) into a ``StreamEvent``."""
    if not isinstance(body, dict):
        return StreamEvent("invalid", body, at_ms, source, error=_invalid(body))
    error = jsonrpc_error(body)
    if error:
        return StreamEvent("error", body, at_ms, source, error=error)
    result = body.get("result", body)
    if not isinstance(result, dict):
        return StreamEvent("invalid", body, at_ms, source, error=f"result is a JSON {type(result).__name__}")
    kind, obj = _unwrap(result)
    if obj is None:
        keys = ", ".join(sorted(result)[:8]) or "none"
        return StreamEvent("invalid", body, at_ms, source, error=f"no A2A event in the result (keys: {keys})")
    event = StreamEvent(kind, body, at_ms, source, task_id=_str(obj.get("taskId")),
                        context_id=_str(obj.get("contextId")))  # fmt: skip
    if kind == "status-update":
        status = _dict(obj.get("status"))
        event.state = normalize_state(status.get("state"))
        event.final = obj.get("final") is True
        message = _dict(status.get("message"))
        if message and is_agent(message):
            event.text = message_text(message)
            event.partial = _partial(message) or _partial(obj)
            event.tool_calls = collect_tool_calls([message])
    elif kind == "artifact-update":
        artifact = _dict(obj.get("artifact"))
        event.text = "".join(part_texts(artifact.get("parts")))
        event.append = obj.get("append") is True
        event.tool_calls = collect_tool_calls([], artifacts=[artifact])
    elif kind == "task":
        event.task_id = _str(obj.get("id"))
        event.state = normalize_state(_dict(obj.get("status")).get("state"))
    else:  # message
        event.text = message_text(obj) if is_agent(obj) else ""
        event.tool_calls = collect_tool_calls([obj])
    return event


def _unwrap(result: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    for key, kind in (("statusUpdate", "status-update"), ("artifactUpdate", "artifact-update"),
                      ("task", "task"), ("message", "message")):  # fmt: skip
        if isinstance(result.get(key), dict):  # 1.0
            return kind, result[key]
    kind = result.get("kind")  # 0.3
    if kind in ("status-update", "artifact-update", "task", "message"):
        return kind, result
    if "taskId" in result and "status" in result:  # untagged, as a2a-sdk's 0.3 client also guesses
        return "status-update", result
    if "taskId" in result and "artifact" in result:
        return "artifact-update", result
    if "messageId" in result:
        return "message", result
    if "id" in result and "status" in result:
        return "task", result
    return "", None


@dataclass
class TaskFold:
    """Everything the events of one task said so far, as one task object (``body()``) ``parse_reply`` can read."""

    task_id: str | None = None
    context_id: str | None = None
    status: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    message: dict[str, Any] | None = None  # the agent answered with a Message instead of a task
    _seen: set[str] = field(default_factory=set)

    @property
    def state(self) -> str | None:
        return normalize_state(self.status.get("state"))

    @property
    def empty(self) -> bool:
        return self.task_id is None and self.message is None and not self.status

    def add(self, event: StreamEvent, baseline: bool = False) -> None:
        """Fold one event in (events of another task, and invalid ones, are ignored).

        ``baseline``: a snapshot of the task before this question (a reply to ``input-required``): its id and
        context are taken, its messages and status are not (they belong to the earlier turn)."""
        if baseline:
            self.task_id, self.context_id = event.task_id, event.context_id
            obj = _unwrap(_dict(event.body.get("result", event.body)))[1] or {}
            status = _dict(obj.get("status"))
            for message in [*(obj.get("history") or []), status.get("message")]:
                if isinstance(message, dict) and _str(message.get("messageId")):
                    self._seen.add(message["messageId"])
            return
        if event.kind in ("invalid", "error"):
            return
        if event.task_id and self.task_id and event.task_id != self.task_id:
            return
        self.task_id = self.task_id or event.task_id
        self.context_id = self.context_id or event.context_id
        obj = _unwrap(_dict(event.body.get("result", event.body)))[1] or {}
        if event.kind == "task":
            self._add_task(obj)
        elif event.kind == "message":
            self.message = obj
        elif event.kind == "status-update":
            status = _dict(obj.get("status"))
            self._add_message(status.get("message"))
            self.status = status
            self.metadata.update(_dict(obj.get("metadata")))
        else:
            self._add_artifact(_dict(obj.get("artifact")), event.append)

    def _add_task(self, task: dict[str, Any]) -> None:
        """A task snapshot (the first event of a1.x stream, or a ``tasks/get`` reply): it knows everything so far."""
        if isinstance(task.get("status"), dict):
            self.status = task["status"]
        for message in task.get("history") or []:
            self._add_message(message)
        self._add_message(self.status.get("message"))
        for artifact in task.get("artifacts") or []:
            if isinstance(artifact, dict):
                key = _str(artifact.get("artifactId")) or f"#{len(self.artifacts)}"
                self.artifacts[key] = artifact  # a snapshot replaces what the chunks built
        self.metadata.update(_dict(task.get("metadata")))

    def _add_message(self, message: Any) -> None:
        if not isinstance(message, dict) or not is_agent(message):
            return
        key = _str(message.get("messageId")) or f"#{len(self.history)}"
        if key not in self._seen:
            self._seen.add(key)
            self.history.append(message)

    def _add_artifact(self, artifact: dict[str, Any], append: bool) -> None:
        key = _str(artifact.get("artifactId")) or f"#{len(self.artifacts)}"
        earlier = self.artifacts.get(key)
        if append and earlier is not None:
            parts = list(earlier.get("parts") or []) + list(artifact.get("parts") or [])
            self.artifacts[key] = {**earlier, "parts": _merge_text_parts(parts)}
        else:
            self.artifacts[key] = artifact

    def body(self) -> dict[str, Any]:
        """The task (or message) as a 0.3-style result object."""
        if self.message is not None and self.task_id is None:
            return {"kind": "message", **self.message}
        return {
            "kind": "task",
            "id": self.task_id,
            "contextId": self.context_id,
            "status": self.status,
            "artifacts": list(self.artifacts.values()),
            "history": self.history,
            "metadata": self.metadata,
        }


def _merge_text_parts(parts: list[Any]) -> list[Any]:
    """Appended text chunks become one text part (so ``task_answer`` does not put newlines between chunks)."""
    merged: list[Any] = []
    for part in parts:
        text = part.get("text") if isinstance(part, dict) else None
        last = merged[-1] if merged else None
        if isinstance(text, str) and isinstance(last, dict) and isinstance(last.get("text"), str):
            if part.get("kind") == last.get("kind"):
                merged[-1] = {**last, "text": last["text"] + text}
                continue
        merged.append(part)
    return merged


@dataclass
class AnswerView:
    """Which text of the events to show as the answer, as it arrives, each piece once.

    kagent reports the model's reply in a working status message and then again as the task's artifact; in its
    streaming mode the reply first comes as partial chunks, then once more whole. Shown: partial chunks as they
    come, a whole message unless its chunks were shown, an artifact unless the same text was already shown.
    """

    shown: list[str] = field(default_factory=list)
    _partial: str = ""
    _artifact_text: dict[str, str] = field(default_factory=dict)

    @property
    def any_shown(self) -> bool:
        return any(self.shown)

    def new_text(self, event: StreamEvent) -> str:
        """The text to print for ``event`` now ('' for none)."""
        text = event.text
        if not text:
            return ""
        if event.kind == "status-update" and event.partial:
            self._partial += text
            return self._show(text, joined=True)
        if event.kind in ("status-update", "message"):
            whole, self._partial = self._partial, ""
            if text == whole or text in self.shown:
                return ""
            return self._show(text)
        if event.append:
            return self._show(text, joined=True)
        if text in self.shown or text == "".join(self.shown):
            return ""
        return self._show(text)

    def final_text(self, answer: str | None) -> str:
        """At the end: the answer, when none of it was shown (a reply without text events, e.g. a polled task)."""
        if not answer or self.any_shown:
            return ""
        return self._show(answer)

    def _show(self, text: str, joined: bool = False) -> str:
        if joined and self.shown:
            self.shown[-1] += text
            return text
        prefix = "\n" if self.any_shown else ""
        self.shown.append(text)
        return prefix + text


def describe(event: StreamEvent) -> str:
    """A one-line progress note for ``event`` ('' when it says nothing worth a line): state changes, tool calls."""
    notes = []
    for call in event.tool_calls:
        notes.append(f"tool result: {call.name}" if call.result is not None and call.arguments is None
                     else f"tool call: {call.name}")  # fmt: skip
    if event.kind == "error":
        notes.append(f"error: {event.error}")
    elif event.kind == "invalid":
        notes.append(f"unreadable event skipped ({event.error})")
    elif event.state and event.kind in ("status-update", "task"):
        how = {"poll": " (polled)", "resubscribe": " (resubscribed)"}.get(event.source, "")
        notes.append(f"{event.state}{how}")
    return one_line("; ".join(notes), 200)


def _invalid(body: Any) -> str:
    if isinstance(body, str):
        return f"not JSON: {one_line(body, 80)!r}"
    return f"a JSON {type(body).__name__}, not an object"


def _partial(obj: dict[str, Any]) -> bool:
    metadata = _dict(obj.get("metadata"))
    return any(metadata.get(key) is True for key in _PARTIAL_KEYS)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
