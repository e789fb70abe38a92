"""No planted secret reaches MLflow, the spool, a log line or the output (issue 8, Why #4 / Deliver 3).

The agent URL carries ``user:password@`` and ``?api_key=``; a bearer token and AWS keys are configured too. Questions
go through ``kagent-mlflow ask --json`` (subprocess) and through the library, answered and failed, against the real
a2a-sdk test agent and a private MLflow server (SQLite + proxied artifact folder). Then every byte the server stored
(database file, artifact folder, its log), the traces read back through the client, the spool folder, the CLI's
stdout/stderr and the library's log records are searched for every planted string.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.support.a2a_agents import A2AAgent, BadServer
from tests.support.mlflow_server import MlflowServer

pytestmark = pytest.mark.integration

CLI = Path(sys.executable).with_name("kagent-mlflow")
USER_PASSWORD = "URLPASS789"
QUERY_SECRET = "QUERYSECRET456"
SIG_SECRET = "SIGSECRET321"
TOKEN = "A2ATOKENSECRET654"
AWS_KEY_ID = "AKIAPLANTEDKEY000042"
AWS_SECRET = "AWSSECRETPLANTED0000987654321"
PLANTED = (USER_PASSWORD, QUERY_SECRET, SIG_SECRET, TOKEN, AWS_KEY_ID, AWS_SECRET)


def with_secrets(url: str) -> str:
    """``http://127.0.0.1:P/path/`` -> the same URL with userinfo and secret query parameters."""
    scheme, rest = url.split("://", 1)
    return f"{scheme}://alice:{USER_PASSWORD}@{rest}?api_key={QUERY_SECRET}&X-Amz-Signature={SIG_SECRET}&page=2"


def found_in(blob: bytes | str) -> list[str]:
    data = blob.encode("utf-8", "surrogateescape") if isinstance(blob, str) else blob
    return [s for s in PLANTED if s.encode() in data]


def scan_folder(root: Path) -> dict[str, list[str]]:
    """Every file under ``root`` (database, WAL, artifacts, logs, spool) -> planted strings found in it."""
    hits = {}
    for path in root.rglob("*"):
        if path.is_file() and (found := found_in(path.read_bytes())):
            hits[str(path)] = found
    return hits


@pytest.fixture
def private_server(mlflow_server_factory) -> MlflowServer:  # type: ignore[no-untyped-def]
    return mlflow_server_factory()


def server_root(server: MlflowServer) -> Path:
    return Path(server.backend_store_uri.removeprefix("sqlite:///")).parent


def cli_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_", "A2A_"))}
    env.update(
        KAGENT_MLFLOW_HOME=str(home),
        A2A_TOKEN=TOKEN,
        AWS_ACCESS_KEY_ID=AWS_KEY_ID,
        AWS_SECRET_ACCESS_KEY=AWS_SECRET,
        AWS_SHARED_CREDENTIALS_FILE=str(home / "none"),
        AWS_CONFIG_FILE=str(home / "none"),
    )
    return env


def test_no_planted_secret_is_stored_logged_or_printed(
    private_server: MlflowServer,
    a2a_agent: A2AAgent,
    a2a_bad_server: BadServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mlflow.tracking import MlflowClient

    from kagent_mlflow import AgentError, KagentMLflowLogger

    experiment = f"secrets-scan-{uuid.uuid4().hex[:8]}"
    home = tmp_path / "home"
    good_url, bad_url = with_secrets(a2a_agent.url), with_secrets(a2a_bad_server.url("http404"))
    outputs: list[str] = []

    # The CLI, answered and failed (the failure's message quotes the URL it could not use).
    for url, code in ((good_url, 0), (bad_url, 3)):
        args = ["ask", "--json", "--a2a-url", url, "--tracking-uri", private_server.url, "--experiment", experiment]
        done = subprocess.run(
            [str(CLI), *args, "What is Kubernetes?"], env=cli_env(home), capture_output=True, text=True, timeout=240
        )
        assert done.returncode == code, done.stderr
        outputs += [done.stdout, done.stderr]
    answered = json.loads(outputs[0])
    assert answered["answer"] == "Answer to: What is Kubernetes?" and answered["run_id"]
    assert "http://127.0.0.1:" in outputs[3]  # the error still names where it went, without the secrets

    # The library, answered and failed, with every log line of the package captured.
    caplog.set_level(logging.DEBUG, logger="kagent_mlflow")
    monkeypatch.setenv("KAGENT_MLFLOW_HOME", str(home))
    for url in (good_url, bad_url):
        with KagentMLflowLogger(
            mlflow_tracking_uri=private_server.url,
            a2a_url=url,
            experiment_name=experiment,
            aws_access_key_id=AWS_KEY_ID,
            aws_secret_access_key=AWS_SECRET,
            a2a_token=TOKEN,
        ) as logger:
            try:
                result = logger.send_question("What is OpenShift?")
                outputs.append(json.dumps(dict(result.items()), default=str))
            except AgentError as err:
                outputs.append(str(err))
            assert logger.flush(60)
    outputs += [record.getMessage() for record in caplog.records]

    client = MlflowClient(private_server.url)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 4, [r.info.run_name for r in runs]
    masked = "?api_key=REDACTED&X-Amz-Signature=REDACTED&page=2"
    assert {r.data.tags["a2a_url"] for r in runs} == {a2a_agent.url + masked, a2a_bad_server.url("http404") + masked}
    read_back = [json.dumps([r.info.run_name, r.data.tags, r.data.params], default=str) for r in runs]
    traces = client.search_traces(locations=[exp.experiment_id])
    assert len(traces) == 4
    read_back += [trace.to_json() for trace in traces]

    leaks = {
        "server files (database, artifacts, log)": scan_folder(server_root(private_server)),
        "client home (spool)": scan_folder(home),
        "runs and traces read back": [found_in(text) for text in read_back if found_in(text)],
        "stdout, stderr, log records": [found_in(text) for text in outputs if found_in(text)],
    }
    assert not any(leaks.values()), leaks
