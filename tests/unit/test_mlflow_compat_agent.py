"""Self-check of the MLflow internals the agent and the server's root span rely on (``_mlflow_compat``): an MLflow
upgrade that moves or renames them fails here, not in a trace that silently lost its type or usage."""

from __future__ import annotations

from kagent_mlflow import _mlflow_compat as compat


class _Span:
    def __init__(self) -> None:
        self.attributes: dict = {}

    def set_attribute(self, key: str, value: object) -> None:
        self.attributes[key] = value


def test_the_span_attribute_names_are_the_ones_mlflow_reads() -> None:
    keys = compat.span_attribute_keys()
    assert keys.CHAT_USAGE == "mlflow.chat.tokenUsage"
    assert keys.SPAN_TYPE == "mlflow.spanType"
    assert keys.MODEL == "mlflow.llm.model"
    assert keys.MESSAGE_FORMAT == "mlflow.message.format"


def test_type_and_usage_land_on_those_attributes() -> None:
    span = _Span()
    compat.set_span_type(span, "AGENT")
    compat.set_token_usage(span, {"input_tokens": 1, "output_tokens": 2, "total_tokens": 3})
    assert span.attributes == {
        "mlflow.spanType": "AGENT",
        "mlflow.chat.tokenUsage": {"input_tokens": 1, "output_tokens": 2, "total_tokens": 3},
    }
