"""QuestionStream: one question whose answer is read as it arrives, recorded to MLflow when it ends.

``KagentMLflowLogger.stream_question`` returns it. Iterating (sync or async) yields ``StreamEvent``s; when the
iteration ends, ``result`` is the ``QuestionResult`` (an ``AgentError`` carrying it is raised instead when the agent
gave no answer), exactly as ``send_question`` returns it. ``cancel()`` (what Ctrl-C does in the CLI) asks the agent to
cancel the task and records the run as cancelled; leaving a ``with`` block early, or a ``for`` loop with ``break``,
does the same (for ``async for``, use ``async with``). The record is handed to the background recorder like any
other: nothing here waits for MLflow.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any

from .a2a.stream import StreamEvent
from .errors import AgentError
from .records import Interaction
from .text import printable
from .trace_context import trace_headers

if TYPE_CHECKING:
    from .a2a.models import AgentReply
    from .a2a.streaming import ReplyStream
    from .delivery.handles import PendingRun
    from .logger import KagentMLflowLogger
    from .result import QuestionResult

CANCELLED = "cancelled by the user before the agent finished"


class QuestionStream:
    """The events of one question; ``result`` once it ended (see the module docstring)."""

    def __init__(
        self,
        logger: KagentMLflowLogger,
        question: str,
        *,
        run_name: str | None,
        timeout: float,
        stream: bool,
        context_id: str | None = None,
        task_id: str | None = None,
        input_required_ok: bool = False,
        conversation_id: Callable[[AgentReply | None], str | None] | None = None,
        turn: int | None = None,
        on_done: Callable[[Interaction], None] | None = None,
    ) -> None:
        self.question = question
        self._logger = logger
        self._run_name = run_name
        self._options = dict(context_id=context_id, task_id=task_id, timeout=timeout, prefer_stream=stream,
                             input_required_ok=input_required_ok)  # fmt: skip
        self._conversation_id = conversation_id
        self._turn = turn
        self._on_done = on_done
        self._replies: ReplyStream | None = None
        self._stub: Interaction | None = None
        self._pending: PendingRun | None = None
        self._t0 = 0.0
        self.result: QuestionResult | None = None
        self.error: AgentError | None = None

    # -- reading --------------------------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[StreamEvent]:
        replies = self._start()
        try:
            yield from replies
        except GeneratorExit:  # the caller stopped reading (``break``): the question is abandoned, so cancelled
            self.cancel()
            raise
        except AgentError as err:
            self._end(err.reply, err)
            assert self.error is not None
            raise self.error from None
        self._end(replies.reply, None)

    async def __aiter__(self) -> AsyncIterator[StreamEvent]:
        replies = self._start()
        try:
            async for event in replies:
                yield event
        except AgentError as err:
            self._end(err.reply, err)
            assert self.error is not None
            raise self.error from None
        self._end(replies.reply, None)

    def wait(self) -> QuestionResult:
        """Read to the end without looking at the events; the result (raises ``AgentError`` like ``send_question``)."""
        for _ in self:
            pass
        assert self.result is not None
        return self.result

    @property
    def done(self) -> bool:
        return self.result is not None

    @property
    def task_id(self) -> str | None:
        return self._replies.task_id if self._replies is not None else None

    # -- stopping -------------------------------------------------------------------------------------------------

    def cancel(self) -> QuestionResult | None:
        """Cancel the agent's task (``tasks/cancel``) and record the question as cancelled; the result.

        Does nothing (returns the result) once the question has ended."""
        if self.result is not None or self._replies is None:
            return self.result
        reply = self._replies.cancel()
        self._end(reply, None, cancelled=True)
        return self.result

    async def acancel(self) -> QuestionResult | None:
        if self.result is not None or self._replies is None:
            return self.result
        reply = await self._replies.acancel()
        self._end(reply, None, cancelled=True)
        return self.result

    def __enter__(self) -> QuestionStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()

    async def __aenter__(self) -> QuestionStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.acancel()

    # -- recording ------------------------------------------------------------------------------------------------

    def _start(self) -> ReplyStream:
        if self._replies is not None:
            raise RuntimeError("a QuestionStream can be read once")
        logger = self._logger
        self._stub = logger._stub(self.question, self._run_name)
        self._pending = logger._begin(self._stub)
        self._t0 = time.perf_counter()
        # The wire carries UTF-8 only: undecodable input goes to the agent as shown to the user (escaped).
        # traceparent names the trace the sink writes later: an agent exporting OpenTelemetry joins it.
        headers = trace_headers(self._stub.interaction_id)
        self._replies = logger._client().stream(printable(self.question), headers=headers, **self._options)
        return self._replies

    def _end(self, reply: AgentReply | None, error: AgentError | None, cancelled: bool = False) -> None:
        if self.result is not None:
            return
        if self._pending is not None:
            self._pending.end()  # the live request is over: background delivery may proceed
        assert self._stub is not None
        from .logger import _interaction

        latency_ms = (time.perf_counter() - self._t0) * 1000
        if reply is not None and reply.latency_ms:
            latency_ms = reply.latency_ms
        interaction = _interaction(self._stub, reply, error, latency_ms)
        extra: dict[str, Any] = {"turn": self._turn}
        if self._conversation_id is not None:
            extra["conversation_id"] = self._conversation_id(reply)
        if reply is not None:
            extra |= dict(streamed=reply.streamed, event_times_ms=reply.event_times_ms,
                          first_event_ms=reply.first_event_ms, ttft_ms=reply.ttft_ms)  # fmt: skip
        if cancelled:
            why = getattr(self._replies, "cancel_error", None)
            extra |= dict(status="cancelled", error=CANCELLED + (f" (tasks/cancel failed: {why})" if why else ""))
        interaction = interaction.model_copy(update=extra)
        self.result = self._logger._log(interaction, self._pending)
        if error is not None:
            self.error = error.with_result(self.result)
        if self._on_done is not None:
            self._on_done(interaction)
