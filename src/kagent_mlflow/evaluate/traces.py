"""One answered question as one MLflow trace, serialized as OTLP for ``POST /v1/traces`` (many per request).

The trace id is derived from (evaluation, target, question id), so a trace re-sent after a crash replaces itself
instead of becoming a second one. Everything MLflow shows for a trace comes from the root span: previews from
``mlflow.spanInputs``/``mlflow.spanOutputs``, token usage from ``mlflow.chat.tokenUsage``, tags from
``mlflow.traceTag.<key>`` attributes (``target``, ``question_id``). Scores go as assessments with ids derived the
same way (:func:`assessment_json`).
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from ..sinks.redact import Redactor
from .dataset import Question
from .targets import Answer

RAW_LIMIT = 64 << 10  # characters of the raw reply kept on the trace


def trace_id_for(eval_id: str, target: str, qid: str) -> str:
    return "tr-" + _hex(f"{eval_id}\0{target}\0{qid}", "trace", 32)


def _hex(key: str, salt: str, digits: int) -> str:
    value = hashlib.sha256(f"kagent-mlflow-eval:{salt}:{key}".encode("utf-8", "surrogatepass")).hexdigest()[:digits]
    return value if int(value, 16) else "1".rjust(digits, "0")


def trace_spans(eval_id: str, dataset: str, question: Question, answer: Answer, redact: Redactor) -> list[Any]:
    """The finished MLflow spans (``mlflow.entities.Span``) of one answered (or failed) question."""
    from mlflow.entities import SpanType
    from mlflow.entities.span_status import SpanStatus, SpanStatusCode
    from mlflow.tracing.constant import SpanAttributeKey

    from .._mlflow_compat import TRACE_TAG_PREFIX, finished_span

    key = f"{eval_id}\0{answer.target}\0{answer.qid}"
    trace_id = trace_id_for(eval_id, answer.target, answer.qid)
    otel_trace_id = int(trace_id[3:], 16)
    root_id = int(_hex(key, "span:root", 16), 16)
    start_ns = answer.started_at_ms * 1_000_000
    end_ns = start_ns + max(0, int(answer.latency_ms * 1_000_000))
    usage = None
    if answer.total_tokens is not None or answer.input_tokens is not None:
        usage = {
            "input_tokens": answer.input_tokens or 0,
            "output_tokens": answer.output_tokens or 0,
            "total_tokens": answer.total_tokens or 0,
        }
    error = redact.text(answer.error) if answer.error else None
    raw = json.dumps(redact(answer.raw), default=str) if answer.raw is not None else None
    # Few trace tags: each is a row the server validates and writes (7 tags cost it about twice the CPU of 2). The
    # evaluation, data set and status are the run's or the trace's own state; the question's tags go on the span.
    tags = {"target": answer.target, "question_id": answer.qid, "mlflow.traceName": answer.target}
    root_attrs: dict[str, Any] = {
        SpanAttributeKey.REQUEST_ID: trace_id,
        SpanAttributeKey.SPAN_TYPE: SpanType.AGENT,
        SpanAttributeKey.INPUTS: {"question": redact.text(question.question)},
        SpanAttributeKey.OUTPUTS: redact.text(answer.answer) if answer.answer is not None else None,
        SpanAttributeKey.CHAT_USAGE: usage,
        "latency_ms": round(answer.latency_ms, 3),
        "ttft_ms": round(answer.ttft_ms, 3) if answer.ttft_ms is not None else None,
        "expected": question.expected,
        "question_id": answer.qid,
        "attempts": answer.attempts,
        "eval_id": eval_id,
        "dataset": dataset,
        "question_tags": question.tags or None,
        "error": error,
        "raw_reply": raw[:RAW_LIMIT] if raw else None,
        **{TRACE_TAG_PREFIX + k: str(v) for k, v in tags.items()},
    }
    status = SpanStatus(SpanStatusCode.ERROR, error) if answer.status != "ok" else SpanStatus(SpanStatusCode.OK)
    spans = [
        finished_span(
            name=answer.target,
            otel_trace_id=otel_trace_id,
            span_id=root_id,
            parent_id=None,
            start_ns=start_ns,
            end_ns=end_ns,
            attributes=root_attrs,
            status=status,
        )
    ]
    for index, call in enumerate(answer.tool_calls):
        spans.append(
            finished_span(
                name=str(call.get("name") or "tool"),
                otel_trace_id=otel_trace_id,
                span_id=int(_hex(key, f"span:tool:{index}", 16), 16),
                parent_id=root_id,
                start_ns=start_ns,
                end_ns=end_ns,
                attributes={
                    SpanAttributeKey.REQUEST_ID: trace_id,
                    SpanAttributeKey.SPAN_TYPE: SpanType.TOOL,
                    SpanAttributeKey.INPUTS: redact(call.get("arguments")),
                    SpanAttributeKey.OUTPUTS: redact(call.get("result")),
                    "timing": "not reported by the agent",
                },
                status=SpanStatus(SpanStatusCode.OK),
            )
        )
    return spans


def assessment_id_for(trace_id: str, name: str) -> str:
    return "a-" + _hex(f"{trace_id}\0{name}", "assessment", 32)


def assessment_json(trace_id: str, name: str, score: dict[str, Any], source_type: str, source_id: str) -> dict:
    """A ``Feedback`` assessment in the JSON form of MLflow's ``Assessment`` proto."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    feedback: dict[str, Any] = {"value": score.get("value")}
    if score.get("error"):
        feedback["error"] = {"error_code": "SCORER_ERROR", "error_message": str(score["error"])[:1000]}
    body: dict[str, Any] = {
        "assessment_name": name,
        "trace_id": trace_id,
        "source": {"source_type": source_type, "source_id": source_id},
        "create_time": stamp,
        "last_update_time": stamp,
        "feedback": feedback,
    }
    if score.get("rationale"):
        body["rationale"] = str(score["rationale"])
    return body


def otlp_payload(spans: list[Any]) -> bytes:
    """Spans of many traces as one serialized OTLP ``ExportTraceServiceRequest``."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from .._mlflow_compat import span_to_otlp

    request = ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add().spans.extend(span_to_otlp(s) for s in spans)
    return request.SerializeToString()
