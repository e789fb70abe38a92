"""The agent's steps (model calls and tool calls, in order, with their times) read from what the agent sent.

kagent reports each ADK event as an agent message: a model call's output (text and/or ``function_call`` data parts)
with that call's usage in its metadata (``kagent_usage_metadata`` / ``adk_usage_metadata``), then a message with the
tool results (``function_response`` parts). A streamed reply (``message/stream``) wraps each in a status-update
event stamped with ``status.timestamp``; a ``message/send`` task lists the same messages in ``history`` without
times. Pure functions over the JSON as received, so they are tested on recorded replies of the real runtime.

A model call is taken to start where the previous step ended (the task started working, or the tool results came
back) and to end at the event carrying its output; a tool call runs from the event asking for it to the event with
its response. Times stay None where the reply has no timestamps.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timezone
from typing import Any

from .models import LlmStep, Step, ToolStep
from .parse import (
    ReplyShapeError,
    _function_parts,
    _list,
    _str,
    _task_messages,
    _unwrap,
    is_agent,
    normalize_state,
    part_texts,
    usage_of,
)

logger = logging.getLogger(__name__)

MAX_STEPS = 1000  # a runaway or hostile agent does not turn one record into an unbounded trace
_PARTIAL_KEYS = ("kagent_adk_partial", "adk_partial")  # streamed fragments of a model call, repeated whole later
_AUTHOR_KEYS = ("kagent_author", "adk_author")
_ERROR_KEYS = ("kagent_error_code", "adk_error_code")  # a model call that failed (the text says how)
_FRACTION = re.compile(r"(\.\d{6})\d+")


def steps_from_raw(raw: Any) -> list[Step]:
    """The steps in a JSON-RPC reply body (a Task or Message, protocol 0.3 or 1.0) or a list of streamed events.

    Anything it cannot read gives fewer steps, never an error: the answer and the record matter more.
    """
    try:
        clock, messages = _timed_messages(raw)
        return _walk(clock, messages)
    except Exception:  # noqa: BLE001 - a reply we cannot read has no steps; the record is still written
        logger.debug("could not read the agent's steps from its reply", exc_info=True)
        return []


def _timed_messages(raw: Any) -> tuple[int | None, list[tuple[dict[str, Any], int | None]]]:
    """(the first event time, the agent messages in order with their event times), each message once."""
    found: list[tuple[dict[str, Any], int | None]] = []
    first: int | None = None
    seen: set[str] = set()

    def add(message: Any, at: int | None) -> None:
        if not isinstance(message, dict) or not is_agent(message):
            return
        key = message.get("messageId")
        if isinstance(key, str) and key:
            if key in seen:
                return
            seen.add(key)
        found.append((message, at))

    events = raw if isinstance(raw, list) else [raw]
    for index, event in enumerate(events):
        kind, obj = _event(event)
        if obj is None:
            continue
        status = obj.get("status") if isinstance(obj.get("status"), dict) else {}
        if kind == "status-update":  # a task's own status time is when it ended: not a step's time
            message = status.get("message")
            wanted = isinstance(message, dict) and is_agent(message) and not _partial(message)
            if first is None or wanted:  # (parsing every fragment's time would cost the live path for nothing)
                at = epoch_ms(status.get("timestamp"))
                first = at if first is None else first
                if wanted:
                    add(message, at)
        elif kind == "task" and not (index == 0 and len(events) > 1 and _waiting(status)):
            # (a stream that opens with a task waiting for input is our reply continuing it: that task's history
            # is the earlier turn's work, not this question's steps)
            task_id = obj.get("id") if isinstance(obj.get("id"), str) else None
            for message in _task_messages(obj, task_id):
                add(message, None)
        elif kind == "message":
            add(obj, None)
    return first, found


def _waiting(status: dict[str, Any]) -> bool:
    return normalize_state(status.get("state")) in ("input-required", "auth-required")


def _event(event: Any) -> tuple[str | None, dict[str, Any] | None]:
    """(kind, object) of one reply body or streamed event, 0.3 (``kind``-tagged) or 1.0 (wrapped) alike."""
    if not isinstance(event, dict):
        return None, None
    result = event.get("result", event) if ("jsonrpc" in event or "result" in event) else event
    if not isinstance(result, dict):
        return None, None
    for key, kind in (("statusUpdate", "status-update"), ("artifactUpdate", "artifact-update")):
        if isinstance(result.get(key), dict):
            return kind, result[key]
    if result.get("kind") in ("status-update", "artifact-update"):
        return result["kind"], result
    try:
        return _unwrap(result)
    except ReplyShapeError:
        return None, None


def _walk(clock: int | None, messages: list[tuple[dict[str, Any], int | None]]) -> list[Step]:
    steps: list[Step] = []
    tools: dict[str, ToolStep] = {}
    for message, at in messages:
        if _partial(message):
            continue
        metadata = message.get("metadata") if isinstance(message.get("metadata"), dict) else {}
        parts = message.get("parts")
        function_parts = list(_function_parts(_list(parts)))
        calls = [data for kind, data in function_parts if kind == "function_call"]
        responses = [data for kind, data in function_parts if kind == "function_response"]
        texts = [t for t in part_texts(parts) if t]
        usage = usage_of(metadata)
        author = next((metadata[k] for k in _AUTHOR_KEYS if isinstance(metadata.get(k), str)), None)
        code = next((metadata[k] for k in _ERROR_KEYS if isinstance(metadata.get(k), str)), None)
        if code is not None or usage or calls or (texts and author and not responses):  # a model call's event
            step = LlmStep(usage=usage, author=author, started_at_ms=clock, ended_at_ms=at)
            if code is not None:
                step.error = (f"{code}: {' '.join(texts)}" if texts else code)[:1000]
            else:
                step.output = _output(texts, calls)
            steps.append(step)
            clock = at if at is not None else clock
        for data in calls:
            call_id = _str(data.get("id"))
            if call_id and call_id in tools:
                continue  # the same call reported twice
            step = ToolStep(
                name=_str(data.get("name")) or "unknown",
                arguments=data.get("args", data.get("arguments")),
                call_id=call_id,
                started_at_ms=at,
            )
            steps.append(step)
            if call_id:
                tools[call_id] = step
        for data in responses:
            call_id = _str(data.get("id"))
            step = tools.get(call_id) if call_id else None
            if step is None:  # a response without its call: the call's start is unknown
                step = ToolStep(name=_str(data.get("name")) or "unknown", call_id=call_id)
                steps.append(step)
                if call_id:
                    tools[call_id] = step
            step.result = data.get("response", data.get("result"))
            step.ended_at_ms = at
        if responses and at is not None:
            clock = at
        if len(steps) >= MAX_STEPS:
            logger.debug("the agent reported more than %d steps; the rest are left out of the trace", MAX_STEPS)
            return steps[:MAX_STEPS]
    return steps


def _partial(message: dict[str, Any]) -> bool:
    metadata = message.get("metadata")
    return isinstance(metadata, dict) and any(metadata.get(key) is True for key in _PARTIAL_KEYS)


def _output(texts: list[str], calls: list[dict[str, Any]]) -> Any:
    """What a model call produced: its text, the tool calls it asked for, or both."""
    text = "\n".join(texts)
    if not calls:
        return text or None
    asked = [{"name": c.get("name"), "arguments": c.get("args", c.get("arguments")), "id": c.get("id")} for c in calls]
    return {"text": text, "tool_calls": asked} if text else {"tool_calls": asked}


def epoch_ms(value: Any) -> int | None:
    """``2026-11-27T13:15:31.344768+00:00`` (or ``...Z``, naive = UTC) as epoch milliseconds; None if unreadable."""
    if not isinstance(value, str) or not value or len(value) > 64:
        return None
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        try:
            moment = datetime.fromisoformat(_FRACTION.sub(r"\1", text))  # more than microseconds
        except ValueError:
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)
