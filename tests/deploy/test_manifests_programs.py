"""The manifests against the real programs they start: flags, env names, config files, ports.

Each container's command line is parsed by the program's own CLI parser (``kagent-mlflow``'s Typer app, ``mlflow``'s
click group), inline Python is compiled, the Llama Stack run config is loaded by Llama Stack's own code (extra keys
forbidden), the environment names our image reads are names the code reads, and MLflow's own host check admits
every address the other pods and the port-forwards use. (The manifest smoke test then runs them.)
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import click
import pytest
import typer
import yaml

from tests.support.llama_stack import llama_venv
from tests.support.manifests import (
    OVERLAYS,
    REPO,
    byo_agents,
    config_value,
    container_env,
    containers,
    find,
    render,
    workloads,
)

PROJECT_IMAGE = "ghcr.io/kagent-mlflow/kagent-mlflow"
ENTRYPOINT = "kagent-mlflow"  # the project image's ENTRYPOINT: containers give only args, or a full command


def _our_containers(objects: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for obj, template in workloads(objects):
        for c in containers(template):
            if c["image"].startswith(PROJECT_IMAGE + ":"):
                found.append((f"{obj['kind']}/{obj['metadata']['name']}", c))
    for agent in byo_agents(objects):
        deployment = agent["spec"]["byo"]["deployment"]
        found.append((f"Agent/{agent['metadata']['name']}", {"name": "kagent", **deployment}))
    return found


def _parse_click(group: Any, prog: str, argv: list[str]) -> Any:
    """Parse ``argv`` with a click group (MLflow's; Typer's own vendored click for ours) and its subcommand exactly as
    the program would: options, types, callbacks. Returns the subcommand's context; raises the parser's error."""
    ctx = group.make_context(prog, list(argv))
    protected = getattr(ctx, "_protected_args", None)
    rest = [*(protected if protected is not None else ctx.protected_args), *ctx.args]
    command = group.get_command(ctx, rest[0])
    assert command is not None, f"{prog} has no command {rest[0]!r}"
    return command.make_context(rest[0], rest[1:], parent=ctx)


def _kagent_mlflow_cli() -> Any:
    from kagent_mlflow.cli import app

    return typer.main.get_command(app)


def _mlflow_cli() -> click.Group:
    from mlflow.cli import cli

    return cli


def _shell_commands(script: str, env: dict[str, str]) -> list[list[str]]:
    """The simple commands of a one-line ``sh -c`` script (split at ``;``, ``||``, ``&&``), ``$VAR`` expanded from the
    container env (the scripts here use double quotes only)."""
    lexer = shlex.shlex(script, posix=True, punctuation_chars=";|&")
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for token in lexer:
        if token in (";", "||", "&&"):
            commands.append([])
        else:
            commands[-1].append(re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), ""), token))
    return [words[1:] if words[0] == "exec" else words for words in commands if words]


def _argvs(objects: list[dict[str, Any]], container: dict[str, Any]) -> list[list[str]]:
    """Every program invocation a container makes (one, or several for a ``sh -c`` script)."""
    command, args = container.get("command") or [], container.get("args") or []
    env = container_env(objects, container)
    if not command:
        return [[ENTRYPOINT, *args]]
    if command[:2] == ["sh", "-c"]:
        script = (command[2:] + args)[0]
        return [words for words in _shell_commands(script, env) if words[0] in (ENTRYPOINT, "mlflow")]
    return [[*command, *args]]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_command_lines_parse_with_the_programs_own_cli(overlay: str) -> None:
    objects = render(overlay)
    seen = set()
    for label, container in _our_containers(objects):
        argvs = _argvs(objects, container)
        assert argvs, f"{label}: no program invocation found in {container.get('command')} {container.get('args')}"
        for argv in argvs:
            program = argv[0]
            if program == ENTRYPOINT:
                ctx = _parse_click(_kagent_mlflow_cli(), program, argv[1:])
                seen.add(f"{program} {ctx.info_name}")
            elif program == "mlflow":
                ctx = _parse_click(_mlflow_cli(), program, argv[1:])
                seen.add(f"mlflow {ctx.info_name}")
                assert ctx.params["backend_store_uri"].startswith("postgresql+psycopg2://")
                assert ctx.params["serve_artifacts"] is True
                assert ctx.params["artifacts_destination"].startswith("s3://")
            elif program == "python" and argv[1] == "-c":
                compile(argv[2], f"{label} (python -c)", "exec")
                seen.add("python -c")
            else:
                raise AssertionError(f"{label}: unexpected program {argv}")
    if overlay != "minimal":
        assert {"kagent-mlflow serve", "kagent-mlflow ask", "kagent-mlflow replay", "mlflow server"} <= seen, seen


def test_a_wrong_flag_is_caught_by_the_parser() -> None:
    """The check above really parses: a misspelt flag or a bad value fails it."""
    with pytest.raises(Exception, match="(?i)no such option"):
        _parse_click(_kagent_mlflow_cli(), ENTRYPOINT, ["serve", "--shutdown-grase", "20"])
    with pytest.raises(Exception, match="(?i)integer"):
        _parse_click(_kagent_mlflow_cli(), ENTRYPOINT, ["serve", "--port", "http"])
    with pytest.raises(click.UsageError, match="(?i)no such option"):
        _parse_click(_mlflow_cli(), "mlflow", ["server", "--artifact-destination", "s3://x"])


def _names_read_by(root: Path) -> str:
    return "\n".join(p.read_text() for p in root.rglob("*.py"))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_env_names_are_names_the_programs_read(overlay: str) -> None:
    """A misspelt variable is silently ignored by the program: every KAGENT_MLFLOW_*/LLAMA_STACK_*/MLFLOW_* name
    given to a container of ours must be one our code (or MLflow, for MLFLOW_*) reads."""
    import mlflow

    ours = _names_read_by(REPO / "src" / "kagent_mlflow")
    theirs = (Path(mlflow.__file__).parent / "environment_variables.py").read_text()
    unknown = []
    objects = render(overlay)
    for label, container in _our_containers(objects):
        for name in container_env(objects, container):
            if not name.startswith(("KAGENT_MLFLOW_", "LLAMA_STACK_", "MLFLOW_")):
                continue
            if f'"{name}"' not in ours and f'"{name}"' not in theirs:
                unknown.append(f"{label}: {name}")
    assert not unknown, unknown


def _mlflow_args(objects: list[dict[str, Any]]) -> dict[str, Any]:
    container = find(objects, "Deployment", "mlflow")["spec"]["template"]["spec"]["containers"][0]
    ctx = _parse_click(_mlflow_cli(), "mlflow", [*container["command"], *container["args"]][1:])
    return ctx.params | {"env": container_env(objects, container)}


@pytest.mark.parametrize("overlay", ["full", "openshift"])
def test_mlflow_storage_settings_agree(overlay: str) -> None:
    objects = render(overlay)
    server = _mlflow_args(objects)
    backend = urlparse(server["backend_store_uri"])
    assert backend.username is None and backend.password is None, "credentials belong in PGUSER/PGPASSWORD"
    assert backend.hostname == find(objects, "StatefulSet", "mlflow-postgres")["spec"]["serviceName"]
    assert backend.path.lstrip("/") == config_value(objects, "Secret", "mlflow-postgres", "POSTGRES_DB")
    assert server["env"]["PGUSER"] == config_value(objects, "Secret", "mlflow-postgres", "POSTGRES_USER")
    assert server["env"]["PGPASSWORD"] == config_value(objects, "Secret", "mlflow-postgres", "POSTGRES_PASSWORD")
    job = find(objects, "Job", "mlflow-minio-make-bucket")["spec"]["template"]["spec"]["containers"][0]
    job_env = container_env(objects, job)
    assert urlparse(server["artifacts_destination"]).hostname == job_env["S3_BUCKET"]
    assert server["env"]["MLFLOW_S3_ENDPOINT_URL"] == job_env["MLFLOW_S3_ENDPOINT_URL"]
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert server["env"][key] == job_env[key]
    minio_pod = find(objects, "StatefulSet", "mlflow-minio")["spec"]["template"]["spec"]
    minio = container_env(objects, minio_pod["containers"][0])
    assert (minio["MINIO_ROOT_USER"], minio["MINIO_ROOT_PASSWORD"]) == (
        server["env"]["AWS_ACCESS_KEY_ID"],
        server["env"]["AWS_SECRET_ACCESS_KEY"],
    )


@pytest.mark.parametrize("overlay", ["full", "openshift"])
def test_mlflow_admits_the_hosts_its_clients_use(overlay: str) -> None:
    """MLflow refuses a Host header it does not know (DNS-rebinding guard) but still answers /health: probes would pass
    while every client got 403. Checked with MLflow's own matcher."""
    from mlflow.server.security_utils import is_allowed_host_header

    objects = render(overlay)
    allowed = [h.strip() for h in _mlflow_args(objects)["env"]["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")]
    clients = set()
    for obj in objects:
        if obj["kind"] == "ConfigMap":
            for value in obj.get("data", {}).values():
                clients |= {urlparse(u).netloc for u in re.findall(r"https?://mlflow[:/.][^\s\"']*", value)}
    clients |= {"mlflow:5000", "mlflow.kagent-mlflow.svc.cluster.local:5000", "localhost:5000", "127.0.0.1:5000"}
    if overlay == "openshift":
        clients.add("mlflow-kagent-mlflow.apps.cluster.example.com")
    refused = [host for host in sorted(clients) if not is_allowed_host_header(allowed, host)]
    assert not refused, f"MLFLOW_SERVER_ALLOWED_HOSTS={allowed} refuses {refused}"
    assert not is_allowed_host_header(allowed, "attacker.example.com")


def _llama_stack(objects: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    deployment = find(objects, "Deployment", "llama-stack")
    return deployment["spec"]["template"]["spec"], deployment["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_llama_stack_command_reads_the_mounted_config_on_the_served_port(overlay: str) -> None:
    objects = render(overlay)
    pod, container = _llama_stack(objects)
    command = container["command"]
    assert command[:3] == ["llama", "stack", "run"]
    config_path = Path(command[3])
    mount = next(m for m in container["volumeMounts"] if Path(m["mountPath"]) == config_path.parent)
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    text = config_value(objects, "ConfigMap", volume["configMap"]["name"], config_path.name)
    port = int(command[command.index("--port") + 1])
    assert port == container["ports"][0]["containerPort"] == yaml.safe_load(text)["server"]["port"]
    env = container_env(objects, container)
    required = set(re.findall(r"\$\{env\.(\w+)\}", text))  # no default: the server refuses to start without them
    assert required <= set(env), f"the run config needs {sorted(required - set(env))}"
    assert urlparse(env["VLLM_URL"]).path.rstrip("/").endswith("/v1")


def test_llama_stack_loads_the_run_config() -> None:
    """Llama Stack's own loader (in its venv) reads the rendered run config with the container's env (the overlays
    share one run config: test_llama_stack_config_is_the_same_everywhere)."""
    python = llama_venv() / "bin" / "python"
    if not python.exists():
        reason = f"no Llama Stack venv at {llama_venv()} (scripts/setup-llama-stack.sh)"
        if os.environ.get("KAGENT_MLFLOW_CI") == "1":
            pytest.fail(reason)
        print(f"\nSKIP: {reason}")
        pytest.skip(reason)
    objects = render("full")
    _, container = _llama_stack(objects)
    text = config_value(objects, "ConfigMap", "llama-stack-config", "config.yaml")
    env = {**container_env(objects, container), "PATH": os.environ.get("PATH", "")}
    checker = Path(__file__).with_name("llama_stack_config_check.py")

    def check(config: str) -> subprocess.CompletedProcess[str]:
        request = json.dumps({"config": config, "env": env})
        return subprocess.run([str(python), str(checker)], input=request, capture_output=True, text=True, timeout=300)

    result = check(text)
    assert result.returncode == 0 and result.stdout.startswith("OK"), result.stdout + result.stderr[-2000:]
    assert "inference:vllm=remote::vllm" in result.stdout
    # and the check is strict: a misspelt provider key fails it
    result = check(text.replace("max_tokens:", "max_token:"))
    assert result.returncode == 1 and "max_token" in result.stdout, result.stdout


def test_secrets_hold_only_placeholders() -> None:
    """No real credential in the repository: every password/key is an obvious placeholder."""
    not_secret = {"POSTGRES_USER", "POSTGRES_DB", "MINIO_ROOT_USER"}
    for obj in render("full"):
        if obj["kind"] != "Secret":
            continue
        assert "data" not in obj, f"{obj['metadata']['name']}: base64 data hides what the value is"
        for key, value in obj["stringData"].items():
            if key in not_secret:
                continue
            assert "REPLACE_ME" in value or value in ("fake", "not-checked-by-llama-stack"), (
                f"Secret {obj['metadata']['name']}/{key} looks like a real value"
            )


def test_llama_stack_config_is_the_same_everywhere() -> None:
    texts = {o: config_value(render(o), "ConfigMap", "llama-stack-config", "config.yaml") for o in OVERLAYS}
    assert len(set(texts.values())) == 1
