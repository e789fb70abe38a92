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
