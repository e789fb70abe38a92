"""Real storage for MLflow in tests: PostgreSQL (metadata), a moto S3 server (artifacts), MLflow servers on both.

Fixtures (all session scoped, started on first use, torn down at the end of the session):

``pg_database`` -> :class:`PgDatabase`
    A FRESH database ``kagent_mlflow_test_<random>`` on the PostgreSQL at 127.0.0.1:5432 (trust auth, role
    ``postgres``; override with ``KAGENT_MLFLOW_TEST_PG_HOST`` / ``_PG_PORT`` / ``_PG_USER``), dropped at the end.
    ``.uri`` is the SQLAlchemy URI for ``mlflow server --backend-store-uri`` (``postgresql+psycopg2://``: SQLAlchemy
    2.1 maps a bare ``postgresql://`` to psycopg 3, which is not installed); ``.rows(sql, params)`` queries it with
    psycopg2. Where no PostgreSQL answers the test is skipped with the reason, or FAILS when ``KAGENT_MLFLOW_CI=1``.

``s3_server`` -> :class:`MotoS3`
    ``moto_server`` on a free port with IAM authentication switched ON (``INITIAL_NO_AUTH_ACTION_COUNT``): the
    fixture creates an IAM user and access key, so a wrong secret is rejected with ``SignatureDoesNotMatch`` and a
    client without keys gets nowhere. ``.endpoint_url``, ``.access_key_id``, ``.secret_access_key``, ``.bucket``
    (created), ``.client()`` (boto3, with the right keys), ``.env()`` (``MLFLOW_S3_ENDPOINT_URL`` + AWS keys),
    ``.read(key)`` (object bytes).

``mlflow_pg_s3_direct`` -> ``MlflowServer`` (tests/support/mlflow_server.py)
    PostgreSQL metadata, ``--default-artifact-root s3://<bucket>/direct --no-serve-artifacts``: clients upload to S3
    themselves with ``MLFLOW_S3_ENDPOINT_URL`` and keys.

``mlflow_pg_s3_proxied`` -> ``MlflowServer``
    The same PostgreSQL database (both servers share it: MLflow stores each experiment's artifact location, so
    experiments created through one server keep their own mode; tests use distinct experiment names),
    ``--artifacts-destination s3://<bucket>/proxied``; only the server holds the S3 settings.

Helpers for tests that break things: :class:`TcpProxy` (put it between MLflow and PostgreSQL, then ``cut()`` it:
"the database went away" without touching the shared database), :func:`require` (skip, or fail in CI).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest

from .mlflow_server import MlflowServer, free_port, start_mlflow_server

PG_HOST = os.environ.get("KAGENT_MLFLOW_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("KAGENT_MLFLOW_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("KAGENT_MLFLOW_TEST_PG_USER", "postgres")
BUCKET = "kagent-mlflow-artifacts"
REGION = "us-east-1"
MOTO_BIN = Path(sys.executable).with_name("moto_server")
S3_ENV_NAMES = ("MLFLOW_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


def in_ci() -> bool:
    return os.environ.get("KAGENT_MLFLOW_CI") == "1"


def require(reason: str) -> NoReturn:
    """A prerequisite is missing: skip with ``reason`` locally, fail in CI (real-server lanes must run there)."""
    if in_ci():
        pytest.fail(f"KAGENT_MLFLOW_CI=1 and {reason}", pytrace=False)
    pytest.skip(reason)


# ---------------------------------------------------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class PgDatabase:
    """One database on the test PostgreSQL; ``uri`` is what MLflow's ``--backend-store-uri`` takes."""

    name: str
    host: str = PG_HOST
    port: int = PG_PORT
    user: str = PG_USER

    @property
    def uri(self) -> str:
        return self.uri_via(self.port)

    def uri_via(self, port: int) -> str:
        """The same database reached through another port (e.g. a :class:`TcpProxy`)."""
        return f"postgresql+psycopg2://{self.user}@{self.host}:{port}/{self.name}"

    def connect(self) -> Any:
        import psycopg2

        return psycopg2.connect(host=self.host, port=self.port, user=self.user, dbname=self.name, connect_timeout=5)

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        """Run one query (``%s`` placeholders) in a fresh connection; rows as dicts."""
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                names = [c.name for c in cur.description]
                return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        finally:
            conn.close()


def _admin_connect() -> Any:
    import psycopg2

    conn = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", connect_timeout=5)
    conn.autocommit = True
    return conn


def create_database() -> PgDatabase:
    """Create a fresh, uniquely named database; skip (or fail in CI) when PostgreSQL is not there."""
    try:
        import psycopg2
    except ImportError:
        require("psycopg2 is not installed (pip install -e '.[dev]')")
    try:
        conn = _admin_connect()
    except psycopg2.OperationalError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        require(f"no PostgreSQL answers at {PG_USER}@{PG_HOST}:{PG_PORT} ({first})")
    db = PgDatabase(f"kagent_mlflow_test_{secrets.token_hex(4)}")
    try:
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{db.name}"')
    finally:
        conn.close()
    return db


def drop_database(db: PgDatabase) -> None:
    conn = _admin_connect()
    try:
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{db.name}" WITH (FORCE)')
    finally:
        conn.close()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[PgDatabase]:
    """A fresh PostgreSQL database for this pytest session (dropped at the end)."""
    db = create_database()
    try:
        yield db
    finally:
        drop_database(db)


# ---------------------------------------------------------------------------------------------------------------------
# S3 (moto server)
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class MotoS3:
    """A moto S3 server subprocess with IAM auth on, one IAM user's keys and one bucket."""

    log_path: Path
    bucket: str = BUCKET
    port: int = field(default_factory=free_port)
    access_key_id: str = ""
    secret_access_key: str = ""
    proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> MotoS3:
        # Three unauthenticated calls are allowed (create user, attach policy, create key); all later ones are
        # signature-checked against the IAM keys, as MinIO or AWS would.
        env = {k: v for k, v in os.environ.items() if k not in S3_ENV_NAMES}
        env["INITIAL_NO_AUTH_ACTION_COUNT"] = "3"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [str(MOTO_BIN), "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                tail = self.log_path.read_text()[-2000:]
                raise RuntimeError(f"moto_server exited with {self.proc.returncode}: {tail}")
            try:
                httpx.get(f"{self.endpoint_url}/moto-api/", timeout=2)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"moto_server did not answer within {timeout:g} s") from None
                time.sleep(0.1)
        self._create_user_and_bucket()
        return self

    def _create_user_and_bucket(self) -> None:
        import boto3

        iam = boto3.client(
            "iam",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id="bootstrap",
            aws_secret_access_key="bootstrap",
        )
        iam.create_user(UserName="mlflow")
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
        iam.put_user_policy(UserName="mlflow", PolicyName="s3-all", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="mlflow")["AccessKey"]
        self.access_key_id, self.secret_access_key = key["AccessKeyId"], key["SecretAccessKey"]
        self.client().create_bucket(Bucket=self.bucket)

    def client(self, **overrides: Any) -> Any:
        """A boto3 S3 client with this server's keys (``overrides`` replace client arguments)."""
        import boto3

        kwargs: dict[str, Any] = {
            "endpoint_url": self.endpoint_url,
            "region_name": REGION,
            "aws_access_key_id": self.access_key_id,
            "aws_secret_access_key": self.secret_access_key,
        }
        kwargs.update(overrides)
        return boto3.client("s3", **kwargs)

    def env(self) -> dict[str, str]:
        """What a process needs to upload MLflow artifacts here (the seed's environment variables)."""
        return {
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
        }

    def read(self, key: str) -> bytes:
        return self.client().get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def keys(self, prefix: str) -> list[str]:
        listed = self.client().list_objects_v2(Bucket=self.bucket, Prefix=prefix)
        return sorted(o["Key"] for o in listed.get("Contents", []))

    def stop(self) -> None:
        if self.proc is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(10)
                break
            except subprocess.TimeoutExpired:
                continue
        self.proc.wait()
        self.proc = None


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    """A moto S3 server with IAM auth, keys and a bucket (see :class:`MotoS3`)."""
    server = MotoS3(tmp_path_factory.mktemp("moto") / "moto.log").start()
    try:
        yield server
    finally:
        server.stop()


# ---------------------------------------------------------------------------------------------------------------------
# MLflow servers on PostgreSQL + S3
# ---------------------------------------------------------------------------------------------------------------------


def direct_artifacts_args(s3: MotoS3, prefix: str = "direct") -> list[str]:
    return ["--default-artifact-root", f"s3://{s3.bucket}/{prefix}", "--no-serve-artifacts"]


def proxied_artifacts_args(s3: MotoS3, prefix: str = "proxied", bucket: str | None = None) -> list[str]:
    return ["--artifacts-destination", f"s3://{bucket or s3.bucket}/{prefix}"]


@pytest.fixture(scope="session")
def mlflow_pg_s3_direct(
    pg_database: PgDatabase, s3_server: MotoS3, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MlflowServer]:
    """MLflow on PostgreSQL; clients write artifacts straight to S3 (server holds no S3 settings)."""
    server = start_mlflow_server(
        pg_database.uri,
        artifacts_args=direct_artifacts_args(s3_server),
        log_path=tmp_path_factory.mktemp("mlflow-pg-direct") / "server.log",
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mlflow_pg_s3_proxied(
    pg_database: PgDatabase, s3_server: MotoS3, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MlflowServer]:
    """MLflow on PostgreSQL serving artifacts itself from S3; only the server holds the S3 settings."""
    server = start_mlflow_server(
        pg_database.uri,
        artifacts_args=proxied_artifacts_args(s3_server),
        env=s3_server.env(),
        log_path=tmp_path_factory.mktemp("mlflow-pg-proxied") / "server.log",
    )
    try:
        yield server
    finally:
        server.stop()


# ---------------------------------------------------------------------------------------------------------------------
# A TCP proxy to take a dependency away (and bring it back) without touching it
# ---------------------------------------------------------------------------------------------------------------------


class TcpProxy:
    """Forwards 127.0.0.1:<port> to ``target``. ``cut()`` refuses new and drops open connections; ``resume()``."""

    def __init__(
        self, target_host: str, target_port: int, *, listen_host: str = "127.0.0.1", port: int | None = None
    ) -> None:
        self.target = (target_host, target_port)
        self.listen_host = listen_host
        self.port = port or free_port()
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> TcpProxy:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.listen_host, self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    resume = start

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by cut()/stop()
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        """The dependency is gone: close the listener (connection refused) and every open connection."""
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    stop = cut


# ---------------------------------------------------------------------------------------------------------------------
# Reading a run back from MLflow's SQL schema (PostgreSQL or the embedded SQLite file), not through MLflow's API
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class StoredRun:
    """One run as MLflow's tables hold it, with its linked trace (``trace_id`` None when there is none)."""

    run_id: str
    status: str
    experiment_name: str
    artifact_uri: str
    tags: dict[str, str]
    metrics: dict[str, float]
    params: dict[str, str]
    trace_id: str | None
    trace_state: str | None
    span_names: list[str]


def sqlite_rows(db_path: Path) -> Any:
    """A ``rows(sql, params)`` function like :meth:`PgDatabase.rows` for an MLflow SQLite file (``%s`` placeholders)."""
    import sqlite3

    def rows(sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        conn.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in conn.execute(sql.replace("%s", "?"), params).fetchall()]
        finally:
            conn.close()

    return rows


def stored_run(rows: Any, run_id: str) -> StoredRun | None:
    """Read run ``run_id``, its tags, latest metrics, params and linked trace with plain SQL."""
    found = rows(
        "SELECT r.status, r.artifact_uri, e.name FROM runs r JOIN experiments e ON e.experiment_id = r.experiment_id "
        "WHERE r.run_uuid = %s",
        (run_id,),
    )
    if not found:
        return None
    run = found[0]
    tags = {r["key"]: r["value"] for r in rows("SELECT key, value FROM tags WHERE run_uuid = %s", (run_id,))}
    latest = rows("SELECT key, value FROM latest_metrics WHERE run_uuid = %s", (run_id,))
    metrics = {r["key"]: float(r["value"]) for r in latest}
    params = {r["key"]: r["value"] for r in rows("SELECT key, value FROM params WHERE run_uuid = %s", (run_id,))}
    traces = rows(
        "SELECT t.request_id, t.status FROM trace_info t JOIN trace_request_metadata m ON m.request_id = t.request_id "
        "WHERE m.key = 'mlflow.sourceRun' AND m.value = %s",
        (run_id,),
    )
    trace_id = traces[0]["request_id"] if traces else None
    spans = rows("SELECT name FROM spans WHERE trace_id = %s ORDER BY start_time_unix_nano", (trace_id,))
    return StoredRun(
        run_id=run_id,
        status=run["status"],
        experiment_name=run["name"],
        artifact_uri=run["artifact_uri"],
        tags=tags,
        metrics=metrics,
        params=params,
        trace_id=trace_id,
        trace_state=traces[0]["status"] if traces else None,
        span_names=[s["name"] for s in spans],
    )
