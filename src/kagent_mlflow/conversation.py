"""Conversation: several questions to one agent that build on each other (``kagent-mlflow chat``, the library).

Why the A2A ``contextId``: kagent keeps one session per context, so the agent remembers the earlier turns only when
every message carries the context its first answer named. A turn that ends with the agent asking something back
(``input-required``) is answered by the next question, sent into that same task.

In MLflow every turn is its own run and trace; the trace's session (``mlflow.trace.session`` metadata, MLflow's
Sessions view) is the conversation's id: the agent's ``contextId`` once it named one - the same id kagent's runtime
puts on its own spans - and a client-made id before that. Runs carry the tags ``kagent_context_id``, ``turn`` and
``conversation_id``.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from .config import check_question
from .question_stream import QuestionStream

if TYPE_CHECKING:
    from .a2a.models import AgentReply
    from .logger import KagentMLflowLogger
    from .records import Interaction
    from .result import QuestionResult


class Conversation:
    """Turns of one conversation: ``stream(q)`` (read the answer as it arrives) or ``ask(q)``; ``new()`` restarts."""

    def __init__(self, logger: KagentMLflowLogger, conversation_id: str | None = None) -> None:
        self._logger = logger
        self._given_id = conversation_id
        self.new()

    def new(self) -> None:
        """Start over: the next question opens a new context on the agent, and a new session in MLflow."""
        self.client_id = self._given_id or uuid.uuid4().hex
        self.context_id: str | None = None
        self.waiting_task_id: str | None = None  # the agent asked a question (input-required): the reply goes there
        self.waiting_question: str | None = None
        self.turn = 0

    @property
    def id(self) -> str:
        """MLflow's session id for this conversation (see the module docstring)."""
        return self._given_id or self.context_id or self.client_id

    def stream(
        self, question: str, run_name: str | None = None, timeout: float = 120, *, stream: bool = True
    ) -> QuestionStream:
        """The next turn, read as it arrives (like ``KagentMLflowLogger.stream_question``)."""
        question = check_question(question)
        self.turn += 1
        return QuestionStream(
            self._logger,
            question,
            run_name=run_name,
            timeout=timeout,
            stream=stream,
            context_id=self.context_id,
            task_id=self.waiting_task_id,
            input_required_ok=True,
            conversation_id=self._session_for,
            turn=self.turn,
            on_done=self._after,
        )

    def ask(
        self, question: str, run_name: str | None = None, timeout: float = 120, *, stream: bool = True
    ) -> QuestionResult:
        """The next turn; returns when the answer is in (raises ``AgentError`` like ``send_question``)."""
        return self.stream(question, run_name, timeout, stream=stream).wait()

    def _session_for(self, reply: AgentReply | None) -> str:
        if reply is not None and reply.context_id and self.context_id is None and self._given_id is None:
            self.context_id = reply.context_id  # the agent named the context: it is the conversation's id from now
        return self.id

    def _after(self, interaction: Interaction) -> None:
        self.context_id = self.context_id or interaction.context_id
        if interaction.task_state == "input-required" and interaction.task_id:
            self.waiting_task_id, self.waiting_question = interaction.task_id, interaction.answer
        else:
            self.waiting_task_id = self.waiting_question = None
