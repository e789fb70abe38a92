"""The request's root span says what it is: an AGENT span with the answer's token usage.

The routes open one root span per request (as MLflow's Agent Server does) without a type, so MLflow showed the
trace's root as UNKNOWN and its overviews (by span type, token usage) could not use it. The handlers call these
inside that span. MLflow sums a trace's usage without counting spans below one that carries usage, so the root's
usage (which includes every model call and sub-agent) does not double the LLM spans'.
"""

from __future__ import annotations

from typing import Any


def mark_agent() -> None:
    """Type the current (root) span AGENT; nothing when tracing is off."""
    import mlflow
    from mlflow.entities import SpanType

    from .._mlflow_compat import set_span_type

    span = mlflow.get_current_active_span()
    if span is not None:
        set_span_type(span, SpanType.AGENT)


def record_usage(response: Any) -> None:
    """Put a response's ``usage`` (a ``ResponsesAgentResponse``, its dict, or a ``response.completed`` event's
    ``response``) on the current span as ``mlflow.chat.tokenUsage``."""
    import mlflow

    from .._mlflow_compat import set_token_usage

    span = mlflow.get_current_active_span()
    usage = _get(response, "usage")
    if span is None or usage is None:
        return
    set_token_usage(span, {k: int(_get(usage, k) or 0) for k in ("input_tokens", "output_tokens", "total_tokens")})


def completed_response(event: Any) -> Any:
    """The ``response`` of a ``response.completed`` stream event, else None."""
    return _get(event, "response") if _get(event, "type") == "response.completed" else None


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)
