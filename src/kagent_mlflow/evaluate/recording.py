"""Recording an evaluation in MLflow at the agents' pace: traces many per request, scores as assessments.

Why not one run per question (the seed's way, still available with ``--per-question-runs``): that costs the MLflow
server ~75-140 ms of CPU per question over 8-14 requests. Here a question costs a share of one OTLP request (up to
``batch`` traces each, linked to the target's run by the same request's ``x-mlflow-run-id`` header) plus one
``create_assessment`` per score. One thread posts trace batches; a small pool logs assessments, so scores of batch N
are written while batch N+1 is sent. The journal is the durable queue: a pair is acked ("t" then "a") only once
MLflow has it, and whatever is not acked is recorded by the next ``--resume``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from .._urls import safe_url
from ..sinks.redact import Redactor
from .dataset import Question
from .journal import Journal
from .scoring import JUDGE_NAME
from .targets import Answer
from .traces import assessment_id_for, assessment_json, otlp_payload, trace_id_for, trace_spans

logger = logging.getLogger("kagent_mlflow.evaluate")

_MAX_BACKOFF_S = 10.0


@dataclass
class RecordStats:
    traces: int = 0
    assessments: int = 0
    failures: int = 0
    requests: int = 0
    last_error: str | None = None


class TraceRecorder:
    """Background export of answered questions: ``put`` never blocks on MLflow; ``drain`` waits (bounded)."""

    def __init__(
        self,
        *,
        tracking_uri: str,
        experiment_id: str,
        run_ids: dict[str, str],
        journal: Journal,
        questions: dict[str, Question],
        dataset: str,
        redact: Redactor,
        judge_model: str | None = None,
        batch: int = 100,
        linger_s: float = 0.25,
        assessment_threads: int = 4,
        already_traced: set[tuple[str, str]] | None = None,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.run_ids = run_ids
        self.journal = journal
        self.questions = questions
        self.dataset = dataset
        self.redact = redact
        self.judge_model = judge_model
        self.batch = batch
        self.linger_s = linger_s
        self.stats = RecordStats()
        self._queue: queue.Queue[Answer | None] = queue.Queue()
        self._pending = 0
        self._cond = threading.Condition()
        self._pool = ThreadPoolExecutor(assessment_threads, thread_name_prefix="eval-assess")
        self._already_traced = already_traced or set()
        self._tracing: Any = None
        self._thread = threading.Thread(target=self._run, name="eval-traces", daemon=True)
        self._stop = False

    def start(self) -> TraceRecorder:
        from .._mlflow_compat import tracing_client

        self._tracing = tracing_client(self.tracking_uri)
        self._thread.start()
        return self

    def put(self, answer: Answer) -> None:
        with self._cond:
            self._pending += 1
        self._queue.put(answer)

    @property
    def pending(self) -> int:
        with self._cond:
            return self._pending

    def drain(self, timeout: float, on_progress: Callable[[int], None] | None = None) -> bool:
        """Wait until everything put is in MLflow (True) or ``timeout`` passes (False; the journal keeps the rest)."""
        self._queue.put(None)  # flush the partial batch now
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.2))
                if on_progress:
                    on_progress(self._pending)
        return True

    def close(self) -> None:
        self._stop = True
        self._queue.put(None)
        self._thread.join(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- the trace thread ------------------------------------------------------------------------------------------

    def _run(self) -> None:
        backoff = 0.0
        carry: list[Answer] = []
        while not self._stop:
            batch = carry or self._take()
            carry = []
            if not batch:
                continue
            by_target: dict[str, list[Answer]] = {}
            for answer in batch:
                by_target.setdefault(answer.target, []).append(answer)
            failed: list[Answer] = []
            for target, answers in by_target.items():
                if not self._send(target, answers):
                    failed.extend(answers)
            if failed:
                backoff = min(max(backoff * 2, 0.5), _MAX_BACKOFF_S)
                time.sleep(backoff)
                carry = failed
            else:
                backoff = 0.0

    def _take(self) -> list[Answer]:
        first = self._queue.get()
        if first is None:
            return []
        batch = [first]
        deadline = time.monotonic() + self.linger_s
        while len(batch) < self.batch:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if item is None:
                break
            batch.append(item)
        return batch

    def _send(self, target: str, answers: list[Answer]) -> bool:
        fresh = [a for a in answers if (a.target, a.qid) not in self._already_traced]
        if fresh:
            spans: list[Any] = []
            for answer in fresh:
                question = self.questions[answer.qid]
                spans.extend(trace_spans(self.journal.eval_id, self.dataset, question, answer, self.redact))
            self.stats.requests += 1
            try:
                problem = self._write_spans(spans, self.run_ids[target])
            except Exception as err:  # noqa: BLE001 - MLflow down or slow: retried, the journal keeps them
                problem = f"{type(err).__name__}: {' '.join(str(err).split())[:200]}"
            if problem:
                self.stats.failures += 1
                self.stats.last_error = f"MLflow at {safe_url(self.tracking_uri)} did not take traces ({problem})"
                logger.warning("%s; retrying", self.stats.last_error)
                return False
            self.journal.add_recorded("t", [(a.target, a.qid) for a in fresh])
            self.stats.traces += len(fresh)
        for answer in answers:
            self._pool.submit(self._assess, answer)
        return True

    def _write_spans(self, spans: list[Any], run_id: str) -> str | None:
        """A tracking server: one OTLP request linking every trace to the run. A local store: straight into its
        database (no HTTP server to post to), then one link call."""
        from .. import _mlflow_compat as compat

        if self.tracking_uri.startswith(("http://", "https://")):
            status = compat.post_otlp(self.tracking_uri, self.experiment_id, otlp_payload(spans), 60.0, run_id=run_id)
            return None if status == 200 else f"HTTP {status}"
        compat.log_spans(self._tracing, self.experiment_id, spans)
        trace_ids = sorted({s.trace_id for s in spans})
        self._tracing.store.link_traces_to_run(trace_ids, run_id)
        return None

    # -- assessments -----------------------------------------------------------------------------------------------

    def _assess(self, answer: Answer) -> None:
        """Log the answer's scores, each with an id derived from (trace, scorer): a score logged before a crash is
        found by that id instead of being logged twice. Then ack the pair."""
        trace_id = trace_id_for(self.journal.eval_id, answer.target, answer.qid)
        scores = {k: v for k, v in answer.scores.items() if v is not None}
        backoff = 0.5
        while scores and not self._stop:
            name = next(iter(scores))
            try:
                self._log_score(trace_id, name, scores[name])
                self.stats.assessments += 1
                del scores[name]
                backoff = 0.5
            except Exception as err:  # noqa: BLE001 - retried until close; the journal keeps the pair
                self.stats.failures += 1
                self.stats.last_error = f"could not log scores of {trace_id}: {' '.join(str(err).split())[:200]}"
                time.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_S)
        if scores:
            return
        self.journal.add_recorded("a", [(answer.target, answer.qid)])
        with self._cond:
            self._pending -= 1
            self._cond.notify_all()

    def _log_score(self, trace_id: str, name: str, score: dict[str, Any]) -> None:
        from .. import _mlflow_compat as compat

        if name == JUDGE_NAME:
            source = ("LLM_JUDGE", self.judge_model or "judge")
        else:
            source = ("CODE", f"kagent-mlflow:{name}")
        body = assessment_json(trace_id, name, score, *source)
        body["assessment_id"] = assessment_id_for(trace_id, name)
        if not self.tracking_uri.startswith(("http://", "https://")):
            try:
                self._tracing.store.create_assessment(_entity(body))
            except Exception:
                if not any(a.assessment_id == body["assessment_id"] for a in self._trace_assessments(trace_id)):
                    raise
            return
        status = compat.post_assessment(self.tracking_uri, trace_id, body, 30.0)
        if status != 200 and not compat.assessment_exists(self.tracking_uri, trace_id, body["assessment_id"], 30.0):
            raise RuntimeError(f"HTTP {status} from MLflow")

    def _trace_assessments(self, trace_id: str) -> list[Any]:
        return self._tracing.store.get_trace_info(trace_id).assessments or []


def _entity(body: dict[str, Any]) -> Any:
    """The assessment JSON as an MLflow entity (local stores take entities, not JSON)."""
    from google.protobuf.json_format import ParseDict
    from mlflow.entities import Assessment
    from mlflow.protos.assessments_pb2 import Assessment as ProtoAssessment

    return Assessment.from_proto(ParseDict(body, ProtoAssessment()))
