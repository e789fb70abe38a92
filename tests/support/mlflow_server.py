"""A real MLflow tracking server in a subprocess, for integration and fault tests.

Use the session fixture when a test only needs *a* server::

    def test_something(mlflow_server):            # started once per pytest session
        client = MlflowClient(tracking_uri=mlflow_server.url)

It runs ``mlflow server`` from this venv on 127.0.0.1 with a SQLite backend in a temporary directory and artifacts
proxied by the server (``--artifacts-destination <tmp>/artifacts``, so clients use ``mlflow-artifacts:/`` URIs).
Never kill or restart the session server: other tests share it.

Tests that kill, restart or misconfigure MLflow start their own server with :func:`start_mlflow_server`::

    server = start_mlflow_server(
        f"sqlite:///{tmp_path / 'mlflow.db'}",                      # or "postgresql://..."
        artifacts_args=["--artifacts-destination", str(tmp_path / "art")],
        env={"MLFLOW_S3_ENDPOINT_URL": moto_url, ...},              # server-side env, e.g. for S3
    )

``artifacts_args`` is passed through as is: ``["--artifacts-destination", "s3://bucket"]`` (proxied S3) or
``["--default-artifact-root", "s3://bucket", "--no-serve-artifacts"]`` (clients write to S3 directly).
::

    try:
        ...  server.url ...
        server.kill()        # SIGKILL the whole process group (a crash); server.stop() = graceful
        server.restart()     # same port, same store, waits for /health again
    finally:
        server.stop()

or use the ``mlflow_server_factory`` fixture, which stops every server it started at teardown.

Start-up costs ~12 s on an idle 2-core machine (imports dominate; the first start also migrates the DB) and much
more under load, so the session fixture starts once. MLflow's background job runner (huey consumers, 7 extra
processes that outlive a killed server) is switched off with ``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``; that
alone cut start-up from ~40 s to ~12 s here. The server runs in its own process group so ``stop``/``kill`` reach
every child. Its output goes to ``<log_path>``; the tail is included in start-up errors.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

MLFLOW_BIN = Path(sys.executable).with_name("mlflow")
START_TIMEOUT = float(os.environ.get("KAGENT_MLFLOW_TEST_MLFLOW_START_TIMEOUT", "240"))

# Environment for the server subprocess: quiet, no job runner, no telemetry.
_SERVER_ENV = {
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "PYTHONUNBUFFERED": "1",
}
# Client-side settings of the test process that must not leak into the server.
_DROP_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID")


def free_port() -> int:
    """Ask the OS for a free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MlflowServer:
    """One ``mlflow server`` subprocess. ``url`` is ``http://127.0.0.1:<port>``; the port survives restarts."""

    def __init__(
        self,
        backend_store_uri: str,
        *,
        artifacts_args: list[str],
        port: int | None = None,
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.backend_store_uri = backend_store_uri
        self.artifacts_args = list(artifacts_args)
        self.port = port or free_port()
        self.extra_env = dict(env or {})
        self.log_path = log_path or Path(os.devnull)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def command(self) -> list[str]:
        return [
            str(MLFLOW_BIN),
            "server",
            "--backend-store-uri",
            self.backend_store_uri,
            *self.artifacts_args,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]

    def start(self, timeout: float = START_TIMEOUT) -> MlflowServer:
        """Start the subprocess and wait until ``/health`` answers; raise with the log tail if it dies first."""
        if self.running:
            return self
        env = {k: v for k, v in os.environ.items() if k not in _DROP_ENV}
        env.update(_SERVER_ENV)
        env.update(self.extra_env)
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            self.proc = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,  # own process group: stop()/kill() reach uvicorn too
            )
        finally:
            log.close()
        self._wait_healthy(timeout)
        return self

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.kill()
        raise RuntimeError(f"mlflow server not healthy after {timeout:.0f}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _signal_group(self, sig: int) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, timeout: float = 15) -> None:
        """Graceful shutdown (SIGTERM to the group), SIGKILL if it lingers. Safe to call twice."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self._signal_group(signal.SIGKILL)  # stragglers in the group, even if the leader has exited
        self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """Simulate a crash: SIGKILL every process of the server at once."""
        if self.proc is None:
            return
        self._signal_group(signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    def restart(self, timeout: float = START_TIMEOUT) -> MlflowServer:
        """Stop (if running) and start again on the same port and store."""
        self.stop()
        return self.start(timeout)


def start_mlflow_server(
    backend_store_uri: str,
    *,
    artifacts_args: list[str],
    port: int | None = None,
    env: dict[str, str] | None = None,
    log_path: Path | None = None,
    timeout: float = START_TIMEOUT,
) -> MlflowServer:
    """Start ``mlflow server`` and return it once healthy. The caller must ``stop()`` it."""
    return MlflowServer(backend_store_uri, artifacts_args=artifacts_args, port=port, env=env, log_path=log_path).start(
        timeout
    )


def _default_server(root: Path) -> MlflowServer:
    root.mkdir(parents=True, exist_ok=True)
    return start_mlflow_server(
        f"sqlite:///{root / 'mlflow.db'}",
        artifacts_args=["--artifacts-destination", str(root / "artifacts")],
        log_path=root / "server.log",
    )


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A shared MLflow server (SQLite + proxied local artifacts) for the whole session. Do not kill it."""
    server = _default_server(tmp_path_factory.mktemp("mlflow-session"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def mlflow_server_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """Start private servers (defaults: SQLite + local proxied artifacts) that a test may kill and restart.

    ``mlflow_server_factory()`` or ``mlflow_server_factory(backend_store_uri, artifacts_args=[...], env={...})``;
    every server started is stopped at teardown.
    """
    started: list[MlflowServer] = []

    def factory(backend_store_uri: str | None = None, **kwargs: object) -> MlflowServer:
        if backend_store_uri is None and not kwargs:
            server = _default_server(tmp_path_factory.mktemp("mlflow-private"))
        else:
            root = tmp_path_factory.mktemp("mlflow-private")
            kwargs.setdefault("artifacts_args", ["--artifacts-destination", str(root / "artifacts")])
            kwargs.setdefault("log_path", root / "server.log")
            server = start_mlflow_server(backend_store_uri or f"sqlite:///{root / 'mlflow.db'}", **kwargs)  # type: ignore[arg-type]
        started.append(server)
        return server

    try:
        yield factory
    finally:
        for server in started:
            server.stop()
