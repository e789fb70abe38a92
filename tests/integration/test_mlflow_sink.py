"""The MLflow sink against a real MLflow tracking server (subprocess), read back through MLflow's own API."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.tracing.constant import SpanAttributeKey

from kagent_mlflow.a2a.models import ToolCall
from kagent_mlflow.config import Settings
from kagent_mlflow.errors import DeliveryError
from kagent_mlflow.records import Interaction
from kagent_mlflow.sinks.mlflow import FAULT_ENV, STEPS, MlflowSink, StoppedAfterStep
from tests.support.mlflow_server import MlflowServer, free_port

pytestmark = pytest.mark.integration

TOKEN = "a2a-token-9f8e7d6c5b4a"
AWS_KEY_ID = "AKIAKAGENTTESTKEY001"
AWS_SECRET = "kagent/test/secret+AbCdEfGhIjKlMnOpQrStUv"


def settings_for(server: MlflowServer, tmp_path: Path, **kw: object) -> Settings:
    values: dict[str, object] = dict(tracking_uri=server.url, experiment_name=f"sink-{uuid.uuid4().hex[:8]}")
    values.update(kw)
    return Settings(home=tmp_path / "home", **values)  # type: ignore[arg-type]


def make_interaction(settings: Settings, **kw: object) -> Interaction:
    values: dict[str, object] = dict(
        question="What is Kubernetes?",
        answer="Kubernetes orchestrates containers.",
        agent_name="rh-analyze-simple",
        a2a_url="http://127.0.0.1:8083/api/a2a/kagent/rh-analyze-simple/",
        protocol_version="0.3",
        task_id="task-1",
        context_id="ctx-1",
        task_state="completed",
        usage={"promptTokenCount": 12, "candidatesTokenCount": 5, "totalTokenCount": 17},
        tool_calls=[
            ToolCall(name="k8s_get_resources", arguments={"kind": "pods"}, result="3 pods", call_id="c1"),
            ToolCall(name="k8s_describe", arguments={"name": "web"}, result={"ready": True}),
        ],
        raw_response={"jsonrpc": "2.0", "id": "1", "result": {"kind": "task", "id": "task-1"}},
        latency_ms=321.5,
        experiment_name=settings.experiment_name,
    )
    values.update(kw)
    return Interaction(**values)  # type: ignore[arg-type]


def artifact_text(client: MlflowClient, run_id: str, name: str, tmp_path: Path) -> str:
    dest = tmp_path / f"dl-{uuid.uuid4().hex[:6]}"
    dest.mkdir()
    return Path(client.download_artifacts(run_id, name, str(dest))).read_text()


def runs_for(client: MlflowClient, experiment_id: str, interaction_id: str) -> list:
    return client.search_runs([experiment_id], filter_string=f"tags.interaction_id = '{interaction_id}'")


def traces_for(client: MlflowClient, experiment_id: str, interaction_id: str) -> list:
    return client.search_traces(locations=[experiment_id], filter_string=f"tags.interaction_id = '{interaction_id}'")


def test_ok_interaction_run_and_trace(mlflow_server: MlflowServer, tmp_path: Path) -> None:
    settings = settings_for(mlflow_server, tmp_path)
    sink = MlflowSink(settings)
    it = make_interaction(settings)
    opened = sink.open_run(it)
    ref = sink.write(it, opened.run_id)
    assert ref == opened
    assert ref.url == f"{mlflow_server.url}/#/experiments/{ref.experiment_id}/runs/{ref.run_id}"

    client = MlflowClient(mlflow_server.url)
    assert client.get_experiment_by_name(settings.experiment_name).experiment_id == ref.experiment_id
    run = client.get_run(ref.run_id)
    assert run.info.status == "FINISHED"
    assert run.info.start_time == it.started_at_ms and run.info.end_time == it.ended_at_ms
    tags = run.data.tags
    assert {
        k: tags[k]
        for k in (
            "agent",
            "a2a_url",
            "kagent_task_id",
            "kagent_context_id",
            "task_state",
            "protocol_version",
            "interaction_id",
            "status",
        )
    } == {
        "agent": "rh-analyze-simple",
        "a2a_url": it.a2a_url,
        "kagent_task_id": "task-1",
        "kagent_context_id": "ctx-1",
        "task_state": "completed",
        "protocol_version": "0.3",
        "interaction_id": it.interaction_id,
        "status": "ok",
    }
    assert "error" not in tags
    assert run.data.metrics == {
        "latency_ms": 321.5,
        "promptTokenCount": 12,
        "candidatesTokenCount": 5,
        "totalTokenCount": 17,
        "input_tokens": 12,
        "output_tokens": 5,
        "total_tokens": 17,
        "tool_calls": 2,
    }
    assert run.data.params == {"question_chars": str(len(it.question))}
    assert artifact_text(client, ref.run_id, "question.txt", tmp_path) == "What is Kubernetes?"
    assert artifact_text(client, ref.run_id, "answer.txt", tmp_path) == "Kubernetes orchestrates containers."
    assert json.loads(artifact_text(client, ref.run_id, "a2a_response.json", tmp_path)) == it.raw_response

    traces = client.search_traces(locations=[ref.experiment_id], run_id=ref.run_id)
    assert len(traces) == 1
    trace = traces[0]
    assert trace.info.tags["interaction_id"] == it.interaction_id
    assert trace.info.state.value == "OK"
    assert trace.info.request_time == it.started_at_ms and trace.info.execution_duration == 322
    assert trace.info.token_usage == {"input_tokens": 12, "output_tokens": 5, "total_tokens": 17}
    root = next(s for s in trace.data.spans if s.parent_id is None)
    assert (root.name, root.span_type, root.inputs, root.outputs) == (
        "rh-analyze-simple",
        "AGENT",
        "What is Kubernetes?",
        "Kubernetes orchestrates containers.",
    )
    assert root.get_attribute(SpanAttributeKey.CHAT_USAGE)["total_tokens"] == 17
    assert root.get_attribute("latency_ms") == 321.5
    assert root.start_time_ns == it.started_at_ms * 1_000_000
    tools = sorted((s.name, s.span_type, json.dumps(s.inputs)) for s in trace.data.spans if s.parent_id)
    assert tools == [("k8s_describe", "TOOL", '{"name": "web"}'), ("k8s_get_resources", "TOOL", '{"kind": "pods"}')]


def test_error_interaction_is_a_failed_run(mlflow_server: MlflowServer, tmp_path: Path) -> None:
    settings = settings_for(mlflow_server, tmp_path)
    it = make_interaction(
        settings,
        status="error",
        answer=None,
        error="agent at http://127.0.0.1:8083/: HTTP 503 Service Unavailable",
        task_state="failed",
        usage={},
        tool_calls=[],
        raw_response="<html>503</html>",
    )
    ref = MlflowSink(settings).write(it)
    client = MlflowClient(mlflow_server.url)
    run = client.get_run(ref.run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["status"] == "error"
    assert run.data.tags["error"] == it.error
    assert run.data.tags["task_state"] == "failed"
    assert run.data.metrics == {"latency_ms": 321.5, "tool_calls": 0}
    assert "HTTP 503" in artifact_text(client, ref.run_id, "answer.txt", tmp_path)
    assert json.loads(artifact_text(client, ref.run_id, "a2a_response.json", tmp_path)) == "<html>503</html>"
    (trace,) = client.search_traces(locations=[ref.experiment_id], run_id=ref.run_id)
    assert trace.info.state.value == "ERROR"
    assert trace.info.token_usage is None


def test_secrets_never_reach_mlflow(mlflow_server: MlflowServer, tmp_path: Path) -> None:
    settings = settings_for(
        mlflow_server, tmp_path, a2a_token=TOKEN, aws_access_key_id=AWS_KEY_ID, aws_secret_access_key=AWS_SECRET
    )
    it = make_interaction(
        settings,
        question=f"my token is {TOKEN}, is that ok?",
        answer=f"Do not share {AWS_SECRET}.",
        a2a_url=f"http://127.0.0.1:8083/a2a/?token={TOKEN}",
        raw_response={
            "request_headers": {"Authorization": f"Bearer {TOKEN}"},
            "result": {"metadata": {"api_key": "sk-live-123456", "aws": AWS_KEY_ID}},
        },
        tool_calls=[ToolCall(name="s3_list", arguments={"secret_access_key": AWS_SECRET}, result=f"used {TOKEN}")],
    )
    ref = MlflowSink(settings).write(it)
    client = MlflowClient(mlflow_server.url)
    run = client.get_run(ref.run_id)
    (trace,) = client.search_traces(locations=[ref.experiment_id], run_id=ref.run_id)
    logged = [
        json.dumps(run.data.tags),
        json.dumps(run.data.params),
        *(artifact_text(client, ref.run_id, n, tmp_path) for n in ("question.txt", "answer.txt", "a2a_response.json")),
        trace.to_json(),
    ]
    for text in logged:
        for secret in (TOKEN, AWS_KEY_ID, AWS_SECRET, "sk-live-123456"):
            assert secret not in text
    assert "[REDACTED]" in logged[2] and "[REDACTED]" in logged[4]


@pytest.mark.parametrize("mode", ["new-process", "new-process-with-run-id", "same-sink"])
@pytest.mark.parametrize("step", STEPS)
def test_replay_after_crash_at_each_step(mlflow_server: MlflowServer, tmp_path: Path, step: str, mode: str) -> None:
    settings = settings_for(mlflow_server, tmp_path)
    it = make_interaction(settings)
    first = MlflowSink(settings)
    run_id = first.open_run(it).run_id if mode != "new-process" else None
    with pytest.raises(StoppedAfterStep):
        first.write(it, run_id, _stop_after=step)

    # A new sink stands for a new process: it knows nothing but the record (and the run id, if it was spooled).
    ref = (first if mode == "same-sink" else MlflowSink(settings)).write(it, run_id)
    client = MlflowClient(mlflow_server.url)
    (run,) = runs_for(client, ref.experiment_id, it.interaction_id)
    assert run.info.run_id == ref.run_id and run.info.status == "FINISHED"
    assert [m.value for m in client.get_metric_history(ref.run_id, "totalTokenCount")] == [17]
    assert [m.value for m in client.get_metric_history(ref.run_id, "latency_ms")] == [321.5]
    assert sorted(f.path for f in client.list_artifacts(ref.run_id)) == [
        "a2a_response.json",
        "answer.txt",
        "question.txt",
    ]
    (trace,) = traces_for(client, ref.experiment_id, it.interaction_id)
    assert trace.info.token_usage == {"input_tokens": 12, "output_tokens": 5, "total_tokens": 17}
    assert len(trace.data.spans) == 3
    assert client.search_traces(locations=[ref.experiment_id], run_id=ref.run_id)[0].info.trace_id == (
        trace.info.trace_id
    )


def test_write_of_a_finished_run_is_a_no_op(mlflow_server: MlflowServer, tmp_path: Path) -> None:
    settings = settings_for(mlflow_server, tmp_path)
    it = make_interaction(settings)
    writer = MlflowSink(settings)
    ref = writer.write(it)

    def calls_of(action) -> int:  # type: ignore[no-untyped-def]
        sink = MlflowSink(settings)
        sink._experiment_id(it.experiment_name)  # warm the experiment cache: count only the record's own calls
        before = len(access_log(mlflow_server))
        assert action(sink) == ref
        return len(access_log(mlflow_server)) - before

    assert calls_of(lambda sink: sink.write(it)) == 1  # search_runs finds it FINISHED: nothing written
    assert calls_of(lambda sink: sink.write(it, ref.run_id)) == 1  # get_run finds it FINISHED
    before = len(access_log(mlflow_server))
    assert writer.write(it) == ref  # the sink that wrote it remembers: no round trip at all
    assert writer.open_run(it) == ref  # a late open_run (the live path was slow) reuses the run
    assert len(access_log(mlflow_server)) == before
    assert len(runs_for(MlflowClient(mlflow_server.url), ref.experiment_id, it.interaction_id)) == 1


def access_log(server: MlflowServer) -> list[str]:
    lines = server.log_path.read_text(errors="replace").splitlines()
    return [line for line in lines if '" 2' in line and "HTTP/1.1" in line and "GET /version" not in line]


def test_round_trips_per_record(mlflow_server: MlflowServer, tmp_path: Path) -> None:
    """The number stated in the sink's docstring: 1 (open_run) + 7 (write), counted in the server's access log."""
    settings = settings_for(mlflow_server, tmp_path)
    sink = MlflowSink(settings)
    warm = make_interaction(settings)
    sink.write(warm, sink.open_run(warm).run_id)  # experiment lookup/creation happens once per sink

    it = make_interaction(settings)
    start = len(access_log(mlflow_server))
    run_id = sink.open_run(it).run_id
    after_open = len(access_log(mlflow_server))
    sink.write(it, run_id)
    calls = access_log(mlflow_server)[after_open:]
    print("open_run:", after_open - start, "write:", len(calls), *calls, sep="\n  ")
    assert after_open - start == 1
    assert len(calls) == 7


def test_fault_hook_kills_the_process_after_a_step(mlflow_server: MlflowServer, tmp_path: Path) -> None:
    """The env hook the delivery fault tests use: SIGKILL right after a step, then a replay completes the record."""
    settings = settings_for(mlflow_server, tmp_path)
    it = make_interaction(settings)
    record = tmp_path / "record.json"
    record.write_text(it.model_dump_json())
    code = (
        "import sys; from pathlib import Path\n"
        "from kagent_mlflow.config import Settings\n"
        "from kagent_mlflow.records import Interaction\n"
        "from kagent_mlflow.sinks.mlflow import MlflowSink\n"
        f"s = Settings(tracking_uri={settings.tracking_uri!r}, experiment_name={settings.experiment_name!r},"
        f" home=Path({str(settings.home)!r}))\n"
        f"MlflowSink(s).write(Interaction.model_validate_json(Path({str(record)!r}).read_text()))\n"
    )
    env = {**os.environ, FAULT_ENV: "trace"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr[-2000:]
    client = MlflowClient(mlflow_server.url)
    experiment_id = client.get_experiment_by_name(settings.experiment_name).experiment_id
    (half,) = runs_for(client, experiment_id, it.interaction_id)
    assert half.info.status == "RUNNING"

    ref = MlflowSink(settings).write(it)
    (run,) = runs_for(client, experiment_id, it.interaction_id)
    assert (run.info.run_id, run.info.status) == (ref.run_id, "FINISHED")
    assert len(traces_for(client, experiment_id, it.interaction_id)) == 1


def test_embedded_store_under_home_nothing_in_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    settings = Settings(tracking_uri=None, experiment_name="embedded", home=tmp_path / "nested" / "home")
    assert settings.is_embedded
    it = make_interaction(settings)
    ref = MlflowSink(settings).write(it)
    assert ref.url.endswith(f"/#/experiments/{ref.experiment_id}/runs/{ref.run_id}")

    client = MlflowClient(settings.effective_tracking_uri)
    experiment = client.get_experiment(ref.experiment_id)
    assert experiment.artifact_location == settings.embedded_artifact_root.as_uri()
    run = client.get_run(ref.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["interaction_id"] == it.interaction_id
    assert artifact_text(client, ref.run_id, "answer.txt", tmp_path) == it.answer
    (trace,) = client.search_traces(locations=[ref.experiment_id], run_id=ref.run_id)
    assert trace.info.token_usage["total_tokens"] == 17
    assert list(cwd.iterdir()) == []
    assert (settings.home / "mlflow.db").is_file()
    assert MlflowSink(settings).write(it) == ref  # replay in embedded mode: same run


def test_one_sink_shared_by_threads(mlflow_server: MlflowServer, tmp_path: Path) -> None:
    """The delivery layer calls one sink from several worker threads: every record lands once, in one experiment."""
    from concurrent.futures import ThreadPoolExecutor

    settings = settings_for(mlflow_server, tmp_path)
    sink = MlflowSink(settings)
    records = [make_interaction(settings, question=f"question {i}") for i in range(24)]

    def deliver(it: Interaction) -> str:
        return sink.write(it, sink.open_run(it).run_id if len(it.question) % 2 else None).run_id

    with ThreadPoolExecutor(6) as pool:
        run_ids = list(pool.map(deliver, records))
    client = MlflowClient(mlflow_server.url)
    (experiment,) = [e for e in client.search_experiments() if e.name == settings.experiment_name]
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    assert sorted(r.info.run_id for r in runs) == sorted(run_ids)
    assert {r.data.tags["interaction_id"] for r in runs} == {it.interaction_id for it in records}
    assert all(r.info.status == "FINISHED" for r in runs)
    assert len(client.search_traces(locations=[experiment.experiment_id], max_results=100)) == 24


@pytest.mark.timeout(60)  # MLflow's default retry policy would take minutes here
def test_dead_server_fails_fast(tmp_path: Path) -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    settings = Settings(tracking_uri=uri, experiment_name="x", home=tmp_path / "home")
    sink = MlflowSink(settings)
    with pytest.raises(DeliveryError) as info:
        sink.write(make_interaction(settings))
    err = info.value
    assert err.retryable is True
    assert str(err) == f"MLflow at {uri}: writing the run failed: connection refused"
    with pytest.raises(DeliveryError, match="creating the run failed: connection refused"):
        sink.open_run(make_interaction(settings))


class _Always500(http.server.BaseHTTPRequestHandler):
    def _reply(self) -> None:
        body = b'{"error_code": "INTERNAL_ERROR", "message": "database is on fire"}'
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = _reply  # noqa: N815

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def failing_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Always500)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.timeout(60)
def test_http_500_is_a_retryable_delivery_error(failing_server: str, tmp_path: Path) -> None:
    settings = Settings(tracking_uri=failing_server, experiment_name="x", home=tmp_path / "home")
    with pytest.raises(DeliveryError) as info:
        MlflowSink(settings).write(make_interaction(settings))
    assert info.value.retryable is True
    assert str(info.value).startswith(f"MLflow at {failing_server}: writing the run failed: HTTP 500")
    assert "database is on fire" in str(info.value)


def s3_client(url: str):  # type: ignore[no-untyped-def]
    import boto3

    return boto3.client(
        "s3", endpoint_url=url, aws_access_key_id=AWS_KEY_ID, aws_secret_access_key=AWS_SECRET, region_name="us-east-1"
    )


@pytest.fixture(scope="module")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real S3 API (moto server) on a free port; the storage lane has fuller S3 fixtures."""
    import boto3
    import httpx

    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.HTTPError:
                assert proc.poll() is None, log.read_text()
                threading.Event().wait(0.1)
        boto3.client(
            "s3",
            endpoint_url=url,
            aws_access_key_id=AWS_KEY_ID,
            aws_secret_access_key=AWS_SECRET,
            region_name="us-east-1",
        ).create_bucket(Bucket="kagent-artifacts")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def test_direct_s3_artifacts_use_the_sink_settings_only(
    mlflow_server: MlflowServer, moto_s3: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Experiment stored in S3 (client-side upload): endpoint and keys come from Settings, not the environment."""
    import boto3

    for name in ("MLFLOW_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    settings = settings_for(
        mlflow_server,
        tmp_path,
        s3_endpoint_url=moto_s3,
        aws_access_key_id=AWS_KEY_ID,
        aws_secret_access_key=AWS_SECRET,
    )
    client = MlflowClient(mlflow_server.url)
    client.create_experiment(settings.experiment_name, artifact_location="s3://kagent-artifacts/direct")
    ref = MlflowSink(settings).write(make_interaction(settings))
    leaked = {"MLFLOW_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} & set(os.environ)
    assert not leaked, "settings leaked into the process environment"

    s3 = boto3.client(
        "s3",
        endpoint_url=moto_s3,
        aws_access_key_id=AWS_KEY_ID,
        aws_secret_access_key=AWS_SECRET,
        region_name="us-east-1",
    )
    prefix = f"direct/{ref.run_id}/artifacts/"
    listed = s3.list_objects_v2(Bucket="kagent-artifacts", Prefix=prefix)
    assert sorted(o["Key"][len(prefix) :] for o in listed["Contents"]) == [
        "a2a_response.json",
        "answer.txt",
        "question.txt",
    ]
    body = s3.get_object(Bucket="kagent-artifacts", Key=prefix + "answer.txt")["Body"].read().decode()
    assert body == "Kubernetes orchestrates containers."
