"""The `kagent-mlflow` command line. Heavy modules are imported inside commands so `--help` stays instant."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from .config import DEFAULT_QUESTION, check_question
from .errors import AgentError, KagentMlflowError

app = typer.Typer(
    help="Ask kagent agents over A2A and log every interaction to MLflow, off the live path.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Ask kagent agents over A2A and log every interaction to MLflow, off the live path."""


# Exit codes a script can rely on.
EXIT_BAD_INPUT = 2
EXIT_AGENT_FAILED = 3
EXIT_NOT_LOGGED = 4


def fail(message: str, code: int) -> typer.Exit:
    """Print a one-line error to stderr and return the Exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question to send to the agent.")] = DEFAULT_QUESTION,
    a2a_url: Annotated[str | None, typer.Option(help="A2A endpoint of the agent (env A2A_URL).")] = None,
    tracking_uri: Annotated[
        str | None, typer.Option(help="MLflow tracking URI; unset = local store (env MLFLOW_TRACKING_URI).")
    ] = None,
    experiment: Annotated[
        str | None, typer.Option(help="MLflow experiment (env MLFLOW_EXPERIMENT, MLFLOW_EXPERIMENT_NAME).")
    ] = None,
    s3_endpoint_url: Annotated[
        str | None, typer.Option(help="S3/MinIO endpoint for artifacts (env MLFLOW_S3_ENDPOINT_URL).")
    ] = None,
    aws_access_key_id: Annotated[str | None, typer.Option(help="S3 access key (env AWS_ACCESS_KEY_ID).")] = None,
    aws_secret_access_key: Annotated[
        str | None, typer.Option(help="S3 secret key (env AWS_SECRET_ACCESS_KEY).")
    ] = None,
    token: Annotated[str | None, typer.Option(help="Bearer token for the agent (env A2A_TOKEN).")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the agent's answer.")] = 120.0,
    run_name: Annotated[str | None, typer.Option(help="MLflow run name.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")] = False,
) -> None:
    """Ask the agent one question, print the answer, log the interaction to MLflow."""
    from .logger import KagentMLflowLogger

    try:
        check_question(question)
        logger = KagentMLflowLogger(
            mlflow_tracking_uri=tracking_uri,
            a2a_url=a2a_url,
            experiment_name=experiment,
            s3_endpoint_url=s3_endpoint_url,
            aws_access_key_id=aws_access_key_id,
            aws_secret_access_key=aws_secret_access_key,
            a2a_token=token,
        )
    except KagentMlflowError as err:
        raise fail(str(err), EXIT_BAD_INPUT) from None
    with logger:
        if not as_json:
            print_header(question, logger)
        try:
            result: dict[str, Any] = logger.send_question(question, run_name=run_name, timeout=timeout)
        except AgentError as err:
            result = {
                "answer": None,
                "run_id": getattr(err, "run_id", None),
                "run_url": getattr(err, "run_url", None),
                "logging_error": getattr(err, "logging_error", None),
                "status": "error",
                "error": str(err),
            }
            interaction = getattr(err, "interaction", None)
            if interaction is not None:
                result.update(_interaction_fields(interaction))
            report(result, logger, as_json)
            raise fail(str(err), EXIT_AGENT_FAILED) from None
        except KagentMlflowError as err:
            raise fail(str(err), EXIT_BAD_INPUT) from None
        report(result, logger, as_json)
        if result.get("logging_error"):
            raise fail(f"answer not logged: {result['logging_error']}", EXIT_NOT_LOGGED)


def _interaction_fields(interaction: Any) -> dict[str, Any]:
    return {
        "interaction_id": interaction.interaction_id,
        "agent": interaction.agent_name,
        "usage": interaction.usage,
        "latency_ms": interaction.latency_ms,
        "task_id": interaction.task_id,
        "context_id": interaction.context_id,
        "task_state": interaction.task_state,
    }


def print_header(question: str, logger: Any) -> None:
    typer.echo(f"Question: {question}")
    typer.echo(f"MLflow URI: {logger.mlflow_tracking_uri}")
    typer.echo(f"A2A URL: {logger.a2a_url}")


def report(result: dict[str, Any], logger: Any, as_json: bool) -> None:
    """Print the outcome: one JSON object, or the seed's human-readable lines."""
    if as_json:
        keys = ("answer", "run_id", "run_url", "latency_ms", "interaction_id", "status", "agent", "usage")
        extra = ("task_id", "context_id", "error", "logging_error")
        payload = {k: result.get(k) for k in keys} | {k: result[k] for k in extra if result.get(k) is not None}
        typer.echo(json.dumps(payload, ensure_ascii=False))
        return
    if result.get("answer") is not None:
        typer.echo(f"\nAnswer: {result['answer']}")
    if result.get("latency_ms") is not None:
        typer.echo(f"Latency: {result['latency_ms']:.0f} ms")
    if result.get("run_url"):
        typer.echo(f"Run: {result['run_url']}")
    elif result.get("run_id"):
        typer.echo(f"Run: {result['run_id']} (view it with: kagent-mlflow ui)")


def main() -> None:
    """Console-script entry point."""
    app()


def seed_main(argv: list[str] | None = None) -> None:
    """`python kagent_mlflow_logger.py ["question"]`: the seed script's interface, settings from the environment."""
    args = sys.argv[1:] if argv is None else argv
    question = " ".join(args) if args else DEFAULT_QUESTION
    app(["ask", question], prog_name="kagent_mlflow_logger.py")
