"""What the terminal shows while an answer arrives: the answer on stdout as it comes, progress on stderr.

Why split that way: stdout stays the answer alone (pipe it, redirect it), while stderr tells a person what the agent
is doing - a spinner with the elapsed time and the task's state while nothing else shows (on a terminal only), and
one line per tool call the agent reports. Ctrl-C cancels the agent's task (``tasks/cancel``); the question is
recorded as cancelled.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from .a2a.stream import AnswerView, StreamEvent, describe
from .errors import AgentError
from .text import for_terminal

if TYPE_CHECKING:
    from rich.console import Console
    from rich.status import Status

    from .question_stream import QuestionStream


@dataclass
class Outcome:
    """How one question ended on the terminal."""

    result: Any = None  # the QuestionResult (also for a failure: the error's)
    error: AgentError | None = None
    cancelled: bool = False
    answer_shown: bool = False


@dataclass
class LivePrinter:
    """Prints one question's events (see the module docstring). ``show_answer=False``: progress only."""

    out: IO[str] = field(default_factory=lambda: sys.stdout)
    show_answer: bool = True
    label: str = ""  # printed on stdout before the first piece of the answer (e.g. "\nAnswer: ")
    console: Console | None = None
    view: AnswerView = field(default_factory=AnswerView)
    _status: Status | None = None
    _started: float = 0.0
    _state: str = "sending"
    _at_line_start: bool = True

    def __post_init__(self) -> None:
        if self.console is None:
            from rich.console import Console

            self.console = Console(stderr=True, highlight=False, soft_wrap=True)

    def run(self, stream: QuestionStream) -> Outcome:
        """Read ``stream`` to its end (or Ctrl-C), printing as it goes."""
        outcome = Outcome()
        self._started = time.monotonic()
        self._spin()
        try:
            for event in stream:
                self.event(event)
            outcome.result = stream.result
        except AgentError as err:
            outcome.error, outcome.result = err, err.result
        except KeyboardInterrupt:
            self._stop_spin()
            self._note("cancelling the agent's task (Ctrl-C)...")
            try:
                outcome.result = stream.cancel()
            except KeyboardInterrupt:  # a second Ctrl-C: stop waiting for tasks/cancel
                outcome.result = None
            outcome.cancelled = True
        finally:
            self._stop_spin()
        if self.show_answer and outcome.result is not None and not outcome.cancelled:
            self._answer(self.view.final_text(outcome.result.get("answer")))
        self._end_line()
        outcome.answer_shown = self.view.any_shown
        return outcome

    def event(self, event: StreamEvent) -> None:
        changed = bool(event.state) and event.state != self._state
        if event.state:
            self._state = event.state
        note = describe(event)
        followed = event.source in ("poll", "resubscribe") and changed  # the task after its stream ended early
        if note and (event.tool_calls or event.kind in ("error", "invalid") or followed):
            self._note(note)
        if self.show_answer:
            self._answer(self.view.new_text(event))
        if self._status is not None:
            self._status.update(self._spinner_text())

    # -- output ---------------------------------------------------------------------------------------------------

    def _answer(self, text: str) -> None:
        if not text:
            return
        self._stop_spin()  # the answer has begun: a spinner would now get in its way
        if self.label:
            text, self.label = self.label + text.lstrip("\n"), ""
        self.out.write(for_terminal(text))
        self.out.flush()
        self._at_line_start = text.endswith("\n")

    def _end_line(self) -> None:
        if not self._at_line_start:
            self.out.write("\n")
            self.out.flush()
            self._at_line_start = True

    def _note(self, text: str) -> None:
        assert self.console is not None
        if not self._at_line_start:  # a note in the middle of the answer goes on a line of its own
            self._end_line()
        self.console.print(f"[dim]· {_escape(for_terminal(text))}[/dim]")

    def _spinner_text(self) -> str:
        return f"[dim]{self._state} {time.monotonic() - self._started:.1f} s (Ctrl-C cancels)[/dim]"

    def _spin(self) -> None:
        assert self.console is not None
        if self.console.is_terminal and not self.view.any_shown:
            self._status = self.console.status(self._spinner_text(), spinner="dots")
            self._status.start()

    def _stop_spin(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def timing_line(result: Any) -> str:
    """``Latency: 812 ms (first event 40 ms, first text 95 ms)`` - the streamed timings when there are any."""
    interaction = getattr(result, "interaction", None)
    latency = result.get("latency_ms") if result is not None else None
    if latency is None:
        return ""
    extra = []
    if interaction is not None and interaction.first_event_ms is not None:
        extra.append(f"first event {interaction.first_event_ms:.0f} ms")
    if interaction is not None and interaction.ttft_ms is not None:
        extra.append(f"first text {interaction.ttft_ms:.0f} ms")
    return f"Latency: {latency:.0f} ms" + (f" ({', '.join(extra)})" if extra else "")
