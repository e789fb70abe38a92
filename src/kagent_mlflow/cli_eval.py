"""The ``eval`` and ``compare`` commands (registered in :mod:`.cli`); everything heavy is imported inside."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .errors import KagentMlflowError

if TYPE_CHECKING:
    from .evaluate.runner import EvalResult

EXIT_BAD_INPUT = 2
EXIT_INCOMPLETE = 4
EXIT_INTERRUPTED = 130


def _fail(message: str, code: int) -> typer.Exit:
    from .text import for_terminal

    typer.echo(f"error: {for_terminal(message)}", err=True)
    return typer.Exit(code)


def eval_command(
    questions: Annotated[
        str,
        typer.Argument(
            help="Question set: .jsonl or .csv rows id, question, expected, tags; or mlflow-dataset:NAME (an MLflow "
            "evaluation dataset, by name or d-id)."
        ),
    ],
    agent: Annotated[
        list[str] | None,
        typer.Option(
            "--agent",
            help="Target: an A2A agent URL, or an Agent Server URL ending in /invocations; NAME=URL names it. "
            "Repeat to compare. Default: A2A_URL, else the running `kagent-mlflow up` stack's agent, else the "
            "seed's URL.",
        ),
    ] = None,
    tracking_uri: Annotated[
        str | None, typer.Option(help="MLflow tracking URI; unset = local store (env MLFLOW_TRACKING_URI).")
    ] = None,
    experiment: Annotated[
        str | None, typer.Option(help="MLflow experiment (env MLFLOW_EXPERIMENT, MLFLOW_EXPERIMENT_NAME).")
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=256, help="Questions in flight at once.")] = 8,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds per question (each attempt).")] = 120.0,
    retries: Annotated[int, typer.Option(min=0, max=10, help="Retries of a transient failure (429/5xx/down).")] = 2,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the last interrupted evaluation of this set and targets.")
    ] = False,
    limit: Annotated[int | None, typer.Option(min=1, help="Ask only the first N questions (of this shard).")] = None,
    shard: Annotated[str | None, typer.Option(help="i/N: ask only shard i of N (split by question id).")] = None,
    eval_name: Annotated[
        str | None,
        typer.Option(
            envvar="KAGENT_MLFLOW_EVAL_NAME",
            help="Name shared by the shards of one evaluation: one parent run, merged metrics (env "
            "KAGENT_MLFLOW_EVAL_NAME).",
        ),
    ] = None,
    score: Annotated[
        list[str] | None,
        typer.Option(
            "--score", help="Scorer: exact, contains, regex, numeric[:TOL], judge (repeatable; default exact+contains)."
        ),
    ] = None,
    judge_model: Annotated[str | None, typer.Option(help="Model of the LLM judge (adds the judge scorer).")] = None,
    judge_url: Annotated[
        str | None,
        typer.Option(help="OpenAI-compatible base URL of the judge (default $LLAMA_STACK_BASE_URL/v1)."),
    ] = None,
    price_in: Annotated[float | None, typer.Option(min=0, help="Price per input token (cost per answer).")] = None,
    price_out: Annotated[float | None, typer.Option(min=0, help="Price per output token.")] = None,
    per_question_runs: Annotated[
        bool, typer.Option("--per-question-runs", help="Also log one run per question in the seed's schema.")
    ] = False,
    record_timeout: Annotated[
        float, typer.Option(min=0, help="Seconds to wait after the last answer for MLflow to have every record.")
    ] = 300.0,
    progress: Annotated[bool, typer.Option(help="Show the progress bar (stderr).")] = True,
    token: Annotated[str | None, typer.Option(help="Bearer token for the agents (env A2A_TOKEN).")] = None,
) -> None:
    """Ask every question of a set to one or more agents, score the answers, record it all in MLflow.

    One evaluation run per agent (params, metrics, results table, plots), one trace per question linked to it,
    scores as assessments on the traces; two or more agents also get a parent run with the comparison.
    """
    import logging

    from .config import Settings
    from .evaluate.dataset import parse_shard
    from .evaluate.scoring import JudgeConfig
    from .evaluate.summary import Prices
    from .evaluate.targets import parse_target, unique_targets

    logging.getLogger("kagent_mlflow").setLevel(logging.ERROR)
    try:
        settings = Settings.from_env(tracking_uri=tracking_uri, experiment_name=experiment, a2a_token=token)
        if settings.tracking_uri:
            from .config import check_tracking_uri

            check_tracking_uri(settings.tracking_uri)
        if not agent:  # as `ask`: A2A_URL, else a running `up` stack's agent, else the seed's URL
            agent = [settings.a2a_url]
        targets = unique_targets([parse_target(a) for a in agent])
        judge = None
        if judge_model:
            base = judge_url or _default_judge_url()
            if not base:
                raise KagentMlflowError("--judge-model needs --judge-url (or LLAMA_STACK_BASE_URL)")
            judge = JudgeConfig(base_url=base, model=judge_model, api_key=os.environ.get("JUDGE_API_KEY"))
        from .evaluate.runner import EvalConfig, prepare, run_eval

        config = EvalConfig(
            dataset=questions,
            targets=targets,
            settings=settings,
            concurrency=concurrency,
            timeout=timeout,
            retries=retries,
            resume=resume,
            limit=limit,
            shard=parse_shard(shard) if shard else None,
            scorers=list(score or []),
            judge=judge,
            prices=Prices(price_in or 0.0, price_out or 0.0) if price_in is not None or price_out is not None else None,
            per_question_runs=per_question_runs,
            eval_name=_check_name(eval_name),
            record_timeout=record_timeout,
            progress=progress,
        )
        prepare(config)  # a bad set or flag stops here, before any agent or MLflow is asked
    except (KagentMlflowError, ValueError) as err:
        raise _fail(str(err).splitlines()[0], EXIT_BAD_INPUT) from None
    try:
        result = run_eval(config, lambda line: typer.echo(line, err=True))
    except KagentMlflowError as err:
        raise _fail(str(err).splitlines()[0], EXIT_BAD_INPUT) from None
    except Exception as err:  # noqa: BLE001 - MLflow unreachable at start: one line, the journal is kept
        from ._urls import scrub_urls

        raise _fail(f"{type(err).__name__}: {scrub_urls(' '.join(str(err).split()))[:300]}", 1) from None
    _report(result, settings)
    if result.interrupted:
        raise _fail(f"interrupted; continue with the same command and --resume (journal {result.journal_dir})", 130)
    if result.unrecorded:
        raise _fail(
            f"{result.unrecorded} record(s) not in MLflow yet ({result.record_error}); they are kept in "
            f"{result.journal_dir}: run the same command with --resume to send them",
            EXIT_INCOMPLETE,
        )


def _check_name(name: str | None) -> str | None:
    if name is None:
        return None
    if not name.strip() or len(name) > 200 or not name.isprintable() or any(c in name for c in "'\"\\`"):
        raise KagentMlflowError("--eval-name must be 1-200 printable characters without quotes or backslashes")
    return name


def _default_judge_url() -> str | None:
    base = os.environ.get("LLAMA_STACK_BASE_URL")
    return base.rstrip("/") + "/v1" if base else None


def _report(result: EvalResult, settings: Any) -> None:
    from rich.console import Console

    from .evaluate.compare import render
    from .evaluate.runs import run_url

    console = Console()
    console.print(render(result.metrics))
    console.print(
        f"asked {result.asked}, skipped {result.skipped} already answered; "
        f"answering {result.answering_s:.1f} s, recording after the last answer {result.recording_s:.1f} s"
    )
    for name, run_id in result.run_ids.items():
        console.print(f"run {name}: {run_url(settings, result.experiment_id, run_id)}", soft_wrap=True)
    if result.parent_run_id:
        console.print(f"comparison: {run_url(settings, result.experiment_id, result.parent_run_id)}", soft_wrap=True)


def compare_command(
    runs: Annotated[list[str], typer.Argument(help="Evaluation run ids (two or more), or one comparison run id.")],
    tracking_uri: Annotated[
        str | None, typer.Option(help="MLflow tracking URI; unset = local store (env MLFLOW_TRACKING_URI).")
    ] = None,
) -> None:
    """Print the side-by-side comparison of existing evaluation runs (scores, latency, tokens, errors, cost)."""
    from rich.console import Console

    from .config import Settings
    from .evaluate.compare import load_runs, render
    from .evaluate.runs import client

    try:
        settings = Settings.from_env(tracking_uri=tracking_uri)
        columns = load_runs(client(settings.effective_tracking_uri), runs)
    except (KagentMlflowError, ValueError) as err:
        raise _fail(str(err).splitlines()[0], EXIT_BAD_INPUT) from None
    Console().print(render(columns))
