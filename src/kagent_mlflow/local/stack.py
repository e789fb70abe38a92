"""What ``kagent-mlflow up`` starts, in which order, and how ``down`` stops it.

Processes (each a local process with a log in ``<home>/stack/logs/``):

- ``mlflow``: ``mlflow server`` with its UI on the embedded store (``<home>/mlflow.db``, artifacts in
  ``<home>/artifacts``): the same store ``ask`` writes when no server is configured, now served.
- ``model``: the OpenAI-compatible server on the bundled SmolLM2 (:mod:`.model_server`); not started with
  ``--model-url``.
- ``llama-stack``: Llama Stack between the agent and the model, when a ``llama`` executable is found
  (``--llama-stack auto``) or named.
- ``agent``: ``kagent-mlflow serve`` (the Pattern 2 agent, traces to ``mlflow``) with its A2A face at the seed's
  path; or, with ``--runtime kagent``, the real kagent runtime (:mod:`.kagent`) behind a path like kagent's
  controller gives it.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..config import DEFAULT_EXPERIMENT
from ..embedded_store import create_sqlite_store
from ..errors import ConfigError, KagentMlflowError
from .processes import PortTaken, Spec, check_port, last_error, spawn, stop
from .state import ProcessInfo, StackState, read_state, stack_dir, state_path, write_state

HOST = "127.0.0.1"
PUBLIC_HOST = "localhost"  # what the seed's URLs name
DEFAULT_MLFLOW_PORT = 5000
DEFAULT_AGENT_PORT = 8083
DEFAULT_MODEL_PORT = 8081
DEFAULT_LLAMA_STACK_PORT = 8321
DEFAULT_A2A_PATH = "/api/a2a/kagent/rh-analyze-simple/"  # kagent's controller path for agent kagent/rh-analyze-simple
START_TIMEOUT = 300.0


class StackError(KagentMlflowError):
    """The stack could not be started (a process exited or did not answer in time)."""


@dataclass(frozen=True)
class StackOptions:
    """Everything ``up`` can be told; defaults give the seed's URLs."""

    home: Path
    mlflow_port: int = DEFAULT_MLFLOW_PORT
    agent_port: int = DEFAULT_AGENT_PORT
    model_port: int = DEFAULT_MODEL_PORT
    llama_stack_port: int = DEFAULT_LLAMA_STACK_PORT
    model_url: str | None = None
    model: str | None = None
    runtime: str = "agent-server"
    llama_stack: str = "auto"  # auto | off | path of a `llama` executable
    experiment: str = DEFAULT_EXPERIMENT
    timeout: float = START_TIMEOUT

    @property
    def mlflow_url(self) -> str:
        return f"http://{PUBLIC_HOST}:{self.mlflow_port}"

    @property
    def a2a_url(self) -> str:
        return f"http://{PUBLIC_HOST}:{self.agent_port}{DEFAULT_A2A_PATH}"

    @property
    def bundled_model_url(self) -> str:
        return f"http://{HOST}:{self.model_port}/v1"

    def llama_executable(self) -> str | None:
        if self.llama_stack == "off":
            return None
        if self.llama_stack == "auto":
            return shutil.which("llama")
        return self.llama_stack


def plan(options: StackOptions) -> list[Spec]:
    """The processes to start, in start order, each with the URLs of the ones it talks to."""
    py = sys.executable
    home = options.home
    specs = [
        Spec(
            "mlflow",
            [py, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{home / 'mlflow.db'}"]
            # Artifacts as the embedded store keeps them (a file URI, written by the client), not proxied: an
            # experiment the server creates must stay usable by `ask` on the embedded default once the stack is down
            # (an mlflow-artifacts:/ location needs a server to write to).
            + ["--default-artifact-root", (home / "artifacts").as_uri(), "--no-serve-artifacts"]
            + ["--host", HOST, "--port", str(options.mlflow_port), "--workers", "1"],
            options.mlflow_url,
            f"http://{HOST}:{options.mlflow_port}/health",
            "MLflow tracking server and UI on the local store",
            env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        )
    ]
    model_url = options.model_url
    if model_url is None:
        from .engine import MODEL_ID

        model_url = options.bundled_model_url
        specs.append(
            Spec(
                "model",
                [py, "-m", "kagent_mlflow.local.model_server", "--host", HOST, "--port", str(options.model_port)],
                model_url,
                f"http://{HOST}:{options.model_port}/health",
                f"OpenAI-compatible server on {MODEL_ID} (bundled, CPU)",
                progress=_loading_note,
            )
        )
    if llama := options.llama_executable():
        from .llama_stack import llama_stack_spec

        specs.append(llama_stack_spec(llama, model_url, options, stack_dir(home)))
        model_url = specs[-1].url
    if options.runtime == "kagent":
        from .kagent import kagent_specs

        specs.extend(kagent_specs(options, model_url, stack_dir(home)))
    else:
        specs.append(agent_server_spec(options, model_url))
    return specs


def agent_server_spec(options: StackOptions, model_url: str) -> Spec:
    command = [sys.executable, "-m", "kagent_mlflow.serve", "--host", HOST, "--port", str(options.agent_port)]
    command += ["--agent", "kagent_mlflow.local.agent:build_agent"]
    command += ["--tracking-uri", f"http://{HOST}:{options.mlflow_port}", "--experiment", options.experiment]
    command += ["--a2a-path", DEFAULT_A2A_PATH]
    env = {"LLAMA_STACK_BASE_URL": model_url, "LLAMA_STACK_TIMEOUT": "900", "KAGENT_MLFLOW_REQUEST_TIMEOUT": "900"}
    if options.model:
        env["LLAMA_STACK_MODEL"] = options.model
    return Spec(
        "agent",
        command,
        options.a2a_url,
        f"http://{HOST}:{options.agent_port}{DEFAULT_A2A_PATH}.well-known/agent-card.json",
        "Pattern 2 agent (MLflow Agent Server) with its A2A face",
        env=env,
    )


def _loading_note(body: bytes) -> str | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if data.get("status") == "loading":
        return f"loading {data.get('model')}, {data.get('elapsed_s', 0):.0f} s"
    return None


def ports(options: StackOptions, specs: list[Spec]) -> list[tuple[str, int, str]]:
    """(process, port, the flag that changes it) for every port the plan listens on."""
    names = {s.name for s in specs}
    wanted = [("mlflow", options.mlflow_port, "--mlflow-port"), ("agent", options.agent_port, "--port")]
    if "model" in names:
        wanted.append(("model", options.model_port, "--model-port"))
    if "llama-stack" in names:
        wanted.append(("llama-stack", options.llama_stack_port, "--llama-stack-port"))
    if "kagent-runtime" in names:
        wanted.append(("kagent-runtime", options.agent_port + 1, "--port (the runtime listens on the next port)"))
    return wanted


def check_ports(options: StackOptions, specs: list[Spec]) -> None:
    seen: dict[int, str] = {}
    for name, port, flag in ports(options, specs):
        if port in seen:
            raise ConfigError(f"port {port} is given to both {seen[port]} and {name}; choose another with {flag}")
        seen[port] = name
        try:
            check_port(HOST, port)
        except PortTaken as err:
            raise ConfigError(
                f"port {port} ({name}) is taken on {HOST}: {err}; stop what listens there or choose another with {flag}"
            ) from None


def up(options: StackOptions, echo: Callable[[str], None], progress: Callable[[str], None]) -> StackState:
    """Start every process, wait until each answers, write the state file; on any failure stop what was started."""
    specs = plan(options)
    check_ports(options, specs)
    for spec in specs:
        if spec.name == "model":
            from .engine import missing_packages

            if missing := missing_packages():
                raise ConfigError(
                    f"the bundled model needs the extra 'local' ({', '.join(missing)} missing): "
                    "pip install 'kagent-mlflow[local]', or pass --model-url URL of an OpenAI-compatible server"
                )
    (options.home / "artifacts").mkdir(parents=True, exist_ok=True)
    create_sqlite_store(f"sqlite:///{options.home / 'mlflow.db'}")  # under the lock an `ask` beside it also takes
    started: list[ProcessInfo] = []
    state = StackState(started, options.mlflow_url, options.a2a_url, options.model_url or options.bundled_model_url)
    state.runtime = options.runtime
    try:
        for spec in specs:
            _proc, info = spawn(spec, stack_dir(options.home) / "logs")
            started.append(info)
        write_state(options.home, state)  # written early: `down` can stop a stack still starting
        wait_ready(specs, started, options.timeout, echo, progress)
    except BaseException:
        for info in reversed(started):
            stop(info, grace=5.0)
        state_path(options.home).unlink(missing_ok=True)
        raise
    return state


def wait_ready(
    specs: list[Spec],
    infos: list[ProcessInfo],
    timeout: float,
    echo: Callable[[str], None],
    progress: Callable[[str], None],
) -> None:
    import httpx

    start = time.monotonic()
    pending = {s.name: (s, i) for s, i in zip(specs, infos, strict=True)}
    notes: dict[str, str] = {}
    with httpx.Client(timeout=2.0) as client:
        while pending:
            elapsed = time.monotonic() - start
            for name, (spec, info) in list(pending.items()):
                if not info.alive():
                    raise StackError(f"{name} exited while starting: {last_error(info.log)} (log: {info.log})")
                try:
                    response = client.get(spec.health_url)
                except httpx.HTTPError:
                    continue
                if response.status_code == 200:
                    del pending[name]
                    echo(f"  ready  {name:<14} {spec.url}  ({elapsed:.0f} s)")
                elif spec.progress and (note := spec.progress(response.content)):
                    notes[name] = note
            if not pending:
                return
            if elapsed > timeout:
                names = ", ".join(pending)
                logs = ", ".join(info.log for _spec, info in pending.values())
                raise StackError(f"{names} did not answer within {timeout:.0f} s; see {logs}")
            waiting = ", ".join(f"{n} ({notes.get(n, 'starting')})" for n in pending)
            progress(f"waiting for {waiting}, {elapsed:.0f} s")
            time.sleep(0.5)


def down(home: Path, echo: Callable[[str], None]) -> int:
    """Stop every process of the stack (last started first); how many were running."""
    state = read_state(home)
    if state is None:
        return 0
    count = 0
    for info in reversed(state.processes):
        if stop(info):
            count += 1
            echo(f"  stopped {info.name} (pid {info.pid})")
    state_path(home).unlink(missing_ok=True)
    return count
