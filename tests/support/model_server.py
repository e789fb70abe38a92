"""A deterministic OpenAI-compatible model server that stands in for the model behind Llama Stack and kagent.

Run it::

    python -m tests.support.model_server [--host 127.0.0.1] [--port 0] [--delay-ms D] [--script rules.json]
                                         [--model ID ...]

It prints ``READY http://127.0.0.1:<port>`` on stdout once it listens (port 0 = let the OS pick a free port).
In pytest use the ``model_server`` fixture (session-scoped subprocess) or ``scripted_model`` (the same server,
reset before the test); both give a :class:`ModelServerClient` whose ``.url`` is the ``.../v1`` base URL.

OpenAI API
----------
- ``GET /v1/models`` -> ``{"object": "list", "data": [{"id": "scripted-model", "object": "model", ...}]}``
  (``models`` entries may also be whole objects, e.g. Llama Stack's
  ``{"id": "vllm/x", "custom_metadata": {"model_type": "llm"}}``)
- ``POST /v1/chat/completions`` non-streaming, or streaming with ``"stream": true`` (SSE ``data:`` chunks ending with
  ``data: [DONE]``). Streamed text arrives word by word; tool calls arrive as a header chunk (id, name) followed by
  the arguments in two pieces. With ``stream_options.include_usage`` a final chunk with ``choices: []`` and ``usage``
  is sent; requests without ``stream_options`` get no usage chunk (as OpenAI does). Non-streaming replies always
  carry ``usage``.
- ``usage`` is deterministic: ``prompt_tokens`` = number of whitespace-separated words in all request message
  contents (plus tool-call arguments), ``completion_tokens`` = words in the reply text (or in the tool calls' names and
  arguments), minimum 1 each.
- ``GET /health`` and ``GET /v1/health`` -> ``{"status": "ok"}``.

Script (what the model answers)
-------------------------------
A list of rules; the first matching rule decides. A rule is a JSON object; every key is optional:

Matchers (all given ones must hold):
- ``match``: substring of the last ``user`` message text (case-insensitive).
- ``system``: substring of the system/developer messages (case-insensitive) - tells sub-agents apart.
- ``has_tool``: the request offers a tool with this name.
- ``after_tool``: ``true`` = the last message is a ``tool`` result; ``false`` = it is not.
- ``tool_output``: substring of the trailing tool results (implies ``after_tool``).
- ``model``: exact requested model id.
- ``times``: the rule matches at most this many times (then it is skipped), e.g. fail once then succeed.

Actions:
- ``reply``: assistant text. Placeholders: ``{question}`` (last user text), ``{tool_outputs}`` (trailing tool
  results joined with ``"; "``), ``{model}``.
- ``tool_calls``: ``[{"name": "get_pods", "arguments": {"namespace": "x"}}, ...]`` (``arguments`` may be a string,
  sent verbatim). Ids are deterministic: ``call_<hash of the conversation>_<index>``.
- ``delay_ms``: delay before answering (overrides the server default).
- ``status``: answer with this HTTP status and an OpenAI-style error body (e.g. 500).
- ``hang``: never answer (until ``hang_s`` seconds, default 300, or the server stops); then drop the connection.
- ``malformed``: answer 200 with a body that is not JSON (streaming: a broken ``data:`` line).

Unmatched requests get the default reply ``"Scripted answer to: {question}"``; when the last message is a tool
result, ``"Scripted answer to: {question} | tool results: {tool_outputs}"``. Both are settable.

Admin API (for tests)
---------------------
- ``POST /_script`` with either a bare list of rules or ``{"rules": [...], "delay_ms": D, "default_reply": T,
  "default_tool_reply": T, "models": [...], "chunk_delay_ms": C}``. Rules are replaced; other keys are set if given.
- ``GET /_script`` -> the current configuration.
- ``POST /_reset`` -> clear rules, recorded requests and counters; restore the start-up defaults.
- ``GET /_requests`` -> ``[{"method", "path", "headers": {...lower-case...}, "body": <parsed JSON or null>}, ...]``
  for every ``/v1/*`` request received, in order. ``DELETE /_requests`` clears them.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

DEFAULT_MODEL = "scripted-model"
DEFAULT_REPLY = "Scripted answer to: {question}"
DEFAULT_TOOL_REPLY = "Scripted answer to: {question} | tool results: {tool_outputs}"
CREATED = 1_700_000_000  # fixed timestamp: replies are byte-for-byte deterministic

# --------------------------------------------------------------------------------------------------------------
# Pure logic: text extraction, rule matching, reply building (no I/O, easy to unit test)
# --------------------------------------------------------------------------------------------------------------


def content_text(content: Any) -> str:
    """Text of an OpenAI message ``content`` (a string or a list of parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict):
                parts.append(str(part.get("text") or ""))
            else:
                parts.append(str(part))
        return "".join(parts)
    return str(content)


def count_words(text: str) -> int:
    return len(text.split())


def prompt_tokens(messages: list[dict]) -> int:
    total = 0
    for msg in messages:
        total += count_words(content_text(msg.get("content")))
        for call in msg.get("tool_calls") or []:
            fn = call.get("function") or {}
            total += count_words(str(fn.get("arguments") or ""))
    return max(total, 1)


def last_user_text(messages: list[dict]) -> str:
    for msg in reversed(messages):
        if msg.get("role") == "user":
            return content_text(msg.get("content"))
    return ""


def trailing_tool_outputs(messages: list[dict]) -> list[str]:
    """Contents of the tool messages at the end of the conversation (the results of the last tool-call round)."""
    outputs: list[str] = []
    for msg in reversed(messages):
        if msg.get("role") != "tool":
            break
        outputs.append(content_text(msg.get("content")))
    return list(reversed(outputs))


def system_text(messages: list[dict]) -> str:
    return "\n".join(content_text(m.get("content")) for m in messages if m.get("role") in ("system", "developer"))


def rule_matches(rule: dict, body: dict) -> bool:
    messages = body.get("messages") or []
    after_tool = bool(messages) and messages[-1].get("role") == "tool"
    if "match" in rule and str(rule["match"]).lower() not in last_user_text(messages).lower():
        return False
    if "system" in rule and str(rule["system"]).lower() not in system_text(messages).lower():
        return False
    if "has_tool" in rule:
        names = {(t.get("function") or {}).get("name") for t in body.get("tools") or []}
        if rule["has_tool"] not in names:
            return False
    if "after_tool" in rule and bool(rule["after_tool"]) != after_tool:
        return False
    if "tool_output" in rule:
        if not after_tool:
            return False
        if str(rule["tool_output"]).lower() not in "; ".join(trailing_tool_outputs(messages)).lower():
            return False
    if "model" in rule and rule["model"] != body.get("model"):
        return False
    return True


def fill(template: str, body: dict) -> str:
    messages = body.get("messages") or []
    return (
        template.replace("{question}", last_user_text(messages))
        .replace("{tool_outputs}", "; ".join(trailing_tool_outputs(messages)))
        .replace("{model}", str(body.get("model") or ""))
    )


def conversation_hash(body: dict) -> str:
    raw = json.dumps(body.get("messages") or [], sort_keys=True, default=str)
    return hashlib.sha1(raw.encode()).hexdigest()[:12]


def build_tool_calls(rule: dict, body: dict) -> list[dict]:
    digest = conversation_hash(body)
    calls = []
    for i, spec in enumerate(rule.get("tool_calls") or []):
        args = spec.get("arguments", {})
        arguments = args if isinstance(args, str) else json.dumps(args, sort_keys=True)
        calls.append(
            {
                "id": spec.get("id") or f"call_{digest}_{i}",
                "type": "function",
                "function": {"name": spec["name"], "arguments": arguments},
            }
        )
    return calls


def split_stream_text(text: str) -> list[str]:
    """Word-sized pieces whose concatenation is exactly ``text``."""
    pieces = [p for p in re.split(r"(?<=\s)(?=\S)", text) if p]
    return pieces or [""]


class Script:
    """The mutable, thread-safe behaviour of the server: rules, defaults and the request log."""

    def __init__(
        self,
        rules: list[dict] | None = None,
        delay_ms: float = 0.0,
        models: list[str] | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._initial = {"rules": list(rules or []), "delay_ms": delay_ms, "models": list(models or [DEFAULT_MODEL])}
        self.requests: list[dict] = []
        self._apply_defaults()

    def _apply_defaults(self) -> None:
        self.rules: list[dict] = copy.deepcopy(self._initial["rules"])
        self.uses: list[int] = [0] * len(self.rules)
        self.delay_ms: float = float(self._initial["delay_ms"])
        self.chunk_delay_ms: float = 0.0
        self.models: list[Any] = list(self._initial["models"])
        self.default_reply = DEFAULT_REPLY
        self.default_tool_reply = DEFAULT_TOOL_REPLY

    def reset(self) -> None:
        with self._lock:
            self._apply_defaults()
            self.requests.clear()

    def configure(self, payload: Any) -> None:
        if isinstance(payload, list):
            payload = {"rules": payload}
        if not isinstance(payload, dict):
            raise ValueError("script must be a list of rules or an object with 'rules'")
        with self._lock:
            if "rules" in payload:
                rules = payload["rules"]
                if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
                    raise ValueError("'rules' must be a list of objects")
                self.rules = copy.deepcopy(rules)
                self.uses = [0] * len(self.rules)
            for key in ("delay_ms", "chunk_delay_ms"):
                if key in payload:
                    setattr(self, key, float(payload[key]))
            for key in ("default_reply", "default_tool_reply"):
                if key in payload:
                    setattr(self, key, str(payload[key]))
            if "models" in payload:
                self.models = [m if isinstance(m, dict) else str(m) for m in payload["models"]]

    def snapshot(self) -> dict:
        with self._lock:
            return {
                "rules": copy.deepcopy(self.rules),
                "uses": list(self.uses),
                "delay_ms": self.delay_ms,
                "chunk_delay_ms": self.chunk_delay_ms,
                "models": list(self.models),
                "default_reply": self.default_reply,
                "default_tool_reply": self.default_tool_reply,
            }

    def record(self, entry: dict) -> None:
        with self._lock:
            self.requests.append(entry)

    def pick(self, body: dict) -> dict:
        """The rule that answers ``body`` (a synthetic default-reply rule when none matches)."""
        with self._lock:
            for i, rule in enumerate(self.rules):
                if "times" in rule and self.uses[i] >= int(rule["times"]):
                    continue
                if rule_matches(rule, body):
                    self.uses[i] += 1
                    return rule
            messages = body.get("messages") or []
            after_tool = bool(messages) and messages[-1].get("role") == "tool"
            return {"reply": self.default_tool_reply if after_tool else self.default_reply}


def completion(rule: dict, body: dict) -> dict:
    """The non-streaming chat.completion object for ``rule``."""
    messages = body.get("messages") or []
    tool_calls = build_tool_calls(rule, body)
    message: dict[str, Any] = {"role": "assistant", "content": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
        out_words = sum(count_words(c["function"]["name"] + " " + c["function"]["arguments"]) for c in tool_calls)
        finish = "tool_calls"
        if rule.get("reply"):
            message["content"] = fill(rule["reply"], body)
            out_words += count_words(message["content"])
    else:
        message["content"] = fill(rule.get("reply") or "", body)
        out_words = count_words(message["content"])
        finish = "stop"
    usage = usage_for(prompt_tokens(messages), out_words)
    return {
        "id": f"chatcmpl-{conversation_hash(body)}",
        "object": "chat.completion",
        "created": CREATED,
        "model": body.get("model") or DEFAULT_MODEL,
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": usage,
    }


def usage_for(prompt: int, completion_words: int) -> dict:
    completion_tokens = max(completion_words, 1)
    return {"prompt_tokens": prompt, "completion_tokens": completion_tokens, "total_tokens": prompt + completion_tokens}


def stream_chunks(rule: dict, body: dict) -> Iterator[dict]:
    """The chat.completion.chunk objects for ``rule``; they aggregate to :func:`completion`'s message."""
    full = completion(rule, body)
    message = full["choices"][0]["message"]
    base = {"id": full["id"], "object": "chat.completion.chunk", "created": CREATED, "model": full["model"]}

    def chunk(delta: dict, finish: str | None = None) -> dict:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}

    yield chunk({"role": "assistant", "content": ""})
    if message.get("content"):
        for piece in split_stream_text(message["content"]):
            yield chunk({"content": piece})
    for i, call in enumerate(message.get("tool_calls") or []):
        header = {"index": i, "id": call["id"], "type": "function"}
        yield chunk({"tool_calls": [{**header, "function": {"name": call["function"]["name"], "arguments": ""}}]})
        args = call["function"]["arguments"]
        half = len(args) // 2
        for piece in (args[:half], args[half:]):
            if piece:
                yield chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
    yield chunk({}, full["choices"][0]["finish_reason"])
    if (body.get("stream_options") or {}).get("include_usage"):
        yield {**base, "choices": [], "usage": full["usage"]}


# --------------------------------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # the default backlog of 5 stalls many concurrent clients on SYN retries
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], script: Script) -> None:
        super().__init__(address, _Handler)
        self.script = script
        self.stopping = threading.Event()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two sends; avoid the ~40 ms delayed-ACK stall

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    # -- plumbing ---------------------------------------------------------------------------------------------

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, payload: Any, content_type: str = "application/json") -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        self._send(status, {"error": {"message": message, "type": kind, "code": status}})

    def _record(self, body: Any) -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.server.script.record({"method": self.command, "path": self.path, "headers": headers, "body": body})

    # -- routes -----------------------------------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        path = self.path.split("?", 1)[0].rstrip("/")
        script = self.server.script
        if path in ("/health", "/v1/health"):
            self._send(200, {"status": "ok"})
        elif path == "/v1/models":
            self._record(None)
            data = [
                {"object": "model", "created": CREATED, "owned_by": "kagent-mlflow-tests", **m}
                if isinstance(m, dict)
                else {"id": m, "object": "model", "created": CREATED, "owned_by": "kagent-mlflow-tests"}
                for m in script.snapshot()["models"]
            ]
            self._send(200, {"object": "list", "data": data})
        elif path == "/_requests":
            with script._lock:
                self._send(200, list(script.requests))
        elif path == "/_script":
            self._send(200, script.snapshot())
        else:
            self._error(404, f"no route GET {path}")

    def do_DELETE(self) -> None:  # noqa: N802
        if self.path.rstrip("/") == "/_requests":
            with self.server.script._lock:
                self.server.script.requests.clear()
            self._send(200, {"ok": True})
        else:
            self._error(404, f"no route DELETE {self.path}")

    def do_POST(self) -> None:  # noqa: N802
        path = self.path.split("?", 1)[0].rstrip("/")
        raw = self._read_body()
        try:
            body = json.loads(raw) if raw else None
        except json.JSONDecodeError as exc:
            if path.startswith("/v1/"):
                self._record(raw.decode(errors="replace"))
            self._error(400, f"request body is not JSON: {exc}")
            return
        script = self.server.script
        if path == "/_script":
            try:
                script.configure(body)
            except (ValueError, TypeError) as exc:
                self._error(400, str(exc))
                return
            self._send(200, script.snapshot())
        elif path == "/_reset":
            script.reset()
            self._send(200, {"ok": True})
        elif path == "/v1/chat/completions":
            self._record(body)
            self._chat(body)
        else:
            if path.startswith("/v1/"):
                self._record(body)
            self._error(404, f"no route POST {path}")

    def _chat(self, body: Any) -> None:
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
            self._error(400, "'messages' must be a non-empty list")
            return
        script = self.server.script
        rule = script.pick(body)
        delay = float(rule.get("delay_ms", script.delay_ms))
        if delay > 0:
            time.sleep(delay / 1000)
        if rule.get("hang"):
            self.server.stopping.wait(float(rule.get("hang_s", 300)))
            self.close_connection = True
            return
        if rule.get("status"):
            self._error(int(rule["status"]), f"scripted failure (HTTP {rule['status']})", "server_error")
            return
        if body.get("stream"):
            self._stream(rule, body)
            return
        if rule.get("malformed"):
            self._send(200, b'{"id": "chatcmpl-broken", "choices": [ this is not json')
            return
        self._send(200, completion(rule, body))

    def _stream(self, rule: dict, body: dict) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        chunk_delay = float(self.server.script.chunk_delay_ms) / 1000
        try:
            if rule.get("malformed"):
                self.wfile.write(b"data: {not json at all\n\n")
            else:
                for chunk in stream_chunks(rule, body):
                    self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
                    self.wfile.flush()
                    if chunk_delay:
                        time.sleep(chunk_delay)
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass


class ModelServer:
    """The server in this process, on a background thread (for unit tests; integration tests use the subprocess)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        rules: list[dict] | None = None,
        delay_ms: float = 0.0,
        models: list[str] | None = None,
    ) -> None:
        self.script = Script(rules, delay_ms, models)
        self.httpd = _Server((host, port), self.script)
        self.thread: threading.Thread | None = None

    @property
    def root(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> ModelServerClient:
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="model-server", daemon=True)
        self.thread.start()
        return ModelServerClient(self.root)

    def stop(self) -> None:
        self.httpd.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        if self.thread:
            self.thread.join(timeout=5)

    def __enter__(self) -> ModelServerClient:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------------------------------------------
# Client for tests (stdlib only, so any venv can use it)
# --------------------------------------------------------------------------------------------------------------


class ModelServerClient:
    """Programs and inspects a running model server. ``url`` is the OpenAI base URL (``.../v1``)."""

    def __init__(self, root: str, process: subprocess.Popen | None = None) -> None:
        self.root = root.rstrip("/")
        self.url = f"{self.root}/v1"
        self.process = process
        self.model = DEFAULT_MODEL

    def _call(self, method: str, path: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(self.root + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read() or b"null")

    def set_script(self, rules: list[dict] | None = None, **config: Any) -> dict:
        """Replace the rules (when given) and set ``delay_ms``, ``default_reply``, ``models``... (when given)."""
        payload = dict(config)
        if rules is not None:
            payload["rules"] = rules
        return self._call("POST", "/_script", payload)

    def script(self) -> dict:
        return self._call("GET", "/_script")

    def reset(self) -> None:
        self._call("POST", "/_reset", {})

    def requests(self) -> list[dict]:
        return self._call("GET", "/_requests")

    def chat_requests(self) -> list[dict]:
        """Bodies of the ``/v1/chat/completions`` requests received, in order."""
        return [r["body"] for r in self.requests() if r["path"].startswith("/v1/chat/completions")]

    def clear_requests(self) -> None:
        self._call("DELETE", "/_requests")


def start_subprocess(
    delay_ms: float = 0.0, script_file: str | Path | None = None, extra_args: list[str] | None = None
) -> ModelServerClient:
    """Start ``python -m tests.support.model_server`` on a free port; stop it with :func:`stop_subprocess`."""
    repo_root = Path(__file__).resolve().parents[2]
    cmd = [sys.executable, "-u", "-m", "tests.support.model_server", "--port", "0", "--delay-ms", str(delay_ms)]
    if script_file:
        cmd += ["--script", str(script_file)]
    cmd += extra_args or []
    errors = tempfile.TemporaryFile(mode="w+")  # a file, not a pipe: a chatty server can never block on it
    proc = subprocess.Popen(cmd, cwd=repo_root, stdout=subprocess.PIPE, stderr=errors, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # blocks until READY or exit
    if not line.startswith("READY "):
        proc.kill()
        proc.wait(timeout=5)
        errors.seek(0)
        raise RuntimeError(f"model server did not start: {line!r} {errors.read()[-2000:]}")
    return ModelServerClient(line.split()[1], process=proc)


def stop_subprocess(client: ModelServerClient) -> None:
    proc = client.process
    if proc is None:
        return
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    if proc.stdout:
        proc.stdout.close()


# --------------------------------------------------------------------------------------------------------------
# pytest fixtures (loaded through pytest_plugins in tests/conftest.py)
# --------------------------------------------------------------------------------------------------------------

try:
    import pytest
except ImportError:  # pragma: no cover - the CLI runs without pytest
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture(scope="session")
    def model_server() -> Iterator[ModelServerClient]:
        """The deterministic model server as a real subprocess on 127.0.0.1, shared by the session."""
        client = start_subprocess()
        try:
            yield client
        finally:
            stop_subprocess(client)

    @pytest.fixture
    def scripted_model(model_server: ModelServerClient) -> Iterator[ModelServerClient]:
        """The session model server, reset (no rules, no delay, no recorded requests) for this test and after it,
        so a script (e.g. a model listing) never leaks into servers started later in the session (Llama Stack)."""
        model_server.reset()
        yield model_server
        model_server.reset()


# --------------------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Deterministic OpenAI-compatible model server for tests.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = a free port chosen by the OS")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="delay before every answer")
    parser.add_argument("--script", help="JSON file: a list of rules or {'rules': [...], ...}")
    parser.add_argument("--model", action="append", help="model id listed by /v1/models (repeatable)")
    args = parser.parse_args(argv)
    server = ModelServer(args.host, args.port, delay_ms=args.delay_ms, models=args.model)
    if args.script:
        try:
            payload = json.loads(Path(args.script).read_text())
            server.script.configure(payload)
            server.script._initial.update(
                {"rules": server.script.rules, "delay_ms": server.script.delay_ms, "models": server.script.models}
            )
        except (OSError, ValueError) as exc:
            print(f"error: cannot load script {args.script}: {exc}", file=sys.stderr)
            return 2
    print(f"READY {server.root}", flush=True)
    try:
        server.httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.httpd.stopping.set()
        server.httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
