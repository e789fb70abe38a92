"""The `kagent-mlflow` command line. Heavy modules are imported inside commands so `--help` stays instant."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from .config import DEFAULT_QUESTION, LOCAL_UI_HOST, LOCAL_UI_PORT, check_question, without_credentials
from .errors import KagentMlflowError
from .text import for_terminal, printable_data

app = typer.Typer(
    help="Ask kagent agents over A2A and log every interaction to MLflow, off the live path.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # click's plain help: typer's rich panels label every flag (even --help) "<bool>"
)


@app.callback()
def _root() -> None:
    """Ask kagent agents over A2A and log every interaction to MLflow, off the live path."""


# Exit codes a script can rely on.
EXIT_BAD_INPUT = 2
EXIT_AGENT_FAILED = 3
EXIT_NOT_LOGGED = 4
EXIT_RECORD_LOST = 5
EXIT_CANCELLED = 130  # Ctrl-C: the agent's task was cancelled, the question recorded as cancelled (128 + SIGINT)


def fail(message: str, code: int) -> typer.Exit:
    """Print a one-line error to stderr and return the Exit to raise."""
    typer.echo(f"error: {for_terminal(message)}", err=True)
    return typer.Exit(code)


# Where a question goes and where it is logged: the same options for `ask` and `chat`.
A2aUrl = Annotated[str | None, typer.Option(help="A2A endpoint of the agent (env A2A_URL).")]
TrackingUri = Annotated[
    str | None, typer.Option(help="MLflow tracking URI; unset = local store (env MLFLOW_TRACKING_URI).")
]
Experiment = Annotated[
    str | None, typer.Option(help="MLflow experiment (env MLFLOW_EXPERIMENT, MLFLOW_EXPERIMENT_NAME).")
]
S3EndpointUrl = Annotated[
    str | None, typer.Option(help="S3/MinIO endpoint for artifacts (env MLFLOW_S3_ENDPOINT_URL).")
]
AwsAccessKeyId = Annotated[str | None, typer.Option(help="S3 access key (env AWS_ACCESS_KEY_ID).")]
AwsSecretAccessKey = Annotated[str | None, typer.Option(help="S3 secret key (env AWS_SECRET_ACCESS_KEY).")]
Token = Annotated[str | None, typer.Option(help="Bearer token for the agent (env A2A_TOKEN).")]


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question to send to the agent.")] = DEFAULT_QUESTION,
    a2a_url: A2aUrl = None,
    tracking_uri: TrackingUri = None,
    experiment: Experiment = None,
    s3_endpoint_url: S3EndpointUrl = None,
    aws_access_key_id: AwsAccessKeyId = None,
    aws_secret_access_key: AwsSecretAccessKey = None,
    token: Token = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the agent's answer.")] = 120.0,
    run_name: Annotated[str | None, typer.Option(help="MLflow run name.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")] = False,
    stream: Annotated[
        bool,
        typer.Option(
            "--stream/--no-stream",
            help="Print the answer as it arrives (A2A message/stream, when the agent's card says it streams).",
        ),
    ] = False,
    flush_timeout: Annotated[
        float,
        typer.Option(
            envvar="KAGENT_MLFLOW_FLUSH_TIMEOUT",
            help="After the answer is printed, seconds to wait for the record to reach MLflow "
            "(env KAGENT_MLFLOW_FLUSH_TIMEOUT).",
        ),
    ] = 10.0,
) -> None:
    """Ask the agent one question, print the answer, log the interaction to MLflow."""
    try:
        check_question(question)
    except KagentMlflowError as err:
        raise fail(str(err), EXIT_BAD_INPUT) from None
    logger = open_logger(
        mlflow_tracking_uri=tracking_uri,
        a2a_url=a2a_url,
        experiment_name=experiment,
        s3_endpoint_url=s3_endpoint_url,
        aws_access_key_id=aws_access_key_id,
        aws_secret_access_key=aws_secret_access_key,
        a2a_token=token,
        flush_timeout=flush_timeout,
    )
    with logger:
        if not as_json:
            print_header(question, logger)
        from .cli_live import LivePrinter

        live = stream and not as_json
        try:
            questions = logger.stream_question(question, run_name=run_name, timeout=timeout, stream=stream)
            outcome = LivePrinter(show_answer=live, label="\nAnswer: ").run(questions)
        except KagentMlflowError as err:
            raise fail(str(err), EXIT_BAD_INPUT) from None
        result, err = outcome.result, outcome.error
        if outcome.cancelled:
            shown = {"answer": None, "status": "cancelled"}
            if result is not None:
                shown |= settle_delivery(logger, result, flush_timeout)[1]
            report(shown, logger, as_json)
            raise fail("cancelled (Ctrl-C): the agent's task was cancelled", EXIT_CANCELLED)
        if err is not None:
            shown = {"answer": None, "status": "error"}
            if err.result is not None:
                shown |= settle_delivery(logger, err.result, flush_timeout)[1]
            report(shown | {"error": str(err)}, logger, as_json)
            raise fail(str(err), EXIT_AGENT_FAILED) from None
        if live:
            report_timing(result)
        elif not as_json:
            report_answer(result)  # the answer first, before anything waits for MLflow
        state, shown = settle_delivery(logger, result, flush_timeout)
        if as_json:
            report(shown, logger, as_json)
        else:
            report_logging(shown, logger.settings.is_embedded)
        if state == "rejected":
            raise fail(f"answer not logged: {shown['logging_error']}", EXIT_NOT_LOGGED)
        if state == "lost":
            raise fail(f"answer not logged, {shown['logging_error']}", EXIT_RECORD_LOST)


@app.command()
def chat(
    a2a_url: A2aUrl = None,
    tracking_uri: TrackingUri = None,
    experiment: Experiment = None,
    s3_endpoint_url: S3EndpointUrl = None,
    aws_access_key_id: AwsAccessKeyId = None,
    aws_secret_access_key: AwsSecretAccessKey = None,
    token: Token = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each answer.")] = 120.0,
    stream: Annotated[
        bool, typer.Option("--stream/--no-stream", help="Print answers as they arrive (when the agent streams).")
    ] = True,
    flush_timeout: Annotated[
        float,
        typer.Option(
            envvar="KAGENT_MLFLOW_FLUSH_TIMEOUT",
            help="On leaving, seconds to wait for the turns to reach MLflow (env KAGENT_MLFLOW_FLUSH_TIMEOUT).",
        ),
    ] = 10.0,
) -> None:
    """Chat with the agent: one conversation (the agent keeps its context), every turn logged as its own run and
    trace, grouped as one MLflow session. /new starts a new conversation, /exit leaves. Piped stdin: one question
    per line."""
    from .cli_chat import logging_summary, run_chat

    logger = open_logger(
        mlflow_tracking_uri=tracking_uri,
        a2a_url=a2a_url,
        experiment_name=experiment,
        s3_endpoint_url=s3_endpoint_url,
        aws_access_key_id=aws_access_key_id,
        aws_secret_access_key=aws_secret_access_key,
        a2a_token=token,
        flush_timeout=flush_timeout,
    )
    with logger:
        interactive = sys.stdin.isatty()
        history = logger.settings.home.expanduser() / "chat_history" if interactive else None
        tally = run_chat(logger, stream=stream, timeout=timeout, interactive=interactive, history=history)
        state, lines = logging_summary(tally, logger, flush_timeout)
        for line in lines:
            typer.echo(line, err=True)
    if state == "rejected":
        raise typer.Exit(EXIT_NOT_LOGGED)
    if state == "lost":
        raise typer.Exit(EXIT_RECORD_LOST)
    if tally.failed:
        raise fail(f"{tally.failed} of {tally.turns} turn(s) got no answer", EXIT_AGENT_FAILED)


def open_logger(**options: Any) -> Any:
    """The ``KagentMLflowLogger`` of a command that asks (bad settings: one line, exit 2). The delivery log is quieted:
    the command reports the outcome itself (run link, or where the record was kept). Announces a first local store."""
    import logging

    from .logger import KagentMLflowLogger
    from .ui import first_use_notice

    logging.getLogger("kagent_mlflow.delivery").setLevel(logging.ERROR)
    try:
        logger = KagentMLflowLogger(**options, run_id_timeout=options["flush_timeout"])
    except KagentMlflowError as err:
        raise fail(str(err), EXIT_BAD_INPUT) from None
    if notice := first_use_notice(logger.settings):
        typer.echo(notice, err=True)
    return logger


def settle_delivery(logger: Any, result: Any, flush_timeout: float) -> tuple[str, dict[str, Any]]:
    """Wait (bounded) for the record to reach MLflow, settle the result; its state and what to show.

    States: "delivered", "spooled" (kept on disk and retried later: not an error), "rejected" (MLflow refused it),
    "lost" (neither delivered nor spooled).
    """
    logger.flush(flush_timeout)
    logger.close(timeout=0)  # whatever is still undelivered is already in the spool: don't wait twice
    outcome = result.settle(timeout=0).outcome
    shown = result.to_dict()
    interaction = getattr(result, "interaction", None)
    for key in ("ttft_ms", "first_event_ms"):  # streamed: shown in --json beside latency_ms
        if interaction is not None and getattr(interaction, key) is not None:
            shown[key] = round(getattr(interaction, key), 3)
    if outcome.state != "on_its_way":
        return outcome.state, shown
    why = f"not delivered within {flush_timeout:g}s; record kept in the spool {logger.pipeline.spool.directory}"
    return "spooled", shown | {"logging_error": why}


def print_header(question: str, logger: Any) -> None:
    typer.echo(f"Question: {for_terminal(question)}")
    typer.echo(f"MLflow URI: {without_credentials(logger.mlflow_tracking_uri)}")
    typer.echo(f"A2A URL: {without_credentials(logger.a2a_url)}")


def report(result: dict[str, Any], logger: Any, as_json: bool) -> None:
    """Print the outcome: one JSON object, or the seed's human-readable lines."""
    if as_json:
        keys = ("answer", "run_id", "run_url", "latency_ms", "interaction_id", "status", "agent", "usage")
        extra = ("task_id", "context_id", "error", "logging_error", "ttft_ms", "first_event_ms")
        payload = {k: result.get(k) for k in keys} | {k: result[k] for k in extra if result.get(k) is not None}
        typer.echo(json.dumps(printable_data(payload), ensure_ascii=False))
        return
    report_answer(result)
    report_logging(result, logger.settings.is_embedded)


def report_timing(result: Any) -> None:
    from .cli_live import timing_line

    if line := timing_line(result):
        typer.echo(line)


def report_answer(result: dict[str, Any]) -> None:
    if result.get("answer") is not None:
        typer.echo(f"\nAnswer: {for_terminal(result['answer'])}")
    if result.get("latency_ms") is not None:
        typer.echo(f"Latency: {result['latency_ms']:.0f} ms")


def report_logging(result: dict[str, Any], embedded: bool = False) -> None:
    if result.get("run_url"):
        # A local-store link points where `kagent-mlflow ui` serves by default: nothing answers there until it runs.
        typer.echo(f"Run: {result['run_url']}" + ("  (open it with: kagent-mlflow ui)" if embedded else ""))
    elif result.get("run_id"):
        typer.echo(f"Run: {result['run_id']} (view it with: kagent-mlflow ui)")
    error = result.get("logging_error")
    if error and error.startswith("record lost"):
        typer.echo(f"Not in MLflow, and not kept anywhere: {for_terminal(error)}", err=True)
    elif error:
        typer.echo(f"Not in MLflow yet: {for_terminal(error)}", err=True)
        typer.echo("It is retried automatically; send it now with: kagent-mlflow replay", err=True)


@app.command("replay")
def replay_command(
    to: Annotated[
        str | None,
        typer.Option("--to", help="Re-target: deliver to this MLflow tracking URI instead of each record's own."),
    ] = None,
    experiment: Annotated[
        str | None, typer.Option(help="Re-target: deliver into this experiment instead of each record's own.")
    ] = None,
    s3_endpoint_url: Annotated[
        str | None, typer.Option(help="Re-target: upload artifacts through this S3/MinIO endpoint instead.")
    ] = None,
    source: Annotated[
        str | None,
        typer.Option("--from", help="Only the records meant for this tracking URI ('unknown': those naming none)."),
    ] = None,
    aws_access_key_id: Annotated[str | None, typer.Option(help="S3 access key (env AWS_ACCESS_KEY_ID).")] = None,
    aws_secret_access_key: Annotated[
        str | None, typer.Option(help="S3 secret key (env AWS_SECRET_ACCESS_KEY).")
    ] = None,
    spool_dir: Annotated[
        str | None, typer.Option(help="Spool directory (env KAGENT_MLFLOW_SPOOL_DIR; default <data dir>/spool).")
    ] = None,
    workers: Annotated[int, typer.Option(min=1, max=32, help="Records written to MLflow in parallel.")] = 4,
    attempts: Annotated[int, typer.Option(min=1, max=10, help="Tries per record before stopping.")] = 3,
) -> None:
    """Deliver every interaction waiting in the spool to the MLflow it was meant for (safe to repeat).

    Each record goes to its own destination (tracking URI, experiment, artifact endpoint); credentials come from the
    environment or the flags. Sending records elsewhere is explicit: --to, --experiment, --s3-endpoint-url.
    """
    from .cli_spool import replay_spool, retarget_from_flags
    from .delivery.pipeline import build_pipeline

    # --to may carry credentials (user:password@): they are used to connect to it, never stored or shown.
    settings = _spool_settings(
        spool_dir=spool_dir,
        tracking_uri=to,
        aws_access_key_id=aws_access_key_id,
        aws_secret_access_key=aws_secret_access_key,
    )
    try:
        retarget = retarget_from_flags(settings, to, experiment, s3_endpoint_url, source)
    except KagentMlflowError as err:
        raise fail(str(err), EXIT_BAD_INPUT) from None

    pipeline = build_pipeline(settings)
    problem = replay_spool(pipeline.spool, retarget, pipeline.sink_for, workers=workers, attempts=attempts)
    problem = replay_traces(settings, to) or problem
    if problem:
        raise fail(problem, EXIT_NOT_LOGGED)


def replay_traces(settings: Any, tracking_uri: str | None) -> str | None:
    """Export the Agent Server traces spilled to disk (``kagent-mlflow serve``); the problem, if any."""
    from .serve.config import trace_spill_dir
    from .serve.trace_export import replay_spilled

    directory = trace_spill_dir(settings)
    report = replay_spilled(directory, tracking_uri)
    if report.segments or report.in_use:
        typer.echo(f"Agent Server traces: exported {report.exported} from {directory}; refused {report.rejected}.")
    if report.in_use:
        typer.echo(f"  {report.in_use} trace segment(s) are held by a running server, which is exporting them")
    if report.rejected:
        typer.echo(f"  refused traces are kept in {directory / 'rejected'}", err=True)
    return f"{report.problem}; the rest stays in {directory}: run replay again later" if report.problem else None


@app.command()
def status(
    spool_dir: Annotated[
        str | None, typer.Option(help="Spool directory (env KAGENT_MLFLOW_SPOOL_DIR; default <data dir>/spool).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")] = False,
) -> None:
    """Show what waits for MLflow: spooled interactions per destination (URI, experiment), how many and since
    when, and Agent Server traces spilled to disk."""
    from .cli_spool import show_status
    from .delivery.pipeline import build_pipeline
    from .serve import trace_spill
    from .serve.config import trace_spill_dir

    settings = _spool_settings(spool_dir=spool_dir)
    show_status(build_pipeline(settings).status(), trace_spill.status(trace_spill_dir(settings)), as_json)


def _spool_settings(**overrides: Any) -> Any:
    from .config import Settings

    try:
        return Settings.from_env(**overrides)
    except (KagentMlflowError, ValueError) as err:
        raise fail(str(err).splitlines()[0], EXIT_BAD_INPUT) from None


@app.command("serve")
def serve_command(
    host: Annotated[
        str | None, typer.Option(help="Interface to bind (default 127.0.0.1; env KAGENT_MLFLOW_SERVE_HOST).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port; 0 = any free port (default 8000; env KAGENT_MLFLOW_SERVE_PORT).")
    ] = None,
    agent: Annotated[
        str | None, typer.Option(help="module:attribute of a ResponsesAgent or factory (env KAGENT_MLFLOW_AGENT).")
    ] = None,
    tracking_uri: Annotated[
        str | None, typer.Option(help="MLflow tracking URI for traces (env MLFLOW_TRACKING_URI).")
    ] = None,
    experiment: Annotated[
        str | None, typer.Option(help="MLflow experiment for traces (env MLFLOW_EXPERIMENT_NAME).")
    ] = None,
    tracing: Annotated[bool, typer.Option(help="Record an MLflow trace per request.")] = True,
    max_body_bytes: Annotated[
        int | None,
        typer.Option(min=1, help="Largest body; past it 413 (default 1 MiB; env KAGENT_MLFLOW_MAX_BODY_BYTES)."),
    ] = None,
    max_json_depth: Annotated[
        int | None,
        typer.Option(min=1, help="Deepest JSON nesting; past it 400 (default 64; env KAGENT_MLFLOW_MAX_JSON_DEPTH)."),
    ] = None,
    max_input_items: Annotated[
        int | None,
        typer.Option(min=1, help="Most `input` items; past it 413 (default 10000; env KAGENT_MLFLOW_MAX_INPUT_ITEMS)."),
    ] = None,
    shutdown_grace: Annotated[
        float | None,
        typer.Option(
            help="Seconds from SIGTERM to exit: finish requests, export traces, spill the rest to disk "
            "(default 20; env KAGENT_MLFLOW_SHUTDOWN_GRACE)."
        ),
    ] = None,
    a2a: Annotated[bool, typer.Option(help="Also serve the agent over A2A (env KAGENT_MLFLOW_A2A).")] = True,
    a2a_path: Annotated[
        str | None, typer.Option(help="Where the A2A agent is served (default /a2a/; env KAGENT_MLFLOW_A2A_PATH).")
    ] = None,
    a2a_url: Annotated[
        str | None,
        typer.Option(
            help="Public URL of the A2A endpoint, named in its card (default: as requested; env KAGENT_MLFLOW_A2A_URL)."
        ),
    ] = None,
    a2a_protocols: Annotated[
        str | None,
        typer.Option(
            help="A2A versions the card offers, preferred first (default 1.0,0.3; env KAGENT_MLFLOW_A2A_PROTOCOLS)."
        ),
    ] = None,
    a2a_max_contexts: Annotated[
        int | None,
        typer.Option(
            min=1, help="A2A conversations remembered, LRU (default 1000; env KAGENT_MLFLOW_A2A_MAX_CONTEXTS)."
        ),
    ] = None,
    a2a_max_turns: Annotated[
        int | None,
        typer.Option(
            min=1, help="Turns remembered per A2A conversation (default 20; env KAGENT_MLFLOW_A2A_MAX_TURNS)."
        ),
    ] = None,
) -> None:
    """Serve the Pattern 2 agent with MLflow Agent Server: POST /invocations, /responses (streaming), GET /health;
    and over A2A at /a2a/ (card at /a2a/.well-known/agent-card.json)."""
    from .serve.config import ServeConfig
    from .serve.runner import run

    try:
        config = ServeConfig.from_env(
            host=host,
            port=port,
            agent=agent,
            tracking_uri=tracking_uri,
            experiment_name=experiment,
            tracing=None if tracing else False,
            max_body_bytes=max_body_bytes,
            max_json_depth=max_json_depth,
            max_input_items=max_input_items,
            shutdown_grace=shutdown_grace,
            a2a=None if a2a else False,
            a2a_path=a2a_path,
            a2a_url=a2a_url,
            a2a_protocols=a2a_protocols,
            a2a_max_contexts=a2a_max_contexts,
            a2a_max_turns=a2a_max_turns,
        )
        run(config)
    except KagentMlflowError as err:
        raise fail(str(err).splitlines()[0], EXIT_BAD_INPUT) from None


@app.command("ui")
def ui_command(
    backend_store_uri: Annotated[
        str | None,
        typer.Option(help="Store to browse (default: the local store, or MLFLOW_TRACKING_URI when it is a database)."),
    ] = None,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = LOCAL_UI_HOST,
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port; 0 = any free port.")] = LOCAL_UI_PORT,
) -> None:
    """Start the MLflow UI on the local store (where `ask` logs without a tracking server) and print its address."""
    import os

    from .config import Settings, default_home
    from .local.state import running_stack_urls
    from .ui import plan_ui, serve_ui

    stack = running_stack_urls(default_home())
    if stack and not backend_store_uri and not os.environ.get("MLFLOW_TRACKING_URI"):
        typer.echo(f"MLflow UI: {stack[0]}  (served by the local stack; kagent-mlflow down stops it)")
        return
    try:
        plan = plan_ui(Settings.from_env(), backend_store_uri, host, port)
        code = serve_ui(plan, typer.echo)
    except (KagentMlflowError, ValueError) as err:
        raise fail(str(err).splitlines()[0], EXIT_BAD_INPUT) from None
    if code:
        raise fail(f"the MLflow UI stopped with exit code {code}; see {plan.log_path}", 1)


def _register_eval() -> None:
    from .cli_eval import compare_command, eval_command

    app.command("eval")(eval_command)
    app.command("compare")(compare_command)


_register_eval()


def main() -> None:
    """Console-script entry point."""
    app()


def seed_main(argv: list[str] | None = None) -> None:
    """`python kagent_mlflow_logger.py ["question"]`: the seed script's interface, settings from the environment."""
    args = sys.argv[1:] if argv is None else argv
    question = " ".join(args) if args else DEFAULT_QUESTION
    app(["ask", question], prog_name="kagent_mlflow_logger.py")


def _register_local_stack() -> None:
    from .cli_local import register

    register(app)


_register_local_stack()
