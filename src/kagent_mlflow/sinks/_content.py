"""What the run of one interaction contains: tags, metrics, params and artifact texts (all redacted).

Pure functions of the record, so a replay produces exactly the same values (metrics carry a fixed timestamp,
which makes a re-logged metric an exact duplicate that MLflow's SQL store drops).
"""

from __future__ import annotations

import json
import re
from typing import Any

from mlflow.entities import Metric, Param, RunTag

from ..records import Interaction
from .redact import Redactor

OPEN_RUN_TAGS = ("interaction_id", "agent", "a2a_url")
_TAG_MAX = 5000
_METRIC_KEY = re.compile(r"[^A-Za-z0-9_\-. /]")


def run_name(interaction: Interaction) -> str:
    return interaction.run_name or f"{interaction.agent_name}-{interaction.interaction_id[:8]}"


def run_tags(interaction: Interaction, redact: Redactor) -> dict[str, str]:
    tags = {
        "interaction_id": interaction.interaction_id,
        "agent": interaction.agent_name,
        "a2a_url": redact.text(interaction.a2a_url),
        "kagent_task_id": interaction.task_id,
        "kagent_context_id": interaction.context_id,
        "task_state": interaction.task_state,
        "protocol_version": interaction.protocol_version,
        "status": interaction.status,
        "error": redact.text(interaction.error)[:_TAG_MAX] if interaction.error else None,
        "conversation_id": interaction.conversation_id,
        "turn": interaction.turn,
        "streamed": "true" if interaction.streamed else None,
    }
    return {k: str(v) for k, v in tags.items() if v is not None}


def run_batch(interaction: Interaction, redact: Redactor) -> tuple[list[Metric], list[Param], list[RunTag]]:
    """Everything for the one ``log_batch`` call."""
    values: dict[str, float] = {"latency_ms": float(interaction.latency_ms)}
    for key in ("ttft_ms", "first_event_ms"):  # streamed replies: when the first text / the first event arrived
        value = getattr(interaction, key)
        if value is not None:
            values[key] = float(value)
    for key, value in interaction.usage.items():  # every numeric usage field, under the agent's own name
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            values[_METRIC_KEY.sub("_", key)[:250]] = float(value)
    usage = interaction.token_usage
    if usage:  # and in MLflow's vocabulary, so runs of different agents compare
        for key, value in usage.model_dump().items():
            values.setdefault(key, float(value))
    values["tool_calls"] = float(len(interaction.tool_calls))
    metrics = [Metric(key, value, interaction.ended_at_ms, 0) for key, value in values.items()]
    params = [Param("question_chars", str(len(interaction.question)))]
    tags = [RunTag(k, v) for k, v in run_tags(interaction, redact).items()]
    return metrics, params, tags


def artifact_texts(interaction: Interaction, redact: Redactor) -> dict[str, str]:
    answer = interaction.answer
    if answer is None:
        answer = f"(no answer: {interaction.error or 'the agent returned nothing'})"
    raw = redact(_jsonable(interaction.raw_response))
    return {
        "question.txt": redact.text(interaction.question),
        "answer.txt": redact.text(answer),
        "a2a_response.json": json.dumps(raw, indent=2, ensure_ascii=False, default=str) + "\n",
    }


def _jsonable(value: Any) -> Any:
    """The raw reply as JSON data (it may arrive as a string holding JSON)."""
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value
