"""Browse logged interactions: ``kagent-mlflow ui`` runs MLflow's own UI on the local store (or any store).

With no tracking server configured, every interaction goes to the embedded store: a SQLite database and an artifact
folder under the tool's data directory (``KAGENT_MLFLOW_HOME``, default the platform's user data dir). Nothing
serves it, so this module starts ``mlflow server`` on it for as long as the user wants to look, and prints where.
It also words the one-time notice the CLI prints when the embedded store is first created.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .config import Settings, without_credentials
from .embedded_store import create_sqlite_store
from .errors import ConfigError, KagentMlflowError

START_TIMEOUT = 180.0


class UiError(KagentMlflowError):
    """The MLflow UI could not be started (port taken, store unreadable, server exited)."""


def first_use_notice(settings: Settings) -> str | None:
    """The line to print when an interaction is about to create the embedded store; None otherwise."""
    if not settings.is_embedded or (settings.home / "mlflow.db").exists():
        return None
    return (
        f"Logging to the local MLflow store in {settings.home} (no tracking server configured); "
        "browse it with: kagent-mlflow ui"
    )


@dataclass(frozen=True)
class UiPlan:
    """What ``kagent-mlflow ui`` will run: the store, where new artifacts go, the address."""

    backend_store_uri: str
    artifacts_destination: Path
    host: str
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            self.backend_store_uri,
            "--artifacts-destination",
            str(self.artifacts_destination),
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]


def plan_ui(settings: Settings, backend_store_uri: str | None, host: str, port: int) -> UiPlan:
    """Decide what to serve; reject a tracking *server* URI (it has its own UI) and a taken port."""
    uri = backend_store_uri or settings.effective_tracking_uri
    if uri.startswith(("http://", "https://")):
        where = "--backend-store-uri" if backend_store_uri else "MLFLOW_TRACKING_URI"
        raise ConfigError(
            f"{where} is the tracking server {uri}, which serves its own UI: open it in a browser "
            "(or pass --backend-store-uri sqlite:///... / postgresql+psycopg2://... to browse a store directly)"
        )
    if "://" not in uri:
        raise ConfigError(f"backend store URI {uri!r} has no scheme; use e.g. sqlite:////abs/path/mlflow.db")
    settings.home.mkdir(parents=True, exist_ok=True)
    return UiPlan(
        backend_store_uri=uri,
        artifacts_destination=settings.embedded_artifact_root,
        host=host,
        port=_usable_port(host, port),
        log_path=settings.home / "ui.log",
    )


def _usable_port(host: str, port: int) -> int:
    """``port`` if it can be bound on ``host`` (0 = a free one); one-line error otherwise."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as err:
            raise UiError(
                f"cannot listen on {host}:{port} ({err.strerror or err}); pass another --port or --host"
            ) from None
        return sock.getsockname()[1]


def serve_ui(plan: UiPlan, echo: Callable[[str], None], *, timeout: float = START_TIMEOUT) -> int:
    """Run the MLflow UI until Ctrl+C (or until it exits); print its address once it answers. Returns an exit code."""
    plan.artifacts_destination.mkdir(parents=True, exist_ok=True)
    create_sqlite_store(plan.backend_store_uri)
    env = dict(os.environ)
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")  # no background job runner for browsing
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID"):
        env.pop(name, None)
    echo(f"Starting the MLflow UI on {without_credentials(plan.backend_store_uri)} (log: {plan.log_path}) ...")
    with open(plan.log_path, "ab") as log:
        proc = subprocess.Popen(
            plan.command(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # its own process group, so stopping reaches the uvicorn worker too
        )
    previous = _stop_on_hangup_and_term()
    try:
        _wait_ready(proc, plan, timeout)
        echo(f"MLflow UI: {plan.url}  (Ctrl+C to stop)")
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        _stop(proc)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stop_on_hangup_and_term() -> dict[int, object]:
    """Make SIGTERM/SIGHUP (terminal closed, ``kill``) stop the UI like Ctrl+C does, instead of orphaning it.

    The server runs in its own session (so one signal reaches all its processes), which also means it would not
    get the terminal's signals itself.
    """
    import threading

    if threading.current_thread() is not threading.main_thread():
        return {}

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous: dict[int, object] = {}
    for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is not None:
            previous[sig] = signal.signal(sig, interrupt)
    return previous


def _wait_ready(proc: subprocess.Popen[bytes], plan: UiPlan, timeout: float) -> None:
    import httpx

    probe = f"http://{'127.0.0.1' if plan.host in ('0.0.0.0', '') else plan.host}:{plan.port}/health"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise UiError(f"the MLflow UI exited with code {proc.returncode}: {_last_error(plan.log_path)}")
        try:
            if httpx.get(probe, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise UiError(f"the MLflow UI did not answer within {timeout:.0f} s; see {plan.log_path}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    for sig, wait in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(wait)
            break
        except subprocess.TimeoutExpired:
            continue


def _last_error(log_path: Path) -> str:
    """The most telling line of the server log (the last error, or the last line)."""
    try:
        lines = [line.strip() for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return f"see {log_path}"
    errors = [line for line in lines if "Error" in line or "ERROR" in line]
    line = (errors or lines or [f"see {log_path}"])[-1]
    return line if len(line) <= 300 else line[:297] + "..."
