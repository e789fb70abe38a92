"""MLflow internals we rely on, in one place: when MLflow moves them, only this module changes.

Each name says which MLflow internal it stands for; ``tests/unit/test_mlflow_compat.py`` checks they still resolve.
"""

from __future__ import annotations

from typing import Any


def span_attribute_keys() -> Any:
    """``mlflow.tracing.constant.SpanAttributeKey`` (``CHAT_USAGE`` = ``mlflow.chat.tokenUsage``, ``MODEL``,
    ``MESSAGE_FORMAT``, ``SPAN_TYPE``): attribute names MLflow's UI and trace aggregation read."""
    from mlflow.tracing.constant import SpanAttributeKey

    return SpanAttributeKey


def set_token_usage(span: Any, usage: dict[str, int]) -> None:
    """Record token usage on a live span the way MLflow's own LLM integrations do (``mlflow.chat.tokenUsage``).

    MLflow sums a trace's usage from these attributes, skipping spans below one that already carries it, so usage on
    a root span that includes its children is not counted twice."""
    span.set_attribute(span_attribute_keys().CHAT_USAGE, usage)


def set_span_type(span: Any, span_type: str) -> None:
    """``LiveSpan.set_span_type`` (MLflow >= 3.x); spans made by MLflow's Agent Server carry no type (UNKNOWN)."""
    span.set_attribute(span_attribute_keys().SPAN_TYPE, span_type)


# -- Agent Server trace export (serve/trace_export.py) ---------------------------------------------------------------
# MLflow has no public hook for "export finished traces my way" or "POST to the tracking server with its own auth".

EXPERIMENT_ID_HEADER = "x-mlflow-experiment-id"  # mlflow.tracing.utils.otlp.MLFLOW_EXPERIMENT_ID_HEADER
TRACE_TAG_PREFIX = "mlflow.traceTag."  # SpanAttributeKey.TRACE_TAG_PREFIX: root-span attribute -> trace tag
_original_processor_factory: Any = None


def install_span_exporter(make_exporter: Any) -> None:
    """Make MLflow's span processor (``MlflowV3SpanProcessor``: trace info, previews, usage) hand finished spans to
    ``make_exporter(tracking_uri)`` instead of MLflow's exporter (a ``start_trace`` plus span calls per trace), by
    replacing ``mlflow.tracing.provider._get_mlflow_span_processor``. ``None`` restores MLflow's. Resets the tracer
    provider (``mlflow.tracing.provider.reset``): enable or disable tracing afterwards."""
    import mlflow.tracing.provider as provider
    from mlflow.tracing.processor.mlflow_v3 import MlflowV3SpanProcessor
    from mlflow.tracing.utils.otlp import should_export_otlp_metrics

    global _original_processor_factory
    if _original_processor_factory is None:
        _original_processor_factory = provider._get_mlflow_span_processor
    provider.reset()
    if make_exporter is None:
        provider._get_mlflow_span_processor = _original_processor_factory
        return

    def factory(tracking_uri: str) -> Any:
        exporter = make_exporter(tracking_uri)
        return MlflowV3SpanProcessor(span_exporter=exporter, export_metrics=should_export_otlp_metrics())

    provider._get_mlflow_span_processor = factory


def pop_finished_trace(otel_trace_id: int) -> Any:
    """``InMemoryTraceManager.pop_trace``: the finished ``Trace`` (info + spans) MLflow kept in memory for this
    OpenTelemetry trace id, removed from there (None if unknown)."""
    from mlflow.tracing.trace_manager import InMemoryTraceManager

    manager_trace = InMemoryTraceManager.get_instance().pop_trace(otel_trace_id)
    return manager_trace.trace if manager_trace is not None else None


def span_to_otlp(span: Any) -> Any:
    """``mlflow.entities.Span.to_otel_proto`` (marked internal): an MLflow span as an OTLP protobuf ``Span``."""
    return span.to_otel_proto()


def post_otlp(tracking_uri: str, experiment_id: str, body: bytes, timeout: float) -> int:
    """POST an OTLP ``ExportTraceServiceRequest`` to ``/v1/traces`` with MLflow's own auth and TLS settings
    (``mlflow.utils.credentials.get_default_host_creds`` + ``mlflow.utils.rest_utils.http_request``: token,
    username/password, insecure TLS, client certs); no retries here. Returns the HTTP status."""
    from mlflow.tracing.utils.otlp import OTLP_TRACES_PATH
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    response = http_request(
        host_creds=get_default_host_creds(tracking_uri),
        endpoint=OTLP_TRACES_PATH,
        method="POST",
        data=body,
        extra_headers={"Content-Type": "application/x-protobuf", EXPERIMENT_ID_HEADER: experiment_id},
        max_retries=0,
        timeout=timeout,
        raise_on_status=False,
    )
    return response.status_code


def request_headers() -> dict[str, str]:
    """``mlflow.genai.agent_server.utils.get_request_headers``: headers of the Agent Server request being handled."""
    from mlflow.genai.agent_server.utils import get_request_headers

    try:
        return get_request_headers() or {}
    except LookupError:
        return {}
