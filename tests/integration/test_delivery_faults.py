"""Fault tests of out-of-band delivery against a real MLflow server and a real A2A agent.

Every test ends the same way a user would check: for each answered question, exactly one run carries its
``interaction_id`` tag in MLflow (``MlflowClient.search_runs``), and it is complete (FINISHED, answer artifact).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from kagent_mlflow.config import Settings
from kagent_mlflow.delivery import Spool, replay
from kagent_mlflow.logger import KagentMLflowLogger
from kagent_mlflow.records import Destination, Interaction
from tests.support.mlflow_server import MlflowServer, start_mlflow_server

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------------------- helpers


class FailingProxy:
    """An HTTP proxy in front of MLflow that answers 500 while ``fail`` says so (for all paths or some)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.fail_paths: tuple[str, ...] | None = None  # None: forward everything; () : fail every request
        self.delay = 0.0  # seconds added to every forwarded request (a slow MLflow)
        self.failed = 0
        self.in_flight = 0  # requests received and not yet answered (they still reach MLflow if their client died)
        self._count = threading.Lock()
        client = httpx.Client(base_url=upstream, timeout=30)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def _handle(self) -> None:
                with proxy._count:
                    proxy.in_flight += 1
                try:
                    self._forward()
                finally:
                    with proxy._count:
                        proxy.in_flight -= 1

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if proxy.should_fail(self.path):
                    proxy.failed += 1
                    self._reply(500, b'{"error_code": "INTERNAL_ERROR", "message": "injected by test proxy"}', {})
                    return
                if proxy.delay:
                    time.sleep(proxy.delay)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                upstream = client.request(self.command, self.path, content=body, headers=headers)
                self._reply(upstream.status_code, upstream.content, upstream.headers)

            def _reply(self, status: int, body: bytes, headers: object) -> None:
                self.send_response(status)
                skip = {"content-length", "transfer-encoding", "connection", "content-encoding"}
                for key, value in headers.items():  # type: ignore[attr-defined]
                    if key.lower() not in skip:
                        self.send_header(key, value)
                if not headers:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.request_queue_size = 64
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._client = client

    def should_fail(self, path: str) -> bool:
        if self.fail_paths is None:
            return False
        return not self.fail_paths or any(p in path for p in self.fail_paths)

    def wait_idle(self, timeout: float) -> None:
        """Until every request already received has been forwarded and answered."""
        deadline = time.monotonic() + timeout
        while self.in_flight and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.in_flight == 0, f"{self.in_flight} requests still in flight after {timeout:g}s"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._client.close()


def runs_by_interaction(tracking_uri: str, experiment: str) -> Counter[str]:
    """How many runs carry each interaction_id tag (a user's check: one run per question, no duplicates)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return Counter()
    counts: Counter[str] = Counter()
    token = None
    while True:
        page = client.search_runs([exp.experiment_id], max_results=1000, page_token=token)
        for run in page:
            counts[run.data.tags.get("interaction_id", "?")] += 1
        token = page.token
        if not token:
            return counts


def assert_one_complete_run_each(tracking_uri: str, experiment: str, interaction_ids: set[str]) -> None:
    from mlflow.tracking import MlflowClient

    counts = runs_by_interaction(tracking_uri, experiment)
    duplicated = {k: v for k, v in counts.items() if v > 1}
    assert not duplicated, f"duplicate runs: {duplicated}"
    missing = interaction_ids - set(counts)
    assert not missing, f"{len(missing)} answered questions have no run"
    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    unfinished = client.search_runs([exp.experiment_id], "attributes.status != 'FINISHED'", max_results=10)
    assert not unfinished, f"runs left unfinished: {[r.info.run_id for r in unfinished]}"


def replay_all(settings: Settings) -> None:
    from kagent_mlflow.sinks.mlflow import MlflowSink

    report = replay(Spool(settings.effective_spool_dir), MlflowSink(settings), workers=4, attempts=3)
    assert not report.stopped_on_outage and report.failed == 0, report.errors
    assert Spool(settings.effective_spool_dir).status().pending == 0


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def private_mlflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """One MLflow server for this module that tests may kill and restart (each test uses its own experiment)."""
    root = tmp_path_factory.mktemp("mlflow-faults")
    server = start_mlflow_server(
        f"sqlite:///{root / 'mlflow.db'}",
        artifacts_args=["--artifacts-destination", str(root / "artifacts")],
        log_path=root / "server.log",
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def ensure_running(private_mlflow: MlflowServer) -> MlflowServer:
    if not private_mlflow.running:
        private_mlflow.start()
    return private_mlflow


def make_settings(tmp_path: Path, a2a_url: str, tracking_uri: str, experiment: str) -> Settings:
    return Settings(
        a2a_url=a2a_url,
        tracking_uri=tracking_uri,
        experiment_name=experiment,
        home=tmp_path / "home",
        spool_dir=tmp_path / "spool",
        timeout=30,
    )


def sample(i: int, settings: Settings) -> Interaction:
    return Interaction(
        question=f"question {i}",
        answer=f"answer {i}",
        agent_name="fault-agent",
        a2a_url="http://127.0.0.1:9/",
        usage={"promptTokenCount": 3, "candidatesTokenCount": 5},
        raw_response={"jsonrpc": "2.0", "result": {"n": i}},
        latency_ms=2.5,
        destination=Destination.from_settings(settings),
    )


# ---------------------------------------------------------------------------------------------- spool damage


def test_corrupted_spool_line_is_skipped_with_a_warning_and_the_rest_delivered(
    ensure_running: MlflowServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(tmp_path, "http://127.0.0.1:9/", ensure_running.url, "faults-corrupt")
    spool = Spool(settings.effective_spool_dir)
    records = [sample(i, settings) for i in range(10)]
    for record in records:
        spool.append(record)
    spool.close()
    (segment,) = settings.effective_spool_dir.glob("*.jsonl")
    lines = segment.read_bytes().splitlines(keepends=True)
    lines[4] = lines[4][:30] + b"\x00garbage\n"  # a record damaged in the middle of the file
    segment.write_bytes(b"".join(lines) + lines[0][:25])  # and a torn last line, as a crash mid-write leaves

    with caplog.at_level(logging.WARNING, logger="kagent_mlflow.delivery"):
        replay_all(settings)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("corrupted line 5" in w for w in warnings), warnings
    assert any("torn last line" in w for w in warnings), warnings
    expected = {r.interaction_id for i, r in enumerate(records) if i != 4}
    assert_one_complete_run_each(settings.effective_tracking_uri, settings.experiment_name, expected)
    assert set(runs_by_interaction(settings.effective_tracking_uri, settings.experiment_name)) == expected
    assert list((settings.effective_spool_dir / "corrupt").glob("*.bad"))


# ---------------------------------------------------------------------------------------------- crash at each step

_DELIVER_ONE = """
import sys
from kagent_mlflow.config import Settings
from kagent_mlflow.delivery import Recorder, Spool
from kagent_mlflow.records import Destination, Interaction
from kagent_mlflow.sinks.mlflow import MlflowSink

settings = Settings.model_validate_json(sys.argv[1])
interaction = Interaction.model_validate_json(sys.argv[2])
recorder = Recorder(lambda: MlflowSink(settings), Spool(settings.effective_spool_dir), drain_on_start=False)
pending = recorder.begin(interaction)
recorder.record(interaction, pending)
recorder.flush(120)
print("not killed")
"""


@pytest.mark.parametrize("step", ["open_run", "run", "batch", "artifacts", "trace", "end"])
def test_deliverer_killed_after_each_step_then_replay_gives_exactly_one_run(
    ensure_running: MlflowServer, tmp_path: Path, step: str
) -> None:
    settings = make_settings(tmp_path, "http://127.0.0.1:9/", ensure_running.url, f"faults-step-{step}")
    interaction = sample(0, settings)
    if step == "open_run":
        # Killed after the run was opened on the live path, before the deliverer wrote anything.
        from kagent_mlflow.sinks.mlflow import MlflowSink

        MlflowSink(settings).open_run(interaction)
        spool = Spool(settings.effective_spool_dir)
        spool.append(interaction)
        spool.close()
    else:
        env = dict(os.environ, KAGENT_MLFLOW_FAULT_AFTER_STEP=step, MLFLOW_TRACKING_URI="")
        proc = subprocess.run(
            [sys.executable, "-c", _DELIVER_ONE, settings.model_dump_json(), interaction.model_dump_json()],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            cwd=REPO,
        )
        assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
        assert Spool(settings.effective_spool_dir).status().pending == 1  # killed before the ack

    replay_all(settings)
    replay_all(settings)  # replaying again changes nothing
    assert_one_complete_run_each(
        settings.effective_tracking_uri, settings.experiment_name, {interaction.interaction_id}
    )
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=settings.effective_tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name(settings.experiment_name).experiment_id])
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"question.txt", "answer.txt"}
    assert run.data.metrics["latency_ms"] == pytest.approx(2.5)


# ---------------------------------------------------------------------------------------------- MLflow outages


def wait_until(predicate, timeout: float, step: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def ask_many(logger: KagentMLflowLogger, n: int, start: int = 0, pause: float = 0.0) -> list[str]:
    """Ask n questions; every one must be answered whatever MLflow does. Returns their interaction ids."""
    ids = []
    for i in range(start, start + n):
        result = logger.send_question(f"question {i}")
        assert dict.__getitem__(result, "answer") == f"Answer to: question {i}"
        ids.append(dict.__getitem__(result, "interaction_id"))
        if pause:
            time.sleep(pause)
    return ids


def test_mlflow_not_running_200_answers_200_spooled_then_replayed_once_each(a2a_agent, tmp_path: Path) -> None:
    root = tmp_path / "mlflow"
    root.mkdir()
    server = MlflowServer(
        f"sqlite:///{root / 'mlflow.db'}",
        artifacts_args=["--artifacts-destination", str(root / "artifacts")],
        log_path=root / "server.log",
    )  # not started: nothing listens on its port yet
    settings = make_settings(tmp_path, a2a_agent.url, server.url, "faults-never-up")
    logger = KagentMLflowLogger(settings=settings)
    ids = ask_many(logger, 200)
    assert logger.close(timeout=10) is False  # nothing could be delivered
    assert Spool(settings.effective_spool_dir).status().pending == 200
    try:
        server.start()
        replay_all(settings)
        assert_one_complete_run_each(server.url, settings.experiment_name, set(ids))
        assert set(runs_by_interaction(server.url, settings.experiment_name)) == set(ids)
    finally:
        server.stop()


def test_mlflow_killed_mid_run_and_restarted(a2a_agent, ensure_running: MlflowServer, tmp_path: Path) -> None:
    server = ensure_running
    settings = make_settings(tmp_path, a2a_agent.url, server.url, "faults-killed")
    logger = KagentMLflowLogger(settings=settings)
    ids = ask_many(logger, 20, pause=0.05)
    server.kill()  # a crash, with deliveries possibly in flight
    ids += ask_many(logger, 20, start=20, pause=0.05)
    restart = threading.Thread(target=server.start)
    restart.start()
    ids += ask_many(logger, 20, start=40, pause=0.05)  # answered while MLflow is still starting
    restart.join()
    assert server.running
    logger.close(timeout=30)
    replay_all(settings)
    assert_one_complete_run_each(server.url, settings.experiment_name, set(ids))


def test_mlflow_answering_500s_then_recovering_logger_delivers_on_its_own(
    a2a_agent, ensure_running: MlflowServer, tmp_path: Path
) -> None:
    proxy = FailingProxy(ensure_running.url)
    logger = None
    try:
        settings = make_settings(tmp_path, a2a_agent.url, proxy.url, "faults-500")
        logger = KagentMLflowLogger(settings=settings)
        # Runs get created but every later write fails: half-written runs that must be completed, not duplicated.
        proxy.fail_paths = ("/runs/log-batch", "/mlflow-artifacts/", "/runs/update", "/traces")
        ids = ask_many(logger, 10, pause=0.05)
        assert not logger.flush(30)
        proxy.fail_paths = ()  # now every request fails
        ids += ask_many(logger, 10, start=10, pause=0.05)
        assert not logger.flush(30)
        assert proxy.failed > 0
        proxy.fail_paths = None  # MLflow is healthy again
        ids += ask_many(logger, 10, start=20, pause=0.05)
        # No replay: the logger's own retry loop delivers what was spooled.
        assert wait_until(lambda: logger.flush(1), timeout=180), Spool(settings.effective_spool_dir).status()
        assert logger.close(timeout=30) is True
        assert Spool(settings.effective_spool_dir).status().pending == 0
        assert_one_complete_run_each(ensure_running.url, settings.experiment_name, set(ids))
    finally:
        if logger is not None:
            logger.close(timeout=0)
        proxy.close()


# ---------------------------------------------------------------------------------------------- client SIGKILLed

_CLIENT = """
import sys, time
from kagent_mlflow.config import Settings
from kagent_mlflow.logger import KagentMLflowLogger

logger = KagentMLflowLogger(settings=Settings.model_validate_json(sys.argv[1]))
for i in range(int(sys.argv[2])):
    result = logger.send_question(f"question {i}")
    print(dict.__getitem__(result, "interaction_id"), flush=True)
time.sleep(600)
"""


def test_client_sigkilled_mid_delivery_then_replay_gives_each_answer_exactly_one_run(
    a2a_agent, ensure_running: MlflowServer, tmp_path: Path
) -> None:
    proxy = FailingProxy(ensure_running.url)
    proxy.delay = 0.15  # a slow MLflow: deliveries are still in flight when the client dies
    settings = make_settings(tmp_path, a2a_agent.url, proxy.url, "faults-sigkill")
    proc = subprocess.Popen(
        [sys.executable, "-c", _CLIENT, settings.model_dump_json(), "40"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
    )
    answered: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            answered.append(line.strip())
            if len(answered) == 25:
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        assert len(answered) == 25, proc.stderr.read() if proc.stderr else ""
        assert Spool(settings.effective_spool_dir).status().pending > 0  # killed in the middle of delivery

        # The dead client's last requests are still held by the slow proxy and reach MLflow later. A replay that
        # searched for a run before such a create_run landed would make a second run (seen once in CI), so replay
        # starts once they are answered, as a user's replay starts long after the crash.
        proxy.wait_idle(30)
        proxy.delay = 0.0
        replay_all(settings)  # to where the records were meant to go: the proxy's address
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        proxy.close()
    assert_one_complete_run_each(ensure_running.url, settings.experiment_name, set(answered))
