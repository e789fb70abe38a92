"""The same end-to-end test on the three storage backends, verified at the storage layer.

``ask`` (through the ``KagentMLflowLogger`` API and through the ``kagent-mlflow`` CLI in a subprocess) against the
real a2a-sdk 1.x test agent, then the run is read back WITHOUT MLflow's API: its rows (run, tags, metrics, params,
linked trace and spans) from PostgreSQL with psycopg2 or from the embedded SQLite file, and its artifacts from the
S3 bucket with boto3 or from the embedded artifact folder, compared byte for byte.

Backends: ``embedded`` (no tracking URI: SQLite + folder under ``KAGENT_MLFLOW_HOME``, no server),
``pg_s3_direct`` (MLflow server on PostgreSQL, ``--default-artifact-root s3://...``, the client uploads with keys:
given as constructor arguments to the logger and as environment variables to the CLI) and ``pg_s3_proxied``
(``--artifacts-destination s3://...``: the client holds no keys at all).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pytest

from tests.support.a2a_agents import AGENT_NAME, A2AAgent, answer_for, usage_for
from tests.support.storage import (
    REGION,
    S3_ENV_NAMES,
    MotoS3,
    StoredRun,
    sqlite_rows,
    stored_run,
)

pytestmark = pytest.mark.integration

CLI = Path(sys.executable).with_name("kagent-mlflow")
ARTIFACTS = ["a2a_response.json", "answer.txt", "question.txt"]
# Settings a developer's shell may hold that must not steer these tests.
CLIENT_ENV_NAMES = (*S3_ENV_NAMES, "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT", "MLFLOW_EXPERIMENT_NAME", "A2A_URL")


@dataclass
class Backend:
    """How to point the client at one storage backend, and how to read what it stored."""

    name: str
    tracking_uri: str | None  # None = embedded
    home: Path  # KAGENT_MLFLOW_HOME for the client (embedded store and spool)
    rows: Callable[..., list[dict[str, Any]]]
    read_artifacts: Callable[[str], dict[str, bytes]]  # artifact_uri -> {file name: bytes}
    logger_kwargs: dict[str, str] = field(default_factory=dict)  # constructor arguments (seed names)
    cli_env: dict[str, str] = field(default_factory=dict)  # environment for the CLI subprocess
    s3: MotoS3 | None = None

    def stored(self, run_id: str) -> StoredRun:
        run = stored_run(self.rows, run_id)
        assert run is not None, f"run {run_id} is not in the {self.name} store"
        return run


def clean_env(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLIENT_ENV_NAMES}
    # No shared AWS config either: credentials must come from what the test gives.
    env["AWS_SHARED_CREDENTIALS_FILE"] = str(home / "no-aws-credentials")
    env["AWS_CONFIG_FILE"] = str(home / "no-aws-config")
    env["KAGENT_MLFLOW_HOME"] = str(home)
    env.update(extra or {})
    return env


def s3_artifacts(s3: MotoS3, proxied_prefix: str | None = None) -> Callable[[str], dict[str, bytes]]:
    """Read a run's artifacts straight from the bucket (``s3://`` URIs, or the proxied server's destination)."""

    def read(artifact_uri: str) -> dict[str, bytes]:
        if proxied_prefix is not None:
            assert artifact_uri.startswith("mlflow-artifacts:/"), artifact_uri
            prefix = f"{proxied_prefix}/{artifact_uri.removeprefix('mlflow-artifacts:/').strip('/')}/"
        else:
            parsed = urlparse(artifact_uri)
            assert parsed.scheme == "s3" and parsed.netloc == s3.bucket, artifact_uri
            prefix = parsed.path.strip("/") + "/"
        return {key[len(prefix) :]: s3.read(key) for key in s3.keys(prefix)}

    return read


def local_artifacts(root: Path) -> Callable[[str], dict[str, bytes]]:
    def read(artifact_uri: str) -> dict[str, bytes]:
        parsed = urlparse(artifact_uri)
        assert parsed.scheme == "file", artifact_uri
        folder = Path(unquote(parsed.path))
        assert folder.is_relative_to(root), f"{folder} is not under the embedded artifact root {root}"
        return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}

    return read


@pytest.fixture(
    params=[
        "embedded",
        pytest.param("pg_s3_direct", marks=pytest.mark.postgres),
        pytest.param("pg_s3_proxied", marks=pytest.mark.postgres),
    ]
)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    home = tmp_path / "home"
    if request.param == "embedded":
        yield Backend(
            "embedded",
            None,
            home,
            rows=sqlite_rows(home / "mlflow.db"),
            read_artifacts=local_artifacts(home / "artifacts"),
        )
        return
    pg = request.getfixturevalue("pg_database")
    s3: MotoS3 = request.getfixturevalue("s3_server")
    if request.param == "pg_s3_direct":
        server = request.getfixturevalue("mlflow_pg_s3_direct")
        yield Backend(
            "pg_s3_direct",
            server.url,
            home,
            rows=pg.rows,
            read_artifacts=s3_artifacts(s3),
            logger_kwargs={
                "s3_endpoint_url": s3.endpoint_url,
                "aws_access_key_id": s3.access_key_id,
                "aws_secret_access_key": s3.secret_access_key,
            },
            cli_env=s3.env(),
            s3=s3,
        )
    else:
        server = request.getfixturevalue("mlflow_pg_s3_proxied")
        proxied = s3_artifacts(s3, "proxied")
        yield Backend("pg_s3_proxied", server.url, home, rows=pg.rows, read_artifacts=proxied, s3=s3)


def new_question(backend: Backend) -> tuple[str, str]:
    tag = uuid.uuid4().hex[:8]
    return f"How is {backend.name} storage doing today {tag}?", f"storage-{backend.name}-{tag}"


def assert_stored_interaction(
    backend: Backend, run_id: str, *, question: str, experiment: str, interaction_id: str, raw_response: Any = None
) -> StoredRun:
    """What a user would check in the store itself: run, tags, metrics, params, trace with spans, artifact bytes."""
    run = backend.stored(run_id)
    answer = answer_for(question)
    usage = usage_for(question, answer)

    assert run.status == "FINISHED"
    assert run.experiment_name == experiment
    assert run.tags["interaction_id"] == interaction_id
    assert run.tags["agent"] == AGENT_NAME
    assert run.tags["status"] == "ok"
    assert run.tags["task_state"] == "completed"
    assert run.tags["protocol_version"] == "1.0"
    assert run.metrics["input_tokens"] == usage["promptTokenCount"]
    assert run.metrics["output_tokens"] == usage["candidatesTokenCount"]
    assert run.metrics["total_tokens"] == usage["totalTokenCount"]
    assert run.metrics["tool_calls"] == 0
    assert run.metrics["latency_ms"] > 0
    assert run.params["question_chars"] == str(len(question))

    assert run.trace_id is not None, "no trace linked to the run"
    assert run.trace_state == "OK"
    assert run.span_names, "the trace has no spans in the store"

    files = backend.read_artifacts(run.artifact_uri)
    assert sorted(files) == ARTIFACTS
    assert files["question.txt"] == question.encode()
    assert files["answer.txt"] == answer.encode()
    reply = json.loads(files["a2a_response.json"])
    assert reply["result"]["task"]["id"] == run.tags["kagent_task_id"]  # A2A 1.0: result.task
    if raw_response is not None:  # the raw JSON-RPC body the logger received, exactly
        expected = json.loads(raw_response) if isinstance(raw_response, (str, bytes)) else raw_response
        assert reply == expected
        assert files["a2a_response.json"] == (json.dumps(expected, indent=2, ensure_ascii=False) + "\n").encode()
    return run


def test_ask_through_the_logger_lands_in_storage(
    backend: Backend, a2a_agent: A2AAgent, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The seed's API: constructor arguments (S3 keys too, for direct mode); nothing leaks into os.environ."""
    from kagent_mlflow.logger import KagentMLflowLogger

    for name, value in clean_env(backend.home).items():
        monkeypatch.setenv(name, value)
    for name in CLIENT_ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    question, experiment = new_question(backend)

    with KagentMLflowLogger(
        mlflow_tracking_uri=backend.tracking_uri,
        a2a_url=a2a_agent.url,
        experiment_name=experiment,
        **backend.logger_kwargs,
    ) as logger:
        result = logger.send_question(question)
        assert result["answer"] == answer_for(question)
        assert logger.flush(120), f"not delivered: {result['logging_error']}"
        run_id = result["run_id"]
    assert run_id, result["logging_error"]

    assert_stored_interaction(
        backend,
        run_id,
        question=question,
        experiment=experiment,
        interaction_id=result["interaction_id"],
        raw_response=result["response"],
    )
    leaked = set(S3_ENV_NAMES) & set(os.environ)
    assert not leaked, f"constructor settings leaked into os.environ: {leaked}"
    if backend.name == "embedded":
        assert (backend.home / "mlflow.db").is_file()


def run_cli(args: list[str], env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CLI), *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_ask_through_the_cli_lands_in_storage(backend: Backend, a2a_agent: A2AAgent) -> None:
    """``kagent-mlflow ask --json`` in a subprocess; direct-mode S3 settings come from the environment."""
    question, experiment = new_question(backend)
    extra = dict(backend.cli_env)
    if backend.tracking_uri:
        extra["MLFLOW_TRACKING_URI"] = backend.tracking_uri
    env = clean_env(backend.home, extra)
    args = ["ask", question, "--json", "--a2a-url", a2a_agent.url, "--experiment", experiment, "--flush-timeout", "120"]

    done = run_cli(args, env)

    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["answer"] == answer_for(question)
    assert out["run_id"], out.get("logging_error")
    assert "logging_error" not in out
    assert_stored_interaction(
        backend, out["run_id"], question=question, experiment=experiment, interaction_id=out["interaction_id"]
    )


@pytest.mark.postgres
def test_direct_mode_keys_stay_with_the_logger(
    pg_database: Any, s3_server: MotoS3, mlflow_pg_s3_direct: Any, a2a_agent: A2AAgent, tmp_path: Path, monkeypatch
) -> None:
    """Constructor keys upload this logger's artifacts, but other code in the process does not get them."""
    import boto3
    from botocore.exceptions import NoCredentialsError

    from kagent_mlflow.logger import KagentMLflowLogger

    home = tmp_path / "home"
    for name, value in clean_env(home).items():
        monkeypatch.setenv(name, value)
    for name in CLIENT_ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    question = f"Who holds the keys {uuid.uuid4().hex[:8]}?"
    with KagentMLflowLogger(
        mlflow_tracking_uri=mlflow_pg_s3_direct.url,
        a2a_url=a2a_agent.url,
        experiment_name=f"storage-keys-{uuid.uuid4().hex[:8]}",
        s3_endpoint_url=s3_server.endpoint_url,
        aws_access_key_id=s3_server.access_key_id,
        aws_secret_access_key=s3_server.secret_access_key,
    ) as logger:
        result = logger.send_question(question)
        assert logger.flush(120), result["logging_error"]
        run_id = result["run_id"]

    run = stored_run(pg_database.rows, run_id)
    assert run is not None and run.status == "FINISHED"
    assert s3_artifacts(s3_server)(run.artifact_uri)["question.txt"] == question.encode()

    assert not set(S3_ENV_NAMES) & set(os.environ)
    assert boto3.Session().get_credentials() is None, "boto3's default session found credentials"
    unrelated = boto3.client("s3", endpoint_url=s3_server.endpoint_url, region_name=REGION)
    with pytest.raises(NoCredentialsError):
        unrelated.list_objects_v2(Bucket=s3_server.bucket)
    # Nor did the keys end up in anything written to MLflow.
    written = json.dumps([run.tags, run.params]) + "".join(
        b.decode() for b in s3_artifacts(s3_server)(run.artifact_uri).values()
    )
    assert s3_server.secret_access_key not in written
    assert s3_server.access_key_id not in written
