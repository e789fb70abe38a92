"""Every use of MLflow internals in one place: private names, non-public modules, raw OpenTelemetry spans.

Why they are used at all: MLflow's public client retries for minutes against a dead server, reads the S3 endpoint
only from the process environment, and records traces through a process-wide tracer; the sink needs none of that
(see ``sinks/_transport.py`` and ``sinks/_trace.py``). Each internal is reached through a function below, and
:data:`INTERNALS` lists them all, so ``tests/unit/test_mlflow_compat.py`` resolves each one and fails naming the
symbol when an MLflow release moves it. MLflow itself is imported inside the functions: importing this module stays
free, and the self-check can name what is missing instead of failing on import.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any

# "module:attribute.path" of every internal used here. Keep in step with the functions below.
INTERNALS: tuple[str, ...] = (
    "mlflow.utils.rest_utils:_get_http_response_with_retries",
    "mlflow.store.artifact.s3_artifact_repo:S3ArtifactRepository._get_s3_client",
    "mlflow.store.artifact.artifact_repository_registry:get_artifact_repository",
    "mlflow.tracing.client:TracingClient.start_trace",
    "mlflow.tracing.client:TracingClient.store",
    "mlflow.tracing.client:TracingClient._upload_trace_data",
    "mlflow.store.tracking.abstract_store:AbstractStore.log_spans",
    "mlflow.store.tracking.abstract_store:AbstractStore.update_run_info",
    "mlflow.store.tracking.rest_store:RestStore._get_server_version.cache_clear",
    "mlflow.entities.trace_data:TraceData",
    "mlflow.entities:Span",
    "mlflow.tracing.utils:build_otel_context",
    "mlflow.tracing.utils:dump_span_attribute_value",
    "opentelemetry.sdk.trace:ReadableSpan",
    "opentelemetry.sdk.resources:Resource.get_empty",
    "mlflow.tracing.constant:SpanAttributeKey.CHAT_USAGE",
    "mlflow.tracing.constant:SpanAttributeKey.SPAN_TYPE",
    "mlflow.tracing.provider:_get_mlflow_span_processor",
    "mlflow.tracing.provider:reset",
    "mlflow.tracing.processor.mlflow_v3:MlflowV3SpanProcessor",
    "mlflow.tracing.utils.otlp:should_export_otlp_metrics",
    "mlflow.tracing.utils.otlp:OTLP_TRACES_PATH",
    "mlflow.tracing.trace_manager:InMemoryTraceManager.get_instance",
    "mlflow.entities:Span.to_otel_proto",
    "mlflow.utils.credentials:get_default_host_creds",
    "mlflow.utils.rest_utils:http_request",
    "mlflow.genai.agent_server.utils:get_request_headers",
    "mlflow.tracing.provider:with_active_span",
)
# Leading parameters the fail-fast wrapper passes positionally (it replaces ``max_retries`` .. ``raise_on_status``).
HTTP_RETRY_PARAMS = (
    "method",
    "url",
    "max_retries",
    "backoff_factor",
    "backoff_jitter",
    "retry_codes",
    "raise_on_status",
)


def resolve(path: str) -> Any:
    """The object at ``"module:attr.path"``; raises ``ImportError``/``AttributeError`` naming what is missing."""
    module_name, _, attrs = path.partition(":")
    obj: Any = importlib.import_module(module_name)
    for attr in attrs.split(".") if attrs else ():
        obj = getattr(obj, attr)
    return obj


# -- HTTP: the single function all MLflow REST, OTLP and proxied-artifact requests go through --------------------------


def http_request_function() -> Callable[..., Any] | None:
    """MLflow's retrying HTTP helper (None if a release renamed it: its own retry settings then apply)."""
    from mlflow.utils import rest_utils

    return getattr(rest_utils, "_get_http_response_with_retries", None)


def replace_http_request_function(function: Callable[..., Any]) -> None:
    from mlflow.utils import rest_utils

    rest_utils._get_http_response_with_retries = function


def clear_server_version_cache() -> None:
    """Forget the tracking server versions MLflow cached (a failed probe is cached as "no span support")."""
    from mlflow.store.tracking.rest_store import RestStore

    RestStore._get_server_version.cache_clear()


# -- artifacts ---------------------------------------------------------------------------------------------------------


@functools.cache
def _s3_repository_class() -> type:
    from mlflow.store.artifact.s3_artifact_repo import S3ArtifactRepository

    class ClientS3ArtifactRepository(S3ArtifactRepository):
        """MLflow's S3 repository with a boto3 client given by the caller (not built from the environment)."""

        def __init__(self, artifact_uri: str, tracking_uri: str, client: Callable[[], Any]) -> None:
            super().__init__(artifact_uri, tracking_uri=tracking_uri)
            self._client_factory = client

        def _get_s3_client(self) -> Any:
            return self._client_factory()

    return ClientS3ArtifactRepository


def s3_repository(artifact_uri: str, tracking_uri: str, client: Callable[[], Any]) -> Any:
    """MLflow's S3 artifact repository for ``artifact_uri``, uploading with ``client()``."""
    return _s3_repository_class()(artifact_uri, tracking_uri, client)


def artifact_repository(artifact_uri: str, tracking_uri: str) -> Any:
    """MLflow's own artifact repository for any URI (its resolution: env, IAM ...)."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    return get_artifact_repository(artifact_uri, tracking_uri=tracking_uri)


# -- traces and runs through the store, bound to one tracking URI ------------------------------------------------------


def tracing_client(tracking_uri: str) -> Any:
    from mlflow.tracing.client import TracingClient

    return TracingClient(tracking_uri)


def start_trace(client: Any, info: Any) -> Any:
    return client.start_trace(info)


def log_spans(client: Any, experiment_id: str, spans: list[Any]) -> None:
    """Spans straight into the store (SQL stores keep them in the database); NotImplementedError without support."""
    client.store.log_spans(experiment_id, spans)


def upload_trace_data(client: Any, info: Any, spans: list[Any]) -> None:
    """The spans as the trace's artifact: for servers without span storage."""
    from mlflow.entities.trace_data import TraceData

    client._upload_trace_data(info, TraceData(spans=spans))


def end_run(client: Any, run_id: str, status: Any, end_time_ms: int) -> None:
    """The store call, not ``MlflowClient.set_terminated``: that one adds a get_run and prints a link to stdout."""
    client.store.update_run_info(run_id, run_status=status, end_time=end_time_ms, run_name=None)


# -- finished spans built by hand (real start/end times, no global tracer) ---------------------------------------------


def finished_span(
    *,
    name: str,
    otel_trace_id: int,
    span_id: int,
    parent_id: int | None,
    start_ns: int,
    end_ns: int,
    attributes: dict[str, Any],
    status: Any,
) -> Any:
    """An ``mlflow.entities.Span`` around a finished OpenTelemetry ``ReadableSpan``; ``status`` is a SpanStatus."""
    from mlflow.entities import Span
    from mlflow.tracing.utils import build_otel_context, dump_span_attribute_value
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan

    otel = ReadableSpan(
        name=name,
        context=build_otel_context(otel_trace_id, span_id),
        parent=build_otel_context(otel_trace_id, parent_id) if parent_id else None,
        start_time=start_ns,
        end_time=end_ns,
        attributes={k: dump_span_attribute_value(v) for k, v in attributes.items() if v is not None},
        status=status.to_otel_status(),
        resource=Resource.get_empty(),
    )
    return Span(otel)


# -- attributes of live spans (Pattern 2 agent) ------------------------------------------------------------------------


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


def active_span(span: Any) -> Any:
    """``mlflow.tracing.provider.with_active_span``: make a span from ``mlflow.start_span_no_context`` the current
    one (children nest under it; an exception is recorded on it) without ending it on exit, so the Agent Server can
    end a big request's root span - and with it run the trace's export conversion - off its event loop."""
    from mlflow.tracing.provider import with_active_span

    return with_active_span(span)


# -- Agent Server trace export (serve/trace_export.py) ---------------------------------------------------------------
# MLflow has no public hook for "export finished traces my way" or "POST to the tracking server with its own auth".

EXPERIMENT_ID_HEADER = "x-mlflow-experiment-id"  # mlflow.tracing.utils.otlp.MLFLOW_EXPERIMENT_ID_HEADER
RUN_ID_HEADER = "x-mlflow-run-id"  # mlflow.tracing.utils.otlp.MLFLOW_RUN_ID_HEADER (the server links traces to it)
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


def post_otlp(tracking_uri: str, experiment_id: str, body: bytes, timeout: float, run_id: str | None = None) -> int:
    """POST an OTLP ``ExportTraceServiceRequest`` to ``/v1/traces`` with MLflow's own auth and TLS settings
    (``mlflow.utils.credentials.get_default_host_creds`` + ``mlflow.utils.rest_utils.http_request``: token,
    username/password, insecure TLS, client certs); no retries here. Returns the HTTP status. With ``run_id`` the
    server links every trace of the request to that run (header ``x-mlflow-run-id``, one ``link_traces_to_run``)."""
    from mlflow.tracing.utils.otlp import OTLP_TRACES_PATH
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    response = http_request(
        host_creds=get_default_host_creds(tracking_uri),
        endpoint=OTLP_TRACES_PATH,
        method="POST",
        data=body,
        extra_headers={
            "Content-Type": "application/x-protobuf",
            EXPERIMENT_ID_HEADER: experiment_id,
            **({RUN_ID_HEADER: run_id} if run_id else {}),
        },
        max_retries=0,
        timeout=timeout,
        raise_on_status=False,
    )
    return response.status_code


def post_assessment(tracking_uri: str, trace_id: str, assessment: dict[str, Any], timeout: float) -> int:
    """``POST /api/3.0/mlflow/traces/<trace id>/assessments`` (MLflow's ``CreateAssessment``) with a body built by
    the caller (the proto's JSON form) and MLflow's own auth and TLS settings; no retries. Returns the HTTP status.
    Why not ``MlflowClient.log_assessment``: it costs the client ~5 ms of CPU per call (entity -> proto -> JSON and
    back), which an evaluation pays once per score."""
    import json

    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    response = http_request(
        host_creds=get_default_host_creds(tracking_uri),
        endpoint=f"/api/3.0/mlflow/traces/{trace_id}/assessments",
        method="POST",
        data=json.dumps({"assessment": assessment}),
        extra_headers={"Content-Type": "application/json"},
        max_retries=0,
        timeout=timeout,
        raise_on_status=False,
    )
    return response.status_code


def assessment_exists(tracking_uri: str, trace_id: str, assessment_id: str, timeout: float) -> bool:
    """``GET /api/3.0/mlflow/traces/<trace id>/assessments/<assessment id>`` answers 200."""
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    response = http_request(
        host_creds=get_default_host_creds(tracking_uri),
        endpoint=f"/api/3.0/mlflow/traces/{trace_id}/assessments/{assessment_id}",
        method="GET",
        max_retries=0,
        timeout=timeout,
        raise_on_status=False,
    )
    return response.status_code == 200


def request_headers() -> dict[str, str]:
    """``mlflow.genai.agent_server.utils.get_request_headers``: headers of the Agent Server request being handled."""
    from mlflow.genai.agent_server.utils import get_request_headers

    try:
        return get_request_headers() or {}
    except LookupError:
        return {}
