"""Installs that work as written (issue 8, Why #7 / Deliver 6).

The wheel is built from the repository (``pip wheel``), installed with its dependencies into a fresh venv outside
the repository, and used from a folder outside it, as a user would: the README's Python import, every command that
needs no server (``--help``s, ``status``, ``ask`` with a bad URL), ``ask`` and the seed module against the real A2A
test agent into the embedded store, and ``kagent-mlflow serve`` answering ``/invocations`` through the scripted model.
Nothing from the checkout is importable there (no ``PYTHONPATH``, the working folder is a temporary one).

The install downloads or unpacks every dependency (about two minutes on a 2-core machine, pip's cache helps).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.a2a_agents import A2AAgent
from tests.support.agent_server import start_agent_server

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

REPO = Path(__file__).resolve().parents[2]
INSTALL_TIMEOUT_S = 1500


@dataclass
class Installed:
    """A fresh venv holding only the built wheel and its declared dependencies."""

    bin: Path
    workdir: Path  # outside the repository
    home: Path  # KAGENT_MLFLOW_HOME for the commands

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "A2A_", "AWS_", "KAGENT_MLFLOW_"))}
        env.pop("PYTHONPATH", None)
        env.pop("VIRTUAL_ENV", None)
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        env["KAGENT_MLFLOW_HOME"] = str(self.home)
        env.update(extra)
        return env

    def run(self, *cmd: str, timeout: float = 240, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / cmd[0]), *cmd[1:]],
            cwd=self.workdir,
            env=self.env(**extra),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )


def _checked(cmd: list[str], log: Path, **kwargs: object) -> None:
    with log.open("a") as out:
        done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=INSTALL_TIMEOUT_S, **kwargs)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{log.read_text()[-3000:]}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    root = tmp_path_factory.mktemp("wheel-install")
    log = root / "install.log"
    dist = root / "dist"
    _checked([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(dist), str(REPO)], log, cwd=root)
    wheels = list(dist.glob("kagent_mlflow-*.whl"))
    assert len(wheels) == 1, wheels
    _checked([sys.executable, "-m", "venv", str(root / "venv")], log)
    pip = [str(root / "venv" / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    _checked([*pip, "install", "-q", str(wheels[0])], log, cwd=root, env={**os.environ, "PYTHONPATH": ""})
    workdir = root / "work"
    workdir.mkdir()
    yield Installed(bin=root / "venv" / "bin", workdir=workdir, home=root / "home")


def test_the_readme_python_import_works_from_the_wheel(installed: Installed) -> None:
    code = (
        "import kagent_mlflow, kagent_mlflow_logger\n"
        "from kagent_mlflow_logger import KagentMLflowLogger\n"
        "assert KagentMLflowLogger is kagent_mlflow.KagentMLflowLogger\n"
        "assert 'KagentMLflowLogger' in kagent_mlflow.__all__\n"
        "assert '/site-packages/' in kagent_mlflow.__file__ and '/site-packages/' in kagent_mlflow_logger.__file__\n"
        "print('ok')"
    )
    done = installed.run("python", "-c", code)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_the_commands_that_need_no_server(installed: Installed) -> None:
    for command in ([], ["ask"], ["status"], ["replay"], ["ui"], ["serve"]):
        done = installed.run("kagent-mlflow", *command, "--help")
        assert done.returncode == 0, (command, done.stderr)
        assert "Usage: kagent-mlflow" in done.stdout and "<bool>" not in done.stdout
    status = installed.run("kagent-mlflow", "status")
    assert status.returncode == 0, status.stderr
    bad = installed.run("kagent-mlflow", "ask", "--a2a-url", "not-a-url", "What is Kubernetes?")
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith("error: A2A URL 'not-a-url' is not an http(s) URL")
    assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr


def test_ask_and_the_seed_module_log_to_the_embedded_store(installed: Installed, a2a_agent: A2AAgent) -> None:
    # The first record creates the embedded store (its schema migration takes tens of seconds on a loaded machine).
    wait = {"KAGENT_MLFLOW_FLUSH_TIMEOUT": "180"}
    done = installed.run("kagent-mlflow", "ask", "--a2a-url", a2a_agent.url, "What is Kubernetes?", **wait)
    assert done.returncode == 0, done.stderr
    assert "Answer: Answer to: What is Kubernetes?" in done.stdout
    assert "Run: " in done.stdout
    seed = installed.run("python", "-m", "kagent_mlflow_logger", "What is OpenShift?", A2A_URL=a2a_agent.url, **wait)
    assert seed.returncode == 0, seed.stderr
    assert "Answer: Answer to: What is OpenShift?" in seed.stdout and "Run: " in seed.stdout
    assert (installed.home / "mlflow.db").is_file()


def test_serve_answers_from_a_plain_install(installed: Installed, scripted_model) -> None:  # type: ignore[no-untyped-def]
    """Before: ``pip install .`` lacked openai, so every request answered 500 "No module named 'openai'"."""
    scripted_model.set_script([{"reply": "A Route exposes a service."}])
    server = start_agent_server(
        scripted_model.root,
        command=[str(installed.bin / "kagent-mlflow"), "serve", "--host", "127.0.0.1", "--port", "0"],
        extra_env={"PYTHONPATH": "", "KAGENT_MLFLOW_HOME": str(installed.home), "KAGENT_MLFLOW_AGENT": ""},
    )
    try:
        reply = httpx.post(
            f"{server.url}/invocations",
            json={"input": [{"role": "user", "content": "What is a Route in OpenShift?"}]},
            timeout=120,
        )
    finally:
        server.stop()
    assert reply.status_code == 200, reply.text
    assert "A Route exposes a service." in reply.text
