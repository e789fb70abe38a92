"""The exporter MLflow's span processor hands finished spans to: each finished trace becomes one OTLP payload.

What MLflow keeps outside the spans goes onto the root span where its ``POST /v1/traces`` reads it back: trace tags
(``mlflow.traceTag.<key>``), session (``session.id``) and user (``user.id``). A request's ``X-Request-ID`` header
becomes the trace tag ``request_id``. The payloads are queued in :class:`.trace_export.ExportPool`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from .trace_export import ExportPool
from .trace_spill import Record

logger = logging.getLogger("kagent_mlflow.serve")

REQUEST_ID_HEADER = "x-request-id"
REQUEST_ID_TAG = "request_id"


class OtlpTraceExporter(SpanExporter):
    """Given to MLflow's span processor: each finished trace becomes one OTLP payload queued in the pool."""

    def __init__(self, pool: ExportPool, default_experiment: Callable[[], str | None]) -> None:
        self._pool = pool
        self._default_experiment = default_experiment

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        from .._mlflow_compat import pop_finished_trace, request_headers

        for span in spans:
            if span.parent is not None:
                continue
            try:
                trace = pop_finished_trace(span.context.trace_id)
                if trace is None:
                    continue
                experiment = trace.info.experiment_id or self._default_experiment()
                if not experiment:
                    logger.warning("trace %s has no experiment; not exported", trace.info.trace_id)
                    continue
                request_id = request_headers().get(REQUEST_ID_HEADER)
                self._pool.put(Record(experiment, trace_payload(trace, request_id)))
            except Exception:  # noqa: BLE001 - tracing never breaks an answer
                logger.exception("could not queue a finished trace for export")
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """The pool is closed by the server's shutdown (with its deadline), not by OpenTelemetry."""

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def trace_payload(trace: Any, request_id: str | None = None) -> bytes:
    """One trace as a serialized OTLP ``ExportTraceServiceRequest``. What MLflow keeps outside spans goes onto the
    root span where ``POST /v1/traces`` reads it back: tags (``mlflow.traceTag.<key>``), session and user."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from .._mlflow_compat import TRACE_TAG_PREFIX, span_to_otlp

    extra: dict[str, str] = {}
    for key, value in trace.info.tags.items():
        if not key.startswith("mlflow.") or key == "mlflow.traceName":
            extra[TRACE_TAG_PREFIX + key] = str(value)
    if request_id and len(request_id) <= 200 and request_id.isprintable():
        extra[TRACE_TAG_PREFIX + REQUEST_ID_TAG] = request_id
    metadata = trace.info.trace_metadata
    for meta_key, attribute in (("mlflow.trace.session", "session.id"), ("mlflow.trace.user", "user.id")):
        if metadata.get(meta_key):
            extra[attribute] = str(metadata[meta_key])

    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for span in trace.data.spans:
        proto = span_to_otlp(span)
        if span.parent_id is None:
            for key, value in extra.items():
                attribute = proto.attributes.add()
                attribute.key = key
                attribute.value.string_value = value
        scope.spans.append(proto)
    return request.SerializeToString()
