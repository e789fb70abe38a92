"""KagentMLflowLogger: the seed script's public API, on top of the A2A client and the MLflow sink.

The live path (ask the agent) never depends on MLflow: whatever happens to logging, the answer is returned.
"""

from __future__ import annotations

import time
from typing import Any

from .config import Settings, check_question
from .errors import AgentError, DeliveryError
from .records import Interaction, new_interaction_id


class QuestionResult(dict):
    """What ``send_question`` returns: the seed's dict keys plus the typed ``interaction``.

    Keys: ``answer``, ``run_id``, ``response`` (raw A2A reply), ``latency_ms``, ``interaction_id``, ``status``,
    ``agent``, ``usage``, ``task_id``, ``context_id``, ``run_url``, ``logging_error``.
    """

    interaction: Interaction


class KagentMLflowLogger:
    """Ask a kagent agent over A2A and log each interaction to MLflow.

    Constructor arguments mirror the seed script; anything left ``None`` comes from the environment
    (``MLFLOW_TRACKING_URI``, ``A2A_URL``, ``MLFLOW_EXPERIMENT`` ...), then from defaults.
    """

    def __init__(
        self,
        mlflow_tracking_uri: str | None = None,
        a2a_url: str | None = None,
        experiment_name: str | None = None,
        s3_endpoint_url: str | None = None,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        *,
        a2a_token: str | None = None,
        settings: Settings | None = None,
    ) -> None:
        self.settings = settings or Settings.from_env(
            tracking_uri=mlflow_tracking_uri,
            a2a_url=a2a_url,
            experiment_name=experiment_name,
            s3_endpoint_url=s3_endpoint_url,
            aws_access_key_id=aws_access_key_id,
            aws_secret_access_key=aws_secret_access_key,
            a2a_token=a2a_token,
        )
        self.settings.validate_for_ask()
        self._agent_client: Any = None
        self._sink: Any = None

    # Seed-compatible attribute names.
    @property
    def mlflow_tracking_uri(self) -> str:
        return self.settings.effective_tracking_uri

    @property
    def a2a_url(self) -> str:
        return self.settings.a2a_url

    @property
    def experiment_name(self) -> str:
        return self.settings.experiment_name

    def _client(self) -> Any:
        if self._agent_client is None:
            from .a2a.client import AgentClient

            token = self.settings.a2a_token
            self._agent_client = AgentClient(
                self.settings.a2a_url,
                timeout=self.settings.timeout,
                token=token.get_secret_value() if token else None,
            )
        return self._agent_client

    def _mlflow_sink(self) -> Any:
        if self._sink is None:
            from .sinks.mlflow import MlflowSink

            self._sink = MlflowSink(self.settings)
        return self._sink

    def send_question(self, question: str, run_name: str | None = None, timeout: float = 120) -> QuestionResult:
        """Ask the agent, log the interaction, return the seed's result dict.

        Raises ``AgentError`` (after logging a failed run) when the agent gives no answer; the exception carries
        ``interaction`` and ``run_id`` so nothing is lost.
        """
        question = check_question(question)
        interaction_id = new_interaction_id()
        started_at_ms = int(time.time() * 1000)
        t0 = time.perf_counter()
        try:
            reply = self._client().ask(question, timeout=timeout)
        except AgentError as err:
            latency_ms = (time.perf_counter() - t0) * 1000
            interaction = _failed_interaction(self.settings, question, err, interaction_id, started_at_ms, latency_ms)
            interaction.run_name = run_name
            result = self._log(interaction)
            err.interaction = interaction  # type: ignore[attr-defined]
            err.run_id = result["run_id"]  # type: ignore[attr-defined]
            err.run_url = result["run_url"]  # type: ignore[attr-defined]
            err.logging_error = result["logging_error"]  # type: ignore[attr-defined]
            raise
        latency_ms = (time.perf_counter() - t0) * 1000
        interaction = Interaction(
            interaction_id=interaction_id,
            question=question,
            answer=reply.answer,
            agent_name=reply.agent_name,
            a2a_url=self.settings.a2a_url,
            protocol_version=reply.protocol_version,
            task_id=reply.task_id,
            context_id=reply.context_id,
            task_state=reply.task_state,
            usage=reply.usage,
            tool_calls=reply.tool_calls,
            raw_response=reply.raw,
            latency_ms=latency_ms,
            started_at_ms=started_at_ms,
            experiment_name=self.settings.experiment_name,
            run_name=run_name,
        )
        return self._log(interaction)

    def _log(self, interaction: Interaction) -> QuestionResult:
        run_id = run_url = logging_error = None
        try:
            ref = self._mlflow_sink().write(interaction)
            run_id, run_url = ref.run_id, ref.url
        except DeliveryError as err:
            logging_error = str(err)
        result = QuestionResult(
            answer=interaction.answer,
            run_id=run_id,
            response=interaction.raw_response,
            latency_ms=interaction.latency_ms,
            interaction_id=interaction.interaction_id,
            status=interaction.status,
            agent=interaction.agent_name,
            usage=interaction.usage,
            task_id=interaction.task_id,
            context_id=interaction.context_id,
            run_url=run_url,
            logging_error=logging_error,
        )
        result.interaction = interaction
        return result

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every recorded interaction has been delivered (or spooled)."""
        return True

    def close(self) -> None:
        """Release connections. Safe to call twice."""
        if self._agent_client is not None:
            self._agent_client.close()
            self._agent_client = None

    def __enter__(self) -> KagentMLflowLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _failed_interaction(
    settings: Settings,
    question: str,
    err: AgentError,
    interaction_id: str,
    started_at_ms: int,
    latency_ms: float,
) -> Interaction:
    """The record of a question the agent did not answer: what was parsed, plus the error text."""
    reply = err.reply
    return Interaction(
        interaction_id=interaction_id,
        question=question,
        answer=reply.answer if reply else None,
        status="error",
        error=str(err),
        agent_name=reply.agent_name if reply else agent_name_from_url(settings.a2a_url),
        a2a_url=settings.a2a_url,
        protocol_version=reply.protocol_version if reply else None,
        task_id=reply.task_id if reply else None,
        context_id=reply.context_id if reply else None,
        task_state=err.task_state or (reply.task_state if reply else None),
        usage=reply.usage if reply else {},
        tool_calls=reply.tool_calls if reply else [],
        raw_response=err.raw if err.raw is not None else (reply.raw if reply else None),
        latency_ms=latency_ms,
        started_at_ms=started_at_ms,
        experiment_name=settings.experiment_name,
    )


def agent_name_from_url(url: str) -> str:
    """kagent routes are .../api/a2a/<namespace>/<name>/: the last path segment names the agent."""
    from urllib.parse import urlparse

    segments = [s for s in urlparse(url).path.split("/") if s]
    return segments[-1] if segments else urlparse(url).netloc
