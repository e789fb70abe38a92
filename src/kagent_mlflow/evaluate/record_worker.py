"""The recorder process of an evaluation: tails the journal's answers and records them in MLflow.

Why a process and not a thread: building spans and talking to MLflow costs ~1-2 ms of CPU per question, and in the
asking process that time would be taken from the asyncio loop under the interpreter lock, slowing the answers
being measured. The journal is already the durable queue between the two: the ``eval`` process appends answers, this
process reads complete lines as they appear and acks what MLflow has (``recorded.jsonl``).

Protocol: one JSON line on stdin (settings, with the tracking URI's credentials: never on the command line), then
stdin stays open while questions are asked. EOF (``eval`` finished answering, was interrupted or died) means: record
what is journalled, within ``drain_s``, print one JSON line of stats, exit (0: everything recorded).

    python -m kagent_mlflow.evaluate.record_worker < config
"""

from __future__ import annotations

import json
import logging
import os
import select
import sys
import time
from pathlib import Path
from typing import Any

POLL_S = 0.05


def main() -> int:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    # Imports first (~1-2 s of CPU for MLflow), while `eval` opens its runs: not while questions are being asked.
    import mlflow.entities  # noqa: F401
    import opentelemetry.proto.collector.trace.v1.trace_service_pb2  # noqa: F401

    from ..sinks.redact import Redactor
    from .dataset import load_questions
    from .journal import Journal
    from .recording import TraceRecorder

    line = sys.stdin.readline()
    if not line:
        return 0  # `eval` stopped before it had anything to record
    config = json.loads(line)
    # While questions are asked, the asking process and the agents come first: recording catches up in the gaps
    # and at full speed once answering is over (the answers wait safely in the journal meanwhile).
    if config.get("nice"):
        os.nice(int(config["nice"]))

    journal = Journal.open_for_recording(Path(config["journal_dir"]))
    questions = {q.id: q for q in load_questions(config["dataset_path"]).questions}
    traced, done = journal.recorded()
    recorder = TraceRecorder(
        tracking_uri=config["tracking_uri"],
        experiment_id=config["experiment_id"],
        run_ids=config["run_ids"],
        journal=journal,
        questions=questions,
        dataset=config["dataset"],
        redact=Redactor(config.get("secrets") or []),
        judge_model=config.get("judge_model"),
        batch=config.get("batch", 100),
        already_traced=traced,
    ).start()
    print(json.dumps({"ready": True}), flush=True)
    offset = 0
    seen: set[tuple[str, str]] = set(done)
    open_input = True
    last_put = 0.0

    def pump() -> int:
        nonlocal offset
        answers, offset = journal.read_answers(offset)
        count = 0
        for pair, answer in answers.items():
            if pair not in seen and answer.qid in questions:
                seen.add(pair)
                recorder.put(answer)
                count += 1
        return count

    while open_input:
        ready, _, _ = select.select([sys.stdin], [], [], POLL_S)
        if ready and not sys.stdin.readline():
            open_input = False
        if pump():
            last_put = time.monotonic()
    pump()
    all_in = recorder.drain(float(config.get("drain_s", 300)))
    recorder.close()
    stats = recorder.stats
    print(
        json.dumps(
            {
                "recorded": all_in,
                "pending": recorder.pending,
                "traces": stats.traces,
                "assessments": stats.assessments,
                "requests": stats.requests,
                "error": stats.last_error,
                "last_put": last_put,
            }
        ),
        flush=True,
    )
    journal.close()
    return 0 if all_in else 4


class RecordWorker:
    """The ``eval`` side: start the process, hand it the settings, tell it answering is over, read its stats."""

    def __init__(self) -> None:
        """Start the process now: it imports MLflow while the caller opens its runs."""
        import subprocess

        self.process = subprocess.Popen(
            [sys.executable, "-m", "kagent_mlflow.evaluate.record_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,  # a Ctrl-C for `eval` is not one for the recorder: it finishes its batch
        )

    def configure(self, config: dict[str, Any], timeout: float = 120.0) -> None:
        """Hand over the settings and wait until it is ready to record (so its start-up is not in the answering)."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(config) + "\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not ready or not self.process.stdout.readline().startswith('{"ready"'):
            raise RuntimeError("the evaluation's recorder process did not start; see its error above")

    def abandon(self) -> None:
        """``eval`` failed: the recorder gets a few seconds for what is journalled (``--resume`` does the rest)."""
        if self.process.poll() is None:
            self.finish(5.0)

    def finish(self, drain_s: float) -> dict[str, Any]:
        """Close its input (answering is over) and wait until it has recorded everything or given up."""
        import subprocess

        if self.process.returncode is not None:
            return {"recorded": False, "pending": None, "error": "the recorder already stopped"}
        try:  # closes its stdin first: the end of the answers
            out, _ = self.process.communicate(timeout=drain_s + 30)
        except (subprocess.TimeoutExpired, KeyboardInterrupt):
            self.process.kill()
            out, _ = self.process.communicate()
        lines = [line for line in (out or "").splitlines() if line.startswith("{")]
        if not lines:
            return {"recorded": False, "pending": None, "error": f"the recorder exited with {self.process.returncode}"}
        return json.loads(lines[-1])


if __name__ == "__main__":
    sys.exit(main())
