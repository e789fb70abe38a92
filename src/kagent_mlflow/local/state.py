"""The local stack's state file, ``<home>/stack/state.json``: which processes ``up`` started, where they listen, where
they log. Standard library only, so ``ask`` can read it on every start without slowing down.

The rule other commands follow (:func:`running_stack_urls`): while the file names a live MLflow server, a command
with no tracking URI configured (no flag, no ``MLFLOW_TRACKING_URI``) logs to that server instead of writing the
embedded store directly (the server serves that same store, so nothing is split), and a command with no A2A URL
configured asks the stack's agent. Once ``down`` has run, or the processes are gone, the file is ignored.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STATE_VERSION = 1


@dataclass
class ProcessInfo:
    """One process of the stack: what it is, how to find it again, where it listens and logs."""

    name: str
    pid: int
    url: str
    log: str
    description: str
    started: float = 0.0  # the process's start time (/proc), so a reused pid is not taken for ours
    command: list[str] = field(default_factory=list)

    def alive(self) -> bool:
        return pid_alive(self.pid) and (not self.started or process_start_time(self.pid) in (None, self.started))


@dataclass
class StackState:
    """What ``up`` wrote: the processes, and the URLs clients use."""

    processes: list[ProcessInfo]
    mlflow_url: str
    a2a_url: str
    model_url: str
    runtime: str = "agent-server"
    version: int = STATE_VERSION

    def running(self) -> list[ProcessInfo]:
        return [p for p in self.processes if p.alive()]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_dict(cls, data: Any) -> StackState:
        """Raises ValueError/TypeError/KeyError on anything but what :meth:`to_json` writes."""
        if not isinstance(data, dict) or not isinstance(data.get("processes"), list):
            raise ValueError("not a stack state")
        processes = []
        for p in data["processes"]:
            info = ProcessInfo(**p)
            if not isinstance(info.pid, int) or not isinstance(info.started, (int, float)):
                raise TypeError("pid and start time must be numbers")
            processes.append(info)
        urls = {k: str(data[k]) for k in ("mlflow_url", "a2a_url", "model_url")}
        return cls(processes=processes, runtime=str(data.get("runtime", "agent-server")), **urls)


def stack_dir(home: Path) -> Path:
    return home / "stack"


def state_path(home: Path) -> Path:
    return stack_dir(home) / "state.json"


def read_state(home: Path) -> StackState | None:
    """The state file's content, or None when there is none (or it cannot be read: then it is as if down)."""
    try:
        return StackState.from_dict(json.loads(state_path(home).read_text()))
    except (OSError, ValueError, TypeError, KeyError):  # half-written, edited by hand, or another version's
        return None


def write_state(home: Path, state: StackState) -> None:
    path = state_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(state.to_json())
    os.replace(tmp, path)


def running_stack_urls(home: Path) -> tuple[str, str] | None:
    """(MLflow URL, A2A URL) of a stack started by ``up`` whose MLflow server still runs; None otherwise."""
    state = read_state(home)
    if state is None:
        return None
    mlflow = next((p for p in state.processes if p.name == "mlflow"), None)
    if mlflow is None or not mlflow.alive():
        return None
    return state.mlflow_url, state.a2a_url


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] == "Z"


def process_start_time(pid: int) -> float | None:
    """The process's start time in clock ticks since boot (Linux /proc), None where that cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    try:
        return float(fields[19])  # field 22 of stat; [0] here is field 3
    except (IndexError, ValueError):
        return None
