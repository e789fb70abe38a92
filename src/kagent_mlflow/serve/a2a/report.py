"""The agent's Responses output, told as A2A task events in the shape kagent's runtime uses.

What a kagent client (and our Pattern 1 client, :mod:`kagent_mlflow.a2a.parse`) reads from a finished task:

- each tool call is an agent message in ``history`` with a data part ``{"id", "name", "args"}`` whose metadata says
  ``kagent_type: function_call``; each result one with ``{"id", "name", "response": {"result": ...}}`` and
  ``function_response`` (the ``adk_type`` key is set too, for newer ADK readers);
- each assistant text message is an artifact named ``answer`` and an agent message in ``history``. A streaming
  caller gets the text as the model writes it: one artifact-update per delta (the first with ``append: false``, the
  rest ``append: true``), then one with the whole text, ``append: false`` (so it replaces the pieces) and
  ``lastChunk: true`` - the stored task holds the answer as one text part, not one part per delta;
- the turn's token usage is the metadata ``kagent_usage_metadata`` (and ``adk_usage_metadata``, same values)
  ``{promptTokenCount, candidatesTokenCount, totalTokenCount}`` on the last agent message and on the final status
  event, so a reader that sums the messages and one that reads the task both get the whole turn's usage once;
- a failure is a ``failed`` task whose status message says why in one line (metadata ``kagent_error_code``).

Text deltas that a sub-agent passes into the stream (they carry an ``agent`` key) are not streamed again here: the
answer they make up arrives as the supervisor's own message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ...a2a.parse import USAGE_KEYS  # the keys our client reads usage from: the same two, kagent's first

TYPE_KEYS = ("kagent_type", "adk_type")
ANSWER = "answer"


def usage_metadata(usage: Any) -> dict[str, Any]:
    """A Responses ``usage`` as kagent's usage metadata (empty when the agent reported none)."""
    if not isinstance(usage, dict):
        return {}
    counts = {
        "promptTokenCount": int(usage.get("input_tokens") or 0),
        "candidatesTokenCount": int(usage.get("output_tokens") or 0),
        "totalTokenCount": int(usage.get("total_tokens") or 0),
    }
    return {key: dict(counts) for key in USAGE_KEYS}


def data_part(data: dict[str, Any], kind: str) -> Any:
    """A data part marked ``kind`` under both kagent's and ADK's metadata keys, as kagent readers look for either."""
    from a2a.helpers import new_data_part

    part = new_data_part(data)
    part.metadata.update(dict.fromkeys(TYPE_KEYS, kind))
    return part


def text_part(text: str) -> Any:
    from a2a.helpers import new_text_part

    return new_text_part(text)


def message_text(item: dict[str, Any]) -> str:
    """The text of a Responses message item (a string, or its ``output_text`` parts); tolerant of odd shapes."""
    content = item.get("content")
    if isinstance(content, str):
        return content
    parts = content if isinstance(content, list) else []
    return "".join(str(p.get("text") or "") for p in parts if isinstance(p, dict) and p.get("type") == "output_text")


def _arguments(raw: Any) -> Any:
    """Tool arguments as JSON when they parse (kagent sends an object), else the text as the model wrote it."""
    if not isinstance(raw, str):
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw


@dataclass
class _Chunks:
    artifact_id: str
    text: str = ""  # the deltas so far


class TaskReporter:
    """Feeds one turn's Responses events (streamed, or the items of a finished answer) to a ``TaskUpdater``."""

    def __init__(self, updater: Any) -> None:
        self.updater = updater
        self.items: list[dict[str, Any]] = []  # the turn's output items, in order (for the conversation memory)
        self.usage: dict[str, Any] | None = None
        self._names: dict[str, str] = {}  # call id -> tool name (a result names its tool, as kagent's do)
        self._chunks: dict[str, _Chunks] = {}
        self._last_text: str | None = None  # the latest answer text, told once it is known whether it is the last

    async def event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "response.output_text.delta" and "agent" not in event:
            await self._delta(str(event.get("item_id") or ""), str(event.get("delta") or ""))
        elif kind == "response.output_item.done" and isinstance(event.get("item"), dict):
            await self._item(event["item"])
        elif kind == "response.completed" and isinstance(event.get("response"), dict):
            self.usage = event["response"].get("usage")

    async def answer(self, response: dict[str, Any]) -> None:
        """A finished (non-streamed) answer: its output items in order, then its usage."""
        for item in response.get("output") or []:
            if isinstance(item, dict):
                await self._item(item)
        self.usage = response.get("usage")

    async def complete(self) -> None:
        """The last answer text with the turn's usage, then the ``completed`` status (same usage)."""
        from a2a.types.a2a_pb2 import TaskState

        for item_id in list(self._chunks):  # deltas of an item that never finished: close the artifact
            await self._close(item_id, None)
        usage = usage_metadata(self.usage)
        if self._last_text is not None:
            message = self.updater.new_agent_message([text_part(self._last_text)], usage or None)
            await self.updater.update_status(TaskState.TASK_STATE_WORKING, message)
        await self.updater.update_status(TaskState.TASK_STATE_COMPLETED, metadata=usage or None)

    async def fail(self, message: str, code: str) -> None:
        await self.updater.failed(self.updater.new_agent_message([text_part(message)], {"kagent_error_code": code}))

    async def _delta(self, item_id: str, text: str) -> None:
        chunks = self._chunks.get(item_id)
        first = chunks is None
        if chunks is None:
            chunks = self._chunks[item_id] = _Chunks(artifact_id=f"{ANSWER}-{item_id or len(self._chunks)}")
        chunks.text += text
        await self.updater.add_artifact(
            [text_part(text)], artifact_id=chunks.artifact_id, name=ANSWER, append=not first, last_chunk=False
        )

    async def _close(self, item_id: str, text: str | None) -> None:
        """End the item's artifact with its whole text in one part, replacing the streamed pieces (``append``
        false), so the stored task holds the answer once and not as one part per delta."""
        chunks = self._chunks.pop(item_id, None)
        text = text if text is not None else chunks.text if chunks else ""
        if chunks is None and not text:
            return
        artifact_id = chunks.artifact_id if chunks else None
        await self.updater.add_artifact([text_part(text)], artifact_id=artifact_id, name=ANSWER, last_chunk=True)

    async def _item(self, item: dict[str, Any]) -> None:
        from a2a.types.a2a_pb2 import TaskState

        self.items.append(item)
        kind = item.get("type")
        if kind == "message":
            if item.get("role", "assistant") != "assistant":
                return
            await self._tell_last_text()
            self._last_text = message_text(item)
            await self._close(str(item.get("id") or ""), self._last_text)
            return
        if kind == "function_call":
            call_id, name = str(item.get("call_id") or ""), str(item.get("name") or "")
            self._names[call_id] = name
            part = data_part({"id": call_id, "name": name, "args": _arguments(item.get("arguments"))}, "function_call")
        elif kind == "function_call_output":
            call_id = str(item.get("call_id") or "")
            data = {"id": call_id, "name": self._names.get(call_id, ""), "response": {"result": item.get("output")}}
            part = data_part(data, "function_response")
        else:
            return  # reasoning and other item kinds: kept in memory, not shown
        await self._tell_last_text()
        await self.updater.update_status(TaskState.TASK_STATE_WORKING, self.updater.new_agent_message([part]))

    async def _tell_last_text(self) -> None:
        """A text message followed by more work (e.g. "let me check" before a tool call) goes into history now."""
        from a2a.types.a2a_pb2 import TaskState

        if self._last_text is not None:
            message = self.updater.new_agent_message([text_part(self._last_text)])
            await self.updater.update_status(TaskState.TASK_STATE_WORKING, message)
            self._last_text = None
