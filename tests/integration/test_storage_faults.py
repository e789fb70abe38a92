"""Bad storage configuration: one clear line, the answer still printed, the record kept and later delivered.

Each case runs ``kagent-mlflow ask`` as a subprocess (so a traceback would show on stderr), checks the answer and
the one-line reason, checks the record waits in the spool (``kagent-mlflow status --json``), then repairs the
configuration, runs ``kagent-mlflow replay`` and finds the interaction in PostgreSQL and the S3 bucket (one run,
not two). Cases: wrong S3 secret, missing bucket, S3 endpoint down (direct artifacts); PostgreSQL gone from behind
a running MLflow server (a TCP proxy between them is cut); PostgreSQL down under a database tracking URI; a tracking
URI with a wrong scheme (rejected before anything is sent).
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.support.a2a_agents import A2AAgent, answer_for
from tests.support.mlflow_server import MlflowServer, free_port, start_mlflow_server
from tests.support.storage import MotoS3, PgDatabase, TcpProxy, proxied_artifacts_args, stored_run

from .test_storage_backends import clean_env, run_cli, s3_artifacts

pytestmark = pytest.mark.integration

FLUSH = "20"  # seconds `ask` waits for MLflow before leaving the record in the spool


def ask(
    home: Path, agent: A2AAgent, env: dict[str, str], *extra: str, flush: str = FLUSH
) -> tuple[str, str, subprocess.CompletedProcess]:
    question = f"Is my storage configured right {uuid.uuid4().hex[:8]}?"
    experiment = f"storage-faults-{uuid.uuid4().hex[:8]}"
    args = ["ask", question, "--a2a-url", agent.url, "--experiment", experiment, "--flush-timeout", flush, *extra]
    return question, experiment, run_cli(args, clean_env(home, env))


def assert_answered_and_spooled(done: subprocess.CompletedProcess, question: str, *reasons: str) -> str:
    """The answer is on stdout; stderr says in one line why it is not in MLflow yet; no traceback."""
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 0, (done.returncode, done.stderr)
    assert f"Answer: {answer_for(question)}" in done.stdout
    lines = done.stderr.strip().splitlines()
    why = [line for line in lines if line.startswith("Not in MLflow yet:")]
    assert len(why) == 1, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert any(reason in why[0] for reason in reasons), why[0]
    assert "record kept in the spool" in why[0]
    assert "kagent-mlflow replay" in done.stderr
    return why[0]


def spool_pending(home: Path) -> int:
    done = run_cli(["status", "--json"], clean_env(home), timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["pending"]


def replay(home: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess:
    done = run_cli(["replay", "--workers", "1", *extra], clean_env(home, env))
    assert "Traceback" not in done.stderr, done.stderr
    return done


def the_run(pg: PgDatabase, experiment: str) -> str:
    """The single run of ``experiment`` (replay completed the opened run rather than adding one)."""
    rows = pg.rows(
        "SELECT r.run_uuid FROM runs r JOIN experiments e ON e.experiment_id = r.experiment_id WHERE e.name = %s",
        (experiment,),
    )
    assert len(rows) == 1, f"expected one run in {experiment}, found {len(rows)}"
    return rows[0]["run_uuid"]


def assert_delivered(pg: PgDatabase, s3: MotoS3, experiment: str, question: str, proxied: bool = False) -> None:
    run = stored_run(pg.rows, the_run(pg, experiment))
    assert run is not None and run.status == "FINISHED"
    assert run.trace_id is not None
    files = s3_artifacts(s3, "proxied" if proxied else None)(run.artifact_uri)
    assert files["question.txt"] == question.encode()
    assert files["answer.txt"] == answer_for(question).encode()


def server_env(server: MlflowServer, s3: MotoS3, **changes: str) -> dict[str, str]:
    env = {"MLFLOW_TRACKING_URI": server.url, **s3.env()}
    env.update(changes)
    return env


# ---------------------------------------------------------------------------------------------------------------------
# Direct artifacts: the client's own S3 settings are wrong
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.postgres
def test_wrong_s3_secret(
    pg_database: PgDatabase, s3_server: MotoS3, mlflow_pg_s3_direct: MlflowServer, a2a_agent: A2AAgent, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    wrong = "not-the-secret-" + uuid.uuid4().hex
    env = server_env(mlflow_pg_s3_direct, s3_server)
    env.pop("AWS_SECRET_ACCESS_KEY")
    question, experiment, done = ask(home, a2a_agent, env, "--aws-secret-access-key", wrong)  # constructor path

    why = assert_answered_and_spooled(done, question, "SignatureDoesNotMatch")
    assert wrong not in done.stdout + done.stderr
    assert spool_pending(home) == 1

    fixed = replay(home, server_env(mlflow_pg_s3_direct, s3_server))
    assert fixed.returncode == 0, fixed.stderr
    assert "Delivered 1" in fixed.stdout, (why, fixed.stdout, fixed.stderr)
    assert spool_pending(home) == 0
    assert_delivered(pg_database, s3_server, experiment, question)


@pytest.mark.postgres
def test_missing_bucket(
    pg_database: PgDatabase, s3_server: MotoS3, mlflow_pg_s3_direct: MlflowServer, a2a_agent: A2AAgent, tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient

    home = tmp_path / "home"
    bucket = f"not-created-{uuid.uuid4().hex[:8]}"
    experiment = f"storage-faults-bucket-{uuid.uuid4().hex[:8]}"
    MlflowClient(mlflow_pg_s3_direct.url).create_experiment(experiment, artifact_location=f"s3://{bucket}/runs")
    env = server_env(mlflow_pg_s3_direct, s3_server)
    question = f"Where is my bucket {uuid.uuid4().hex[:8]}?"
    args = ["ask", question, "--a2a-url", a2a_agent.url, "--experiment", experiment, "--flush-timeout", FLUSH]
    done = run_cli(args, clean_env(home, env))

    assert_answered_and_spooled(done, question, "NoSuchBucket")
    assert spool_pending(home) == 1

    s3_server.client().create_bucket(Bucket=bucket)
    fixed = replay(home, env)
    assert fixed.returncode == 0 and "Delivered 1" in fixed.stdout, fixed.stdout + fixed.stderr
    run = stored_run(pg_database.rows, the_run(pg_database, experiment))
    assert run is not None and run.status == "FINISHED"
    assert (
        s3_server.client().get_object(Bucket=bucket, Key=f"runs/{run.run_id}/artifacts/question.txt")["Body"].read()
        == question.encode()
    )


@pytest.mark.postgres
def test_s3_endpoint_down(
    pg_database: PgDatabase, s3_server: MotoS3, mlflow_pg_s3_direct: MlflowServer, a2a_agent: A2AAgent, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    dead = f"http://127.0.0.1:{free_port()}"
    question, experiment, done = ask(
        home, a2a_agent, server_env(mlflow_pg_s3_direct, s3_server, MLFLOW_S3_ENDPOINT_URL=dead)
    )

    assert_answered_and_spooled(done, question, "Could not connect", "connection refused", "EndpointConnectionError")
    assert spool_pending(home) == 1

    # The record names the endpoint it was made for: a plain replay keeps it there (still down) ...
    kept = replay(home, server_env(mlflow_pg_s3_direct, s3_server))
    assert kept.returncode == 4 and "Delivered 0" in kept.stdout, kept.stdout + kept.stderr
    assert dead in kept.stdout and spool_pending(home) == 1
    # ... and sending it through another endpoint is the user's explicit choice.
    fixed = replay(home, server_env(mlflow_pg_s3_direct, s3_server), "--s3-endpoint-url", s3_server.endpoint_url)
    assert fixed.returncode == 0 and "Delivered 1" in fixed.stdout, fixed.stdout + fixed.stderr
    assert_delivered(pg_database, s3_server, experiment, question)


# ---------------------------------------------------------------------------------------------------------------------
# PostgreSQL goes away
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture
def mlflow_behind_proxy(pg_database: PgDatabase, s3_server: MotoS3, tmp_path: Path) -> tuple[MlflowServer, TcpProxy]:  # type: ignore[misc]
    """A private MLflow server (proxied S3 artifacts) that reaches the session database through a TCP proxy."""
    proxy = TcpProxy(pg_database.host, pg_database.port).start()
    server = start_mlflow_server(
        pg_database.uri_via(proxy.port),
        artifacts_args=proxied_artifacts_args(s3_server),
        env=s3_server.env(),
        log_path=tmp_path / "mlflow.log",
    )
    try:
        yield server, proxy
    finally:
        server.stop()
        proxy.stop()


@pytest.mark.postgres
def test_postgres_down_behind_mlflow(
    pg_database: PgDatabase,
    s3_server: MotoS3,
    mlflow_behind_proxy: tuple[MlflowServer, TcpProxy],
    a2a_agent: A2AAgent,
    tmp_path: Path,
) -> None:
    server, proxy = mlflow_behind_proxy
    home = tmp_path / "home"
    env = {"MLFLOW_TRACKING_URI": server.url}  # proxied artifacts: the client holds no S3 settings
    proxy.cut()  # the database is gone; MLflow itself still answers

    question, experiment, done = ask(home, a2a_agent, env)

    assert_answered_and_spooled(done, question, "HTTP 5", "database", "MLflow unreachable")
    assert spool_pending(home) == 1

    proxy.resume()
    fixed = replay(home, env)
    assert fixed.returncode == 0 and "Delivered 1" in fixed.stdout, fixed.stdout + fixed.stderr
    assert_delivered(pg_database, s3_server, experiment, question, proxied=True)


def test_postgres_down_under_a_database_tracking_uri(a2a_agent: A2AAgent, tmp_path: Path) -> None:
    """A tracking URI naming PostgreSQL itself (no MLflow server) with nothing listening: answer kept, record too."""
    home = tmp_path / "home"
    uri = f"postgresql+psycopg2://postgres@127.0.0.1:{free_port()}/mlflow"
    question, _, done = ask(home, a2a_agent, {"MLFLOW_TRACKING_URI": uri}, flush="5")

    # MLflow's SQL store retries creating its engine for ~100 s (logging a warning per attempt) before it raises,
    # so within the flush timeout the reason is only that the record is not delivered yet.
    assert_answered_and_spooled(done, question, "database", "onnection refused", "not delivered within")
    assert spool_pending(home) == 1


# ---------------------------------------------------------------------------------------------------------------------
# A malformed tracking URI is refused before the question is sent
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("uri", ["ftp://mlflow.example:5000", "postgres://postgres@127.0.0.1/mlflow", "mlflow:5000"])
def test_wrong_tracking_uri_scheme(uri: str, a2a_agent: A2AAgent, tmp_path: Path) -> None:
    home = tmp_path / "home"
    for how in (["--tracking-uri", uri], []):
        env = {} if how else {"MLFLOW_TRACKING_URI": uri}
        question, _, done = ask(home, a2a_agent, env, *how)
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert lines[0].startswith("error: tracking URI") and "unsupported scheme" in lines[0], lines[0]
        assert "http(s)://host:port" in lines[0]
        assert answer_for(question) not in done.stdout
    assert not (home / "spool").exists() or spool_pending(home) == 0  # nothing was asked, so nothing to keep
