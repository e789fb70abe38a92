"""Build the MLflow trace of one interaction as plain entities, without MLflow's global tracer.

MLflow's fluent tracing (``mlflow.start_span``, ``MlflowClient.start_trace``) goes through a process-wide tracer
provider bound to the *global* tracking URI and may export asynchronously. The sink instead builds finished spans
itself (OpenTelemetry ``ReadableSpan`` wrapped in ``mlflow.entities.Span``) with the interaction's real start and
end times, and writes them synchronously through a ``TracingClient`` bound to the sink's own tracking URI.

The trace id and the root span id are derived from ``interaction_id`` (``trace_context``), so replaying a record
writes the *same* trace again (the server merges it) instead of a second one, and the A2A request could name them in
its ``traceparent`` before the answer existed: an agent runtime exporting its own OpenTelemetry spans to MLflow puts
them under our AGENT span, in this trace.

Below the AGENT root, one span per step the agent reported, in order: an LLM span per model call (with that call's
token usage, ``mlflow.chat.tokenUsage``) and a TOOL span per tool call (arguments in, result out). Their times come
from the agent's event timestamps, kept inside the root span's interval (the agent's clock is not ours); without
timestamps a step covers the root's interval and says so (``timing``). MLflow sums token usage over a trace without
counting a span whose ancestor already has usage, so the root's total and the per-call usage do not add up twice.
"""

from __future__ import annotations

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
from ..a2a.models import LlmStep, ToolCall, ToolStep
from ..records import Interaction, token_usage_of
from ..trace_context import hex_id, root_span_hex, trace_id_for
from .redact import Redactor

__all__ = ["BuiltTrace", "build_trace", "trace_id_for"]

PREVIEW_CHARS = 1000


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
    """One AGENT root span (question in, answer out, token usage, latency) and an LLM or TOOL child per step."""
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

    root_id = int(root_span_hex(interaction.interaction_id), 16)
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
    shift_ms = _clock_shift_ms(interaction)
    context = _Context(trace_id, otel_trace_id, root_id, start_ns, end_ns, interaction.interaction_id, redact, shift_ms)
    spans += _step_spans(interaction, context)

    metadata = {
        TRACE_SCHEMA_VERSION_KEY: str(TRACE_SCHEMA_VERSION),
        TraceMetadataKey.SOURCE_RUN: run_id,
    }
    if usage_dict:
        metadata[TraceMetadataKey.TOKEN_USAGE] = json.dumps(usage_dict)
    if interaction.conversation_id:  # MLflow's Sessions view groups a conversation's turns by this
        metadata[TraceMetadataKey.TRACE_SESSION] = interaction.conversation_id
    info = TraceInfo(
        trace_id=trace_id,
        trace_location=TraceLocation.from_experiment_id(experiment_id),
        request_time=interaction.started_at_ms,
        execution_duration=max(0, interaction.ended_at_ms - interaction.started_at_ms),  # as the run's
        state=TraceState.OK if interaction.status == "ok" else TraceState.ERROR,
        request_preview=_preview(json.dumps(question)),
        response_preview=_preview(json.dumps(answer if answer is not None else error)),
        client_request_id=interaction.interaction_id,
        trace_metadata=metadata,
        tags={
            TraceTagKey.TRACE_NAME: interaction.agent_name,
            "interaction_id": interaction.interaction_id,
            "agent": interaction.agent_name,
            "status": interaction.status,
            **({"turn": str(interaction.turn)} if interaction.turn is not None else {}),
        },
    )
    return BuiltTrace(info=info, spans=spans)


@dataclass(frozen=True)
class _Context:
    """What every step span shares: its trace, its parent (the root span) and the root's interval."""

    trace_id: str
    otel_trace_id: int
    root_id: int
    start_ns: int
    end_ns: int
    interaction_id: str
    redact: Redactor
    shift_ms: int = 0

    def interval(self, started_at_ms: int | None, ended_at_ms: int | None) -> tuple[int, int, str]:
        """(start, end, how they were known): shifted by ``shift_ms``, clamped into the root span's interval."""
        if started_at_ms is None and ended_at_ms is None:
            return self.start_ns, self.end_ns, "not reported by the agent"
        start = self._clamp(started_at_ms, self.start_ns)
        end = self._clamp(ended_at_ms, self.end_ns)
        return start, max(start, end), "agent event timestamps"

    def _clamp(self, at_ms: int | None, default: int) -> int:
        if at_ms is None:
            return default
        return min(max((at_ms + self.shift_ms) * 1_000_000, self.start_ns), self.end_ns)


def _clock_shift_ms(interaction: Interaction) -> int:
    """How far to move the agent's event times so the last one is not after the answer arrived (<= 0).

    The AGENT span is the request as the client timed it; the events are stamped by the agent's clock, which may run
    ahead of ours, and the first question of a client is timed from after the agent card was read. Moving every
    event by the same amount keeps the steps' durations and gaps; clamping alone would squash them into the end.
    """
    times = [t for step in interaction.steps for t in (step.started_at_ms, step.ended_at_ms) if t is not None]
    return min(0, interaction.ended_at_ms - max(times)) if times else 0


def _step_spans(interaction: Interaction, ctx: _Context) -> list[Span]:
    """An LLM or TOOL span per step; records without timed tool steps (older ones) get a TOOL span per tool call."""
    spans = []
    for index, step in enumerate(interaction.steps):
        span_id = int(hex_id(ctx.interaction_id, f"span:step:{index}", 16), 16)
        spans.append(
            _llm_span(step, index, span_id, ctx) if isinstance(step, LlmStep) else _tool_span(step, span_id, ctx)
        )
    if not any(isinstance(step, ToolStep) for step in interaction.steps):
        for index, call in enumerate(interaction.tool_calls):  # span ids as older versions wrote them (replay)
            spans.append(_tool_span(call, int(hex_id(ctx.interaction_id, f"span:tool:{index}", 16), 16), ctx))
    return spans


def _llm_span(step: LlmStep, index: int, span_id: int, ctx: _Context) -> Span:
    start, end, timing = ctx.interval(step.started_at_ms, step.ended_at_ms)
    usage = token_usage_of(step.usage)
    return _span(
        trace_id=ctx.trace_id,
        otel_trace_id=ctx.otel_trace_id,
        span_id=span_id,
        parent_id=ctx.root_id,
        name="llm_call",
        span_type=SpanType.LLM,
        start_ns=start,
        end_ns=end,
        inputs=None,  # the agent does not report the prompt it sent
        outputs=ctx.redact(step.output),
        attributes={
            SpanAttributeKey.CHAT_USAGE: usage.model_dump() if usage else None,
            "usage": step.usage or None,
            "author": step.author,
            "step": index,
            "timing": timing,
            "agent_clock_shift_ms": ctx.shift_ms or None,
        },
        error=ctx.redact.text(step.error) if step.error else None,
    )


def _tool_span(call: ToolCall, span_id: int, ctx: _Context) -> Span:
    timed = isinstance(call, ToolStep)
    start, end, timing = ctx.interval(call.started_at_ms, call.ended_at_ms) if timed else ctx.interval(None, None)
    result = ctx.redact(call.result)
    failed = isinstance(result, dict) and "error" in result and "result" not in result  # ADK's tool error shape
    return _span(
        trace_id=ctx.trace_id,
        otel_trace_id=ctx.otel_trace_id,
        span_id=span_id,
        parent_id=ctx.root_id,
        name=call.name,
        span_type=SpanType.TOOL,
        start_ns=start,
        end_ns=end,
        inputs=ctx.redact(call.arguments),
        outputs=result,
        attributes={"tool_call_id": call.call_id, "timing": timing, "agent_clock_shift_ms": ctx.shift_ms or None},
        error=ctx.redact.text(str(result["error"]))[:500] if failed else None,
    )
