"""A real Llama Stack server (llama-stack 0.7.x, Python 3.12 venv) in front of the scripted model server.

Set-up facts (checked on these machines):

- The venv comes from ``scripts/setup-llama-stack.sh`` (default ``<repo>/.venvs/llama``; override with
  ``KAGENT_MLFLOW_LLAMA_VENV``).
- The remote vLLM provider speaks plain OpenAI ``/v1`` to the model server: ``VLLM_URL=http://127.0.0.1:M/v1``.
  Llama Stack lists the model server's ids as ``vllm/<id>`` (``vllm/scripted-model``) and adds
  ``max_tokens: 4096`` to every chat request it forwards.
- ``llama stack run --providers inference=remote::vllm`` writes its config under ``LLAMA_STACK_CONFIG_DIR`` and
  binds every interface; this fixture instead writes an equivalent ``config.yaml`` with ``server.host: 127.0.0.1``
  and its SQLite stores in a temporary directory, then runs ``llama stack run <config.yaml> --port N``.
- Start-up takes ~7 s on an idle 2-core machine (more when loaded); SIGTERM shuts it down in ~3 s.
- Real Llama Stack adds ~60 ms per chat completion in front of an instant model.

Fixtures: ``llama_stack`` (session; a :class:`LlamaStack` with ``.base_url`` = the server root and ``.model``) and
``llama_stack_model`` (the session model server behind it, reset for the test). Where no venv exists the tests skip
with the reason, except under ``KAGENT_MLFLOW_CI=1`` where they fail.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.model_server import ModelServerClient

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 120.0

CONFIG_TEMPLATE = """\
version: 2
distro_name: kagent-mlflow-tests
apis:
- inference
providers:
  inference:
  - provider_id: vllm
    provider_type: remote::vllm
    config:
      base_url: {vllm_url}
      max_tokens: 4096
      api_token: fake
storage:
  backends:
    kv_default:
      type: kv_sqlite
      db_path: {store_dir}/kvstore.db
    sql_default:
      type: sql_sqlite
      db_path: {store_dir}/sql_store.db
  stores:
    metadata:
      namespace: registry
      backend: kv_default
    inference:
      table_name: inference_store
      backend: sql_default
    conversations:
      table_name: openai_conversations
      backend: sql_default
    prompts:
      namespace: prompts
      backend: kv_default
server:
  host: 127.0.0.1
  port: {port}
"""


@dataclass
class LlamaStack:
    """A running Llama Stack server. ``base_url`` is the root (``http://127.0.0.1:N``); the API is under ``/v1``."""

    base_url: str
    model: str
    process: subprocess.Popen
    log_path: Path

    @property
    def openai_url(self) -> str:
        return f"{self.base_url}/v1"

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def llama_venv() -> Path:
    return Path(os.environ.get("KAGENT_MLFLOW_LLAMA_VENV") or REPO / ".venvs" / "llama")


def _in_ci() -> bool:
    return os.environ.get("KAGENT_MLFLOW_CI") == "1"


def _unavailable(reason: str) -> None:
    """Skip with ``reason`` locally; fail in CI, where the lane must run."""
    if _in_ci():
        pytest.fail(f"Llama Stack lane cannot run under KAGENT_MLFLOW_CI=1: {reason}")
    print(f"\nSKIP Llama Stack lane: {reason}")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str, timeout: float = 2.0) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.read()
    except (urllib.error.URLError, OSError):
        return None


def start_llama_stack(model_server_url: str, work_dir: Path, model_id: str = "scripted-model") -> LlamaStack:
    """Start ``llama stack run`` against ``model_server_url`` (an OpenAI ``.../v1`` URL); wait until it is ready."""
    venv = llama_venv()
    llama = venv / "bin" / "llama"
    if not llama.exists():
        raise FileNotFoundError(f"{llama} not found; run scripts/setup-llama-stack.sh")
    port = _free_port()
    store_dir = work_dir / "store"
    store_dir.mkdir(parents=True, exist_ok=True)
    config = work_dir / "config.yaml"
    config.write_text(CONFIG_TEMPLATE.format(vllm_url=model_server_url, store_dir=store_dir, port=port))
    env = {
        **os.environ,
        "VLLM_URL": model_server_url,
        "LLAMA_STACK_CONFIG_DIR": str(work_dir / "home"),
        "SQLITE_STORE_DIR": str(store_dir),
        "LLAMA_STACK_LOGGING": "all=warning",
        "PYTHONUNBUFFERED": "1",
    }
    for name in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"):
        env.pop(name, None)
    log_path = work_dir / "llama-stack.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [str(llama), "stack", "run", str(config), "--port", str(port)],
        cwd=work_dir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    base_url = f"http://127.0.0.1:{port}"
    stack = LlamaStack(base_url=base_url, model=f"vllm/{model_id}", process=proc, log_path=log_path)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"llama stack exited with {proc.returncode}:\n{stack.log_tail()}")
        models = _get(f"{base_url}/v1/models")
        if models and stack.model.encode() in models:
            return stack
        time.sleep(0.3)
    stop_llama_stack(stack)
    raise RuntimeError(f"llama stack not ready after {START_TIMEOUT_S:.0f}s:\n{stack.log_tail()}")


def stop_llama_stack(stack: LlamaStack) -> None:
    proc = stack.process
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


@pytest.fixture(scope="session")
def llama_stack(model_server: ModelServerClient) -> Iterator[LlamaStack]:
    """A real Llama Stack server on 127.0.0.1 whose inference provider is the session's scripted model server."""
    if not (llama_venv() / "bin" / "llama").exists():
        _unavailable(f"no Llama Stack venv at {llama_venv()} (run scripts/setup-llama-stack.sh; needs Python 3.12)")
    with tempfile.TemporaryDirectory(prefix="llama-stack-") as tmp:
        stack = start_llama_stack(model_server.url, Path(tmp))
        try:
            yield stack
        finally:
            stop_llama_stack(stack)


@pytest.fixture
def llama_stack_model(llama_stack: LlamaStack, model_server: ModelServerClient) -> ModelServerClient:
    """The scripted model server behind ``llama_stack``, reset for this test."""
    model_server.reset()
    return model_server
