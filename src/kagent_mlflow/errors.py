"""One exception hierarchy, each message a single line a user can act on."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._urls import safe_url, scrub_urls

if TYPE_CHECKING:
    from .a2a.models import AgentReply
    from .records import Interaction
    from .result import QuestionResult


class KagentMlflowError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(KagentMlflowError):
    """A setting is missing or malformed (bad URL, empty question, unknown scheme)."""


class AgentError(KagentMlflowError):
    """The A2A agent could not give an answer. ``url`` names the endpoint, ``cause`` says why.

    Both are kept without credentials (``_urls``): the message reaches records, MLflow and the terminal.
    """

    def __init__(
        self,
        url: str,
        cause: str,
        *,
        task_state: str | None = None,
        raw: object = None,
        reply: AgentReply | None = None,
        result: QuestionResult | None = None,
    ) -> None:
        self.url = safe_url(url)
        self.cause = scrub_urls(cause)
        self.task_state = task_state
        self.raw = raw
        self.reply = reply  # what could be parsed (ids, state, usage) when the agent did answer
        self.result = result  # from send_question: the failed interaction as recorded (run keys settle on read)
        super().__init__(f"agent at {self.url}: {self.cause}")

    def with_result(self, result: QuestionResult) -> AgentError:
        """The same failure, of the same type, carrying the recorded interaction (``send_question`` raises this)."""
        return type(self)(
            self.url, self.cause, task_state=self.task_state, raw=self.raw, reply=self.reply, result=result
        )

    @property
    def interaction(self) -> Interaction | None:
        return self.result.interaction if self.result is not None else None

    @property
    def run_id(self) -> str | None:
        """The failed interaction's run (reading it waits, bounded, like ``result["run_id"]``)."""
        return self.result["run_id"] if self.result is not None else None

    @property
    def run_url(self) -> str | None:
        return self.result["run_url"] if self.result is not None else None

    @property
    def logging_error(self) -> str | None:
        return self.result["logging_error"] if self.result is not None else None


class AgentUnreachableError(AgentError):
    """Nothing answered at the URL (connection refused, DNS failure)."""


class AgentTimeoutError(AgentError):
    """The agent did not answer within the timeout."""


class AgentProtocolError(AgentError):
    """The agent answered, but not with a usable A2A reply (HTTP error, non-JSON, JSON-RPC error)."""


class AgentTaskError(AgentError):
    """The agent answered with a task that ended without an answer (failed, rejected, canceled, input-required)."""


class DeliveryError(KagentMlflowError):
    """Writing an interaction to MLflow failed; the record is kept for replay.

    ``retryable`` says whether trying again later can help (server down, 5xx, timeout, S3 outage) or whether MLflow
    rejected the record itself; ``tracking_uri`` and ``cause`` name where and why.
    """

    def __init__(
        self, message: str, *, tracking_uri: str | None = None, cause: str | None = None, retryable: bool = True
    ) -> None:
        self.tracking_uri = tracking_uri
        self.cause = cause if cause is not None else message
        self.retryable = retryable
        super().__init__(message)
