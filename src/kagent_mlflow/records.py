"""Interaction: the one record that crosses from the live path to the observability path.

It is plain data (JSON round-trips exactly), so it can wait in the on-disk spool and be replayed. It carries its
``Destination`` (which MLflow, which experiment, which artifact store), so whoever delivers it later - this process,
another logger, ``kagent-mlflow replay`` - sends it where it was meant to go and nowhere else.
"""

from __future__ import annotations

import math
import time
import uuid
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ._urls import safe_url, scrub_urls
from .a2a.models import Step, ToolCall

if TYPE_CHECKING:
    from .config import Settings

# Usage keys as the kagent runtime (and newer ADK) report them, mapped to MLflow's token-usage names.
_INPUT_KEYS = ("promptTokenCount", "prompt_tokens", "input_tokens")
_OUTPUT_KEYS = ("candidatesTokenCount", "completion_tokens", "output_tokens")
_TOTAL_KEYS = ("totalTokenCount", "total_tokens")


CLIENT_STOPPED = (
    "the client stopped before the agent answered (process killed or crashed); the run was closed by replay"
)


def new_interaction_id() -> str:
    return uuid.uuid4().hex


class TokenUsage(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0


def store_uri(uri: str) -> str:
    """How a tracking or S3 endpoint URI is stored and compared: no credentials, no trailing slash on http(s)."""
    uri = safe_url(uri)
    if urlsplit(uri).scheme in ("http", "https"):
        uri = uri.rstrip("/")
    return uri


class Destination(BaseModel):
    """Where a record must be delivered. Never holds credentials: they come from the environment or flags.

    ``tracking_uri`` is concrete: the embedded default is stored as its ``sqlite:///`` path, so a record made for
    one machine's local store never lands in another store. ``artifact_location`` is set only for the embedded
    store (where new experiments keep their artifacts); a tracking server decides that itself.
    """

    model_config = ConfigDict(frozen=True)

    tracking_uri: str
    experiment_name: str
    s3_endpoint_url: str | None = None
    artifact_location: str | None = None

    @field_validator("tracking_uri", "s3_endpoint_url")
    @classmethod
    def _no_credentials(cls, uri: str | None) -> str | None:
        """Whatever made it (settings, a flag, a hand-edited spool line), a destination holds no credentials."""
        return store_uri(uri) if uri is not None else None

    @classmethod
    def from_settings(cls, settings: Settings) -> Destination:
        """The destination ``settings`` name (credentials stripped, the embedded store resolved to its path)."""
        if settings.is_embedded:
            home = settings.home.expanduser().absolute()
            return cls(
                tracking_uri=f"sqlite:///{home / 'mlflow.db'}",
                experiment_name=settings.experiment_name,
                artifact_location=(home / "artifacts").as_uri(),
            )
        assert settings.tracking_uri is not None
        return cls(
            tracking_uri=store_uri(settings.tracking_uri),
            experiment_name=settings.experiment_name,
            s3_endpoint_url=store_uri(settings.s3_endpoint_url) if settings.s3_endpoint_url else None,
        )

    @property
    def server(self) -> tuple[str, str | None]:
        """What a sink writes to: records with the same server may go through the same sink (any experiment)."""
        return (self.tracking_uri, self.s3_endpoint_url)

    def describe(self) -> str:
        """One human-readable name, e.g. ``http://mlflow:5000 (artifacts via http://minio:9000)``."""
        text = self.tracking_uri + (" (local store)" if self.artifact_location else "")
        return text + (f" (artifacts via {self.s3_endpoint_url})" if self.s3_endpoint_url else "")


class Interaction(BaseModel):
    """A question, its answer (or the error), and everything measured about it."""

    interaction_id: str = Field(default_factory=new_interaction_id)
    question: str
    answer: str | None = None
    status: Literal["ok", "error", "cancelled"] = "ok"  # cancelled: the user stopped it (Ctrl-C, tasks/cancel)
    error: str | None = None
    agent_name: str
    a2a_url: str
    protocol_version: str | None = None
    task_id: str | None = None
    context_id: str | None = None
    task_state: str | None = None
    usage: dict[str, float] = Field(default_factory=dict)
    tool_calls: list[ToolCall] = Field(default_factory=list)
    # The agent's model and tool calls in order, with their times and per-call usage (empty in older records).
    steps: list[Step] = Field(default_factory=list)
    # The reply body as received; for a streamed reply the list of every event body, in order, with
    # ``event_times_ms`` the arrival of each (ms after the request was sent).
    raw_response: Any = None
    latency_ms: float = 0.0
    streamed: bool = False
    event_times_ms: list[float] = Field(default_factory=list)
    first_event_ms: float | None = None  # streamed: time to the first event
    ttft_ms: float | None = None  # streamed: time to the first event carrying the agent's text
    # A turn of a conversation (``chat``, ``logger.conversation()``): MLflow's session id of the trace, and the
    # turn's number in it (1, 2, ...).
    conversation_id: str | None = None
    turn: int | None = None
    started_at_ms: int = Field(default_factory=lambda: int(time.time() * 1000))
    experiment_name: str
    run_name: str | None = None
    # Journalled when the run is opened early, before the answer: it stands for the question until the real record
    # supersedes it. Only if the client dies first is it delivered (by replay): the run then ends FAILED, never
    # RUNNING forever.
    provisional: bool = False
    # None only in records spooled before records carried their destination: replay needs ``--to`` for them.
    destination: Destination | None = None

    @model_validator(mode="before")
    @classmethod
    def _experiment_from_destination(cls, data: Any) -> Any:
        """``experiment_name`` may be left out when a destination is given: it is the destination's."""
        if isinstance(data, dict) and "experiment_name" not in data:
            destination = data.get("destination")
            name = getattr(destination, "experiment_name", None)
            if name is None and isinstance(destination, dict):
                name = destination.get("experiment_name")
            if name is not None:
                data = {**data, "experiment_name": name}
        return data

    @model_validator(mode="after")
    def _one_experiment(self) -> Interaction:
        if self.destination is not None and self.destination.experiment_name != self.experiment_name:
            raise ValueError(
                f"experiment_name {self.experiment_name!r} differs from the destination's "
                f"{self.destination.experiment_name!r}"
            )
        return self

    def to(self, destination: Destination) -> Interaction:
        """The same record, re-targeted (explicitly, e.g. ``replay --to``) at another destination."""
        return self.model_copy(update={"destination": destination, "experiment_name": destination.experiment_name})

    @field_validator("a2a_url")
    @classmethod
    def _safe_url(cls, url: str) -> str:
        """The record outlives the request (spool, MLflow): it keeps the URL without credentials."""
        return safe_url(url)

    @field_validator("error", "agent_name")
    @classmethod
    def _safe_text(cls, text: str | None) -> str | None:
        return scrub_urls(text) if text else text

    def provisional_copy(self) -> Interaction:
        """The record journalled before an early run open: a failed interaction saying the client went away."""
        return self.model_copy(update={"provisional": True, "status": "error", "error": CLIENT_STOPPED})

    @property
    def ended_at_ms(self) -> int:
        return self.started_at_ms + int(round(self.latency_ms))

    @property
    def token_usage(self) -> TokenUsage | None:
        """Token counts in MLflow's vocabulary, or None when the agent reported none."""
        return token_usage_of(self.usage)


def token_usage_of(usage: dict[str, float]) -> TokenUsage | None:
    """A usage block in the agent's key names (``promptTokenCount`` ...) as MLflow's token counts; None if empty."""

    def first(keys: tuple[str, ...]) -> int | None:
        for key in keys:
            value = usage.get(key)
            if value is not None and math.isfinite(value):
                return int(value)
        return None

    inp, out, total = first(_INPUT_KEYS), first(_OUTPUT_KEYS), first(_TOTAL_KEYS)
    if inp is None and out is None and total is None:
        return None
    inp, out = inp or 0, out or 0
    return TokenUsage(input_tokens=inp, output_tokens=out, total_tokens=total if total is not None else inp + out)
