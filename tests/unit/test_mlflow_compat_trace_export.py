"""Self-check of the MLflow internals serve/trace_export.py relies on (kept in kagent_mlflow._mlflow_compat): an MLflow
upgrade that moves one fails here, not on a request path."""

from __future__ import annotations

import mlflow
import mlflow.tracing.provider as provider
from mlflow.genai.agent_server import set_request_headers
from opentelemetry.proto.trace.v1.trace_pb2 import Span as OtlpSpan

from kagent_mlflow import _mlflow_compat as compat


def test_installed_exporter_receives_the_finished_trace_with_its_spans_and_tags():
    received = []

    class Exporter:
        def export(self, spans):
            for span in spans:
                if span.parent is None:
                    received.append(compat.pop_finished_trace(span.context.trace_id))

        def shutdown(self):
            pass

        def force_flush(self, timeout_millis=30000):
            return True

    compat.install_span_exporter(lambda uri: Exporter())
    try:
        mlflow.tracing.enable()
        with mlflow.start_span(name="root") as root:
            mlflow.update_current_trace(tags={"k": "v"}, session_id="s1")
            with mlflow.start_span(name="child"):
                pass
        trace = received[0]
        assert trace.info.trace_id == root.trace_id
        assert trace.info.tags["k"] == "v" and trace.info.trace_metadata["mlflow.trace.session"] == "s1"
        assert sorted(s.name for s in trace.data.spans) == ["child", "root"]
        assert isinstance(compat.span_to_otlp(trace.data.spans[0]), OtlpSpan)
    finally:
        compat.install_span_exporter(None)
    assert provider._get_mlflow_span_processor is compat._original_processor_factory


def test_request_headers_and_otlp_post_helpers_resolve():
    set_request_headers({"x-request-id": "abc"})
    assert compat.request_headers()["x-request-id"] == "abc"
    from mlflow.tracing.utils.otlp import OTLP_TRACES_PATH
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    assert OTLP_TRACES_PATH == "/v1/traces" and callable(http_request)
    assert get_default_host_creds("http://127.0.0.1:1").host == "http://127.0.0.1:1"
