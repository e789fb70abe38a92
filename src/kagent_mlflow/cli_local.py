"""``kagent-mlflow up`` / ``ps`` / ``logs`` / ``down``: the whole stack as local processes (:mod:`.local`).

``ps``, not ``status``: ``status`` already tells what waits for MLflow in the spool; ``ps`` lists the stack's
processes, as ``docker compose ps`` does for a compose project.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from .config import default_home

PROCESS_NAMES = ("mlflow", "model", "llama-stack", "kagent-runtime", "agent")


def _fail(message: str, code: int) -> typer.Exit:
    from .cli import fail

    return fail(message, code)


def up_command(
    model_url: Annotated[
        str | None,
        typer.Option(help="Use this OpenAI-compatible endpoint (…/v1) instead of the bundled model."),
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Model id to ask for (default: the first the endpoint lists).")
    ] = None,
    runtime: Annotated[
        str, typer.Option(help="agent-server (the Pattern 2 agent) or kagent (the real kagent runtime).")
    ] = "agent-server",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Agent (A2A) port.")] = 8083,
    mlflow_port: Annotated[int, typer.Option(min=1, max=65535, help="MLflow server and UI port.")] = 5000,
    model_port: Annotated[int, typer.Option(min=1, max=65535, help="Bundled model server port.")] = 8081,
    llama_stack: Annotated[
        str, typer.Option(help="Llama Stack in between: auto (if `llama` is on PATH), off, or a `llama` path.")
    ] = "auto",
    llama_stack_port: Annotated[int, typer.Option(min=1, max=65535, help="Llama Stack port.")] = 8321,
    experiment: Annotated[
        str | None, typer.Option(help="MLflow experiment for the agent's traces (default rh-analyze-mvp).")
    ] = None,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds to wait for every process to answer.")] = 300.0,
) -> None:
    """Start MLflow (UI at http://localhost:5000), a small real model and the agent at the seed's A2A URL."""
    from .agent.config import openai_base_url
    from .config import DEFAULT_EXPERIMENT, check_experiment_name
    from .errors import KagentMlflowError
    from .local.stack import StackOptions, up
    from .local.state import read_state

    try:
        if not math.isfinite(timeout):
            raise _bad(f"--timeout {timeout} is not a number of seconds")
        if runtime not in ("agent-server", "kagent"):
            raise _bad(f"--runtime {runtime!r} is not agent-server or kagent")
        options = StackOptions(
            home=default_home(),
            mlflow_port=mlflow_port,
            agent_port=port,
            model_port=model_port,
            llama_stack_port=llama_stack_port,
            model_url=openai_base_url(model_url) if model_url is not None else None,
            model=model,
            runtime=runtime,
            llama_stack=llama_stack,
            experiment=check_experiment_name(experiment or DEFAULT_EXPERIMENT),
            timeout=timeout,
        )
        if options.llama_stack not in ("auto", "off") and not Path(options.llama_stack).is_file():
            raise _bad(f"--llama-stack {llama_stack!r} is not auto, off or the path of a `llama` executable")
    except KagentMlflowError as err:
        raise _fail(str(err), 2) from None
    existing = read_state(options.home)
    if existing and existing.running():
        running = existing.running()
        if len(running) == len(existing.processes):
            typer.echo(f"The local stack is already up ({len(running)} processes): kagent-mlflow ps shows them.")
            _print_urls(existing)
            return
        raise _fail("the local stack is partly running (see kagent-mlflow ps); run kagent-mlflow down first", 1)
    typer.echo(f"Starting the local stack in {options.home / 'stack'} ...")
    show = _progress_printer()
    try:
        state = up(options, typer.echo, show)
    except KagentMlflowError as err:
        show("")
        raise _fail(str(err), 2 if type(err).__name__ == "ConfigError" else 1) from None
    except KeyboardInterrupt:
        show("")
        raise _fail("interrupted; everything started was stopped", 130) from None
    show("")
    typer.echo("The local stack is up.")
    _print_urls(state)


def _bad(message: str) -> Exception:
    from .errors import ConfigError

    return ConfigError(message)


def _progress_printer() -> Any:
    """On a terminal, one line rewritten in place; elsewhere (logs, CI) a line every 10 s."""
    last = [0.0]
    tty = sys.stdout.isatty()

    def show(text: str) -> None:
        if tty:
            sys.stdout.write("\r\033[K" + (f"  {text}" if text else ""))
            sys.stdout.flush()
        elif text and time.monotonic() - last[0] >= 10:
            last[0] = time.monotonic()
            typer.echo(f"  {text}")

    return show


def _print_urls(state: Any) -> None:
    typer.echo(f"  MLflow UI:   {state.mlflow_url}")
    typer.echo(f"  agent (A2A): {state.a2a_url}")
    typer.echo(f"  model:       {state.model_url}")
    typer.echo('Ask it:  kagent-mlflow ask "What is Kubernetes?"   (or: python kagent_mlflow_logger.py)')
    typer.echo("Logs:    kagent-mlflow logs [NAME]     Stop it: kagent-mlflow down")


def down_command() -> None:
    """Stop every process of the local stack started by `kagent-mlflow up`."""
    from .local.stack import down

    home = default_home()
    count = down(home, typer.echo)
    typer.echo("The local stack is stopped." if count else "The local stack is not running.")


def ps_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")] = False,
) -> None:
    """List the local stack's processes (name, state, pid, URL, log). Exit 0 when all run, 1 otherwise."""
    from .local.state import read_state, state_path

    home = default_home()
    state = read_state(home)
    rows = [
        {"name": p.name, "running": p.alive(), "pid": p.pid, "url": p.url, "log": p.log, "what": p.description}
        for p in (state.processes if state else [])
    ]
    up = bool(rows) and all(r["running"] for r in rows)
    if as_json:
        urls = {"mlflow": state.mlflow_url, "a2a": state.a2a_url, "model": state.model_url} if state else {}
        typer.echo(json.dumps({"up": up, "state_file": str(state_path(home)), "urls": urls, "processes": rows}))
    elif not rows:
        typer.echo("The local stack is not running (start it with: kagent-mlflow up).")
    else:
        for r in rows:
            typer.echo(f"{r['name']:<15} {'running' if r['running'] else 'STOPPED':<8} {r['pid']:>7}  {r['url']}")
            typer.echo(f"{'':<15} {r['what']}; log {r['log']}")
    if not up:
        raise typer.Exit(1)


def logs_command(
    name: Annotated[str | None, typer.Argument(help=f"One process: {', '.join(PROCESS_NAMES)}.")] = None,
    lines: Annotated[int, typer.Option("--lines", "-n", min=1, help="Lines from the end of each log.")] = 40,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines (Ctrl+C to stop).")] = False,
) -> None:
    """Print the end of the local stack's logs (all, or one process's)."""
    from .local.processes import tail
    from .local.state import stack_dir

    log_dir = stack_dir(default_home()) / "logs"
    if name is not None and name not in PROCESS_NAMES:
        raise _fail(f"no process {name!r}; choose one of {', '.join(PROCESS_NAMES)}", 2)
    paths = [log_dir / f"{n}.log" for n in (name,)] if name else sorted(log_dir.glob("*.log"))
    paths = [p for p in paths if p.exists()]
    if not paths:
        raise _fail(f"no logs in {log_dir} (start the stack with: kagent-mlflow up)", 1)
    for path in paths:
        if len(paths) > 1:
            typer.echo(f"==> {path} <==")
        typer.echo(tail(path, lines))
    if follow:
        _follow(paths)


def _follow(paths: list[Path]) -> None:
    offsets = {p: p.stat().st_size for p in paths}
    try:
        while True:
            for path in paths:
                with open(path, "rb") as f:
                    f.seek(offsets[path])
                    chunk = f.read()
                    offsets[path] = f.tell()
                if chunk:
                    prefix = f"[{path.stem}] " if len(paths) > 1 else ""
                    for line in chunk.decode(errors="replace").splitlines():
                        typer.echo(prefix + line)
            time.sleep(0.5)
    except KeyboardInterrupt:
        return


def register(app: typer.Typer) -> None:
    app.command("up")(up_command)
    app.command("ps")(ps_command)
    app.command("logs")(logs_command)
    app.command("down")(down_command)
