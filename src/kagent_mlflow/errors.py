"""One exception hierarchy, each message a single line a user can act on."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._urls import safe_url, scrub_urls

if TYPE_CHECKING:
    from .a2a.models import AgentReply


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
    ) -> None:
        self.url = safe_url(url)
        self.cause = scrub_urls(cause)
        self.task_state = task_state
        self.raw = raw
        self.reply = reply  # what could be parsed (ids, state, usage) when the agent did answer
        super().__init__(f"agent at {self.url}: {self.cause}")


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
