"""The edge checks of a request body (:mod:`kagent_mlflow.serve.request`), without a server."""

from __future__ import annotations

import json

import pytest

from kagent_mlflow.serve.config import Limits
from kagent_mlflow.serve.request import RequestRejected, check_json_text, parse_request

LIMITS = Limits()


def rejected(body: bytes, limits: Limits = LIMITS) -> RequestRejected:
    with pytest.raises(RequestRejected) as info:
        parse_request(body, limits)
    return info.value


@pytest.mark.parametrize(
    "text",
    [
        '{"a": "[[[[[[[[[[", "b": "NaN Infinity 1e999"}',  # inside strings: text, not JSON
        '{"a": "\\"[[[[[[[[[[\\""}',  # escaped quotes do not end the string
        '{"a": 1e-999, "b": 1.5e300, "c": 12345678901234567890}',  # finite numbers
    ],
)
def test_json_text_that_only_looks_dangerous_passes(text):
    check_json_text(text.encode(), max_depth=5)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"a": [[[[[[]]]]]]}', "nested deeper than 5 levels"),
        ('{"a": NaN}', "NaN or Infinity"),
        ('{"a": -Infinity}', "NaN or Infinity"),
        ('{"a": 2E+400}', "NaN or Infinity"),
        ('{"a": ' + "9" * 400 + ".5}", "NaN or Infinity"),
    ],
)
def test_json_text_checks(text, problem):
    with pytest.raises(RequestRejected, match=problem):
        check_json_text(text.encode(), max_depth=5)


def test_a_checked_request_becomes_mlflows_request_and_the_stream_flag():
    body = {"input": "hi", "stream": True, "temperature": 0.2, "context": {"conversation_id": "c1"}, "model": "m"}
    request, stream = parse_request(json.dumps(body).encode(), LIMITS)
    assert stream is True
    assert request.input[0].role == "user" and request.input[0].content == "hi"
    assert request.temperature == 0.2 and request.context.conversation_id == "c1"


def test_limits_are_applied():
    small = Limits(max_body_bytes=100, max_json_depth=3, max_input_items=2)
    assert rejected(b" " * 101, small).error.status == 413
    many = json.dumps({"input": [{"role": "user", "content": "x"}] * 3}).encode()
    assert rejected(many, small).error.status == 413
    assert rejected(b'{"input": [[[[]]]]}', small).error.status == 400


def test_errors_name_the_place_and_the_value():
    items = [{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}]
    error = rejected(json.dumps({"input": items}).encode())
    assert error.error.message.startswith("input[1].role: Input should be 'user'")
    assert "(got 'bot')" in error.error.message


def test_an_error_in_a_long_input_names_its_real_index():
    items = [{"role": "user", "content": "a"}] * 600
    items[590] = {"role": "user", "content": ["not a part"]}
    error = rejected(json.dumps({"input": items}).encode())
    assert error.error.message.startswith("input[590].content")
