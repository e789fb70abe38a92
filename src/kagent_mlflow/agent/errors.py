"""Errors of the Pattern 2 agent. Each message is one line saying what failed and what to do."""

from __future__ import annotations

from .._urls import safe_url, scrub_urls
from ..errors import KagentMlflowError


class ModelError(KagentMlflowError):
    """The model endpoint (Llama Stack ``/v1``) could not give a completion. ``url`` names it, ``cause`` says why."""

    def __init__(self, url: str, cause: str) -> None:
        self.url = safe_url(url)  # messages reach logs and traces: never the URL's credentials
        self.cause = scrub_urls(cause)
        super().__init__(f"model at {self.url}: {self.cause}")


class ModelUnreachableError(ModelError):
    """Nothing answered at the model URL (connection refused, DNS failure)."""


class ModelTimeoutError(ModelError):
    """The model did not answer within the timeout."""


class ModelProtocolError(ModelError):
    """The model answered, but with an HTTP error or a body that is not a chat completion."""


class NoModelError(ModelError):
    """No model id was given and the endpoint lists no LLM."""
