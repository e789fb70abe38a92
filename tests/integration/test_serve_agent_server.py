"""The Agent Server as a real process: /invocations, /responses, streaming, tools, history, usage, errors, traces.

Every server here is ``python -m kagent_mlflow.serve`` on 127.0.0.1 in front of the scripted model server, with
traces going to a real MLflow tracking server.
"""

from __future__ import annotations

import json
import socket
import time

import httpx
import openai
import pytest
from mlflow import MlflowClient

from tests.support.agent_server import EXPERIMENT, PODS

pytestmark = pytest.mark.integration

QUESTION = "Which pods run in prod?"
TOOL_SCRIPT = [
    {"match": "pods", "after_tool": False, "tool_calls": [{"name": "get_pods", "arguments": {"namespace": "prod"}}]},
    {"match": "pods", "after_tool": True, "reply": "Pods: {tool_outputs}"},
]


def ask(url: str, payload: dict, **headers: str) -> httpx.Response:
    return httpx.post(f"{url}/invocations", json=payload, headers=headers, timeout=60)


def user(text: str) -> dict:
    return {"input": [{"role": "user", "content": text}]}


def answer_text(body: dict) -> str:
    messages = [item for item in body["output"] if item["type"] == "message"]
    return "".join(part["text"] for part in messages[-1]["content"] if part["type"] == "output_text")


def sse_events(response: httpx.Response) -> list[dict]:
    events = []
    for line in response.text.splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            events.append(json.loads(line[len("data: ") :]))
    return events


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens there once the socket is closed


# -- the happy paths ----------------------------------------------------------------------------------------------


def test_health(agent_server):
    resp = httpx.get(f"{agent_server.url}/health", timeout=10)
    assert resp.status_code == 200
    assert resp.json() == {"status": "healthy"}


def test_invocations_answers_with_the_models_text_and_usage(agent_server, scripted_model):
    scripted_model.set_script([{"match": "capital", "reply": "Paris is the capital."}])
    resp = ask(agent_server.url, user("What is the capital of France?"))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert answer_text(body) == "Paris is the capital."
    sent = scripted_model.chat_requests()
    assert len(sent) == 1
    assert sent[0]["messages"][0]["role"] == "system"
    assert sent[0]["messages"][-1] == {"role": "user", "content": "What is the capital of France?"}
    # the model server counts words: prompt = system + user words, completion = 4 words
    prompt_words = sum(len(m["content"].split()) for m in sent[0]["messages"])
    assert body["usage"]["input_tokens"] == prompt_words
    assert body["usage"]["output_tokens"] == 4
    assert body["usage"]["total_tokens"] == prompt_words + 4


def test_responses_endpoint_serves_the_openai_sdk(agent_server, scripted_model):
    scripted_model.set_script([{"match": "hello", "reply": "Hi from the agent."}])
    client = openai.OpenAI(base_url=agent_server.url, api_key="unused", max_retries=0, timeout=60)
    response = client.responses.create(model="kagent-agent", input="hello there")
    assert response.output_text == "Hi from the agent."
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens


def test_streaming_yields_deltas_that_add_up_to_the_non_streamed_answer(agent_server, scripted_model):
    scripted_model.set_script([{"match": "stream", "reply": "One two three four five."}])
    plain = ask(agent_server.url, user("Please stream this")).json()
    resp = ask(agent_server.url, {**user("Please stream this"), "stream": True})
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    events = sse_events(resp)
    deltas = [e["delta"] for e in events if e["type"] == "response.output_text.delta"]
    assert len(deltas) > 1  # text arrived in pieces, as the model sent it
    assert "".join(deltas) == "One two three four five."
    done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert [i["type"] for i in done] == [i["type"] for i in plain["output"]]
    assert answer_text({"output": done}) == answer_text(plain)
    completed = [e for e in events if e["type"] == "response.completed"]
    assert completed and completed[-1]["response"]["usage"] == plain["usage"]


def test_tool_calls_are_executed_and_shown_in_the_output(agent_server, scripted_model):
    scripted_model.set_script(TOOL_SCRIPT)
    resp = ask(agent_server.url, user(QUESTION))
    assert resp.status_code == 200, resp.text
    output = resp.json()["output"]
    assert [i["type"] for i in output] == ["function_call", "function_call_output", "message"]
    call, result = output[0], output[1]
    assert call["name"] == "get_pods" and json.loads(call["arguments"]) == {"namespace": "prod"}
    assert result["call_id"] == call["call_id"]
    assert json.loads(result["output"]) == PODS["prod"]
    assert answer_text(resp.json()).startswith("Pods: ")
    # the model saw the tool result as a tool message answering its call
    second = scripted_model.chat_requests()[1]["messages"]
    assert second[-1]["role"] == "tool" and second[-1]["tool_call_id"] == call["call_id"]
    assert json.loads(second[-1]["content"]) == PODS["prod"]


def test_a_failing_tool_reports_its_error_to_the_model_and_the_turn_still_answers(agent_server, scripted_model):
    scripted_model.set_script(
        [
            {
                "match": "break",
                "after_tool": False,
                "tool_calls": [{"name": "broken_tool", "arguments": {"reason": "x"}}],
            },
            {"match": "break", "after_tool": True, "reply": "The tool said: {tool_outputs}"},
        ]
    )
    resp = ask(agent_server.url, user("Please break something"))
    assert resp.status_code == 200, resp.text
    outputs = [i for i in resp.json()["output"] if i["type"] == "function_call_output"]
    assert "broken on purpose: x" in outputs[0]["output"]
    assert "broken on purpose: x" in answer_text(resp.json())


def test_chat_history_reaches_the_model_in_order(agent_server, scripted_model):
    history = [
        {"role": "user", "content": "Which pods run in prod?"},
        {"type": "function_call", "call_id": "call_1", "name": "get_pods", "arguments": '{"namespace": "prod"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": '{"web-1": "Running"}'},
        {"role": "assistant", "content": "web-1 is running."},
        {"role": "user", "content": "And is it healthy?"},
    ]
    resp = ask(agent_server.url, {"input": history})
    assert resp.status_code == 200, resp.text
    messages = scripted_model.chat_requests()[0]["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "assistant", "user"]
    assert messages[1]["content"] == "Which pods run in prod?"
    assert messages[2]["tool_calls"][0]["id"] == "call_1"
    assert messages[2]["tool_calls"][0]["function"] == {"name": "get_pods", "arguments": '{"namespace": "prod"}'}
    assert messages[3] == {"role": "tool", "tool_call_id": "call_1", "content": '{"web-1": "Running"}'}
    assert messages[4]["content"] == "web-1 is running."
    assert messages[5]["content"] == "And is it healthy?"
    assert answer_text(resp.json()) == "Scripted answer to: And is it healthy?"


def test_a_conversation_continues_by_sending_the_previous_output_back(agent_server, scripted_model):
    scripted_model.set_script(TOOL_SCRIPT)
    first = ask(agent_server.url, user(QUESTION)).json()
    follow_up = {"input": [*user(QUESTION)["input"], *first["output"], {"role": "user", "content": "Thanks!"}]}
    resp = ask(agent_server.url, follow_up)
    assert resp.status_code == 200, resp.text
    messages = scripted_model.chat_requests()[-1]["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "assistant", "user"]
    assert messages[-1]["content"] == "Thanks!"


# -- bad input -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"{not json", "not valid JSON"),
        (b"", "request body is empty"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"messages": [{"role": "user", "content": "hi"}]}', "input"),
        (b'{"input": [{"role": "wizard", "content": "hi"}]}', "input[0].role: Input should be 'user', 'assistant'"),
        (b'{"input": 42}', "input"),
    ],
)
def test_bad_requests_get_400_saying_what_is_wrong(agent_server, scripted_model, body, expected):
    for path in ("/invocations", "/responses"):
        resp = httpx.post(
            f"{agent_server.url}{path}", content=body, headers={"content-type": "application/json"}, timeout=30
        )
        assert resp.status_code == 400, resp.text
        error = resp.json()
        assert expected in error["error"]["message"]
        assert error["error"]["type"] == "invalid_request_error"
        assert error["detail"] == error["error"]["message"]
    assert scripted_model.chat_requests() == []  # nothing reached the model


def test_the_openai_sdk_sees_a_bad_request_as_such(agent_server):
    client = openai.OpenAI(base_url=agent_server.url, api_key="unused", max_retries=0, timeout=30)
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="m", input=[{"role": "wizard", "content": "hi"}])
    assert "input[0].role" in str(info.value) and "(got 'wizard')" in str(info.value)


# -- model endpoint failures -----------------------------------------------------------------------------------------


def test_model_endpoint_down_gives_502_with_a_clear_message(agent_server_factory):
    down = closed_port_url()
    server = agent_server_factory(down, model="scripted-model")
    resp = ask(server.url, user("hello"))
    assert resp.status_code == 502, resp.text
    error = resp.json()["error"]
    assert error["type"] == "model_unreachable"
    assert "cannot reach the model endpoint" in error["message"] and down in error["message"]
    streamed = ask(server.url, {**user("hello"), "stream": True})
    assert streamed.status_code == 502
    assert streamed.json()["error"]["type"] == "model_unreachable"


def test_model_that_hangs_gives_504_not_a_hang(agent_server_factory, scripted_model):
    scripted_model.set_script([{"match": "slow", "hang": True, "hang_s": 30}])
    server = agent_server_factory(scripted_model.root, extra_env={"LLAMA_STACK_TIMEOUT": "1"})
    resp = ask(server.url, user("a slow question"))
    assert resp.status_code == 504, resp.text
    assert resp.json()["error"]["type"] == "model_timeout"
    assert "did not answer in time" in resp.json()["error"]["message"]


def test_model_http_error_gives_502_naming_the_status(agent_server, scripted_model):
    scripted_model.set_script([{"match": "fail", "status": 500}])
    resp = ask(agent_server.url, user("please fail"))
    assert resp.status_code == 502, resp.text
    error = resp.json()["error"]
    assert error["type"] == "model_error"
    assert "500" in error["message"]


def test_a_stream_that_fails_midway_ends_with_an_error_event(agent_server, scripted_model):
    scripted_model.set_script(
        [
            {
                "match": "midway",
                "after_tool": False,
                "tool_calls": [{"name": "get_pods", "arguments": {"namespace": "dev"}}],
            },
            {"match": "midway", "after_tool": True, "status": 503},
        ]
    )
    resp = ask(agent_server.url, {**user("fail midway"), "stream": True})
    assert resp.status_code == 200  # the first events had already been sent
    events = sse_events(resp)
    assert events[0]["type"] == "response.output_item.done"
    assert "503" in events[-1]["error"]


# -- traces ----------------------------------------------------------------------------------------------------------


def _wait_for_trace(client: MlflowClient, trace_id: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while True:
        try:
            trace = client.get_trace(trace_id)
            if trace is not None and trace.data.spans:
                return trace
        except Exception:  # noqa: BLE001 - not exported yet
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"trace {trace_id} did not reach MLflow within {timeout}s")
        time.sleep(0.5)


def test_each_request_is_one_trace_with_agent_llm_and_tool_spans(agent_server, scripted_model, mlflow_server):
    scripted_model.set_script(TOOL_SCRIPT)
    resp = ask(agent_server.url, user(QUESTION), **{"x-mlflow-return-trace-id": "true"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    trace_id = body["metadata"]["trace_id"]
    client = MlflowClient(tracking_uri=mlflow_server.url)
    trace = _wait_for_trace(client, trace_id)

    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert trace.info.experiment_id == experiment.experiment_id
    spans = trace.data.spans
    types = [s.span_type for s in spans]
    assert types.count("AGENT") == 2  # the request's root span and the agent's own
    assert types.count("LLM") == 2  # tool call round + final answer
    assert [s.name for s in spans if s.span_type == "TOOL"] == ["get_pods"]
    by_id = {s.span_id: s for s in spans}
    root = next(s for s in spans if s.parent_id is None)
    agent = next(s for s in spans if s.span_type == "AGENT" and s.parent_id is not None)
    assert agent.parent_id == root.span_id
    for span in spans:
        if span.span_type in ("LLM", "TOOL"):
            assert by_id[span.parent_id].span_type == "AGENT"
    assert trace.info.token_usage["total_tokens"] == body["usage"]["total_tokens"]
    assert trace.info.token_usage["input_tokens"] == body["usage"]["input_tokens"]


def test_streamed_requests_are_traced_too(agent_server, scripted_model, mlflow_server):
    scripted_model.set_script([{"match": "trace", "reply": "Streamed and traced."}])
    resp = ask(agent_server.url, {**user("trace my stream"), "stream": True}, **{"x-mlflow-return-trace-id": "true"})
    trace_id = next(e["trace_id"] for e in sse_events(resp) if "trace_id" in e)
    trace = _wait_for_trace(MlflowClient(tracking_uri=mlflow_server.url), trace_id)
    assert [s.span_type for s in trace.data.spans].count("LLM") == 1
    assert "Streamed and traced." in json.dumps(trace.data.spans[0].outputs)


def test_conversation_and_user_from_the_request_context_tag_the_trace(agent_server, scripted_model, mlflow_server):
    payload = {**user("hello"), "context": {"conversation_id": "conv-42", "user_id": "alice"}}
    resp = ask(agent_server.url, payload, **{"x-mlflow-return-trace-id": "true"})
    assert resp.status_code == 200, resp.text
    trace = _wait_for_trace(MlflowClient(tracking_uri=mlflow_server.url), resp.json()["metadata"]["trace_id"])
    assert trace.info.request_metadata["mlflow.trace.session"] == "conv-42"
    assert trace.info.request_metadata["mlflow.trace.user"] == "alice"


def test_secrets_never_reach_the_trace(agent_server_factory, scripted_model, mlflow_server):
    model_key, client_token = "sk-model-secret-4242", "client-bearer-secret-9898"
    server = agent_server_factory(
        scripted_model.root, tracking_uri=mlflow_server.url, extra_env={"LLAMA_STACK_API_KEY": model_key}
    )
    scripted_model.set_script(TOOL_SCRIPT)
    headers = {"x-mlflow-return-trace-id": "true", "authorization": f"Bearer {client_token}"}
    resp = ask(server.url, user(QUESTION), **headers)
    assert resp.status_code == 200, resp.text
    assert scripted_model.requests()[-1]["headers"]["authorization"] == f"Bearer {model_key}"  # it was used...
    trace = _wait_for_trace(MlflowClient(tracking_uri=mlflow_server.url), resp.json()["metadata"]["trace_id"])
    dumped = trace.to_json()
    assert model_key not in dumped and client_token not in dumped  # ...and never recorded
    assert "get_pods" in dumped
