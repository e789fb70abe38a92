"""KagentMLflowLogger: the seed script's public API, on top of the A2A client and the MLflow sink.

The live path (ask the agent) never depends on MLflow: whatever happens to logging, the answer is returned.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from .a2a.card import agent_name_from_url
from .a2a.models import AgentReply
from .config import Settings, check_question
from .errors import AgentError
from .records import Destination, Interaction, new_interaction_id
from .text import printable


class QuestionResult(dict):
    """What ``send_question`` returns: the seed's dict keys plus the typed ``interaction``.

    Keys: ``answer``, ``run_id``, ``response`` (raw A2A reply), ``latency_ms``, ``interaction_id``, ``status``,
    ``agent``, ``usage``, ``task_id``, ``context_id``, ``run_url``, ``logging_error``.

    ``run_id``, ``run_url`` and ``logging_error`` resolve on first read (of those keys, or of the whole dict):
    the run is created in the background (during the request for an agent still thinking after 250 ms, else right
    after the answer), so reading them waits little; at most ``run_id_timeout`` s. When MLflow is unreachable
    ``run_id`` is None and ``logging_error`` says where the record was kept.
    """

    interaction: Interaction
    delivery: Any = None  # delivery.Delivery: the record's fate (delivered / spooled)
    pending_run: Any = None  # delivery.PendingRun: the run being opened while the agent answers

    _LAZY = frozenset({"run_id", "run_url", "logging_error"})

    def __init__(self, *args: Any, resolve: Callable[[], dict[str, Any]] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._resolve_fn = resolve
        self._resolve_lock = threading.Lock()

    def resolve(self) -> QuestionResult:
        """Fill the run keys now (waits at most the logger's ``run_id_timeout``)."""
        if self._resolve_fn is not None:
            with self._resolve_lock:
                if self._resolve_fn is not None:
                    dict.update(self, self._resolve_fn())
                    self._resolve_fn = None
        return self

    def __getitem__(self, key: Any) -> Any:
        if key in self._LAZY:
            self.resolve()
        return super().__getitem__(key)

    def get(self, key: Any, default: Any = None) -> Any:
        if key in self._LAZY:
            self.resolve()
        return super().get(key, default)

    def items(self) -> Any:
        return super(QuestionResult, self.resolve()).items()

    def values(self) -> Any:
        return super(QuestionResult, self.resolve()).values()

    def copy(self) -> dict[str, Any]:
        return dict(self.resolve().items())

    def __repr__(self) -> str:
        return super(QuestionResult, self.resolve()).__repr__()

    def __eq__(self, other: object) -> bool:
        return super(QuestionResult, self.resolve()).__eq__(other)

    __hash__ = None  # type: ignore[assignment]


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
        self._recorder: Any = None
        self._recorder_lock = threading.Lock()
        self.flush_timeout = flush_timeout  # how long close() (and interpreter exit) waits for delivery
        self.run_id_timeout = run_id_timeout  # how long reading result["run_id"] may wait for MLflow

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

    def _delivery_sink(self) -> Any:
        """The sink the recorder's threads use: it steps aside between MLflow calls while a question is live."""
        if self._sink is None:
            from .sinks.mlflow import MlflowSink

            self._sink = MlflowSink(self.settings, on_step=self._yield_to_live)
        return self._sink

    def _yield_to_live(self, _step: str) -> None:
        recorder = self._recorder
        if recorder is not None:
            recorder.yield_to_live()

    def _get_recorder(self) -> Any:
        """The background deliverer (created on first use; MLflow itself is imported by its threads)."""
        if self._recorder is None:
            with self._recorder_lock:
                if self._recorder is None:
                    from .delivery import Recorder, Spool

                    self._recorder = Recorder(
                        self._delivery_sink,
                        Spool(self.settings.effective_spool_dir),
                        workers=1 if self.settings.is_embedded else 2,  # 1 writer for SQLite; 2 measured best
                        exit_timeout=self.flush_timeout,
                    )
        return self._recorder

    def send_question(self, question: str, run_name: str | None = None, timeout: float = 120) -> QuestionResult:
        """Ask the agent and return the seed's result dict as soon as the answer is parsed.

        The interaction is handed to the background recorder (journaled to the spool, delivered to MLflow off the
        live path); its run is created in the background. Raises ``AgentError`` when the agent gives
        no answer; the failed interaction is recorded too and the exception carries ``interaction``, ``result``,
        ``run_id``, ``run_url`` and ``logging_error`` so nothing is lost.
        """
        question = check_question(question)
        recorder = self._get_recorder()
        interaction_id = new_interaction_id()
        started_at_ms = int(time.time() * 1000)
        pending = recorder.begin(
            Interaction(
                interaction_id=interaction_id,
                question=question,
                agent_name=agent_name_from_url(self.settings.a2a_url),
                a2a_url=self.settings.a2a_url,
                started_at_ms=started_at_ms,
                destination=Destination.from_settings(self.settings),
                run_name=run_name,
            )
        )
        t0 = time.perf_counter()
        error: AgentError | None = None
        try:
            # The wire carries UTF-8 only: undecodable input goes to the agent as shown to the user (escaped).
            reply: AgentReply | None = self._client().ask(printable(question), timeout=timeout)
        except AgentError as err:
            error, reply = err, err.reply
        finally:
            pending.end()  # the live request is over: background delivery may proceed
        # The request's own time when the client measured it (first-call imports and card lookup excluded).
        latency_ms = reply.latency_ms if reply is not None and reply.latency_ms else (time.perf_counter() - t0) * 1000
        interaction = _interaction(
            self.settings,
            question,
            reply,
            error,
            interaction_id=interaction_id,
            started_at_ms=started_at_ms,
            latency_ms=latency_ms,
            run_name=run_name,
        )
        result = self._log(interaction, pending)
        if error is not None:
            error.interaction = interaction  # type: ignore[attr-defined]
            error.result = result  # type: ignore[attr-defined]
            error.run_id = result["run_id"]  # type: ignore[attr-defined]
            error.run_url = result["run_url"]  # type: ignore[attr-defined]
            error.logging_error = result["logging_error"]  # type: ignore[attr-defined]
            raise error
        return result

    def _log(self, interaction: Interaction, pending: Any) -> QuestionResult:
        """Hand the record to the recorder (returns at once) and build the result with lazily resolved run keys."""
        try:
            delivery = self._get_recorder().record(interaction, pending)
        except Exception as err:  # logging never costs the answer
            from .delivery import Delivery

            delivery = Delivery(interaction.interaction_id)
            delivery.finish(None, f"could not hand the record over: {err}", lost=True)
        spool_dir = self.settings.effective_spool_dir
        timeout = self.run_id_timeout

        def resolve() -> dict[str, Any]:
            deadline = time.monotonic() + timeout
            ref = pending.wait(timeout) if pending is not None else None
            if ref is None:
                delivery.wait(max(deadline - time.monotonic(), 0.0))
                ref = delivery.ref
            if ref is not None:
                return {"run_id": ref.run_id, "run_url": ref.url, "logging_error": None}
            reason = delivery.error or (pending.error if pending is not None else None) or "not delivered yet"
            if delivery.lost:
                return {"run_id": None, "run_url": None, "logging_error": f"record lost: {reason}"}
            return {"run_id": None, "run_url": None, "logging_error": f"{reason}; record kept in the spool {spool_dir}"}

        result = QuestionResult(
            answer=interaction.answer,
            run_id=None,
            response=interaction.raw_response,
            latency_ms=interaction.latency_ms,
            interaction_id=interaction.interaction_id,
            status=interaction.status,
            agent=interaction.agent_name,
            usage=interaction.usage,
            task_id=interaction.task_id,
            context_id=interaction.context_id,
            run_url=None,
            logging_error=None,
            resolve=resolve,
        )
        result.interaction = interaction
        result.delivery = delivery
        result.pending_run = pending
        return result

    def flush(self, timeout: float | None = None) -> bool:
        """Wait (at most ``timeout`` s) until every recorded interaction is delivered or spooled.

        True when all of them reached MLflow; False when some wait in the spool (they are retried in the background
        and by ``kagent-mlflow replay``).
        """
        if self._recorder is None:
            return True
        return self._recorder.flush(timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Flush (at most ``timeout``, default ``flush_timeout`` s), stop the background threads, release
        connections. Undelivered records stay in the spool. Safe to call twice; also runs at interpreter exit."""
        ok = True
        if self._recorder is not None:
            ok = self._recorder.close(self.flush_timeout if timeout is None else timeout)
            self._recorder = None  # a later send_question starts a fresh recorder
        if self._agent_client is not None:
            self._agent_client.close()
            self._agent_client = None
        return ok

    def __enter__(self) -> KagentMLflowLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _interaction(
    settings: Settings,
    question: str,
    reply: AgentReply | None,
    error: AgentError | None,
    **measured: Any,
) -> Interaction:
    """The record of one question: what the reply said (also a partial one, from an error), plus the error text."""
    fields: dict[str, Any] = {"agent_name": agent_name_from_url(settings.a2a_url)}
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
    return Interaction(
        question=question,
        a2a_url=settings.a2a_url,
        destination=Destination.from_settings(settings),
        **fields,
        **measured,
    )
