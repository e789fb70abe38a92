"""Start, watch and stop the stack's processes: each in its own session (so ``up`` can exit and one signal reaches
all of a server's workers), its output appended to its own log file."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .state import ProcessInfo, pid_alive, process_start_time

# Settings of the caller's shell that must not leak into the stack's servers (each gets its own explicitly).
DROPPED_ENV = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_EXPERIMENT_NAME",
    "MLFLOW_EXPERIMENT_ID",
    "MLFLOW_RUN_ID",
    "LLAMA_STACK_BASE_URL",
    "LLAMA_STACK_CLIENT_BASE_URL",
    "LLAMA_STACK_MODEL",
    "KAGENT_MLFLOW_AGENT",
    "KAGENT_MLFLOW_SERVE_HOST",
    "KAGENT_MLFLOW_SERVE_PORT",
    "KAGENT_MLFLOW_A2A_PATH",
    "KAGENT_MLFLOW_A2A_URL",
)


@dataclass
class Spec:
    """One process to start: its command, environment additions, where it is ready and what it is for users."""

    name: str
    command: list[str]
    url: str  # what users and the other processes use
    health_url: str  # GET answers 200 once it can serve
    description: str
    env: dict[str, str] = field(default_factory=dict)
    progress: Callable[[bytes], str | None] | None = None  # a 503 body -> a progress note ("loading, 12 s")
    unset: tuple[str, ...] = ()  # variables of the caller's environment this process must not see
    cwd: str | None = None


class PortTaken(Exception):
    """A port of the stack cannot be bound."""


def check_port(host: str, port: int) -> None:
    """Raise :class:`PortTaken` when ``host:port`` cannot be listened on (something else has it)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as err:
            raise PortTaken(err.strerror or str(err)) from None


def spawn(spec: Spec, log_dir: Path) -> tuple[subprocess.Popen[bytes], ProcessInfo]:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{spec.name}.log"
    dropped = (*DROPPED_ENV, *spec.unset)
    env = {k: v for k, v in os.environ.items() if k not in dropped} | spec.env
    with open(log_path, "ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(spec.command)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            spec.command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=spec.cwd,
            start_new_session=True,
        )
    info = ProcessInfo(
        name=spec.name,
        pid=proc.pid,
        url=spec.url,
        log=str(log_path),
        description=spec.description,
        started=process_start_time(proc.pid) or 0.0,
        command=spec.command,
    )
    return proc, info


def stop(info: ProcessInfo, grace: float = 25.0) -> bool:
    """SIGTERM the process's group, SIGKILL it after ``grace`` seconds; True when something was running."""
    if not info.alive():
        return False
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(info.pid, sig)
        except ProcessLookupError:
            return True
        except PermissionError:
            os.kill(info.pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            _reap(info.pid)
            if not pid_alive(info.pid):
                return True
            time.sleep(0.1)
    return True


def _reap(pid: int) -> None:
    """Collect our own child's exit status (when ``up`` itself stops what it just started)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def last_error(log_path: str | Path) -> str:
    """The most telling line of a log: the last one naming an error, else the last line."""
    try:
        text = Path(log_path).read_text(errors="replace")
    except OSError:
        return f"see {log_path}"
    lines = [line.strip() for line in text.split("\n=== ")[-1].splitlines()[1:] if line.strip()]
    errors = [line for line in lines if "error" in line.lower() or "Traceback" in line]
    line = (errors or lines or [f"no output; see {log_path}"])[-1]
    return line if len(line) <= 300 else line[:297] + "..."


def tail(log_path: str | Path, lines: int) -> str:
    try:
        text = Path(log_path).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
