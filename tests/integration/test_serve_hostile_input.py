"""Hostile and malformed requests against a real ``kagent-mlflow serve`` process (issue 9, findings 1 and 2).

Every one must get a JSON error in the documented shape with a 4xx status, must never reach the model, and must
leave the connection usable: each request here is sent on a raw keep-alive socket followed by a good request on the
same socket.
"""

from __future__ import annotations

import json
import socket
from urllib.parse import urlsplit

import pytest

from tests.support.agent_server import EXPERIMENT

pytestmark = pytest.mark.integration

GOOD = json.dumps({"input": [{"role": "user", "content": "still there?"}]}).encode()


def exchange(sock: socket.socket, host: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    """One HTTP/1.1 POST /invocations on ``sock``; the status and the JSON body of the answer."""
    headers = {"content-type": "application/json", "content-length": str(len(body)), **(headers or {})}
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    sock.sendall(f"POST /invocations HTTP/1.1\r\nhost: {host}\r\n{head}\r\n".encode() + body)
    return read_response(sock)


def read_response(sock: socket.socket) -> tuple[int, dict]:
    reader = sock.makefile("rb")
    status = int(reader.readline().split()[1])
    length = 0
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    return status, json.loads(reader.read(length))


@pytest.fixture
def send(agent_server, scripted_model):
    """``send(body, headers)`` -> (status, json); then checks the same connection still answers a good request."""
    url = urlsplit(agent_server.url)
    scripted_model.set_script([{"match": "still there", "reply": "yes"}])
    sockets: list[socket.socket] = []

    def _send(body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict]:
        sock = socket.create_connection((url.hostname, url.port), timeout=60)
        sockets.append(sock)
        before = len(scripted_model.chat_requests())
        status, answer = exchange(sock, url.netloc, body, headers)
        if status >= 400:
            assert len(scripted_model.chat_requests()) == before, "a rejected request reached the model"
        return status, answer

    yield _send
    for sock in sockets:  # the connection survived the bad request
        status, answer = exchange(sock, url.netloc, GOOD)
        assert status == 200, answer
        sock.close()


def assert_error(status: int, body: dict, expected_status: int, *words: str) -> None:
    assert status == expected_status, body
    assert set(body) == {"error", "detail"}
    assert set(body["error"]) == {"message", "type", "code"}
    assert body["error"]["code"] == expected_status
    assert body["detail"] == body["error"]["message"]
    assert "\n" not in body["detail"]
    for word in words:
        assert word in body["error"]["message"]


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_deep_nesting_is_a_400_not_a_500(send, depth):
    body = b'{"input": ' + b"[" * depth + b"]" * depth + b"}"
    assert_error(*send(body), 400, "nested deeper than 64 levels")


def test_brackets_inside_strings_do_not_count_as_nesting(send, scripted_model):
    text = "[{" * 500 + ' \\" still there? '
    status, body = send(json.dumps({"input": [{"role": "user", "content": text}]}).encode())
    assert status == 200, body


@pytest.mark.parametrize(
    "body",
    [
        b'{"input": [{"role": "user", "content": "\\ud800"}]}',  # a lone surrogate: not encodable text
        b'{"input": [{"role": "user", "content": "\\udc00 x"}]}',
        b'{"input": [{"role": "user", "content": "\xff\xfe"}]}',  # not UTF-8
    ],
    ids=["lone-high-surrogate", "lone-low-surrogate", "invalid-utf8"],
)
def test_invalid_text_encoding_is_the_callers_400_not_a_model_502(send, body):
    assert_error(*send(body), 400, "not valid JSON")


@pytest.mark.parametrize(
    "extra",
    ['"temperature": NaN', '"temperature": Infinity', '"top_p": -Infinity', '"custom_inputs": {"x": [1, NaN]}',
     '"custom_inputs": {"x": 1e999}'],
)  # fmt: skip
def test_nan_and_infinity_are_rejected(send, extra):
    body = f'{{"input": [{{"role": "user", "content": "hi"}}], {extra}}}'.encode()
    assert_error(*send(body), 400, "NaN or Infinity")


@pytest.mark.parametrize(
    ("field", "value", "where"),
    [
        ("stream", "yes", "stream: Input should be a valid boolean (got 'yes')"),
        ("stream", 1, "stream: Input should be a valid boolean"),
        ("temperature", "0.5", "temperature: Input should be a valid number"),
        ("temperature", 7, "temperature: Input should be less than or equal to 2"),
        ("max_output_tokens", 1.5, "max_output_tokens: Input should be a valid integer"),
        ("max_output_tokens", 0, "max_output_tokens: Input should be greater than 0"),
        ("context", {"conversation_id": 42}, "context.conversation_id: Input should be a valid string"),
        ("metadata", {"k": 1}, "metadata.k: Input should be a valid string"),
    ],
)
def test_wrong_types_are_not_coerced(send, field, value, where):
    body = json.dumps({"input": [{"role": "user", "content": "hi"}], field: value}).encode()
    assert_error(*send(body), 400, where)


@pytest.mark.parametrize(
    ("item", "where"),
    [
        ({"role": "wizard", "content": "hi"}, "input[0].role"),
        ({"role": "user", "content": 5}, "input[0].content"),
        ({"role": "user"}, "input[0].content: Field required"),
        ({"type": "bogus", "role": "user", "content": "hi"}, "input[0]: unknown item type"),
        ({"type": {}}, "input[0]: unknown item type"),  # found by the fuzz run: was a 500
        ({"type": 5, "role": "user", "content": "hi"}, "input[0]: unknown item type"),
        ({"type": "function_call", "name": "x", "arguments": {}}, "input[0].call_id: Field required"),
        ([1, 2], "input[0]"),
    ],
)
def test_bad_items_say_which_item_is_wrong(send, item, where):
    assert_error(*send(json.dumps({"input": [item]}).encode()), 400, where)


@pytest.mark.parametrize(
    "input_",
    [[], [{"role": "assistant", "content": "I answer myself"}], [{"role": "system", "content": "be brief"}]],
    ids=["empty", "assistant-only", "system-only"],
)
def test_input_without_a_user_message_is_422_and_never_reaches_the_model(send, input_):
    assert_error(*send(json.dumps({"input": input_}).encode()), 422, "nothing to answer")


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/json; charset=latin-1",
    ],
)
def test_wrong_content_type_is_415(send, content_type):
    status, body = send(GOOD, {"content-type": content_type})
    assert_error(status, body, 415, "Content-Type must be application/json")
    assert body["error"]["type"] == "unsupported_media_type"


def test_json_with_a_json_suffix_media_type_is_accepted(send):
    status, body = send(GOOD, {"content-type": "application/vnd.api+json; charset=utf-8"})
    assert status == 200, body


# -- limits (set through the environment here; the flags in tests/unit/test_serve_config.py) ---------------------


@pytest.fixture
def limited_server(agent_server_factory, scripted_model):
    env = {"KAGENT_MLFLOW_MAX_BODY_BYTES": "4000", "KAGENT_MLFLOW_MAX_INPUT_ITEMS": "20"}
    return agent_server_factory(scripted_model.root, experiment=EXPERIMENT, extra_env=env)


def _raw(server) -> tuple[socket.socket, str]:
    url = urlsplit(server.url)
    return socket.create_connection((url.hostname, url.port), timeout=60), url.netloc


def test_oversize_body_is_413(limited_server, scripted_model):
    sock, host = _raw(limited_server)
    with sock:
        big = json.dumps({"input": [{"role": "user", "content": "x" * 5000}]}).encode()
        assert_error(*exchange(sock, host, big), 413, "larger than the server's limit of 4000 bytes")
        status, _ = exchange(sock, host, GOOD)  # read and dropped: the connection is still usable
        assert status == 200
    assert len(scripted_model.chat_requests()) == 1


def test_oversize_chunked_body_is_413_and_the_connection_stays_usable(limited_server, scripted_model):
    sock, host = _raw(limited_server)
    with sock:
        chunk = b'{"input": "' + b"y" * 3000
        body = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" + b"bb8\r\n" + b"z" * 3000 + b"\r\n0\r\n\r\n"
        head = f"POST /invocations HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
        sock.sendall(head.encode() + b"transfer-encoding: chunked\r\n\r\n" + body)
        assert_error(*read_response(sock), 413, "limit of 4000 bytes")
        assert exchange(sock, host, GOOD)[0] == 200
    assert len(scripted_model.chat_requests()) == 1


def test_too_many_items_is_413(limited_server, scripted_model):
    items = [{"role": "user", "content": str(i)} for i in range(21)]
    sock, host = _raw(limited_server)
    with sock:
        status, body = exchange(sock, host, json.dumps({"input": items}).encode())
        assert_error(status, body, 413, "input has 21 items, more than the server's limit of 20")
        assert body["error"]["type"] == "request_too_large"
        assert exchange(sock, host, json.dumps({"input": items[:20]}).encode())[0] == 200  # at the limit: fine
    assert len(scripted_model.chat_requests()) == 1


def test_the_openai_sdk_shorthand_and_extra_fields_still_work(send):
    status, body = send(json.dumps({"model": "any", "input": "still there?", "store": False, "foo": 1}).encode())
    assert status == 200, body
    assert body["output"][-1]["content"][0]["text"] == "yes"
