"""Real A2A servers on 127.0.0.1 for the client tests: a deterministic a2a-sdk 1.x agent, and misbehaving servers.

**The agent** (``a2a_agent`` fixture, session scoped) is a subprocess built on a2a-sdk 1.x SERVER classes
(``DefaultRequestHandler``, ``create_jsonrpc_routes``, ``create_agent_card_routes``) under uvicorn. The fixture
returns an :class:`A2AAgent`; ``a2a_agent.url`` (``http://127.0.0.1:PORT/``) is a protocol **1.0** agent named
``test-agent`` serving its card at ``/.well-known/agent-card.json``. It answers in a few ms with a completed task
whose artifact is ``Answer to: <question>`` and whose ``metadata.kagent_usage_metadata`` is
``{promptTokenCount: words in question, candidatesTokenCount: words in answer, totalTokenCount: their sum}``.
Keywords in the question select other behaviours (see :data:`BEHAVIOURS`): ``[message]`` direct Message result,
``[fail]`` failed, ``[reject]`` rejected, ``[cancel]`` canceled, ``[input]`` input-required, ``[empty]`` completed
with an artifact without parts, ``[tool]`` kagent-style function call/response data parts, ``[slow:MS]`` waits MS
milliseconds first, ``[auth]`` answers with the Authorization header it received, ``[chunks]`` sends the answer as
an artifact in one-word chunks (``append``), ``[long:MS]`` reports a tool call and then a working update every 100 ms
for MS milliseconds before answering (a long task; ``tasks/cancel`` cancels it). A message sent into an existing task
(the reply to ``[input]``) is answered ``Answer to: <reply> (continuing task <id>)``.

The same process serves two more faces of the same agent: ``a2a_agent.incluster_url`` (``/incluster/``) whose card
advertises an unreachable in-cluster URL, as kagent's controller does, and ``a2a_agent.v03_url`` (``/v03/``), an
A2A **0.3** agent (a2a-sdk's v0.3 compatibility layer) serving only the legacy ``/.well-known/agent.json`` card.
``a2a_agent.stream_url`` (``/stream/``) is the same agent with a card that says it streams (``message/stream``).

From a plain script (benchmarks): ``python -m tests.support.a2a_agents [--port N] [--name NAME]`` prints
``A2A agent listening on http://127.0.0.1:N/`` on its first stdout line and serves until killed; or call
:func:`start_agent` (returns an :class:`A2AAgent`; ``.stop()`` it).

**Misbehaving servers** (``a2a_bad_server`` fixture, session scoped, an in-process ``http.server``):
``a2a_bad_server.url(route)`` for route in :data:`BAD_ROUTES` -- ``http500``, ``http404``, ``notjson``,
``rpcerror`` (JSON-RPC error -32602 as kagent sends it for a missing messageId), ``badresult``, ``hang`` (never
answers), ``v03only`` (no card, A2A 0.3 JSON-RPC only, kagent-shaped replies; ``[working]`` in the question makes
``message/send`` return a working task that ``tasks/get`` then reports completed; ``[stuck]`` keeps it working),
``legacy`` (only the legacy ``agent.json`` card, 0.3), ``echo`` (0.3, echoes the Authorization header), ``sse``
(0.3, its card says it streams; ``message/stream`` misbehaves as :data:`SSE_BEHAVIOURS` in the question say: a dropped
connection, ``tasks/resubscribe`` served only for ``[resub]``, a 5 MB event, invalid UTF-8, events after the final
one, a malformed event, a JSON-RPC error event, no events, CRLF line ends, "method not found" for message/stream).
``a2a_bad_server.requests`` records (path, headers, JSON body) of every POST. ``unreachable_url`` is a URL where
nothing accepts connections.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from a2a.server.agent_execution import AgentExecutor

REPO = Path(__file__).resolve().parents[2]
AGENT_NAME = "test-agent"
INCLUSTER_URL = "http://kagent-controller.kagent:8083/api/a2a/kagent/test-agent/"
BEHAVIOURS = ("[message]", "[fail]", "[reject]", "[cancel]", "[input]", "[empty]", "[tool]", "[slow:MS]", "[auth]")
BAD_ROUTES = ("http500", "http404", "notjson", "rpcerror", "badresult", "hang", "v03only", "legacy", "echo", "sse")
# Keywords the ``sse`` route (A2A 0.3, card says it streams) reads in the question: how its message/stream misbehaves.
SSE_BEHAVIOURS = ("[drop]", "[resub]", "[huge]", "[badutf8]", "[afterfinal]", "[malformed]", "[errorevent]",
                  "[unsupported]", "[noevents]", "[crlf]")  # fmt: skip
HUGE_EVENT_BYTES = 5 * 1024 * 1024
INPUT_QUESTION = "Which namespace do you mean?"


def answer_for(question: str) -> str:
    return f"Answer to: {question}"


def usage_for(question: str, answer: str) -> dict[str, int]:
    """The usage the agent reports: word counts, so tests can compute what to expect."""
    prompt, candidates = len(question.split()), len(answer.split())
    return {"promptTokenCount": prompt, "candidatesTokenCount": candidates, "totalTokenCount": prompt + candidates}


# ---------------------------------------------------------------------------------------------------------------------
# The a2a-sdk 1.x agent (runs in its own process)
# ---------------------------------------------------------------------------------------------------------------------


def build_app(base_url: str, name: str = AGENT_NAME) -> Any:
    """The Starlette app: the 1.0 agent at ``/``, its in-cluster-card twin at ``/incluster/``, 0.3 at ``/v03/``."""
    from a2a.server.request_handlers import DefaultRequestHandler
    from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
    from a2a.server.tasks import InMemoryTaskStore
    from a2a.types.a2a_pb2 import AgentCapabilities, AgentCard, AgentInterface, AgentSkill
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Mount, Route

    def card(url: str, version: str, streaming: bool = False) -> AgentCard:
        return AgentCard(
            name=name,
            description="Deterministic A2A test agent (kagent-mlflow tests).",
            version="1.0.0",
            capabilities=AgentCapabilities(streaming=streaming),
            default_input_modes=["text"],
            default_output_modes=["text"],
            skills=[AgentSkill(id="answer", name="Answer", description="Answers any question.", tags=["test"])],
            supported_interfaces=[AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version=version)],
        )

    store = InMemoryTaskStore()
    executor = ScriptedExecutor()

    def face(card_obj: AgentCard) -> list[Any]:
        handler = DefaultRequestHandler(agent_executor=executor, task_store=store, agent_card=card_obj)
        return create_agent_card_routes(card_obj) + create_jsonrpc_routes(handler, "/", enable_v0_3_compat=True)

    legacy_card = {  # what an a2a-sdk 0.3 agent serves at the legacy path
        "name": name,
        "description": "Deterministic A2A test agent, protocol 0.3 face.",
        "url": f"{base_url}v03/",
        "protocolVersion": "0.3.0",
        "preferredTransport": "JSONRPC",
        "version": "1.0.0",
        "capabilities": {"streaming": False},
        "defaultInputModes": ["text"],
        "defaultOutputModes": ["text"],
        "skills": [{"id": "answer", "name": "Answer", "description": "Answers any question.", "tags": ["test"]}],
    }
    v03_handler = DefaultRequestHandler(agent_executor=executor, task_store=store, agent_card=card(base_url, "1.0"))

    async def legacy(_request: Any) -> JSONResponse:
        return JSONResponse(legacy_card)

    v03_routes = [Route("/.well-known/agent.json", legacy, methods=["GET"])] + create_jsonrpc_routes(
        v03_handler, "/", enable_v0_3_compat=True
    )
    return Starlette(
        routes=[
            Mount("/incluster", routes=face(card(INCLUSTER_URL, "1.0"))),
            Mount("/stream", routes=face(card(f"{base_url}stream/", "1.0", streaming=True))),
            Mount("/v03", routes=v03_routes),
            *face(card(base_url, "1.0")),
        ]
    )


class ScriptedExecutor(AgentExecutor):
    """Answers deterministically; keywords in the question pick the behaviour (see the module docstring)."""

    async def execute(self, context: Any, event_queue: Any) -> None:
        from a2a.helpers import new_task_from_user_message, new_text_part
        from a2a.server.tasks import TaskUpdater
        from a2a.types.a2a_pb2 import Message, Role, TaskState

        question = context.get_user_input()
        lowered = question.lower()
        slow = re.search(r"\[slow:(\d+)\]", lowered)
        if slow:
            await asyncio.sleep(int(slow.group(1)) / 1000)
        if context.current_task is not None and re.search(r"\[long:\d+\]", lowered):
            return  # a reply to a task still running: nothing to do
        answer = answer_for(question)
        if "[auth]" in lowered:
            headers = context.call_context.state.get("headers", {})
            answer = f"Authorization: {headers.get('authorization', '<none>')}"
        usage = {"kagent_usage_metadata": usage_for(question, answer)}

        def said(text: str) -> dict[str, Any]:  # usage of a reply that says ``text`` instead of the answer
            return {"kagent_usage_metadata": usage_for(question, text)}

        if "[message]" in lowered:
            message = Message(
                role=Role.ROLE_AGENT,
                message_id=uuid.uuid4().hex,
                context_id=context.context_id,
                parts=[new_text_part(answer)],
            )
            message.metadata.update(usage)
            await event_queue.enqueue_event(message)
            return

        task = context.current_task or new_task_from_user_message(context.message)
        await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue, task.id, task.context_id)
        long = re.search(r"\[long:(\d+)\]", lowered)
        if long:  # a long task: a working update every 100 ms (with a tool call on the first) until MS have passed
            await self._long_task(updater, int(long.group(1)) / 1000)
        if context.current_task is not None and "[input]" not in lowered:
            answer = f"Answer to: {question} (continuing task {task.id})"  # the user's reply to input-required
            usage = {"kagent_usage_metadata": usage_for(question, answer)}

        def agent_message(text: str, metadata: dict[str, Any] | None = None) -> Any:
            return updater.new_agent_message([new_text_part(text)], metadata=metadata)

        if "[fail]" in lowered:
            failure = f"Scripted failure for: {question}"
            await updater.failed(agent_message(failure, said(failure)))
        elif "[reject]" in lowered:
            await updater.reject(agent_message("I do not answer questions like that."))
        elif "[cancel]" in lowered:
            await updater.cancel(agent_message("Canceled by the agent."))
        elif "[input]" in lowered:
            await updater.requires_input(agent_message(INPUT_QUESTION, said(INPUT_QUESTION)))
        elif "[empty]" in lowered:
            await updater.add_artifact([], name="answer")
            await updater.update_status(TaskState.TASK_STATE_COMPLETED, metadata=usage)
        elif "[tool]" in lowered:
            await self._tool_round(updater, question, answer, usage)
        elif "[chunks]" in lowered:  # the answer as an artifact sent in chunks, one word each
            words = answer.split(" ")
            artifact_id = uuid.uuid4().hex
            for index, word in enumerate(words):
                text = word if index == 0 else " " + word
                last = index == len(words) - 1
                await updater.add_artifact([new_text_part(text)], artifact_id=artifact_id, name="answer",
                                           append=index > 0, last_chunk=last)  # fmt: skip
                await asyncio.sleep(0.02)
            await updater.update_status(TaskState.TASK_STATE_COMPLETED, metadata=usage)
        else:
            await updater.add_artifact([new_text_part(answer)], name="answer")
            await updater.update_status(TaskState.TASK_STATE_COMPLETED, metadata=usage)

    @staticmethod
    async def _tool_round(updater: Any, question: str, answer: str, usage: dict[str, Any]) -> None:
        """kagent-style: the call and the response as data parts (metadata ``kagent_type``) in history."""
        from a2a.helpers import new_data_part, new_text_part
        from a2a.types.a2a_pb2 import TaskState

        call_id = "call_test_0"
        call = new_data_part({"id": call_id, "name": "get_pods", "args": {"namespace": "default"}})
        call.metadata.update({"kagent_type": "function_call"})
        first_usage = {
            "kagent_usage_metadata": {"promptTokenCount": 5, "candidatesTokenCount": 1, "totalTokenCount": 6}
        }
        await updater.update_status(TaskState.TASK_STATE_WORKING, updater.new_agent_message([call], first_usage))
        response = new_data_part({"id": call_id, "name": "get_pods", "response": {"result": "web-1, web-2"}})
        response.metadata.update({"kagent_type": "function_response"})
        await updater.update_status(TaskState.TASK_STATE_WORKING, updater.new_agent_message([response]))
        final = updater.new_agent_message([new_text_part(answer)], usage)
        await updater.update_status(TaskState.TASK_STATE_WORKING, final)
        await updater.add_artifact([new_text_part(answer)], name="answer")
        await updater.update_status(TaskState.TASK_STATE_COMPLETED, metadata=usage)

    @staticmethod
    async def _long_task(updater: Any, seconds: float) -> None:
        from a2a.helpers import new_data_part
        from a2a.types.a2a_pb2 import TaskState

        call = new_data_part({"id": "call_long_0", "name": "collect_metrics", "args": {"window": "5m"}})
        call.metadata.update({"kagent_type": "function_call"})
        await updater.update_status(TaskState.TASK_STATE_WORKING, updater.new_agent_message([call]))
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await asyncio.sleep(min(0.1, max(deadline - time.monotonic(), 0)))
            await updater.update_status(TaskState.TASK_STATE_WORKING)

    async def cancel(self, context: Any, event_queue: Any) -> None:
        from a2a.server.tasks import TaskUpdater

        await TaskUpdater(event_queue, context.task_id, context.context_id).cancel()


def tcp_listener(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening socket created with proto IPPROTO_TCP.

    asyncio sets TCP_NODELAY on accepted connections only when the listening socket's ``proto`` is IPPROTO_TCP;
    a plain ``socket.socket()`` has proto 0, and every reply then waits ~40 ms for a delayed ACK.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    return sock


def serve(port: int = 0, host: str = "127.0.0.1", name: str = AGENT_NAME) -> None:
    """Run the agent until killed; the first stdout line names its URL."""
    import logging

    import uvicorn

    logging.getLogger("a2a").setLevel(logging.ERROR)  # the card-compliance warnings are noise here
    sock = tcp_listener(host, port)
    base_url = f"http://{host}:{sock.getsockname()[1]}/"
    server = uvicorn.Server(
        uvicorn.Config(build_app(base_url, name), log_level="warning", access_log=False, backlog=1024, lifespan="off")
    )
    print(f"A2A agent listening on {base_url}", flush=True)
    server.run(sockets=[sock])


@dataclass
class A2AAgent:
    """A running a2a-sdk 1.x test agent (subprocess)."""

    url: str  # the 1.0 agent: http://127.0.0.1:PORT/
    process: subprocess.Popen

    @property
    def incluster_url(self) -> str:
        """The same agent, but its card advertises an unreachable in-cluster URL (as kagent's do)."""
        return f"{self.url}incluster/"

    @property
    def stream_url(self) -> str:
        """The same agent with a card that says it streams (``message/stream``)."""
        return f"{self.url}stream/"

    @property
    def v03_url(self) -> str:
        """The same agent speaking A2A 0.3, with only the legacy ``/.well-known/agent.json`` card."""
        return f"{self.url}v03/"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if self.process.stdout:
            self.process.stdout.close()


def start_agent(name: str = AGENT_NAME, timeout: float = 60.0) -> A2AAgent:
    """Start the agent as a subprocess on a free port and wait until it serves its card."""
    import httpx

    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.a2a_agents", "--port", "0", "--name", name],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=None,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    line = ""
    while time.monotonic() < deadline and process.poll() is None:
        ready, _, _ = select.select([process.stdout], [], [], 0.2)
        if ready:
            line = process.stdout.readline()
            break
    match = re.search(r"listening on (\S+)", line)
    if not match:
        process.kill()
        process.wait(timeout=5)
        raise RuntimeError(f"A2A test agent did not start (exit code {process.poll()}, first line {line!r})")
    agent = A2AAgent(match.group(1), process)
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{agent.url}.well-known/agent-card.json", timeout=2).status_code == 200:
                return agent
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    agent.stop()
    raise RuntimeError(f"A2A test agent at {agent.url} did not serve its card within {timeout:g} s")


# ---------------------------------------------------------------------------------------------------------------------
# Misbehaving servers (in-process http.server)
# ---------------------------------------------------------------------------------------------------------------------


def kagent_task(question: str, state: str = "completed", task_id: str | None = None) -> dict[str, Any]:
    """A 0.3 task shaped like the kagent runtime's (answer artifact, usage on the task and the agent message)."""
    task_id = task_id or uuid.uuid4().hex
    context_id = "ctx-" + task_id[:8]
    answer = answer_for(question)
    usage = {"kagent_usage_metadata": usage_for(question, answer)}
    user = {"kind": "message", "messageId": uuid.uuid4().hex, "role": "user", "taskId": task_id,
            "contextId": context_id, "parts": [{"kind": "text", "text": question}]}  # fmt: skip
    task: dict[str, Any] = {
        "kind": "task",
        "id": task_id,
        "contextId": context_id,
        "status": {"state": state, "timestamp": "2026-01-01T00:00:00+00:00"},
        "history": [user, user],
        "metadata": {"kagent_app_name": "kagent__NS__bad", **({} if state != "completed" else usage)},
    }
    if state == "completed":
        task["artifacts"] = [{"artifactId": uuid.uuid4().hex, "parts": [{"kind": "text", "text": answer}]}]
        task["history"].append({"kind": "message", "messageId": uuid.uuid4().hex, "role": "agent", "taskId": task_id,
                                "contextId": context_id, "metadata": usage,
                                "parts": [{"kind": "text", "text": answer}]})  # fmt: skip
    return task


LEGACY_CARD = {
    "name": "legacy-agent",
    "description": "Serves only the legacy card path.",
    "url": "http://kagent-controller.kagent:8083/api/a2a/kagent/legacy-agent/",
    "protocolVersion": "0.3.0",
    "preferredTransport": "JSONRPC",
    "version": "0.1.0",
    "capabilities": {"streaming": True},
    "defaultInputModes": ["text"],
    "defaultOutputModes": ["text"],
    "skills": [],
}


class _BadHandler(BaseHTTPRequestHandler):
    server: BadServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def _send(self, status: int, body: bytes | str | dict, content_type: str = "application/json") -> None:
        data = json.dumps(body).encode() if isinstance(body, dict) else body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self) -> tuple[str, str]:
        parts = self.path.strip("/").split("/", 1)
        return parts[0], (parts[1] if len(parts) > 1 else "")

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        route, rest = self._route()
        if route == "http500":
            self._send(500, "internal failure of the test server", "text/plain")
        elif route == "notjson":
            self._send(200, "<html><body>not an agent</body></html>", "text/html")
        elif route == "legacy" and rest == ".well-known/agent.json":
            self._send(200, LEGACY_CARD)
        elif route == "sse" and rest == ".well-known/agent.json":
            self._send(200, {**LEGACY_CARD, "name": "sse-agent", "url": f"{self.server.base}/sse/"})
        else:
            self._send(404, "not found", "text/plain")

    def do_POST(self) -> None:  # noqa: N802
        route, _ = self._route()
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            body = None
        self.server.requests.append((self.path, dict(self.headers), body))
        rpc_id = body.get("id") if isinstance(body, dict) else None
        if route == "http500":
            self._send(500, "internal failure of the test server", "text/plain")
        elif route == "http404":
            self._send(404, "no agent here", "text/plain")
        elif route == "notjson":
            self._send(200, "<html><body>not an agent</body></html>", "text/html")
        elif route == "rpcerror":
            missing = {"type": "missing", "loc": ["params", "message", "messageId"], "msg": "Field required"}
            error = {"code": -32602, "message": "Invalid parameters", "data": [missing]}
            self._send(200, {"jsonrpc": "2.0", "id": rpc_id, "error": error})
        elif route == "badresult":
            self._send(200, {"jsonrpc": "2.0", "id": rpc_id, "result": "just a string"})
        elif route == "hang":
            self.server.stopping.wait(120)
        elif route in ("v03only", "legacy", "echo"):
            self._jsonrpc_03(body, rpc_id, route)
        elif route == "sse":
            if isinstance(body, dict) and body.get("method") == "message/stream":
                self._stream_03(body, rpc_id)
            elif isinstance(body, dict) and body.get("method") == "tasks/resubscribe":
                self._resubscribe_03(body, rpc_id)
            else:
                self._jsonrpc_03(body, rpc_id, route)
        else:
            self._send(404, "no such route", "text/plain")

    def _jsonrpc_03(self, body: Any, rpc_id: Any, route: str) -> None:
        method = body.get("method") if isinstance(body, dict) else None
        params = body.get("params", {}) if isinstance(body, dict) else {}
        if method == "tasks/get":
            question = self.server.working.get(params.get("id"), "?")
            if "[stuck]" not in question:
                self.server.working.pop(params.get("id"), None)
            state = "working" if "[stuck]" in question else "completed"
            task = kagent_task(question, state=state, task_id=params.get("id"))
            self._send(200, {"jsonrpc": "2.0", "id": rpc_id, "result": task})
            return
        message = params.get("message") if isinstance(params, dict) else None
        if method != "message/send" or not isinstance(message, dict) or not message.get("messageId"):
            error = {"code": -32602, "message": f"Invalid parameters (method {method!r}, messageId missing?)"}
            self._send(200, {"jsonrpc": "2.0", "id": rpc_id, "error": error})
            return
        question = " ".join(p.get("text", "") for p in message.get("parts", []) if isinstance(p, dict))
        if route == "echo":
            question = f"Authorization: {self.headers.get('Authorization', '<none>')}"
        if "[working]" in question or "[stuck]" in question:
            task = kagent_task(question, state="working")
            self.server.working[task["id"]] = question
        else:
            task = kagent_task(question)
        self._send(200, {"jsonrpc": "2.0", "id": rpc_id, "result": task})

    def _resubscribe_03(self, body: dict[str, Any], rpc_id: Any) -> None:
        """tasks/resubscribe: the rest of a dropped ``[resub]`` task as events; any other task is not found."""
        task_id = (body.get("params") or {}).get("id")
        question = self.server.working.get(task_id, "")
        if "[resub]" not in question:
            self._send(200, {"jsonrpc": "2.0", "id": rpc_id, "error": {"code": -32001, "message": "Task not found"}})
            return
        self.server.working.pop(task_id, None)
        task = kagent_task(question, task_id=task_id)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        for result in ({**task, "status": {"state": "working"}, "artifacts": []},
                       {"kind": "artifact-update", "taskId": task_id, "contextId": task["contextId"],
                        "artifact": task["artifacts"][0], "lastChunk": True},
                       {"kind": "status-update", "taskId": task_id, "contextId": task["contextId"], "final": True,
                        "status": {"state": "completed"}, "metadata": task["metadata"]}):  # fmt: skip
            self.wfile.write(b"data: " + json.dumps({"jsonrpc": "2.0", "id": rpc_id, "result": result}).encode())
            self.wfile.write(b"\n\n")
            self.wfile.flush()

    def _stream_03(self, body: dict[str, Any], rpc_id: Any) -> None:
        """message/stream, kagent-shaped events, misbehaving as the question's keyword says (SSE_BEHAVIOURS)."""
        message = body.get("params", {}).get("message", {})
        question = " ".join(p.get("text", "") for p in message.get("parts", []) if isinstance(p, dict))
        if "[unsupported]" in question:
            error = {"code": -32601, "message": "Method not found"}
            self._send(200, {"jsonrpc": "2.0", "id": rpc_id, "error": error})
            return
        task = kagent_task(question)
        task_id, context_id, answer = task["id"], task["contextId"], answer_for(question)
        usage = task["metadata"]

        def event(result: dict[str, Any]) -> bytes:
            return b"data: " + json.dumps({"jsonrpc": "2.0", "id": rpc_id, "result": result}).encode() + b"\n\n"

        def status(state: str, final: bool = False, text: str | None = None) -> bytes:
            update: dict[str, Any] = {"kind": "status-update", "taskId": task_id, "contextId": context_id,
                                      "final": final, "status": {"state": state}}  # fmt: skip
            if text is not None:
                parts = [{"kind": "text", "text": text}]
                message = {"kind": "message", "role": "agent", "messageId": uuid.uuid4().hex, "parts": parts}
                update["status"]["message"] = {**message, "metadata": usage}
            return event(update)

        def artifact(text: str) -> bytes:
            return event({"kind": "artifact-update", "taskId": task_id, "contextId": context_id, "lastChunk": True,
                          "artifact": {"artifactId": "a1", "parts": [{"kind": "text", "text": text}]}})  # fmt: skip

        events = [status("submitted"), status("working")]
        if "[drop]" in question:
            self.server.working[task_id] = question  # tasks/get then reports it completed
        elif "[huge]" in question:
            events += [status("working", text="x" * HUGE_EVENT_BYTES), artifact(answer), status("completed", True)]
        elif "[badutf8]" in question:
            events += [artifact(answer).replace(b"Answer to:", b"Answer \xff\xfe to:"), status("completed", True)]
        elif "[afterfinal]" in question:
            events += [artifact(answer), status("completed", True), artifact("INJECTED after the end"),
                       status("failed", True)]  # fmt: skip
        elif "[malformed]" in question:
            self.server.working[task_id] = question
            events += [b"data: {this is not json\n\n", artifact(answer), status("completed", True)]
        elif "[errorevent]" in question:
            error = {"code": -32603, "message": "Internal error: the agent crashed"}
            events += [b"data: " + json.dumps({"jsonrpc": "2.0", "id": rpc_id, "error": error}).encode() + b"\n\n"]
        elif "[noevents]" in question:
            events = [b": a comment, then nothing\n\n"]
        elif "[crlf]" in question:
            events = [e.replace(b"\n", b"\r\n") for e in [*events, artifact(answer), status("completed", True)]]
        else:
            events += [artifact(answer), status("completed", True)]
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        try:
            for chunk in events:
                self.wfile.write(chunk)
                self.wfile.flush()
        except OSError:
            pass


class BadServer(ThreadingHTTPServer):
    """Misbehaving A2A endpoints, one per route (see the module docstring)."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _BadHandler)
        self.requests: list[tuple[str, dict[str, str], Any]] = []
        self.working: dict[str, str] = {}
        self.stopping = threading.Event()
        self._thread = threading.Thread(target=self.serve_forever, name="a2a-bad-server", daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def url(self, route: str) -> str:
        assert route in BAD_ROUTES, route
        return f"{self.base}/{route}/"

    def start(self) -> BadServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.shutdown()
        self.server_close()
        self._thread.join(5)


# ---------------------------------------------------------------------------------------------------------------------
# pytest fixtures
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def a2a_agent() -> Iterator[A2AAgent]:
    """The a2a-sdk 1.x test agent (subprocess); ``a2a_agent.url`` is its 1.0 endpoint. See the module docstring."""
    agent = start_agent()
    try:
        yield agent
    finally:
        agent.stop()


@pytest.fixture(scope="session")
def a2a_bad_server() -> Iterator[BadServer]:
    """Misbehaving A2A endpoints on one in-process HTTP server: ``a2a_bad_server.url("http500")`` etc."""
    server = BadServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def unreachable_url() -> Iterator[str]:
    """A URL on 127.0.0.1 where connections are refused (a bound port that does not listen, held for the test)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/api/a2a/kagent/nobody-home/"
    finally:
        sock.close()


# What ``--record DIR`` writes: file name -> (face, question). Bodies are stored byte for byte as served.
RECORDINGS = {
    "v10-task-completed.json": ("", "What is Kubernetes?"),
    "v10-message.json": ("", "[message] What is Kubernetes?"),
    "v10-task-tool-call.json": ("", "[tool] Which pods run in the default namespace?"),
    "v10-task-failed.json": ("", "[fail] Please fail"),
    "v10-task-input-required.json": ("", "[input] Restart the pod"),
    "v10-task-empty.json": ("", "[empty] Say nothing"),
    "v03-message.json": ("v03/", "[message] What is Kubernetes?"),
    "v03-task-input-required.json": ("v03/", "[input] Restart the pod"),
    "v03-task-empty.json": ("v03/", "[empty] Say nothing"),
}


def record(directory: Path) -> None:
    """Ask the agent each recorded question with a raw JSON-RPC request and save the reply bodies."""
    import httpx

    agent = start_agent()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for name, (face, question) in RECORDINGS.items():
            if face:
                message = {"kind": "message", "role": "user", "messageId": f"msg-{name}",
                           "parts": [{"kind": "text", "text": question}]}  # fmt: skip
                request = {"jsonrpc": "2.0", "id": "rec-1", "method": "message/send", "params": {"message": message}}
                headers = {"A2A-Version": "0.3"}
            else:
                message = {"role": "ROLE_USER", "messageId": f"msg-{name}", "parts": [{"text": question}]}
                request = {"jsonrpc": "2.0", "id": "rec-1", "method": "SendMessage", "params": {"message": message}}
                headers = {"A2A-Version": "1.0"}
            reply = httpx.post(agent.url + face, json=request, headers=headers, timeout=30)
            reply.raise_for_status()
            (directory / name).write_bytes(reply.content)
        card = httpx.get(f"{agent.url}.well-known/agent-card.json", timeout=30)
        (directory / "v10-agent-card.json").write_bytes(card.content)
    finally:
        agent.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Deterministic a2a-sdk 1.x test agent (protocol 1.0; 0.3 at /v03/).")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: a free one, printed)")
    parser.add_argument("--name", default=AGENT_NAME, help="the agent's name on its card")
    parser.add_argument("--record", type=Path, metavar="DIR", help="record replies into DIR (tests/fixtures/a2a)")
    args = parser.parse_args(argv)
    if args.record:
        record(args.record)
    else:
        serve(args.port, name=args.name)


if __name__ == "__main__":
    main()
