"""What `kagent-mlflow status` and `kagent-mlflow replay` print: the spool per destination.

Kept apart from ``cli.py`` (which declares the options and exit codes) so each stays small; ``cli`` imports this
module only inside those two commands.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import typer

from .config import Settings
from .delivery.routing import UNKNOWN, Pass, Retarget, plan
from .delivery.spool import Spool
from .delivery.spool_status import SpoolStatus, Waiting
from .records import Destination
from .serve.trace_spill import SpillStatus

SinkFactory = Callable[[Destination], Any]


def show_status(st: SpoolStatus, traces: SpillStatus, as_json: bool) -> None:
    """Totals, then one line per destination (URI, experiment, count, oldest); then spilled Agent Server traces."""
    if as_json:
        payload = {
            "spool": str(st.path),
            "pending": st.pending,
            "oldest": format_ms(st.oldest_ms),
            "oldest_ms": st.oldest_ms,
            "segments": st.segments,
            "in_use_segments": st.in_use_segments,
            "corrupt_lines": st.corrupt_lines,
            "unanswered": st.unanswered,
            "destinations": [_waiting_json(w) for w in st.waiting],
            "agent_server_traces": {
                "path": str(traces.path),
                "pending": traces.traces,
                "bytes": traces.bytes,
                "in_use_segments": traces.in_use_segments,
                "rejected_segments": traces.rejected,
            },
        }
        typer.echo(json.dumps(payload))
        return
    typer.echo(f"Spool: {st.path}")
    if st.pending == 0:
        typer.echo("Waiting: nothing; every recorded interaction has reached MLflow.")
    else:
        typer.echo(
            f"Waiting: {st.pending} interaction(s), the oldest from {format_ms(st.oldest_ms)} ({age(st.oldest_ms)} ago)"
        )
        for waiting in st.waiting:
            where = (
                waiting.destination.describe()
                if waiting.destination
                else "MLflow unknown (spooled by an older version)"
            )
            typer.echo(
                f"  {waiting.pending:>6}  {where}  experiment {waiting.experiment_name!r}"
                f"  oldest {format_ms(waiting.oldest_ms)}"
            )
        if st.in_use_segments:
            typer.echo(f"In use: {st.in_use_segments} segment(s) held by a running logger (it is delivering them)")
        if st.unanswered:
            typer.echo(
                f"Unanswered: {st.unanswered} question(s) whose run was opened before the answer; if their client "
                "is gone, replay closes those runs as FAILED"
            )
        typer.echo("Send them now with: kagent-mlflow replay")
        if any(w.destination is None for w in st.waiting):
            typer.echo(
                f"Records of unknown MLflow go only where you say: kagent-mlflow replay --from {UNKNOWN} --to URI"
            )
    if st.corrupt_lines:
        typer.echo(f"Corrupt lines: {st.corrupt_lines} (skipped by replay, then kept in {st.path / 'corrupt'})")
    if traces.traces:
        typer.echo(
            f"Agent Server traces waiting: {traces.traces} ({traces.bytes / 1e6:.1f} MB) in {traces.path}; "
            "a running server exports them, or: kagent-mlflow replay"
        )
    if traces.rejected:
        typer.echo(f"Agent Server traces MLflow refused: {traces.rejected} segment(s) in {traces.path / 'rejected'}")


def _waiting_json(waiting: Waiting) -> dict[str, Any]:
    destination = waiting.destination
    return {
        "tracking_uri": destination.tracking_uri if destination else None,
        "experiment": waiting.experiment_name,
        "s3_endpoint_url": destination.s3_endpoint_url if destination else None,
        "pending": waiting.pending,
        "oldest": format_ms(waiting.oldest_ms),
        "oldest_ms": waiting.oldest_ms,
    }


def replay_spool(
    spool: Spool, retarget: Retarget, make_sink: SinkFactory, *, workers: int, attempts: int
) -> str | None:
    """One pass per destination server, each through its own sink; None when nothing is left, else why (one line).

    A destination that is unreachable, lacks credentials or refuses records keeps its records and says so in one
    line; the other destinations are still delivered.
    """
    waiting = spool.status()
    if waiting.pending == 0:
        typer.echo(f"Nothing to replay: the spool {spool.directory} is empty.")
        return None
    routes = plan(waiting, retarget)
    problems: list[str] = []
    delivered = failed = corrupt = 0
    for one in routes.passes:
        outcome = _replay_pass(spool, one, retarget, make_sink, workers=workers, attempts=attempts)
        delivered, failed, corrupt = delivered + outcome[0], failed + outcome[1], corrupt + outcome[2]
        if outcome[3]:
            problems.append(outcome[3])
    if routes.unrouted:
        problem = (
            f"{routes.unrouted} record(s) do not name their MLflow (spooled by an older version); "
            f"they stay in the spool: send them with kagent-mlflow replay --from {UNKNOWN} --to URI"
        )
        typer.echo(problem)
        problems.append(problem)
    if routes.unselected:
        typer.echo(f"{routes.unselected} record(s) for other destinations were left alone (--from {retarget.source}).")
    left = spool.status()
    typer.echo(
        f"Delivered {delivered}; failed {failed}; corrupt lines skipped {corrupt}; still waiting {left.pending}."
    )
    if corrupt:
        typer.echo(f"  corrupt lines are kept in {spool.directory / 'corrupt'}", err=True)
    if left.in_use_segments:
        typer.echo(f"  {left.in_use_segments} segment(s) are held by a running logger, which is delivering them")
    return problems[0] if problems else None


def _replay_pass(
    spool: Spool, one: Pass, retarget: Retarget, make_sink: SinkFactory, *, workers: int, attempts: int
) -> tuple[int, int, int, str | None]:
    """Deliver one server's records; (delivered, failed, corrupt, problem or None)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .delivery import replay
    from .errors import KagentMlflowError

    where = one.destination.describe()
    try:
        sink = make_sink(one.destination)
        missing = sink.missing_credentials() if hasattr(sink, "missing_credentials") else None
    except KagentMlflowError as err:
        missing = str(err).splitlines()[0]
    if missing:
        problem = f"{where}: {missing}; {one.pending} record(s) kept"
        typer.echo(problem)
        return 0, 0, 0, problem
    columns = (TextColumn(f"Delivering to {where}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, transient=False) as progress:
            task = progress.add_task("replay", total=one.pending)
            report = replay(
                spool,
                sink,
                workers=workers,
                attempts=attempts,
                total=one.pending,
                route=retarget.route(one.destination.server),
                progress=lambda r: progress.update(task, completed=r.done),
            )
    except KagentMlflowError as err:
        problem = f"{where}: {str(err).splitlines()[0]}; its records stay in {spool.directory}"
        typer.echo(problem)
        return 0, 0, 0, problem
    kept = max(one.pending - report.delivered, 0)
    line = f"{where}: delivered {report.delivered}"
    problem = None
    if report.stopped_on_outage:
        cause = report.errors[0] if report.errors else "no answer"
        problem = f"{where} is not accepting records right now ({cause}); {kept} record(s) kept: run replay again later"
        line += f"; not reachable ({cause}); {kept} kept"
    elif report.failed:
        problem = f"{report.failed} record(s) were refused by {where}; they stay in {spool.directory}"
        line += f"; refused {report.failed}: {'; '.join(report.errors)}"
    typer.echo(line + ".")
    return report.delivered, report.failed, report.corrupt, problem


def retarget_from_flags(
    settings: Settings, to: str | None, experiment: str | None, s3_endpoint_url: str | None, source: str | None
) -> Retarget:
    """Explicit re-targeting from ``replay`` flags; raises ConfigError on a malformed value."""
    from .config import check_experiment_name, check_http_url, check_tracking_uri
    from .records import store_uri

    destination = None
    if to is not None:
        check_tracking_uri(to)
        embedded = Destination.from_settings(settings.model_copy(update={"tracking_uri": None}))
        if store_uri(to) == embedded.tracking_uri:  # the local store: its artifacts go where `ask` puts them
            destination = embedded
        else:
            destination = Destination(tracking_uri=store_uri(to), experiment_name=settings.experiment_name)
    if experiment is not None:
        check_experiment_name(experiment)
    if s3_endpoint_url is not None:
        check_http_url(s3_endpoint_url, "S3 endpoint URL")
    return Retarget(to=destination, experiment_name=experiment, s3_endpoint_url=s3_endpoint_url, source=source)


def format_ms(ms: int | None) -> str | None:
    from datetime import datetime, timezone

    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def age(ms: int | None) -> str:
    import time

    seconds = max(time.time() - (ms or 0) / 1000, 0)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"
