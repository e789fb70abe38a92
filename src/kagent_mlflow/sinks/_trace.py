"""Build the MLflow trace of one interaction as plain entities, without MLflow's global tracer.

MLflow's fluent tracing (``mlflow.start_span``, ``MlflowClient.start_trace``) goes through a process-wide tracer
provider bound to the *global* tracking URI and may export asynchronously. The sink instead builds finished spans
itself (OpenTelemetry ``ReadableSpan`` wrapped in ``mlflow.entities.Span``) with the interaction's real start and
end times, and writes them synchronously through a ``TracingClient`` bound to the sink's own tracking URI.

The trace id is derived from ``interaction_id``, so replaying a record writes the *same* trace again (the server
merges it) instead of a second one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from mlflow.entities import Span, SpanType, TraceInfo, TraceLocation, TraceState
from mlflow.entities.span_status import SpanStatus, SpanStatusCode
from mlflow.tracing.constant import (
    TRACE_SCHEMA_VERSION,
    TRACE_SCHEMA_VERSION_KEY,
    SpanAttributeKey,
    TraceMetadataKey,
    TraceTagKey,
)

from .._mlflow_compat import finished_span
from ..records import Interaction
from .redact import Redactor

PREVIEW_CHARS = 1000


def trace_id_for(interaction_id: str) -> str:
    """Deterministic MLflow trace id (``tr-`` + 32 hex digits, an OpenTelemetry trace id) for an interaction."""
    return "tr-" + _hex_id(interaction_id, "trace", 32)


def _hex_id(interaction_id: str, salt: str, digits: int) -> str:
    value = hashlib.sha256(f"kagent-mlflow:{salt}:{interaction_id}".encode()).hexdigest()[:digits]
    return value if int(value, 16) else "1".rjust(digits, "0")  # OpenTelemetry forbids all-zero ids


@dataclass
class BuiltTrace:
    info: TraceInfo
    spans: list[Span]


def _span(
    *,
    trace_id: str,
    otel_trace_id: int,
    span_id: int,
    parent_id: int | None,
    name: str,
    span_type: str,
    start_ns: int,
    end_ns: int,
    inputs: Any,
    outputs: Any,
    attributes: dict[str, Any],
    error: str | None,
) -> Span:
    attrs = {
        SpanAttributeKey.REQUEST_ID: trace_id,
        SpanAttributeKey.SPAN_TYPE: span_type,
        SpanAttributeKey.INPUTS: inputs,
        SpanAttributeKey.OUTPUTS: outputs,
        **attributes,
    }
    status = SpanStatus(SpanStatusCode.ERROR, error) if error else SpanStatus(SpanStatusCode.OK)
    return finished_span(
        name=name,
        otel_trace_id=otel_trace_id,
        span_id=span_id,
        parent_id=parent_id,
        start_ns=start_ns,
        end_ns=end_ns,
        attributes=attrs,
        status=status,
    )


def _preview(value: str | None) -> str | None:
    if value is None:
        return None
    return value if len(value) <= PREVIEW_CHARS else value[: PREVIEW_CHARS - 3] + "..."


def build_trace(interaction: Interaction, experiment_id: str, run_id: str, redact: Redactor) -> BuiltTrace:
    """One AGENT root span (question in, answer out, token usage, latency) and a TOOL child per tool call."""
    trace_id = trace_id_for(interaction.interaction_id)
    otel_trace_id = int(trace_id[3:], 16)
    start_ns = interaction.started_at_ms * 1_000_000
    end_ns = start_ns + max(0, int(round(interaction.latency_ms * 1_000_000)))
    usage = interaction.token_usage
    usage_dict = usage.model_dump() if usage else None
    question = redact.text(interaction.question)
    answer = redact.text(interaction.answer) if interaction.answer is not None else None
    error = redact.text(interaction.error) if interaction.error else None
    if interaction.status == "error" and not error:
        error = "agent gave no answer"

    root_id = int(_hex_id(interaction.interaction_id, "span:root", 16), 16)
    root_attrs: dict[str, Any] = {
        SpanAttributeKey.CHAT_USAGE: usage_dict,
        "latency_ms": round(interaction.latency_ms, 3),
        "agent": interaction.agent_name,
        "a2a_url": redact.text(interaction.a2a_url),
        "interaction_id": interaction.interaction_id,
        "kagent_task_id": interaction.task_id,
        "kagent_context_id": interaction.context_id,
        "task_state": interaction.task_state,
        "protocol_version": interaction.protocol_version,
    }
    if error:
        root_attrs["error"] = error
    spans = [
        _span(
            trace_id=trace_id,
            otel_trace_id=otel_trace_id,
            span_id=root_id,
            parent_id=None,
            name=interaction.agent_name,
            span_type=SpanType.AGENT,
            start_ns=start_ns,
            end_ns=end_ns,
            inputs=question,
            outputs=answer,
            attributes=root_attrs,
            error=error,
        )
    ]
    for index, call in enumerate(interaction.tool_calls):
        spans.append(
            _span(
                trace_id=trace_id,
                otel_trace_id=otel_trace_id,
                span_id=int(_hex_id(interaction.interaction_id, f"span:tool:{index}", 16), 16),
                parent_id=root_id,
                name=call.name,
                span_type=SpanType.TOOL,
                # The A2A reply carries no per-tool timing: a tool span covers the agent span's interval.
                start_ns=start_ns,
                end_ns=end_ns,
                inputs=redact(call.arguments),
                outputs=redact(call.result),
                attributes={"tool_call_id": call.call_id, "timing": "not reported by the agent"},
                error=None,
            )
        )

    metadata = {
        TRACE_SCHEMA_VERSION_KEY: str(TRACE_SCHEMA_VERSION),
        TraceMetadataKey.SOURCE_RUN: run_id,
    }
    if usage_dict:
        metadata[TraceMetadataKey.TOKEN_USAGE] = json.dumps(usage_dict)
    info = TraceInfo(
        trace_id=trace_id,
        trace_location=TraceLocation.from_experiment_id(experiment_id),
        request_time=interaction.started_at_ms,
        execution_duration=max(0, interaction.ended_at_ms - interaction.started_at_ms),  # as the run's
        state=TraceState.ERROR if interaction.status == "error" else TraceState.OK,
        request_preview=_preview(json.dumps(question)),
        response_preview=_preview(json.dumps(answer if answer is not None else error)),
        client_request_id=interaction.interaction_id,
        trace_metadata=metadata,
        tags={
            TraceTagKey.TRACE_NAME: interaction.agent_name,
            "interaction_id": interaction.interaction_id,
            "agent": interaction.agent_name,
            "status": interaction.status,
        },
    )
    return BuiltTrace(info=info, spans=spans)
