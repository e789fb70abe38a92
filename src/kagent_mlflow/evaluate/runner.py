"""``kagent-mlflow eval``: ask every selected question of every target, score, journal, record; resumable.

The answering loop is asyncio with ``concurrency`` workers per evaluation; each (target, question) pair is asked
at most once per evaluation: its answer (or final error) is journalled before it is scored or recorded, and
``--resume`` skips journalled pairs. Recording runs on background threads (:mod:`.recording`) while questions are
being asked, so the traces are in MLflow shortly after the last answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .dataset import Question, QuestionSet, load_questions, select
from .journal import Journal
from .mlflow_dataset import is_mlflow_dataset, load_mlflow_dataset, save_jsonl
from .scoring import JUDGE_NAME, JudgeConfig, Scoring, parse_scorers
from .summary import Prices, results_table, target_metrics
from .targets import Answer, AskFailure, Target, make_asker

DEFAULT_SCORERS = ("exact", "contains")


@dataclass
class EvalConfig:
    dataset: str
    targets: list[Target]
    settings: Any  # kagent_mlflow.config.Settings: tracking URI, experiment, home, token
    concurrency: int = 8
    timeout: float = 120.0
    retries: int = 2
    resume: bool = False
    limit: int | None = None
    shard: tuple[int, int] | None = None
    scorers: list[str] = field(default_factory=list)
    judge: JudgeConfig | None = None
    judge_concurrency: int = 4
    prices: Prices | None = None
    per_question_runs: bool = False
    record_timeout: float = 300.0
    progress: bool = True
    batch: int = 100
    eval_name: str | None = None  # shards of one evaluation (e.g. an Indexed Job) meet on this name
    recorder_nice: int = 10  # the recorder process yields the CPU to the asking while answers come in


@dataclass
class EvalResult:
    eval_id: str
    journal_dir: Path
    metrics: dict[str, dict[str, float]]
    run_ids: dict[str, str]
    parent_run_id: str | None
    experiment_id: str
    unrecorded: int
    asked: int
    skipped: int
    answering_s: float
    recording_s: float
    record_error: str | None = None
    interrupted: bool = False


def evaluation_key(qset: QuestionSet, config: EvalConfig) -> str:
    """What makes two invocations the same evaluation for ``--resume``: set, targets, shard, destination."""
    from ..records import store_uri

    settings = config.settings
    data = {
        "digest": qset.digest,
        "targets": [(t.name, t.shown_url) for t in config.targets],
        "shard": config.shard,
        "tracking": store_uri(settings.effective_tracking_uri),
        "experiment": settings.experiment_name,
        "eval_name": config.eval_name,
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:24]


def prepare(config: EvalConfig) -> tuple[QuestionSet, list[Question], Scoring]:
    """Everything that can be checked before anything is asked (bad set, bad flags): raises one-line errors."""
    if is_mlflow_dataset(config.dataset):
        qset = load_mlflow_dataset(config.dataset, config.settings.effective_tracking_uri)
    else:
        qset = load_questions(config.dataset)
    chosen = select(qset.questions, shard=config.shard, limit=config.limit)
    names = config.scorers or (list(DEFAULT_SCORERS) if any(q.expected is not None for q in chosen) else [])
    specs = parse_scorers(names, judge=config.judge)
    return qset, chosen, Scoring(specs, config.judge)


def run_eval(config: EvalConfig, echo: Callable[[str], None]) -> EvalResult:
    from .record_worker import RecordWorker
    from .runs import client, experiment_id, finish_runs, open_runs

    qset, chosen, scoring = prepare(config)
    settings = config.settings
    key = evaluation_key(qset, config)
    root = Path(settings.home) / "evals"
    journal = Journal.find(root, key) if config.resume else None
    if config.resume and journal is None:
        echo("nothing to resume for this question set and these targets: starting a new evaluation")
    if journal is None:
        journal = Journal.create(
            root,
            key,
            {
                "dataset": {"path": qset.path, "name": qset.name, "digest": qset.digest},
                "targets": [{"name": t.name, "url": t.shown_url, "kind": t.kind} for t in config.targets],
                "shard": config.shard,
            },
        )
    recorder = RecordWorker()  # imports MLflow while the runs are opened below
    try:
        mlflow = client(settings.effective_tracking_uri)
        exp_id = experiment_id(mlflow, settings.experiment_name, _artifact_location(settings))
        params = {
            "dataset": qset.name,
            "dataset_digest": qset.digest,
            "dataset_questions": len(qset.questions),
            "questions": len(chosen),
            "concurrency": config.concurrency,
            "timeout_s": config.timeout,
            "retries": config.retries,
            "scorers": ",".join(scoring.names) or "none",
            "judge_model": config.judge.model if config.judge else None,
            "shard": f"{config.shard[0]}/{config.shard[1]}" if config.shard else None,
            "eval_id": journal.eval_id,
        }
        runs = open_runs(
            mlflow,
            exp_id,
            eval_id=journal.eval_id,
            dataset_name=qset.name,
            targets=config.targets,
            params=params,
            existing=journal.meta,
            group=config.eval_name,
            shard=config.shard,
        )
        journal.save_meta(run_ids=runs.run_ids, parent_run_id=runs.parent_run_id, experiment_id=exp_id)
        answers = journal.answers()
        by_id = {q.id: q for q in qset.questions}
        recorder.configure(
            {
                "journal_dir": str(journal.directory),
                "dataset_path": str(_questions_file(qset, journal.directory)),
                "dataset": qset.name,
                "tracking_uri": settings.effective_tracking_uri,
                "experiment_id": exp_id,
                "run_ids": runs.run_ids,
                "judge_model": config.judge.model if config.judge else None,
                "secrets": [settings.a2a_token.get_secret_value()] if settings.a2a_token else [],
                "batch": config.batch,
                "drain_s": config.record_timeout,
                "nice": config.recorder_nice,
            }
        )
        todo = [(t, q) for q in chosen for t in config.targets if (t.name, q.id) not in answers]
        seed_runs = _SeedRuns(settings) if config.per_question_runs else None
        started = time.monotonic()
        interrupted = False
        try:
            fresh = asyncio.run(_answer_all(config, todo, scoring, journal, seed_runs))
        except KeyboardInterrupt:
            interrupted = True
            fresh = []
        answering_s = time.monotonic() - started
        answers = journal.answers()
        stats = recorder.finish(config.record_timeout if not interrupted else 5.0)
        recording_s = time.monotonic() - started - answering_s
        recorded_ok = bool(stats.get("recorded"))
        unrecorded = 0 if recorded_ok else int(stats.get("pending") or 0) or len(answers)
        if seed_runs is not None:
            seed_runs.close(config.record_timeout)
        chosen_ids = {q.id for q in chosen}
        per_target = {
            t.name: [a for (name, qid), a in answers.items() if name == t.name and qid in chosen_ids]
            for t in config.targets
        }
        metrics = {name: target_metrics(items, scoring.names, config.prices) for name, items in per_target.items()}
        complete = not interrupted and recorded_ok and all(len(v) == len(chosen) for v in per_target.values())
        if not interrupted:
            finish_runs(
                mlflow,
                runs,
                metrics,
                {name: results_table(items, by_id, scoring.names) for name, items in per_target.items()},
                {name: [a.latency_ms for a in items if a.status == "ok"] for name, items in per_target.items()},
                {name: [a.total_tokens or 0 for a in items if a.status == "ok"] for name, items in per_target.items()},
                complete=complete,
                group=config.eval_name,
            )
            journal.save_meta(complete=complete)
        return EvalResult(
            eval_id=journal.eval_id,
            journal_dir=journal.directory,
            metrics=metrics,
            run_ids=runs.run_ids,
            parent_run_id=runs.parent_run_id,
            experiment_id=exp_id,
            unrecorded=unrecorded,
            asked=len(fresh),
            skipped=len(chosen) * len(config.targets) - len(todo),
            answering_s=answering_s,
            recording_s=recording_s,
            record_error=stats.get("error") if not recorded_ok else None,
            interrupted=interrupted,
        )
    finally:
        recorder.abandon()
        journal.close()


def _questions_file(qset: QuestionSet, directory: Path) -> Path:
    """The file the recorder process reads the questions from (an MLflow dataset is written into the journal)."""
    if is_mlflow_dataset(qset.path):
        return save_jsonl(qset, directory / "questions.jsonl")
    return Path(qset.path).absolute()


def _artifact_location(settings: Any) -> str | None:
    if not settings.is_embedded:
        return None
    location = Path(settings.home).expanduser().absolute() / "artifacts"
    location.mkdir(parents=True, exist_ok=True)
    return location.as_uri()


async def _answer_all(
    config: EvalConfig,
    todo: list[tuple[Target, Question]],
    scoring: Scoring,
    journal: Journal,
    seed_runs: Any,
) -> list[Answer]:
    from .progress import progress_bar

    askers = {
        t.name: make_asker(
            t,
            timeout=config.timeout,
            token=config.settings.a2a_token.get_secret_value() if config.settings.a2a_token else None,
            connections=config.concurrency,
        )
        for t in config.targets
    }
    work: asyncio.Queue[tuple[Target, Question]] = asyncio.Queue()
    for item in todo:
        work.put_nowait(item)
    judge_gate = asyncio.Semaphore(config.judge_concurrency)
    done: list[Answer] = []
    with progress_bar(len(todo), enabled=config.progress) as advance:

        async def worker() -> None:
            while True:
                try:
                    target, question = work.get_nowait()
                except asyncio.QueueEmpty:
                    return
                answer = await _ask(askers[target.name], target, question, config)
                answer.scores = scoring.score(
                    question.question, answer.answer, question.expected, scoring.deterministic
                )
                if JUDGE_NAME in scoring.names and answer.answer is not None:
                    async with judge_gate:
                        answer.scores |= await asyncio.to_thread(
                            scoring.score, question.question, answer.answer, question.expected, [JUDGE_NAME]
                        )
                journal.add_answer(answer)  # the recorder process picks it up from there
                if seed_runs is not None:
                    seed_runs.record(target, question, answer)
                done.append(answer)
                advance(answer.status == "ok")

        try:
            await asyncio.gather(*(worker() for _ in range(min(config.concurrency, max(1, len(todo))))))
        finally:
            for asker in askers.values():
                await asker.aclose()
    return done


async def _ask(asker: Any, target: Target, question: Question, config: EvalConfig) -> Answer:
    attempts = 0
    started_ms = int(time.time() * 1000)
    while True:
        attempts += 1
        started = time.perf_counter()
        try:
            answer = await asyncio.wait_for(asker.ask(question.question, config.timeout), config.timeout + 5)
        except (AskFailure, asyncio.TimeoutError) as err:
            transient = isinstance(err, AskFailure) and err.transient
            if transient and attempts <= config.retries:
                await asyncio.sleep(min(8.0, 0.5 * 2 ** (attempts - 1)) * (0.5 + random.random()))
                continue
            message = str(err) if isinstance(err, AskFailure) else f"no answer within {config.timeout:g} s (timeout)"
            return Answer(
                qid=question.id,
                target=target.name,
                status="error",
                error=message + (f" (after {attempts} attempts)" if attempts > 1 else ""),
                latency_ms=(time.perf_counter() - started) * 1000,
                raw=err.raw if isinstance(err, AskFailure) else None,
                started_at_ms=started_ms,
                attempts=attempts,
            )
        answer.qid = question.id
        answer.started_at_ms = int(time.time() * 1000 - answer.latency_ms)
        answer.attempts = attempts
        return answer


class _SeedRuns:
    """``--per-question-runs``: also one run per question in the seed's schema, through the Pattern 1 pipeline."""

    def __init__(self, settings: Any) -> None:
        from ..delivery.pipeline import build_pipeline
        from ..records import Destination

        self.settings = settings
        self.pipeline = build_pipeline(settings)
        self.destination = Destination.from_settings(settings)

    def record(self, target: Target, question: Question, answer: Answer) -> None:
        from ..a2a.models import ToolCall
        from ..records import Interaction

        usage = {
            k: float(v)
            for k, v in (
                ("input_tokens", answer.input_tokens),
                ("output_tokens", answer.output_tokens),
                ("total_tokens", answer.total_tokens),
            )
            if v is not None
        }
        interaction = Interaction(
            question=question.question,
            answer=answer.answer,
            status="ok" if answer.status == "ok" else "error",
            error=answer.error,
            agent_name=target.name,
            a2a_url=target.url,
            usage=usage,
            tool_calls=[ToolCall(name=str(c.get("name")), arguments=c.get("arguments")) for c in answer.tool_calls],
            raw_response=answer.raw,
            latency_ms=answer.latency_ms,
            started_at_ms=answer.started_at_ms,
            experiment_name=self.destination.experiment_name,
            destination=self.destination,
            run_name=f"{target.name} {question.id}",
        )
        self.pipeline.recorder().record(interaction)

    def close(self, timeout: float) -> None:
        self.pipeline.flush(timeout)
        self.pipeline.close(timeout=0)
