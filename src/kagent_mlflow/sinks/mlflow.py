"""MlflowSink: writes one ``Interaction`` to MLflow as a run (tags, metrics, artifacts) plus a linked trace.

It knows nothing of A2A: it receives the plain ``Interaction`` record. It uses an ``MlflowClient`` bound to its own
tracking URI (never ``mlflow.set_tracking_uri``), fails fast (no MLflow-internal retries: the delivery layer
retries and spools), and raises ``DeliveryError`` with ``retryable`` set.

HTTP round trips per record against a tracking server with proxied artifacts (counted from the server's access log
in ``tests/integration/test_mlflow_sink.py::test_round_trips_per_record``)::

    open_run           1  create_run (tags interaction_id/agent/a2a_url, start time, run name)
    write(run_id=...)  7  log_batch (all tags + metrics + params) · 3 artifact PUTs (question.txt, answer.txt,
                          a2a_response.json) · start_trace (trace info, run link, token usage) · log_spans (OTLP,
                          all spans) · update_run (FINISHED/FAILED + end time)
    = 8 per record. write() without a run id from open_run in this sink adds 1 (search_runs by interaction_id, or
    get_run for a foreign run id) and, when no run exists yet, 1 more (create_run, with all tags: its log_batch
    then leaves them out). Once per sink and experiment:
    get_experiment_by_name (+ create_experiment). Once per process and server: GET /version (MLflow's log_spans).

Idempotent by ``interaction_id``: steps run in the order run → batch → artifacts → trace → end, each safe to redo
(tags overwrite; metrics carry a fixed timestamp so a duplicate is dropped by the store; params never change;
artifacts overwrite; the trace id is derived from the interaction id and the server merges a re-sent trace).
A replay finds the run by its ``interaction_id`` tag; a run already FINISHED/FAILED means the record was fully
written (ending is the last step), so write() returns its RunRef without writing anything. Within one sink, a
bounded memory of interaction ids (and a lock per id) makes open_run and write of the same record share one run
even when they race (a late open_run after write reuses the run), and makes a repeated write free.
The trace is not searched for: its id is derived from the interaction id, so writing it again merges into it.

Test hooks: ``write(..., _stop_after=step)`` raises ``StoppedAfterStep`` after a step; ``on_step`` is called after
each step; the environment variable ``KAGENT_MLFLOW_FAULT_AFTER_STEP=<step>`` SIGKILLs the process after that step
(for fault tests that drive a real deliverer process).
"""

from __future__ import annotations

import os
import re
import signal
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

from mlflow.entities import RunStatus, ViewType
from mlflow.exceptions import MlflowException, RestException
from mlflow.tracking import MlflowClient
from pydantic import BaseModel
from pydantic_core import PydanticSerializationError

from .. import _mlflow_compat as compat
from ..config import LOCAL_UI_HOST, LOCAL_UI_PORT, Settings
from ..embedded_store import first_open_lock
from ..errors import DeliveryError
from ..records import Destination, Interaction
from ..text import printable_data
from ._content import OPEN_RUN_TAGS, artifact_texts, run_batch, run_name, run_tags
from ._errors import describe
from ._trace import build_trace
from ._transport import HttpPolicy, ScopedS3, artifact_repository, fail_fast
from .redact import Redactor

STEPS = ("run", "batch", "artifacts", "trace", "end")
FAULT_ENV = "KAGENT_MLFLOW_FAULT_AFTER_STEP"  # test hook: SIGKILL this process right after the named step
_TERMINAL = {RunStatus.to_string(s) for s in (RunStatus.FINISHED, RunStatus.FAILED, RunStatus.KILLED)}
_MEMORY = 10_000  # interaction ids remembered per sink
_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")


@dataclass(frozen=True)
class _Known:
    run_id: str
    experiment_id: str
    artifact_uri: str
    done: bool = False


class RunRef(BaseModel):
    """Where an interaction landed in MLflow."""

    run_id: str
    experiment_id: str
    url: str


class StoppedAfterStep(Exception):
    """Raised by ``write(..., _stop_after=step)``: a test's simulated crash between two steps."""


class MlflowSink:
    """Writes interactions to one MLflow (``destination``, default: the one ``settings`` name). Thread-safe; no I/O
    in ``__init__``.

    ``settings`` supply the credentials (AWS keys; a tracking or S3 URI with credentials in it is used when it names
    the same server as ``destination``). The sink refuses a record whose own destination is another server.
    ``on_step(name)`` is called after each write step (``STEPS``); tests use it to crash between steps.
    ``http_timeout`` / ``http_retries`` bound every MLflow HTTP call made by this sink.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        destination: Destination | None = None,
        on_step: Callable[[str], None] | None = None,
        http_timeout: float = 10.0,
        http_retries: int = 0,
    ) -> None:
        self.settings = settings
        own = Destination.from_settings(settings)
        self.destination = destination or own
        # Connect with the configured URI (it may carry credentials) when it names this destination's server.
        same_server = not own.artifact_location and own.tracking_uri == self.destination.tracking_uri
        self._connect_uri = (
            settings.tracking_uri if same_server and settings.tracking_uri else self.destination.tracking_uri
        )
        self.tracking_uri = self.destination.tracking_uri  # without credentials: for messages and run links
        s3_endpoint = self.destination.s3_endpoint_url
        if s3_endpoint and settings.s3_endpoint_url and own.s3_endpoint_url == s3_endpoint:
            s3_endpoint = settings.s3_endpoint_url
        self._on_step = on_step
        self._fault_step = os.environ.get(FAULT_ENV) or None
        self._policy = HttpPolicy(max_retries=http_retries, timeout=http_timeout)
        secrets = [s.get_secret_value() for s in (settings.a2a_token, settings.aws_access_key_id) if s]
        secrets += [settings.aws_secret_access_key.get_secret_value()] if settings.aws_secret_access_key else []
        self._redact = Redactor(secrets)
        self._s3 = (
            ScopedS3(
                s3_endpoint,
                settings.aws_access_key_id.get_secret_value() if settings.aws_access_key_id else None,
                settings.aws_secret_access_key.get_secret_value() if settings.aws_secret_access_key else None,
                timeout=http_timeout,
            )
            if s3_endpoint or settings.aws_access_key_id
            else None
        )
        self._lock = threading.Lock()
        self._client: MlflowClient | None = None
        self._tracing: Any = None  # MLflow's TracingClient, bound to this sink's tracking URI
        self._experiments: dict[str, str] = {}
        # What this sink already knows per interaction id (bounded): the run opened or written, and whether done.
        self._known: OrderedDict[str, _Known] = OrderedDict()
        # One lock per interaction id (striped): open_run and write of the same record never both create a run.
        self._stripes = [threading.Lock() for _ in range(64)]
        self._spans_in_store: bool | None = None

    # ---------------------------------------------------------------- public API

    def open_run(self, interaction: Interaction) -> RunRef:
        """Create the run for a new interaction: one round trip (plus the cached experiment lookup).

        Meant for the live path, concurrently with the A2A request; ``write(interaction, run_id)`` completes it.
        """
        interaction = _printable(interaction)
        self._check_destination(interaction)
        with self._guard("creating the run"), self._stripe(interaction.interaction_id):
            known = self._recall(interaction.interaction_id)
            if known is not None:  # write() got there first (e.g. open_run was slow): reuse, never a second run
                return self._ref(known.experiment_id, known.run_id)
            experiment_id = self._experiment_id(interaction.experiment_name)
            run = self._mlflow().create_run(
                experiment_id,
                start_time=interaction.started_at_ms,
                tags={k: v for k, v in run_tags(interaction, self._redact).items() if k in OPEN_RUN_TAGS},
                run_name=run_name(interaction),
            )
            self._remember(interaction.interaction_id, _Known(run.info.run_id, experiment_id, run.info.artifact_uri))
            return self._ref(experiment_id, run.info.run_id)

    def write(self, interaction: Interaction, run_id: str | None = None, *, _stop_after: str | None = None) -> RunRef:
        """Write everything about ``interaction``; safe to replay after a crash at any step (see module doc)."""
        if _stop_after is not None and _stop_after not in STEPS:
            raise ValueError(f"unknown step {_stop_after!r}; steps are {STEPS}")
        interaction = _printable(interaction)
        if not _ID.match(interaction.interaction_id):
            raise DeliveryError(
                f"interaction id {interaction.interaction_id!r} is not a plain id; record cannot be logged",
                tracking_uri=self.tracking_uri,
                retryable=False,
            )
        self._check_destination(interaction)
        with self._guard("writing the run"), self._stripe(interaction.interaction_id):
            experiment_id = self._experiment_id(interaction.experiment_name)
            found = self._find_run(interaction, experiment_id, run_id)
            created = found is None
            if created:
                run = self._mlflow().create_run(
                    experiment_id,
                    start_time=interaction.started_at_ms,
                    tags=run_tags(interaction, self._redact),
                    run_name=run_name(interaction),
                )
                found = _Known(run.info.run_id, experiment_id, run.info.artifact_uri)
            elif found.done:
                self._remember(interaction.interaction_id, found)
                return self._ref(found.experiment_id, found.run_id)
            self._remember(interaction.interaction_id, found)
            run_id, experiment_id, artifact_uri = found.run_id, found.experiment_id, found.artifact_uri
            self._step("run", _stop_after)

            metrics, params, tags = run_batch(interaction, self._redact)
            if created:  # create_run just set these same tags: resending them costs the server a transaction
                tags = []
            self._mlflow().log_batch(run_id, metrics=metrics, params=params, tags=tags)
            self._step("batch", _stop_after)

            self._log_artifacts(interaction, artifact_uri)
            self._step("artifacts", _stop_after)

            self._log_trace(interaction, experiment_id, run_id)
            self._step("trace", _stop_after)

            status = {"ok": RunStatus.FINISHED, "cancelled": RunStatus.KILLED}.get(interaction.status, RunStatus.FAILED)
            compat.end_run(self._tracing_client(), run_id, status, interaction.ended_at_ms)
            self._remember(interaction.interaction_id, _Known(run_id, experiment_id, artifact_uri, done=True))
            self._step("end", _stop_after)
            return self._ref(experiment_id, run_id)

    def run_url(self, experiment_id: str, run_id: str) -> str:
        """The MLflow UI link of a run. For a local store: where ``kagent-mlflow ui`` serves it by default."""
        local_ui = f"http://{LOCAL_UI_HOST}:{LOCAL_UI_PORT}"
        base = self.tracking_uri if self.tracking_uri.startswith(("http://", "https://")) else local_ui
        return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"

    def close(self) -> None:
        """Nothing to release (HTTP sessions are MLflow's, shared per process); present for the delivery layer."""

    def missing_credentials(self) -> str | None:
        """Why this sink cannot write yet for want of credentials (S3 keys for direct artifacts), else None."""
        if not self.destination.s3_endpoint_url or self.settings.aws_access_key_id:
            return None
        import boto3

        if boto3.session.Session().get_credentials() is not None:  # env, ~/.aws, instance role ...
            return None
        return (
            f"S3 keys missing for the artifacts at {self.destination.s3_endpoint_url}: set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (or pass --aws-access-key-id / --aws-secret-access-key)"
        )

    # ---------------------------------------------------------------- steps

    def _check_destination(self, interaction: Interaction) -> None:
        """A record goes only where it was meant to go (re-targeting is explicit: ``Interaction.to``)."""
        meant = interaction.destination
        if meant is not None and meant.server != self.destination.server:
            raise DeliveryError(
                f"record {interaction.interaction_id} is meant for {meant.describe()}, not for "
                f"{self.destination.describe()}; it stays in the spool for kagent-mlflow replay",
                tracking_uri=self.destination.tracking_uri,
                cause="other destination",
                retryable=False,
            )

    def _find_run(self, interaction: Interaction, experiment_id: str, run_id: str | None) -> _Known | None:
        """This interaction's run: from memory (no round trip), by its id (get_run) or by tag (search_runs)."""
        known = self._recall(interaction.interaction_id)
        if known is not None and run_id in (None, known.run_id):
            return known
        if run_id:
            try:
                run = self._mlflow().get_run(run_id)
            except RestException as err:
                if err.get_http_status_code() != 404:
                    raise
            except MlflowException as err:  # the local store raises this for an unknown run id
                if "RESOURCE_DOES_NOT_EXIST" not in str(err.error_code):
                    raise
            else:
                if run.info.lifecycle_stage == "active":
                    info = run.info
                    return _Known(run_id, info.experiment_id, info.artifact_uri, done=info.status in _TERMINAL)
        runs = self._mlflow().search_runs(
            [experiment_id],
            filter_string=f"tags.interaction_id = '{interaction.interaction_id}'",
            run_view_type=ViewType.ACTIVE_ONLY,
            max_results=20,
            order_by=["attributes.start_time ASC"],
        )
        if not runs:
            return None
        done = [r for r in runs if r.info.status in _TERMINAL]
        info = (done or runs)[0].info
        return _Known(info.run_id, info.experiment_id, info.artifact_uri, done=bool(done))

    def _log_artifacts(self, interaction: Interaction, artifact_uri: str) -> None:
        files = artifact_texts(interaction, self._redact)
        repo = artifact_repository(artifact_uri, self._connect_uri, self._s3)
        with tempfile.TemporaryDirectory(prefix="kagent-mlflow-") as tmp:
            for name, text in files.items():
                Path(tmp, name).write_text(text, encoding="utf-8")
            repo.log_artifacts(tmp)

    def _log_trace(self, interaction: Interaction, experiment_id: str, run_id: str) -> None:
        """The trace info (start_trace), then the spans (log_spans: SQL stores keep them in the DB).

        Info first: the server then inserts the trace row once and stores the spans against it. The other order
        (MLflow's own exporter's) makes log_spans create a provisional trace row that start_trace must roll back
        and merge into: measured, that costs the server about twice the CPU for the same stored trace. Without
        span storage on the server (older MLflow), the spans go up as the trace's artifact instead.
        """
        built = build_trace(interaction, experiment_id, run_id, self._redact)
        tracing = self._tracing_client()
        info = compat.start_trace(tracing, built.info)
        if self._spans_in_store is not False:
            try:
                compat.log_spans(tracing, experiment_id, built.spans)
                self._spans_in_store = True
                return
            except NotImplementedError:
                if self._spans_in_store:  # worked before: the version probe failed transiently and got cached
                    compat.clear_server_version_cache()
                    raise DeliveryError(
                        f"MLflow at {self.tracking_uri}: could not read the server version to log spans",
                        tracking_uri=self.tracking_uri,
                        retryable=True,
                    ) from None
                self._spans_in_store = False
            except RestException as err:
                if "not supported" not in (err.message or ""):
                    raise
                self._spans_in_store = False
        compat.upload_trace_data(tracing, info, built.spans)

    # ---------------------------------------------------------------- helpers

    def _mlflow(self) -> MlflowClient:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    with first_open_lock(self._connect_uri):  # a fresh SQLite store is created by one process at a time
                        self._client = MlflowClient(tracking_uri=self._connect_uri, registry_uri=self._connect_uri)
        return self._client

    def _tracing_client(self) -> Any:
        if self._tracing is None:
            self._mlflow()
            self._tracing = compat.tracing_client(self._connect_uri)
        return self._tracing

    def _experiment_id(self, name: str) -> str:
        if not name:  # a record from before names were checked; never guess one (it would land elsewhere)
            raise DeliveryError(
                f"MLflow at {self.tracking_uri}: the record has no experiment name; "
                "send it with kagent-mlflow replay --experiment NAME",
                tracking_uri=self.tracking_uri,
                cause="no experiment name",
                retryable=False,
            )
        with self._lock:
            cached = self._experiments.get(name)
        if cached:
            return cached
        client = self._mlflow()
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            location = None
            if self.destination.artifact_location:
                location = self.destination.artifact_location
                Path(url2pathname(urlsplit(location).path)).mkdir(parents=True, exist_ok=True)
            try:
                experiment_id = client.create_experiment(name, artifact_location=location)
            except MlflowException as err:
                if "RESOURCE_ALREADY_EXISTS" not in str(err.error_code):
                    raise
                experiment = client.get_experiment_by_name(name)  # created concurrently by someone else
                assert experiment is not None
                experiment_id = experiment.experiment_id
        elif experiment.lifecycle_stage != "active":
            raise DeliveryError(
                f"MLflow at {self.tracking_uri}: experiment {name!r} is deleted; restore it or choose another name",
                tracking_uri=self.tracking_uri,
                cause="experiment deleted",
                retryable=False,
            )
        else:
            experiment_id = experiment.experiment_id
        with self._lock:
            self._experiments[name] = experiment_id
        return experiment_id

    def _stripe(self, interaction_id: str) -> threading.Lock:
        return self._stripes[hash(interaction_id) % len(self._stripes)]

    def _recall(self, interaction_id: str) -> _Known | None:
        with self._lock:
            return self._known.get(interaction_id)

    def _remember(self, interaction_id: str, known: _Known) -> None:
        with self._lock:
            self._known[interaction_id] = known
            self._known.move_to_end(interaction_id)
            while len(self._known) > _MEMORY:  # bounded memory, whatever the backlog
                self._known.popitem(last=False)

    def _ref(self, experiment_id: str, run_id: str) -> RunRef:
        return RunRef(run_id=run_id, experiment_id=experiment_id, url=self.run_url(experiment_id, run_id))

    def _step(self, name: str, stop_after: str | None) -> None:
        if self._on_step is not None:
            self._on_step(name)
        if self._fault_step == name:
            os.kill(os.getpid(), signal.SIGKILL)
        if stop_after == name:
            raise StoppedAfterStep(name)

    @contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        """Fail fast inside; turn any failure into one ``DeliveryError`` line naming the URI and the cause."""
        with fail_fast(self._policy):
            try:
                yield
            except (DeliveryError, StoppedAfterStep):
                raise
            except Exception as err:
                cause, retryable = describe(err)
                cause = self._redact.text(cause)
                raise DeliveryError(
                    f"MLflow at {self.tracking_uri}: {what} failed: {cause}",
                    tracking_uri=self.tracking_uri,
                    cause=cause,
                    retryable=retryable,
                ) from err


def _printable(interaction: Interaction) -> Interaction:
    """MLflow stores UTF-8 only: text that is not valid Unicode goes there escaped (the spool keeps it exact)."""
    try:
        interaction.model_dump_json()
    except PydanticSerializationError:
        return Interaction.model_validate(printable_data(interaction.model_dump()))  # python mode: surrogate keys too
    return interaction
