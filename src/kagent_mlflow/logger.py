"""KagentMLflowLogger: the seed script's public API, on top of the A2A client and the MLflow sink.

The live path (ask the agent) never depends on MLflow: whatever happens to logging, the answer is returned.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from .a2a.card import agent_name_from_url
from .a2a.models import AgentReply
from .a2a.steps import steps_from_raw
from .config import Settings, check_question
from .delivery.handles import Delivery, PendingRun
from .delivery.pipeline import Pipeline, build_pipeline
from .errors import AgentError
from .records import Destination, Interaction, new_interaction_id
from .result import QuestionResult
from .text import printable
from .trace_context import trace_headers

if TYPE_CHECKING:
    from .conversation import Conversation
    from .question_stream import QuestionStream

__all__ = ["KagentMLflowLogger", "QuestionResult"]

log = logging.getLogger("kagent_mlflow")


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
        flush_timeout: float = 10.0,
        run_id_timeout: float = 10.0,
        pipeline: Pipeline | None = None,
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
        self.flush_timeout = flush_timeout  # how long close() (and interpreter exit) waits for delivery
        self.run_id_timeout = run_id_timeout  # how long reading result["run_id"] may wait for MLflow
        # The observability path (spool, sink, workers, live gate); nothing starts before the first question.
        self.pipeline = pipeline or build_pipeline(self.settings, exit_timeout=flush_timeout)

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

    def send_question(self, question: str, run_name: str | None = None, timeout: float = 120) -> QuestionResult:
        """Ask the agent and return the seed's result dict as soon as the answer is parsed.

        The interaction is handed to the background recorder (journaled to the spool, delivered to MLflow off the
        live path); its run is created in the background. Raises ``AgentError`` when the agent gives
        no answer; the failed interaction is recorded too, and the exception's ``result`` is its ``QuestionResult``
        (raising does not wait for MLflow; reading the result's run keys does, bounded).
        """
        question = check_question(question)
        stub = self._stub(question, run_name)
        pending = self._begin(stub)
        t0 = time.perf_counter()
        error: AgentError | None = None
        try:
            # The wire carries UTF-8 only: undecodable input goes to the agent as shown to the user (escaped).
            # traceparent names the trace the sink writes later: an agent exporting OpenTelemetry joins it.
            headers = trace_headers(stub.interaction_id)
            reply: AgentReply | None = self._client().ask(printable(question), timeout=timeout, headers=headers)
        except AgentError as err:
            error, reply = err, err.reply
        finally:
            if pending is not None:
                pending.end()  # the live request is over: background delivery may proceed
        # The request's own time when the client measured it (first-call imports and card lookup excluded).
        latency_ms = reply.latency_ms if reply is not None and reply.latency_ms else (time.perf_counter() - t0) * 1000
        interaction = _interaction(stub, reply, error, latency_ms)
        result = self._log(interaction, pending)
        if error is not None:
            raise error.with_result(result).with_traceback(error.__traceback__) from None
        return result

    def stream_question(
        self,
        question: str,
        run_name: str | None = None,
        timeout: float = 120,
        *,
        stream: bool = True,
        context_id: str | None = None,
    ) -> QuestionStream:
        """Ask the agent and read its answer as it arrives: iterate (``for`` or ``async for``) over the events.

        Uses A2A ``message/stream`` when the agent's card says it streams (``stream=False``, or an agent that
        cannot: ``message/send``), and follows a task that is still working with ``tasks/get`` until it ends.
        After the iteration ``.result`` is the ``QuestionResult``, with ``ttft_ms`` and the raw event list; a
        failure raises ``AgentError`` (with ``.result``) like ``send_question``; ``.cancel()`` cancels the task
        and records it as cancelled. Nothing is sent before the iteration starts.
        """
        from .question_stream import QuestionStream

        question = check_question(question)
        return QuestionStream(self, question, run_name=run_name, timeout=timeout, stream=stream, context_id=context_id)

    def conversation(self, conversation_id: str | None = None) -> Conversation:
        """A multi-turn conversation: every question continues the agent's context (A2A ``contextId``), each
        turn is its own run and trace, grouped in MLflow as one session (see ``Conversation``)."""
        from .conversation import Conversation

        return Conversation(self, conversation_id)

    def _stub(self, question: str, run_name: str | None) -> Interaction:
        """The record of a question about to be sent: its id, where it goes."""
        return Interaction(
            interaction_id=new_interaction_id(),
            question=question,
            agent_name=agent_name_from_url(self.settings.a2a_url),
            a2a_url=self.settings.a2a_url,
            started_at_ms=int(time.time() * 1000),
            destination=Destination.from_settings(self.settings),
            run_name=run_name,
        )

    def _begin(self, stub: Interaction) -> PendingRun | None:
        """Mark the request live and let its run be opened early; a logging failure never stops the question."""
        try:
            return self.pipeline.recorder().begin(stub)
        except Exception as err:
            log.warning("logging set-up failed before the question was sent: %s", err)
            return None

    def _log(self, interaction: Interaction, pending: PendingRun | None) -> QuestionResult:
        """Hand the record to the recorder (returns at once); the result's run keys settle on first read."""
        try:
            delivery = self.pipeline.recorder().record(interaction, pending)
        except Exception as err:  # logging never costs the answer
            delivery = Delivery(interaction.interaction_id)
            delivery.finish(None, f"could not hand the record over: {err}", lost=True)
        fields = {
            "answer": interaction.answer,
            "run_id": None,
            "response": interaction.raw_response,
            "latency_ms": interaction.latency_ms,
            "interaction_id": interaction.interaction_id,
            "status": interaction.status,
            "agent": interaction.agent_name,
            "usage": interaction.usage,
            "task_id": interaction.task_id,
            "context_id": interaction.context_id,
        }
        return QuestionResult(
            fields,
            interaction=interaction,
            delivery=delivery,
            pending_run=pending,
            spool_dir=self.pipeline.spool.directory,
            run_id_timeout=self.run_id_timeout,
        )

    def flush(self, timeout: float | None = None) -> bool:
        """Wait (at most ``timeout`` s) until every recorded interaction is delivered or spooled.

        True when all of them reached MLflow; False when some wait in the spool (they are retried in the background
        and by ``kagent-mlflow replay``).
        """
        return self.pipeline.flush(timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Flush (at most ``timeout``, default ``flush_timeout`` s), stop the background threads, release
        connections. Undelivered records stay in the spool. Safe to call twice; also runs at interpreter exit."""
        ok = self.pipeline.close(self.flush_timeout if timeout is None else timeout)  # a later question restarts it
        if self._agent_client is not None:
            self._agent_client.close()
            self._agent_client = None
        return ok

    def __enter__(self) -> KagentMLflowLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _interaction(
    stub: Interaction, reply: AgentReply | None, error: AgentError | None, latency_ms: float
) -> Interaction:
    """The record of one question: the stub made when it was sent (id, question, where it goes), what the reply said
    (also a partial one, from an error), the error text and the latency."""
    fields: dict[str, Any] = {}
    if reply is not None:
        fields.update(
            answer=reply.answer,
            agent_name=reply.agent_name,
            protocol_version=reply.protocol_version,
            task_id=reply.task_id,
            context_id=reply.context_id,
            task_state=reply.task_state,
            usage=reply.usage,
            tool_calls=reply.tool_calls,
            raw_response=reply.raw,
        )
    if error is not None:
        fields.update(status="error", error=str(error))
        if error.task_state:
            fields["task_state"] = error.task_state
        if error.raw is not None:
            fields["raw_response"] = error.raw
    fields["steps"] = steps_from_raw(fields.get("raw_response"))  # model and tool calls, for the trace
    base = stub.model_dump(include={"interaction_id", "question", "agent_name", "a2a_url", "started_at_ms", "run_name"})
    return Interaction(**(base | fields), destination=stub.destination, latency_ms=latency_ms)
