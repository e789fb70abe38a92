"""Sink internals that need no server: error classification, the fail-fast HTTP scope, the S3 hook, the trace."""

from __future__ import annotations

import json
import os

import pytest
from mlflow.exceptions import MlflowException, RestException
from mlflow.tracing.constant import SpanAttributeKey, TraceMetadataKey
from mlflow.utils import rest_utils

from kagent_mlflow.a2a.models import ToolCall
from kagent_mlflow.records import Interaction
from kagent_mlflow.sinks import _transport
from kagent_mlflow.sinks._errors import describe
from kagent_mlflow.sinks._trace import build_trace, trace_id_for
from kagent_mlflow.sinks.redact import Redactor


def interaction(**kw: object) -> Interaction:
    values: dict[str, object] = dict(
        question="What is k8s?",
        answer="An orchestrator.",
        agent_name="rh-analyze",
        a2a_url="http://agent/a2a/",
        experiment_name="e",
        usage={"promptTokenCount": 7, "candidatesTokenCount": 3, "totalTokenCount": 10},
        latency_ms=250.0,
        started_at_ms=1_700_000_000_000,
    )
    values.update(kw)
    return Interaction(**values)  # type: ignore[arg-type]


def test_http_5xx_is_retryable_4xx_is_not() -> None:
    err500 = RestException({"error_code": "INTERNAL_ERROR", "message": "boom\nsecond line"})
    cause, retryable = describe(err500)
    assert retryable and cause.startswith("HTTP 500 INTERNAL_ERROR") and "\n" not in cause
    cause, retryable = describe(RestException({"error_code": "INVALID_PARAMETER_VALUE", "message": "bad metric"}))
    assert not retryable and "HTTP 400" in cause
    _, retryable = describe(RestException({"error_code": "REQUEST_LIMIT_EXCEEDED", "message": "slow down"}))
    assert retryable


def test_connection_refused_is_named() -> None:
    err = MlflowException(
        "API request to http://h/api failed with exception HTTPConnectionPool(...): "
        "Max retries exceeded (Caused by NewConnectionError(... [Errno 111] Connection refused))"
    )
    assert describe(err) == ("connection refused", True)


def test_fail_fast_applies_only_inside_the_scope(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[int, float | None]] = []

    def recorder(method, url, max_retries, backoff_factor, backoff_jitter, retry_codes, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append((max_retries, kwargs.get("timeout")))

    monkeypatch.setattr(rest_utils, "_get_http_response_with_retries", recorder)
    with _transport.fail_fast(_transport.HttpPolicy(max_retries=0, timeout=3)):
        rest_utils._get_http_response_with_retries("GET", "http://x", 7, 2, 1.0, (500,), timeout=120)
    rest_utils._get_http_response_with_retries("GET", "http://x", 7, 2, 1.0, (500,), timeout=120)
    assert seen == [(0, 3), (7, 120)]


def test_s3_hook_uses_sink_settings_without_touching_the_environment() -> None:
    before = dict(os.environ)
    s3 = _transport.ScopedS3("http://127.0.0.1:9999", "AKIAEXAMPLEEXAMPLE00", "secret-value", timeout=2)
    repo = _transport.artifact_repository("s3://bucket/run/artifacts", "http://mlflow", s3)
    client = repo._get_s3_client()
    assert client.meta.endpoint_url == "http://127.0.0.1:9999"
    assert client._request_signer._credentials.access_key == "AKIAEXAMPLEEXAMPLE00"
    assert dict(os.environ) == before
    # Without S3 settings MLflow's own resolution applies.
    assert (
        type(_transport.artifact_repository("s3://bucket/x", "http://mlflow", None)).__name__ == "S3ArtifactRepository"
    )


def test_trace_shape_and_deterministic_ids() -> None:
    it = interaction(tool_calls=[ToolCall(name="search", arguments={"q": "k8s", "api_key": "zzz"}, result="found")])
    built = build_trace(it, "5", "run-1", Redactor())
    again = build_trace(it, "5", "run-1", Redactor())
    assert built.info.trace_id == again.info.trace_id == trace_id_for(it.interaction_id)
    assert [s.span_id for s in built.spans] == [s.span_id for s in again.spans]
    root, tool = built.spans
    assert (root.name, root.span_type, root.inputs, root.outputs) == (
        "rh-analyze",
        "AGENT",
        "What is k8s?",
        "An orchestrator.",
    )
    assert root.get_attribute(SpanAttributeKey.CHAT_USAGE) == {
        "input_tokens": 7,
        "output_tokens": 3,
        "total_tokens": 10,
    }
    assert root.start_time_ns == 1_700_000_000_000 * 1_000_000
    assert root.end_time_ns - root.start_time_ns == 250 * 1_000_000
    assert (tool.span_type, tool.parent_id, tool.inputs) == (
        "TOOL",
        root.span_id,
        {"q": "k8s", "api_key": "[REDACTED]"},
    )
    assert built.info.trace_metadata[TraceMetadataKey.SOURCE_RUN] == "run-1"
    assert json.loads(built.info.trace_metadata[TraceMetadataKey.TOKEN_USAGE])["total_tokens"] == 10
    assert built.info.tags["interaction_id"] == it.interaction_id
    assert built.info.execution_duration == 250


def test_error_trace_has_error_status() -> None:
    built = build_trace(
        interaction(status="error", answer=None, error="agent at http://a: HTTP 500"), "1", "r", Redactor()
    )
    assert built.info.state.value == "ERROR"
    assert built.spans[0].status.status_code.value == "ERROR"
    assert "HTTP 500" in built.spans[0].status.description


def test_batch_is_deterministic_with_safe_metric_names() -> None:
    from kagent_mlflow.sinks._content import run_batch

    it = interaction(usage={"totalTokenCount": 10, "weird key(1)": 2.5})
    metrics, params, tags = run_batch(it, Redactor())
    again, _, _ = run_batch(it, Redactor())
    assert [(m.key, m.value, m.timestamp, m.step) for m in metrics] == [
        (m.key, m.value, m.timestamp, m.step) for m in again
    ]
    values = {m.key: m.value for m in metrics}
    assert values == {
        "latency_ms": 250.0,
        "totalTokenCount": 10.0,
        "weird key_1_": 2.5,
        "input_tokens": 0.0,
        "output_tokens": 0.0,
        "total_tokens": 10.0,
        "tool_calls": 0.0,
    }
    assert {m.timestamp for m in metrics} == {it.ended_at_ms}
    assert [(p.key, p.value) for p in params] == [("question_chars", "12")]
    assert {t.key for t in tags} == {"interaction_id", "agent", "a2a_url", "status"}
