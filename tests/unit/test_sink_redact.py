"""Secrets never reach MLflow: the redaction helper the sink applies to everything it logs."""

from __future__ import annotations

import pytest

from kagent_mlflow.sinks.redact import REDACTED, Redactor, is_secret_key


@pytest.mark.parametrize(
    "key",
    [
        "Authorization",
        "token",
        "access_token",
        "accessToken",
        "api_key",
        "x-api-key",
        "apiKey",
        "key",
        "secret",
        "client_secret",
        "aws_secret_access_key",
        "aws_access_key",
        "password",
        "Cookie",
    ],
)
def test_secret_keys(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize(
    "key",
    [
        "totalTokenCount",
        "promptTokenCount",
        "prompt_tokens",
        "input_tokens",
        "token_type",
        "keys",
        "monkey",
        "answer",
        "task_id",
        "contextId",
        "kagent_usage_metadata",
    ],
)
def test_ordinary_keys_are_kept(key: str) -> None:
    assert not is_secret_key(key)


def test_nested_reply_is_redacted_but_usage_kept() -> None:
    raw = {
        "jsonrpc": "2.0",
        "result": {
            "metadata": {"kagent_usage_metadata": {"promptTokenCount": 12, "totalTokenCount": 17}},
            "headers": [{"Authorization": "Bearer s3cr3t-value-123"}],
            "config": {"api_key": "sk-abc", "nested": {"token": {"value": "x"}}},
            "text": "call me with Bearer abcdef123456 please",
        },
    }
    out = Redactor()(raw)
    assert out["result"]["metadata"]["kagent_usage_metadata"] == {"promptTokenCount": 12, "totalTokenCount": 17}
    assert out["result"]["headers"][0]["Authorization"] == REDACTED
    assert out["result"]["config"]["api_key"] == REDACTED
    assert out["result"]["config"]["nested"]["token"] == REDACTED
    assert out["result"]["text"] == f"call me with Bearer {REDACTED} please"
    assert raw["result"]["config"]["api_key"] == "sk-abc", "the input must not be mutated"


def test_known_secrets_masked_anywhere() -> None:
    redact = Redactor(["AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", None, "ab"])
    text = "id AKIAIOSFODNN7EXAMPLE key wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY ab"
    assert redact(text) == f"id {REDACTED} key {REDACTED} ab"  # values shorter than 4 chars are not masked
    assert redact({"note": ["x wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"]}) == {"note": [f"x {REDACTED}"]}


def test_aws_key_id_pattern_masked_without_being_configured() -> None:
    assert Redactor().text("leaked AKIAABCDEFGHIJKLMNOP here") == f"leaked {REDACTED} here"


def test_empty_secret_values_and_scalars_pass_through() -> None:
    assert Redactor()({"token": None, "key": "", "n": 3, "ok": True}) == {"token": None, "key": "", "n": 3, "ok": True}
