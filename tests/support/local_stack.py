"""``kagent-mlflow up`` run as a user runs it, for tests: the CLI as a subprocess, a private ``KAGENT_MLFLOW_HOME``,
free ports (so a test never meets another run's stack on the seed's ports), and ``down`` at the end.

::

    stack = LocalStack.create(tmp_path)
    stack.up("--model-url", model_server.url)     # fast: the scripted model instead of the bundled one
    stack.cli("ask", "What is Kubernetes?")      # no --a2a-url, no --tracking-uri: the running stack's
    stack.down()

Every command gets the test process's environment minus what would point it elsewhere (``A2A_URL``,
``MLFLOW_TRACKING_URI`` ...), so "with no flags and no environment" is what is tested.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CLI = Path(sys.executable).with_name("kagent-mlflow")
UP_TIMEOUT = 600.0  # a loaded 2-core machine starts MLflow in 12-60 s and loads the bundled model in 20-90 s

CLEARED_ENV = (
    "A2A_URL",
    "A2A_TOKEN",
    "MLFLOW_TRACKING_URI",
    "MLFLOW_EXPERIMENT",
    "MLFLOW_EXPERIMENT_NAME",
    "MLFLOW_EXPERIMENT_ID",
    "MLFLOW_RUN_ID",
    "MLFLOW_S3_ENDPOINT_URL",
    "LLAMA_STACK_BASE_URL",
    "LLAMA_STACK_MODEL",
    "KAGENT_MLFLOW_SPOOL_DIR",
)


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports the OS just handed out on 127.0.0.1 (closed again for the stack to bind)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class LocalStack:
    home: Path
    mlflow_port: int
    agent_port: int
    model_port: int

    @classmethod
    def create(cls, root: Path) -> LocalStack:
        home = root / "home"
        home.mkdir(parents=True, exist_ok=True)
        mlflow_port, agent_port, model_port = free_ports(3)
        return cls(home, mlflow_port, agent_port, model_port)

    @property
    def port_args(self) -> list[str]:
        ports = ["--mlflow-port", str(self.mlflow_port), "--port", str(self.agent_port)]
        return ports + ["--model-port", str(self.model_port), "--llama-stack", "off"]

    @property
    def mlflow_url(self) -> str:
        return f"http://localhost:{self.mlflow_port}"

    @property
    def a2a_url(self) -> str:
        return f"http://localhost:{self.agent_port}/api/a2a/kagent/rh-analyze-simple/"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in CLEARED_ENV}
        return env | {"KAGENT_MLFLOW_HOME": str(self.home)}

    def cli(
        self, *args: str, timeout: float = 300.0, cwd: Path | None = None, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self.run([str(CLI), *args], timeout=timeout, cwd=cwd, stdin=stdin)

    def run(self, command: list[str], timeout: float = 300.0, cwd: Path | None = None, stdin: str | None = None) -> Any:
        return subprocess.run(
            command,
            env=self.env(),
            cwd=cwd or self.home,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
        )

    def up(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = self.cli("up", *self.port_args, *args, timeout=UP_TIMEOUT)
        if done.returncode != 0:
            logs = self.cli("logs", "-n", "30")
            raise AssertionError(f"up failed ({done.returncode}):\n{done.stdout}\n{done.stderr}\n{logs.stdout}")
        return done

    def ps(self) -> dict[str, Any]:
        return json.loads(self.cli("ps", "--json").stdout)

    def down(self) -> subprocess.CompletedProcess[str]:
        return self.cli("down", timeout=120)

    def ask_json(self, question: str) -> dict[str, Any]:
        done = self.cli("ask", "--json", question, timeout=600)
        assert done.returncode == 0, f"ask failed ({done.returncode}): {done.stdout}\n{done.stderr}"
        return json.loads(done.stdout.strip().splitlines()[-1])
