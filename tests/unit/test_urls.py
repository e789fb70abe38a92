"""URLs made safe to store or show (issue 8, Why #4): no userinfo, no secret-looking query values."""

from __future__ import annotations

import pytest

from kagent_mlflow._urls import is_secret_name, safe_url, scrub_urls
from kagent_mlflow.a2a.card import agent_name_from_url
from kagent_mlflow.errors import AgentUnreachableError
from kagent_mlflow.records import Interaction


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://alice:URLPASS789@127.0.0.1:8083/api/a2a/ns/agent/", "http://127.0.0.1:8083/api/a2a/ns/agent/"),
        ("http://alice@host/", "http://host/"),
        ("http://host/?api_key=S1&x=1", "http://host/?api_key=REDACTED&x=1"),
        (
            "http://host/p?key=S&token=S&access_token=S&secret=S",
            "http://host/p?key=REDACTED&token=REDACTED&access_token=REDACTED&secret=REDACTED",
        ),
        (
            "https://h/o?password=S&sig=S&signature=S&client_secret=S",
            "https://h/o?password=REDACTED&sig=REDACTED&signature=REDACTED&client_secret=REDACTED",
        ),
        (
            "https://b.s3/k?X-Amz-Credential=AKIA%2F1&X-Amz-Signature=ab&X-Amz-Security-Token=t&X-Amz-Date=2026",
            "https://b.s3/k?X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED&X-Amz-Security-Token=REDACTED"
            "&X-Amz-Date=2026",
        ),
        ("https://b.s3/k?AWSAccessKeyId=AKIA1&Expires=1", "https://b.s3/k?AWSAccessKeyId=REDACTED&Expires=1"),
        ("http://h/#access_token=S&state=1", "http://h/#access_token=REDACTED&state=1"),
        ("http://u:p@[::1]:5000/x", "http://[::1]:5000/x"),
        (
            "postgresql+psycopg2://mlflow:DBPASS@db:5432/mlflow?password=DBPASS2",
            "postgresql+psycopg2://db:5432/mlflow?password=REDACTED",
        ),
    ],
)
def test_safe_url_strips_userinfo_and_secret_params(url: str, expected: str) -> None:
    assert safe_url(url) == expected


@pytest.mark.parametrize(
    "url",
    ["sqlite:////tmp/x/mlflow.db", "http://127.0.0.1:5000", "http://h/?tokens_total=3&keyword=a", "file:///tmp/a", ""],
)
def test_safe_url_leaves_urls_without_secrets_untouched(url: str) -> None:
    assert safe_url(url) == url


def test_a_url_that_does_not_parse_still_loses_its_userinfo() -> None:
    assert safe_url("http://alice:URLPASS789@[::1/x") == "http://[::1/x"


@pytest.mark.parametrize("name", ["api_key", "apiKey", "X-Amz-Signature", "sig", "access_token", "Password"])
def test_secret_names(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize("name", ["totalTokenCount", "prompt_tokens", "keyword", "X-Amz-Date", "page"])
def test_not_secret_names(name: str) -> None:
    assert not is_secret_name(name)


def test_urls_inside_text_are_scrubbed() -> None:
    text = "Client error '404' for url 'http://alice:URLPASS789@h:1/x?api_key=Q456' (see http://ok/)"
    assert scrub_urls(text) == "Client error '404' for url 'http://h:1/x?api_key=REDACTED' (see http://ok/)"


def test_agent_name_from_a_url_without_path_is_host_and_port_only() -> None:
    assert agent_name_from_url("http://alice:URLPASS789@127.0.0.1:9/?api_key=Q") == "127.0.0.1:9"


def test_agent_errors_name_the_url_without_credentials() -> None:
    err = AgentUnreachableError(
        "http://alice:URLPASS789@h:1/?token=T0K", "cannot connect to http://alice:URLPASS789@h:1/"
    )
    assert "URLPASS789" not in str(err) and "T0K" not in str(err)
    assert err.url == "http://h:1/?token=REDACTED"


def test_a_record_keeps_the_url_without_credentials() -> None:
    record = Interaction(
        question="q",
        agent_name="test-agent",
        a2a_url="http://alice:URLPASS789@h:1/?api_key=Q456",
        error="agent at http://alice:URLPASS789@h:1/?api_key=Q456: down",
        experiment_name="e",
    )
    dumped = record.model_dump_json()
    assert "URLPASS789" not in dumped and "Q456" not in dumped
    assert record.a2a_url == "http://h:1/?api_key=REDACTED"


def test_model_errors_and_serve_log_lines_name_urls_without_credentials() -> None:
    from kagent_mlflow.agent.errors import ModelUnreachableError
    from kagent_mlflow.serve.tracing import safe_uri

    err = ModelUnreachableError("http://u:MODELPASS1@llama:8321/v1?api_key=MODELKEY2", "cannot connect")
    assert "MODELPASS1" not in str(err) and "MODELKEY2" not in str(err)
    assert safe_uri("http://u:TRACKPASS3@mlflow:5000/?token=TRACKTOKEN4") == "http://mlflow:5000/?token=REDACTED"
