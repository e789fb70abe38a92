"""The Agent Server's A2A face, as a real process: the Pattern 1 client asks the Pattern 2 agent over A2A.

Servers: the session ``agent_server`` (A2A at ``/a2a/``, card offering protocol 1.0 then 0.3) and, for this module,
a second one dressed as kagent serves it (A2A at kagent's path, card offering only 0.3 and naming an in-cluster URL,
two conversations of two turns remembered). Both answer with the scripted model server and send traces to the real
MLflow server; tests read back what a user would look at: the printed answer, the logged run and its token metrics,
the server's own trace, the A2A wire.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from mlflow import MlflowClient

from kagent_mlflow.a2a.parse import parse_reply
from tests.support.agent_server import EXPERIMENT, PODS, start_agent_server
from tests.support.kagent_runtime import expected_usage

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).with_name("kagent-mlflow"))
KAGENT_PATH = "/api/a2a/kagent/rh-analyze-simple/"
INCLUSTER_URL = "http://kagent-controller.kagent:8083" + KAGENT_PATH
TOOL_SCRIPT = [
    {"match": "pods", "after_tool": False, "tool_calls": [{"name": "get_pods", "arguments": {"namespace": "prod"}}]},
    {"match": "pods", "after_tool": True, "reply": "Pods: {tool_outputs}"},
]
_DROP_ENV = ("MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID", "A2A_TOKEN", "KAGENT_MLFLOW_SPOOL_DIR")


@pytest.fixture(scope="module")
def kagent_style_server(model_server, mlflow_server):
    server = start_agent_server(
        model_server.root,
        tracking_uri=mlflow_server.url,
        experiment=EXPERIMENT,
        args=["--a2a-path", KAGENT_PATH, "--a2a-protocols", "0.3", "--a2a-url", INCLUSTER_URL]
        + ["--a2a-max-contexts", "2", "--a2a-max-turns", "2"],
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def faces(agent_server, kagent_style_server) -> dict[str, str]:
    """A2A URL by the protocol the Pattern 1 client ends up speaking there (it prefers 1.0 when the card offers it)."""
    return {"1.0": f"{agent_server.url}/a2a/", "0.3": f"{kagent_style_server.url}{KAGENT_PATH}"}


# -- helpers: raw JSON-RPC, MLflow read-back -------------------------------------------------------------------------


def rpc(
    url: str,
    text: str,
    *,
    protocol: str = "0.3",
    context_id: str | None = None,
    stream: bool = False,
    headers: dict[str, str] | None = None,
) -> Any:
    """One message as JSON-RPC on the wire; the parsed body, or the list of SSE results when ``stream``."""
    if protocol == "0.3":
        message: dict[str, Any] = {"kind": "message", "role": "user", "parts": [{"kind": "text", "text": text}]}
        method, headers = ("message/stream" if stream else "message/send"), dict(headers or {})
    else:
        message = {"role": "ROLE_USER", "parts": [{"text": text}]}
        method = "SendStreamingMessage" if stream else "SendMessage"
        headers = {"A2A-Version": "1.0", **(headers or {})}
    message["messageId"] = uuid.uuid4().hex
    if context_id:
        message["contextId"] = context_id
    body = {"jsonrpc": "2.0", "id": "t-1", "method": method, "params": {"message": message}}
    response = httpx.post(url, json=body, headers=headers, timeout=60)
    assert response.status_code == 200, response.text
    if not stream:
        return response.json()
    assert response.headers["content-type"].startswith("text/event-stream")
    return [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]


def assemble(chunks: list[dict]) -> list[str]:
    """The artifacts' text as an A2A reader builds it: ``append`` adds parts, otherwise the artifact is replaced."""
    artifacts: dict[str, list[str]] = {}
    for chunk in chunks:
        parts = [p["text"] for p in chunk["artifact"]["parts"]]
        artifact_id = chunk["artifact"]["artifactId"]
        artifacts[artifact_id] = artifacts.get(artifact_id, []) + parts if chunk.get("append") else parts
    return ["".join(parts) for parts in artifacts.values()]


def task_of(body: dict) -> dict:
    result = body["result"]
    return result.get("task", result)


def cli_env(url: str, tracking_uri: str, experiment: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _DROP_ENV}
    env.update(
        A2A_URL=url,
        MLFLOW_TRACKING_URI=tracking_uri,
        MLFLOW_EXPERIMENT=experiment,
        KAGENT_MLFLOW_HOME=str(tmp_path / "home"),
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    return env


def only_run(client: MlflowClient, experiment: str) -> Any:
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"experiment {experiment} was not created"
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1, [r.info.run_id for r in runs]
    return runs[0]


def server_trace(client: MlflowClient, task_id: str, wait_s: float = 90) -> Any:
    """The Agent Server's trace of A2A task ``task_id`` (exported in the background: looked for until it is there)."""
    experiment_id = client.get_experiment_by_name(EXPERIMENT).experiment_id
    deadline = time.monotonic() + wait_s
    while True:
        found = client.search_traces(
            locations=[experiment_id], filter_string=f"tags.`a2a.task_id` = '{task_id}'", max_results=5
        )
        if found or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(found) == 1, f"no single server trace tagged a2a.task_id={task_id}: {len(found)}"
    return client.get_trace(found[0].info.trace_id, display=False)


def check_server_trace(client: MlflowClient, reply: dict, usage: dict[str, float], root_name: str) -> Any:
    """The server recorded the request as /invocations does: one AGENT root span named after the agent's entry
    point, the answer's usage on it and on the trace, the conversation as the trace's session."""
    trace = server_trace(client, reply["task_id"])
    assert trace.info.state.value == "OK"
    (root,) = [s for s in trace.data.spans if s.parent_id is None]
    assert root.name == root_name
    assert root.span_type == "AGENT"
    expected = {
        "input_tokens": usage["promptTokenCount"],
        "output_tokens": usage["candidatesTokenCount"],
        "total_tokens": usage["totalTokenCount"],
    }
    assert trace.info.token_usage == expected
    assert root.get_attribute("mlflow.chat.tokenUsage") == expected
    assert trace.info.request_metadata["mlflow.trace.session"] == reply["context_id"]
    assert any(s.span_type == "LLM" for s in trace.data.spans)
    return trace


# -- the contract: Pattern 1 client -> Pattern 2 server over A2A -----------------------------------------------------


@pytest.mark.parametrize("protocol", ["1.0", "0.3"])
def test_ask_cli_over_a2a_prints_the_answer_and_logs_the_servers_usage(
    protocol, faces, mlflow_server, scripted_model, tmp_path
):
    question = f"What is a Kubernetes pod, asked over A2A {protocol}?"
    answer = f"Scripted answer to: {question}"
    experiment = f"a2a-face-cli-{uuid.uuid4().hex[:8]}"
    env = cli_env(faces[protocol], mlflow_server.url, experiment, tmp_path)

    proc = subprocess.run(
        [CLI, "ask", question, "--json", "--flush-timeout", "120"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )

    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    payload = json.loads(proc.stdout)
    assert payload["answer"] == answer
    usage = expected_usage(scripted_model, answer)
    assert payload["usage"] == usage
    client = MlflowClient(mlflow_server.url)
    run = only_run(client, experiment)
    assert run.info.run_id == payload["run_id"]
    assert run.data.tags["protocol_version"] == protocol
    assert run.data.tags["agent"] == "cluster-helper"
    assert run.data.tags["status"] == "ok"
    assert run.data.tags["task_state"] == "completed"
    metrics = run.data.metrics
    assert metrics["input_tokens"] == usage["promptTokenCount"]
    assert metrics["output_tokens"] == usage["candidatesTokenCount"]
    assert metrics["total_tokens"] == usage["totalTokenCount"]
    check_server_trace(client, payload, usage, "LlamaStackAgent.invoke")


@pytest.mark.parametrize("protocol", ["1.0", "0.3"])
def test_ask_stream_over_a2a_with_a_tool_round_logs_the_servers_usage(
    protocol, faces, mlflow_server, scripted_model, tmp_path
):
    scripted_model.set_script(TOOL_SCRIPT)
    question = f"Which pods run in prod, streamed over A2A {protocol}?"
    answer = f"Pods: {json.dumps(PODS['prod'])}"
    experiment = f"a2a-face-stream-{uuid.uuid4().hex[:8]}"
    env = cli_env(faces[protocol], mlflow_server.url, experiment, tmp_path)

    proc = subprocess.run(
        [CLI, "ask", question, "--stream", "--json", "--flush-timeout", "120"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )

    assert proc.returncode == 0, proc.stderr
    payload = json.loads(proc.stdout)
    assert payload["answer"] == answer  # the streamed pieces and the closing whole text make the answer once
    usage = expected_usage(scripted_model, answer)
    assert payload["usage"] == usage
    run = only_run(MlflowClient(mlflow_server.url), experiment)
    assert run.data.tags["protocol_version"] == protocol
    assert run.data.metrics["tool_calls"] == 1
    assert run.data.metrics["total_tokens"] == usage["totalTokenCount"]
    check_server_trace(MlflowClient(mlflow_server.url), payload, usage, "LlamaStackAgent.stream")


@pytest.mark.parametrize("protocol", ["1.0", "0.3"])
def test_logger_over_a2a_logs_the_run_and_the_server_traces_it(protocol, faces, mlflow_server, scripted_model):
    from kagent_mlflow_logger import KagentMLflowLogger

    question = f"Which namespace holds the ingress, over A2A {protocol}?"
    answer = f"Scripted answer to: {question}"
    experiment = f"a2a-face-logger-{uuid.uuid4().hex[:8]}"

    with KagentMLflowLogger(
        mlflow_tracking_uri=mlflow_server.url, a2a_url=faces[protocol], experiment_name=experiment
    ) as logger:
        result = logger.send_question(question)
        assert result["answer"] == answer
        assert logger.flush(120)
        run_id = result["run_id"]

    usage = expected_usage(scripted_model, answer)
    client = MlflowClient(mlflow_server.url)
    run = only_run(client, experiment)
    assert run.info.run_id == run_id
    assert {k: run.data.metrics[k] for k in usage} == usage
    assert run.data.metrics["total_tokens"] == usage["totalTokenCount"]
    check_server_trace(client, {"task_id": result["task_id"], "context_id": result["context_id"]}, usage,
                       "LlamaStackAgent.invoke")  # fmt: skip


# -- the card --------------------------------------------------------------------------------------------------------


def test_card_at_both_paths_names_the_a2a_url_and_streaming(agent_server):
    base = f"{agent_server.url}/a2a/"
    current = httpx.get(f"{base}.well-known/agent-card.json", timeout=10)
    legacy = httpx.get(f"{base}.well-known/agent.json", timeout=10)
    assert current.status_code == legacy.status_code == 200
    assert current.json() == legacy.json()
    card = current.json()
    assert card["name"] == "cluster-helper"
    assert card["capabilities"]["streaming"] is True
    assert [(i["url"], i["protocolVersion"]) for i in card["supportedInterfaces"]] == [(base, "1.0"), (base, "0.3")]
    assert (card["url"], card["protocolVersion"], card["preferredTransport"]) == (base, "0.3", "JSONRPC")  # 0.3 readers


def test_card_at_a_kagent_path_names_the_public_url(kagent_style_server):
    card = httpx.get(f"{kagent_style_server.url}{KAGENT_PATH}.well-known/agent.json", timeout=10).json()
    assert card["url"] == INCLUSTER_URL
    assert [i["protocolVersion"] for i in card["supportedInterfaces"]] == ["0.3"]
    assert httpx.get(f"{kagent_style_server.url}/a2a/.well-known/agent.json", timeout=10).status_code == 404


# -- what the reply carries ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["1.0", "0.3"])
def test_tool_calls_are_kagent_data_parts_and_tool_spans(protocol, agent_server, scripted_model, mlflow_server):
    scripted_model.set_script(TOOL_SCRIPT)
    question = f"Which pods run in prod ({protocol})?"
    body = rpc(f"{agent_server.url}/a2a/", question, protocol=protocol)

    task = task_of(body)
    data_parts = [p for m in task["history"] for p in m["parts"] if "data" in p]
    call, response = data_parts
    assert call["metadata"]["kagent_type"] == "function_call"
    assert call["data"]["name"] == "get_pods" and call["data"]["args"] == {"namespace": "prod"}
    assert response["metadata"]["kagent_type"] == "function_response"
    assert response["data"]["id"] == call["data"]["id"] and response["data"]["name"] == "get_pods"
    assert json.loads(response["data"]["response"]["result"]) == PODS["prod"]
    reply = parse_reply(body, url="u", agent_name="a", protocol_version=protocol)
    assert reply.answer == f"Pods: {json.dumps(PODS['prod'])}"
    assert [(c.name, c.arguments) for c in reply.tool_calls] == [("get_pods", {"namespace": "prod"})]
    usage = expected_usage(scripted_model, reply.answer)
    assert reply.usage == usage  # counted once, though both the last message and the task carry it
    trace = check_server_trace(
        MlflowClient(mlflow_server.url),
        {"task_id": reply.task_id, "context_id": reply.context_id},
        usage,
        "LlamaStackAgent.invoke",
    )
    (tool,) = [s for s in trace.data.spans if s.span_type == "TOOL"]
    assert tool.name == "get_pods" and tool.inputs == {"namespace": "prod"}


@pytest.mark.parametrize("protocol", ["1.0", "0.3"])
def test_streaming_sends_the_answer_in_chunks_then_the_completed_task(
    protocol, agent_server, scripted_model, mlflow_server
):
    scripted_model.set_script([{"match": "stream", "reply": "One two three four five."}])
    url = f"{agent_server.url}/a2a/"
    events = rpc(url, "Please stream this", protocol=protocol, stream=True)

    results = [e["result"] for e in events]
    assert all("error" not in e for e in events), events
    if protocol == "1.0":  # 1.0 wraps each event: {"task"}, {"statusUpdate"}, {"artifactUpdate"}
        kinds = [next(iter(r)) for r in results]
        results = [next(iter(r.values())) for r in results]
        assert kinds[0] == "task" and "artifactUpdate" in kinds and kinds[-1] == "statusUpdate"
        done = "TASK_STATE_COMPLETED"
    else:
        kinds = [r["kind"] for r in results]
        assert kinds[0] == "task" and "artifact-update" in kinds and kinds[-1] == "status-update"
        assert results[-1]["final"] is True
        done = "completed"
    chunks = [r for r in results if "artifact" in r]
    deltas, last = chunks[:-1], chunks[-1]
    assert len(deltas) > 1  # the answer arrived in pieces, as the model wrote it
    assert not deltas[0].get("append") and all(c["append"] for c in deltas[1:])
    assert "".join(p["text"] for c in deltas for p in c["artifact"]["parts"]) == "One two three four five."
    assert last["lastChunk"] is True and not last.get("append")  # the whole text, replacing the pieces
    assert assemble(chunks) == ["One two three four five."]
    text = "One two three four five."
    final = results[-1]
    assert final["status"]["state"] == done
    usage = expected_usage(scripted_model, text)
    assert {k: float(v) for k, v in final["metadata"]["kagent_usage_metadata"].items()} == usage
    reply = {"task_id": final["taskId"], "context_id": final["contextId"]}
    check_server_trace(MlflowClient(mlflow_server.url), reply, usage, "LlamaStackAgent.stream")

    # the stored task holds the whole answer once
    get = {"jsonrpc": "2.0", "id": 2, "method": "tasks/get", "params": {"id": final["taskId"]}}
    stored = httpx.post(url, json=get, timeout=30).json()["result"]
    assert stored["status"]["state"] == "completed"
    assert parse_reply({"result": stored}, url="u", agent_name="a", protocol_version="0.3").answer == text


# -- conversations ---------------------------------------------------------------------------------------------------


def user_texts(model_request: dict) -> list[str]:
    return [m["content"] for m in model_request["messages"] if m["role"] == "user"]


@pytest.mark.parametrize("protocol", ["1.0", "0.3"])
def test_context_id_carries_the_conversation_to_the_model(protocol, agent_server, scripted_model):
    url = f"{agent_server.url}/a2a/"
    context = f"ctx-{uuid.uuid4().hex}"
    first = task_of(rpc(url, "My namespace is prod.", protocol=protocol, context_id=context))
    assert first["contextId"] == context
    second = task_of(rpc(url, "Which namespace did I name?", protocol=protocol, context_id=context))
    assert second["contextId"] == context and second["id"] != first["id"]
    rpc(url, "A question in another conversation", protocol=protocol)

    requests = scripted_model.chat_requests()
    assert user_texts(requests[0]) == ["My namespace is prod."]
    turn_two = requests[1]["messages"]
    assert [m["role"] for m in turn_two] == ["system", "user", "assistant", "user"]
    assert turn_two[2]["content"] == "Scripted answer to: My namespace is prod."
    assert user_texts(requests[1]) == ["My namespace is prod.", "Which namespace did I name?"]
    assert user_texts(requests[2]) == ["A question in another conversation"]  # no other conversation's history


def test_memory_keeps_the_last_turns_and_forgets_the_least_recent_conversation(kagent_style_server, scripted_model):
    url = f"{kagent_style_server.url}{KAGENT_PATH}"  # remembers 2 conversations of 2 turns
    a, b, c = (f"{name}-{uuid.uuid4().hex}" for name in "abc")
    for n in (1, 2, 3):
        rpc(url, f"a{n}", context_id=a)
    rpc(url, "a4", context_id=a)
    assert user_texts(scripted_model.chat_requests()[-1]) == ["a2", "a3", "a4"]  # a1 dropped: two turns kept

    rpc(url, "b1", context_id=b)
    rpc(url, "c1", context_id=c)  # three conversations: a, the least recently used, is forgotten
    rpc(url, "a5", context_id=a)
    rpc(url, "c2", context_id=c)
    requests = scripted_model.chat_requests()
    assert user_texts(requests[-2]) == ["a5"]
    assert user_texts(requests[-1]) == ["c1", "c2"]


# -- hostile bodies --------------------------------------------------------------------------------------------------


def call(method: str, params: Any) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()


MESSAGE = {"kind": "message", "messageId": "m-1", "role": "user", "parts": [{"kind": "text", "text": "hi"}]}
HOSTILE: dict[str, tuple[bytes, set[int]]] = {
    "unknown method": (b'{"jsonrpc": "2.0", "id": 1, "method": "tasks/explode", "params": {}}', {-32601}),
    "not an object": (b'"message/send"', {-32600}),
    "batch": (b"[]", {-32600}),
    "params a string": (b'{"jsonrpc": "2.0", "id": 1, "method": "message/send", "params": "hi"}', {-32600, -32602}),
    "parts not a list": (call("message/send", {"message": {**MESSAGE, "parts": "hi"}}), {-32600, -32602}),
    "role a number": (call("SendMessage", {"message": {**MESSAGE, "role": 7}}), {-32600, -32602, -32009}),
    "no parts": (call("message/send", {"message": {**MESSAGE, "parts": []}}), {-32600, -32602}),
    "wrong jsonrpc": (b'{"jsonrpc": "1.0", "id": 1, "method": "message/send", "params": {}}', {-32600}),
    "id an object": (b'{"jsonrpc": "2.0", "id": {"a": 1}, "method": "tasks/get", "params": {"id": "x"}}', {-32600}),
    "deep nesting": (b'{"jsonrpc": "2.0", "id": 1, "params": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", {-32600}),
    "NaN": (b'{"jsonrpc": "2.0", "id": 1, "method": "message/send", "params": {"x": NaN}}', {-32700}),
    "huge number": (b'{"jsonrpc": "2.0", "id": 1, "method": "message/send", "params": {"x": 1e999}}', {-32700}),
    "invalid UTF-8": (b'{"jsonrpc": "2.0", "id": 1, "method": "message/send", "params": {"x": "\xff\xfe"}}', {-32700}),
    "lone surrogate": (b'{"jsonrpc": "2.0", "id": 1, "method": "message/send", "params": {"x": "\\ud800"}}', {-32700}),
    "truncated": (b'{"jsonrpc": "2.0", "id": 1, "method": "message/se', {-32700}),
    "empty": (b"", {-32700}),
    "too large": (b'{"jsonrpc": "2.0", "id": 1, "params": "' + b"x" * (2 * 1024 * 1024) + b'"}', {-32600}),
    "unknown task": (b'{"jsonrpc": "2.0", "id": 1, "method": "tasks/get", "params": {"id": "no-such-task"}}', {-32001}),
}


def test_hostile_bodies_get_json_rpc_errors_and_the_server_stays_up(agent_server, scripted_model):
    url = f"{agent_server.url}/a2a/"
    logged_before = len(agent_server.output)
    for name, (body, codes) in HOSTILE.items():
        response = httpx.post(url, content=body, headers={"content-type": "application/json"}, timeout=60)
        assert response.status_code == 200, (name, response.status_code, response.text[:300])
        answer = response.json()
        assert answer["jsonrpc"] == "2.0" and "result" not in answer, name
        assert answer["error"]["code"] in codes, (name, answer)
        assert "\n" not in answer["error"]["message"], (name, answer)
    assert httpx.get(f"{agent_server.url}/health", timeout=10).status_code == 200
    assert task_of(rpc(url, "Still there?"))["status"]["state"] == "completed"
    assert scripted_model.chat_requests(), "the agent answered after the hostile bodies"
    new_log = "".join(agent_server.output[logged_before:])
    assert "Traceback" not in new_log, new_log[-3000:]


# -- failures and shutdown -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["1.0", "0.3"])
def test_model_failure_is_a_failed_task_and_a_failed_run(protocol, faces, mlflow_server, scripted_model, tmp_path):
    scripted_model.set_script([{"match": "fail", "status": 500}])
    experiment = f"a2a-face-fail-{uuid.uuid4().hex[:8]}"
    env = cli_env(faces[protocol], mlflow_server.url, experiment, tmp_path)

    proc = subprocess.run(
        [CLI, "ask", "Please fail over A2A", "--flush-timeout", "120"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )

    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert "failed" in errors[0] and "500" in errors[0], errors[0]
    run = only_run(MlflowClient(mlflow_server.url), experiment)
    assert run.info.status == "FAILED"
    assert run.data.tags["task_state"] == "failed"
    assert "model endpoint answered with an error" in run.data.tags["error"]


def test_sigterm_lets_an_a2a_stream_finish_and_spills_a2a_traces_mlflow_did_not_take(
    agent_server_factory, mlflow_server_factory, scripted_model, tmp_path
):
    """MLflow down: A2A answers still come, their traces go to the spill; SIGTERM mid-stream: the stream completes,
    the process exits within its grace time, and replay exports each A2A trace once (tagged by X-Request-ID)."""
    import threading

    from kagent_mlflow.serve import trace_spill
    from tests.integration.test_serve_trace_backlog import CLEAN_EXIT, request_ids_in_mlflow, sigterm_and_time

    spill = tmp_path / "spill"
    mlflow = mlflow_server_factory()
    env = {"KAGENT_MLFLOW_TRACE_SPILL_DIR": str(spill)}
    server = agent_server_factory(
        scripted_model.root,
        tracking_uri=mlflow.url,
        experiment="a2a-down",
        extra_env=env,
        args=["--shutdown-grace", "8"],
    )
    mlflow.kill()
    url = f"{server.url}/a2a/"
    ids = [f"a2a-down-{i}" for i in range(4)]
    for n, request_id in enumerate(ids):
        reply = rpc(url, f"question {n}", protocol=("1.0", "0.3")[n % 2], headers={"X-Request-ID": request_id})
        assert task_of(reply)["status"]["state"] in ("completed", "TASK_STATE_COMPLETED")

    scripted_model.set_script([{"match": "slow", "reply": "A slow answer.", "delay_ms": 2000}])
    streamed: list[dict] = []
    started = threading.Event()

    def stream() -> None:
        body = {"jsonrpc": "2.0", "id": "s", "method": "message/stream",
                "params": {"message": {"kind": "message", "messageId": "slow-1", "role": "user",
                                       "parts": [{"kind": "text", "text": "a slow one"}]}}}  # fmt: skip
        with httpx.stream("POST", url, json=body, headers={"X-Request-ID": "a2a-down-stream"}, timeout=60) as resp:
            for line in resp.iter_lines():
                if line.startswith("data: "):
                    streamed.append(json.loads(line[6:]))
                    started.set()

    thread = threading.Thread(target=stream)
    thread.start()
    assert started.wait(60), server.log_tail()
    took = sigterm_and_time(server)
    thread.join(30)

    assert server.process.returncode in CLEAN_EXIT, server.log_tail()
    assert took < 8 + 5, f"SIGTERM took {took:.1f} s (grace 8 s)"
    assert streamed[-1]["result"]["status"]["state"] == "completed", streamed[-1]
    assert trace_spill.status(spill).traces == len(ids) + 1

    mlflow.start()
    replay = subprocess.run(
        [CLI, "replay"], env={**os.environ, **env}, capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert replay.returncode == 0, replay.stdout + replay.stderr
    seen = request_ids_in_mlflow(mlflow.url, "a2a-down")
    assert {rid: n for rid, n in seen.items() if rid and rid.startswith("a2a-down")} == dict.fromkeys(
        [*ids, "a2a-down-stream"], 1
    )


def test_tasks_cancel_stops_a_running_answer(agent_server, scripted_model, mlflow_server):
    """A caller that gives up (Ctrl-C in `ask --stream` sends tasks/cancel) ends the task as canceled; the turn is
    not remembered, and the server answers the next question."""
    import threading

    scripted_model.set_script([{"match": "slow", "reply": "Too late.", "delay_ms": 5000}])
    url = f"{agent_server.url}/a2a/"
    context = f"ctx-{uuid.uuid4().hex}"
    events: list[dict] = []
    first = threading.Event()

    def stream() -> None:
        message = {"kind": "message", "messageId": uuid.uuid4().hex, "role": "user", "contextId": context,
                   "parts": [{"kind": "text", "text": "a slow question"}]}  # fmt: skip
        body = {"jsonrpc": "2.0", "id": "s", "method": "message/stream", "params": {"message": message}}
        with httpx.stream("POST", url, json=body, timeout=60) as response:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
                    first.set()

    thread = threading.Thread(target=stream)
    thread.start()
    assert first.wait(60)
    task_id = events[0]["result"]["id"]
    cancel = {"jsonrpc": "2.0", "id": "c", "method": "tasks/cancel", "params": {"id": task_id}}
    canceled = httpx.post(url, json=cancel, timeout=30).json()
    thread.join(60)

    assert canceled["result"]["status"]["state"] == "canceled", canceled
    assert events[-1]["result"]["status"]["state"] == "canceled", events[-1]
    assert not any(e["result"].get("kind") == "artifact-update" for e in events)
    scripted_model.set_script([])
    rpc(url, "and now?", context_id=context)
    assert user_texts(scripted_model.chat_requests()[-1]) == ["and now?"]  # the canceled turn was not remembered
