"""Shared pieces of the delivery benchmarks: a real MLflow server, realistic records, the seed-style baseline."""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # tests.support (server helpers) lives at the repo root

from kagent_mlflow.records import Destination, Interaction  # noqa: E402
from tests.support.mlflow_server import MlflowServer  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"


class BenchMlflowServer(MlflowServer):
    """The tests' MLflow server, with a configurable number of server workers."""

    def __init__(self, *args: Any, workers: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.workers = workers

    def command(self) -> list[str]:
        cmd = super().command()
        cmd[cmd.index("--workers") + 1] = str(self.workers)
        return cmd


def start_server(root: Path, workers: int = 1) -> BenchMlflowServer:
    root.mkdir(parents=True, exist_ok=True)
    server = BenchMlflowServer(
        f"sqlite:///{root / 'mlflow.db'}",
        artifacts_args=["--artifacts-destination", str(root / "artifacts")],
        log_path=root / "server.log",
        workers=workers,
    )
    return server.start()


def sample_interaction(i: int, experiment: str, destination: Destination | None = None) -> Interaction:
    """A record shaped like a real kagent answer: a paragraph, token usage, a tool call, a ~3 KB raw reply.

    Give ``destination`` (its experiment wins) when the record may be spooled and drained: the drain only delivers
    records that name the sink's server.
    """
    answer = f"Answer {i}: " + "OpenShift is Red Hat's Kubernetes platform for building and running apps. " * 4
    raw = {
        "jsonrpc": "2.0",
        "id": i,
        "result": {
            "kind": "task",
            "id": f"task-{i}",
            "contextId": f"ctx-{i}",
            "status": {"state": "completed"},
            "artifacts": [{"parts": [{"kind": "text", "text": answer}]}],
            "history": [{"role": "agent", "parts": [{"kind": "text", "text": "thinking " * 150}]}],
            "metadata": {"kagent_usage_metadata": {"promptTokenCount": 42, "candidatesTokenCount": 64}},
        },
    }
    return Interaction(
        question=f"Question {i}: in one sentence, what is OpenShift?",
        answer=answer,
        agent_name="rh-analyze-simple",
        a2a_url="http://127.0.0.1:8083/api/a2a/kagent/rh-analyze-simple/",
        protocol_version="0.3",
        task_id=f"task-{i}",
        context_id=f"ctx-{i}",
        task_state="completed",
        usage={"promptTokenCount": 42, "candidatesTokenCount": 64, "totalTokenCount": 106},
        tool_calls=[{"name": "lookup", "arguments": {"q": "openshift"}, "result": "a platform"}],
        raw_response=raw,
        latency_ms=3.0,
        experiment_name=destination.experiment_name if destination else experiment,
        destination=destination,
    )


def seed_style_log(tracking_uri: str, record: Interaction) -> str:
    """The seed script's way, inline: start_run, one call per tag and metric, three log_text uploads, end_run."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(record.experiment_name)
    # end_run prints the run link (after a get_run round trip, kept: the seed paid it too); keep stdout clean.
    with contextlib.redirect_stdout(io.StringIO()), mlflow.start_run() as run:
        mlflow.set_tag("agent", record.agent_name)
        mlflow.set_tag("a2a_url", record.a2a_url)
        if record.task_id:
            mlflow.set_tag("kagent_task_id", record.task_id)
        if record.context_id:
            mlflow.set_tag("kagent_context_id", record.context_id)
        mlflow.log_metric("latency_ms", record.latency_ms)
        for key, value in record.usage.items():
            mlflow.log_metric(key, value)
        mlflow.log_text(record.question, "question.txt")
        mlflow.log_text(record.answer or "", "answer.txt")
        mlflow.log_text(json.dumps(record.raw_response, indent=2), "a2a_response.json")
        return run.info.run_id


def quiet_mlflow() -> None:
    """No telemetry and no MLflow warnings in the benchmark output."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    import logging

    logging.getLogger("mlflow").setLevel(logging.ERROR)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def machine() -> str:
    load = os.getloadavg()
    return (
        f"{platform.node()} · Python {platform.python_version()} · {os.cpu_count()} CPUs · "
        f"load avg {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f} at {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}"
    )


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def write_result(name: str, text: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(text)
    return path


def count_runs(tracking_uri: str, experiment: str) -> tuple[int, int]:
    """(runs, distinct interaction ids) in the experiment."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    ids: list[str] = []
    token = None
    while exp is not None:
        page = client.search_runs([exp.experiment_id], max_results=1000, page_token=token)
        ids += [r.data.tags.get("interaction_id", "") for r in page]
        token = page.token
        if not token:
            break
    return len(ids), len(set(ids))
