"""``kagent-mlflow chat``: a conversation with one agent, every turn logged as its own run, grouped as a session.

On a terminal: a prompt with readline editing and history (kept in ``<data dir>/chat_history``), ``/new`` starts a
new conversation, ``/exit`` (or Ctrl-D) leaves, Ctrl-C during an answer cancels that turn's task. With stdin piped,
each line is one question (blank lines skipped), and the answers follow each other on stdout.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer

from .cli_live import LivePrinter, timing_line
from .text import for_terminal

HELP = "commands: /new (start a new conversation), /exit (leave; also Ctrl-D), /help"
PROMPT = "you> "
COMMAND = re.compile(r"/[a-z]+")


@dataclass
class ChatTally:
    """What the chat did, for the summary and the exit code."""

    turns: int = 0
    failed: int = 0
    cancelled: int = 0
    results: list[Any] = field(default_factory=list)


def logging_summary(tally: ChatTally, logger: Any, flush_timeout: float) -> tuple[str, list[str]]:
    """After the chat: wait (bounded) for the turns to reach MLflow; the worst state and lines to show."""
    logger.flush(flush_timeout)
    logger.close(timeout=0)
    states = [r.settle(timeout=0).outcome.state for r in tally.results]
    delivered = states.count("delivered")
    lines = [f"{delivered} of {len(states)} turn(s) logged to MLflow ({logger.mlflow_tracking_uri}, "
             f"experiment {logger.experiment_name!r})"]  # fmt: skip
    waiting = len(states) - delivered - states.count("rejected") - states.count("lost")
    if waiting:
        lines.append(f"{waiting} turn(s) kept in the spool {logger.pipeline.spool.directory}; "
                     "they are retried automatically, or now with: kagent-mlflow replay")  # fmt: skip
    for state in ("lost", "rejected"):
        if state in states:
            return state, lines + [f"{states.count(state)} turn(s) {state} by MLflow" if state == "rejected"
                                   else f"{states.count(state)} turn(s) lost: neither in MLflow nor kept"]  # fmt: skip
    return "ok", lines


def questions(interactive: bool, history: Path | None, note: Callable[[str], None]) -> Iterator[str]:
    """The user's lines: ``input()`` with readline on a terminal, else stdin line by line."""
    if not interactive:
        # Bytes, decoded as the command line is (PEP 383): a line that is not UTF-8 is still a question, shown and
        # logged escaped as typed, never a UnicodeDecodeError.
        for raw in sys.stdin.buffer:
            line = raw.decode("utf-8", "surrogateescape").rstrip("\r\n")
            if line.strip():
                yield line
        return
    _readline(history)
    while True:
        try:
            line = input(PROMPT)
        except EOFError:
            typer.echo("", err=True)
            return
        except KeyboardInterrupt:  # at the prompt: a fresh line, as shells do
            note("(Ctrl-C: /exit or Ctrl-D leaves)")
            continue
        except UnicodeDecodeError:
            note("(that line is not valid UTF-8 text; type it again)")
            continue
        if line.strip():
            yield line


def _readline(history: Path | None) -> None:
    try:
        import readline
    except ImportError:  # not on every platform; the prompt still works
        return
    if history is None:
        return
    try:
        history.parent.mkdir(parents=True, exist_ok=True)
        if history.exists():
            readline.read_history_file(history)
        readline.set_history_length(1000)
    except OSError:
        return
    import atexit

    atexit.register(_save_history, readline, history)


def _save_history(readline: Any, history: Path) -> None:
    try:
        readline.write_history_file(history)
    except OSError:
        pass


def run_chat(logger: Any, *, stream: bool, timeout: float, interactive: bool, history: Path | None) -> ChatTally:
    """The conversation loop; returns the tally. Turns are recorded as they end (never waiting for MLflow)."""
    from rich.console import Console

    console = Console(stderr=True, highlight=False, soft_wrap=True)

    def note(text: str) -> None:
        console.print(f"[dim]{_escape(for_terminal(text))}[/dim]")

    conversation = logger.conversation()
    tally = ChatTally()
    if interactive:
        note(f"chatting with {logger.settings.a2a_url}; {HELP}")
    for line in questions(interactive, history, note):
        command = line.strip().lower()
        if command in ("/exit", "/quit"):
            break
        if command == "/help":
            note(HELP)
            continue
        if command == "/new":
            conversation.new()
            note("(new conversation)")
            continue
        if COMMAND.fullmatch(command):  # one /word that is no command (a path would have more to it)
            note(f"unknown command {for_terminal(line.strip())}; {HELP}")
            continue
        if not interactive:
            typer.echo(f"{PROMPT}{for_terminal(line)}")
        tally.turns += 1
        turn = conversation.stream(line, timeout=timeout, stream=stream)
        outcome = LivePrinter(console=console).run(turn)
        if outcome.result is not None:
            tally.results.append(outcome.result)
        if outcome.cancelled:
            tally.cancelled += 1
            note("(turn cancelled; the agent's task was cancelled)")
        elif outcome.error is not None:
            tally.failed += 1
            console.print(f"error: {_escape(for_terminal(str(outcome.error)))}")
        else:
            details = [f"turn {conversation.turn}", timing_line(outcome.result).removeprefix("Latency: ")]
            note(" · ".join(d for d in details if d))
            if conversation.waiting_task_id:
                note("(the agent asks for more input: your next line answers it)")
    return tally


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
