"""`kagent-mlflow eval` and `compare` end to end, as subprocesses, against the REAL kagent runtime (A2A 0.3), a REAL
Agent Server (`/invocations`, streamed) and a REAL MLflow server; everything is read back through MLflow's API: the
runs (parent + one per target), their params and metrics, one trace per question linked to its run, the scores as
assessments on the traces, the results table and the plots. Also: `--resume` after a kill asks and records nothing
twice, the LLM judge, and hostile question sets.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).with_name("kagent-mlflow"))
RUN_TIMEOUT_S = 300  # never a timing assert: a subprocess imports MLflow on a loaded 2-core machine
_DROP_ENV = ("MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID", "A2A_TOKEN", "LLAMA_STACK_BASE_URL")

pytestmark = pytest.mark.integration


@dataclass
class Setup:
    tracking_uri: str
    experiment: str
    env: dict[str, str]
    tmp: Path

    def eval(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [CLI, "eval", *args, "--no-progress"],
            cwd=REPO_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
        )

    def client(self) -> Any:
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri)

    def experiment_id(self) -> str:
        experiment = self.client().get_experiment_by_name(self.experiment)
        assert experiment is not None
        return experiment.experiment_id

    def runs(self) -> list[Any]:
        return self.client().search_runs([self.experiment_id()])

    def traces(self, run_id: str | None = None) -> list[Any]:
        return self.client().search_traces(locations=[self.experiment_id()], run_id=run_id, max_results=100)


@pytest.fixture
def setup(mlflow_server: Any, tmp_path: Path) -> Setup:
    experiment = f"eval-{uuid.uuid4().hex[:10]}"
    env = {k: v for k, v in os.environ.items() if k not in _DROP_ENV}
    env.update(
        MLFLOW_TRACKING_URI=mlflow_server.url,
        MLFLOW_EXPERIMENT_NAME=experiment,
        KAGENT_MLFLOW_HOME=str(tmp_path / "home"),
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    return Setup(mlflow_server.url, experiment, env, tmp_path)


def write_set(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


QUESTIONS = [
    {"id": "pods", "question": "What is a Pod?", "expected": "Scripted answer to: What is a Pod?"},
    {"id": "route", "question": "What is a Route?", "expected": "route"},
    {"id": "count", "question": "How many replicas are 2 plus 1?", "expected": "nonsense"},
]


def test_eval_compares_kagent_and_agent_server(
    setup: Setup, kagent_runtime: Any, agent_server: Any, scripted_model: Any, tmp_path: Path
) -> None:
    questions = write_set(tmp_path / "qs.jsonl", QUESTIONS)
    result = setup.eval(
        str(questions),
        "--agent", f"kagent={kagent_runtime.url}",
        "--agent", f"served={agent_server.url}/invocations",
        "--score", "exact", "--score", "contains",
        "--price-in", "0.000001", "--price-out", "0.000002",
        "--concurrency", "4",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "exact score" in result.stdout and "kagent" in result.stdout and "served" in result.stdout

    runs = {r.data.tags.get("kagent_mlflow.kind"): r for r in setup.runs() if r.data.tags.get("kagent_mlflow.kind")}
    all_runs = setup.runs()
    assert len(all_runs) == 3  # parent + one per target
    parent = next(r for r in all_runs if r.data.tags["kagent_mlflow.kind"] == "comparison")
    children = {r.data.tags["kagent_mlflow.target"]: r for r in all_runs if r is not parent}
    assert set(children) == {"kagent", "served"}
    assert runs and parent.info.status == "FINISHED"
    client = setup.client()
    for name, run in children.items():
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.info.status == "FINISHED"
        params = run.data.params
        assert params["target"] == name and params["dataset"] == "qs.jsonl" and params["concurrency"] == "4"
        assert len(params["dataset_digest"]) == 64
        metrics = run.data.metrics
        assert metrics["answered"] == 3 and metrics["errors"] == 0
        assert metrics["score_exact"] == pytest.approx(1 / 3)  # only "pods" is the exact scripted answer
        assert metrics["score_contains"] == pytest.approx(2 / 3)  # "route" is in "...What is a Route?"
        assert metrics["tokens_total"] > 0 and metrics["cost_per_answer"] > 0
        for key in ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms"):
            assert metrics[key] > 0
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert "eval_results.json" in artifacts and "plots" in artifacts
        assert [a.path for a in client.list_artifacts(run.info.run_id, "plots")] == ["plots/latency_and_tokens.png"]
        table = json.loads(
            Path(client.download_artifacts(run.info.run_id, "eval_results.json", str(tmp_path))).read_text()
        )
        assert {"question_id", "answer", "score_exact", "latency_ms"} <= set(table["columns"])

        traces = setup.traces(run.info.run_id)
        assert sorted(t.info.tags["question_id"] for t in traces) == ["count", "pods", "route"]
        for info in traces:
            trace = client.get_trace(info.info.trace_id)
            assert trace.info.tags["target"] == name
            names = Counter(a.name for a in trace.info.assessments)
            assert names == {"exact": 1, "contains": 1}
            root = next(s for s in trace.data.spans if s.parent_id is None)
            assert root.inputs["question"].startswith(("What", "How"))
            assert root.outputs.startswith("Scripted answer to:")
            pods_exact = [a for a in trace.info.assessments if a.name == "exact"][0]
            assert pods_exact.value is (info.info.tags["question_id"] == "pods")
    assert "ttft_p50_ms" in children["served"].data.metrics  # streamed: time to first token
    assert "ttft_p50_ms" not in children["kagent"].data.metrics
    parent_artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"comparison.json", "plots"} <= parent_artifacts

    shown = subprocess.run(
        [CLI, "compare", children["kagent"].info.run_id, children["served"].info.run_id],
        env=setup.env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "contains score" in shown.stdout and "66.7%" in shown.stdout and "latency p95" in shown.stdout
    by_parent = subprocess.run(
        [CLI, "compare", parent.info.run_id], env=setup.env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S
    )
    assert by_parent.returncode == 0 and "served" in by_parent.stdout, by_parent.stderr


def test_resume_after_kill_asks_and_records_nothing_twice(setup: Setup, a2a_agent: Any, tmp_path: Path) -> None:
    rows = [{"id": f"q{i}", "question": f"[slow:300] question {i}", "expected": f"question {i}"} for i in range(24)]
    questions = write_set(tmp_path / "slow.jsonl", rows)
    args = [CLI, "eval", str(questions), "--agent", a2a_agent.url, "--concurrency", "2", "--no-progress"]
    args += ["--score", "contains"]
    process = subprocess.Popen(args, cwd=REPO_ROOT, env=setup.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    evals = Path(setup.env["KAGENT_MLFLOW_HOME"]) / "evals"
    deadline = time.monotonic() + RUN_TIMEOUT_S
    answered = 0
    while time.monotonic() < deadline and answered < 4:
        journals = list(evals.glob("*/answers.jsonl"))
        answered = len(journals[0].read_text().splitlines()) if journals else 0
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert 4 <= answered < 24

    result = setup.eval(str(questions), "--agent", a2a_agent.url, "--resume", "--score", "contains")
    assert result.returncode == 0, result.stderr
    assert "skipped" in result.stdout
    lines = [json.loads(x) for x in next(evals.glob("*/answers.jsonl")).read_text().splitlines()]
    assert Counter(r["qid"] for r in lines) == {f"q{i}": 1 for i in range(24)}  # nothing asked twice
    runs = setup.runs()
    assert len(runs) == 1 and runs[0].data.metrics["answered"] == 24 and runs[0].info.status == "FINISHED"
    traces = setup.traces(runs[0].info.run_id)
    assert Counter(t.info.tags["question_id"] for t in traces) == {f"q{i}": 1 for i in range(24)}
    for info in traces:
        assessments = setup.client().get_trace(info.info.trace_id).info.assessments
        assert [a.name for a in assessments] == ["contains"]  # nothing recorded twice
        assert assessments[0].value is True


def test_judge_scores_on_openai_compatible_endpoint(
    setup: Setup, a2a_agent: Any, scripted_model: Any, tmp_path: Path
) -> None:
    scripted_model.set_script(
        [
            {"system": "strict grader", "match": "EXPECTED: right", "reply": "yes - it matches the expected answer"},
            {"system": "strict grader", "reply": "no - it does not say that"},
        ]
    )
    questions = write_set(
        tmp_path / "judge.jsonl",
        [{"id": "a", "question": "say right", "expected": "right"}, {"id": "b", "question": "say x", "expected": "y"}],
    )
    result = setup.eval(
        str(questions), "--agent", a2a_agent.url, "--judge-model", "scripted-model", "--judge-url", scripted_model.url
    )
    assert result.returncode == 0, result.stderr
    (run,) = setup.runs()
    assert run.data.metrics["score_judge"] == pytest.approx(0.5)
    assert run.data.params["judge_model"] == "scripted-model"
    values = {}
    for info in setup.traces(run.info.run_id):
        (judge,) = [a for a in setup.client().get_trace(info.info.trace_id).info.assessments if a.name == "judge"]
        assert judge.source.source_type == "LLM_JUDGE"
        values[info.info.tags["question_id"]] = (judge.value, judge.rationale)
    assert values["a"][0] is True and "matches" in values["a"][1]
    assert values["b"][0] is False


BAD_SETS = [
    ("bad.jsonl", b'{"question": "ok"}\n{"question": \n', "line 2: not valid JSON"),
    ("missing.jsonl", b'{"id": "x", "expected": "y"}\n', 'line 1: no question; every row needs "question"'),
    ("types.jsonl", b'{"question": ["a"]}\n', 'line 1: "question" is a list'),
    ("nan.jsonl", b'{"question": "q", "expected": NaN}\n', "line 1: NaN is not valid JSON"),
    ("utf8.jsonl", b'{"question": "caf\xe9"}\n', "line 1: not UTF-8"),
    ("huge.jsonl", b'{"question": "' + b"a" * (2 << 20) + b'"}\n', "over the 1,048,576-byte limit"),
    ("dup.jsonl", b'{"id": 1, "question": "a"}\n{"id": "1", "question": "b"}\n', "id '1' is used twice"),
    ("nocol.csv", b"id,text\n1,hello\n", "no 'question' column"),
    ("empty.jsonl", b"\n\n", "no questions"),
    ("set.txt", b"what\n", "unknown format"),
]


@pytest.mark.parametrize(("name", "data", "message"), BAD_SETS, ids=[b[0] for b in BAD_SETS])
def test_hostile_question_sets_stop_with_one_line(tmp_path: Path, name: str, data: bytes, message: str) -> None:
    """Checked before any agent or MLflow is asked: no server needed (none is given)."""
    path = tmp_path / name
    path.write_bytes(data)
    env = {k: v for k, v in os.environ.items() if k not in _DROP_ENV} | {"KAGENT_MLFLOW_HOME": str(tmp_path / "h")}
    setup = Setup("http://127.0.0.1:9", "unused", env | {"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}, tmp_path)
    result = setup.eval(str(path), "--agent", "http://127.0.0.1:9/")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_shards_of_a_named_evaluation_merge_on_one_parent(setup: Setup, a2a_agent: Any, tmp_path: Path) -> None:
    """As the Indexed Job runs it: each shard a separate `eval --shard i/N --eval-name NAME`."""
    rows = [{"id": f"s{i}", "question": f"shard question {i}", "expected": f"question {i}"} for i in range(10)]
    questions = write_set(tmp_path / "sharded.jsonl", rows)
    setup_env = dict(setup.env, KAGENT_MLFLOW_EVAL_NAME="nightly")
    for index in range(2):
        shard = subprocess.run(
            [CLI, "eval", str(questions), "--agent", f"bench={a2a_agent.url}", "--shard", f"{index}/2",
             "--no-progress"],
            cwd=REPO_ROOT, env=setup_env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
        )  # fmt: skip
        assert shard.returncode == 0, shard.stderr
    named = [r for r in setup.runs() if r.data.tags.get("kagent_mlflow.eval_name") == "nightly"]
    (parent,) = [r for r in named if r.data.tags["kagent_mlflow.kind"] == "evaluation-group"]
    children = [r for r in named if r is not parent]
    assert sorted(r.data.tags["kagent_mlflow.shard"] for r in children) == ["0/2", "1/2"]
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in children)
    assert sum(r.data.metrics["questions"] for r in children) == 10
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["questions"] == 10 and parent.data.metrics["score_contains"] == 1.0


def test_per_question_runs_in_the_seed_schema_and_no_secret_recorded(
    setup: Setup, a2a_agent: Any, tmp_path: Path
) -> None:
    """`--per-question-runs` adds the seed's run per question (through the Pattern 1 pipeline); a bearer token and URL
    credentials reach neither MLflow nor the journal."""
    questions = write_set(tmp_path / "seed.jsonl", [{"id": "a", "question": "first"}, {"id": "b", "question": "two"}])
    url = a2a_agent.url.replace("http://", "http://alice:s3cr3t-pw@")
    result = setup.eval(str(questions), "--agent", f"agent={url}", "--per-question-runs", "--token", "tok-SECRET-42")
    assert result.returncode == 0, result.stderr
    runs = setup.runs()
    seed_runs = [r for r in runs if "kagent_mlflow.kind" not in r.data.tags]
    assert len(seed_runs) == 2 and {r.data.tags["status"] for r in seed_runs} == {"ok"}
    client = setup.client()
    for run in seed_runs:
        assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"question.txt", "answer.txt"}
    (evaluation,) = [r for r in runs if r.data.tags.get("kagent_mlflow.kind") == "evaluation"]
    everything = json.dumps([r.to_dictionary() for r in runs], default=str)
    for info in setup.traces(evaluation.info.run_id):
        everything += json.dumps(client.get_trace(info.info.trace_id).to_dict(), default=str)
    for path in (Path(setup.env["KAGENT_MLFLOW_HOME"]) / "evals").rglob("*"):
        if path.is_file():
            everything += path.read_text(errors="replace")
    everything += result.stdout + result.stderr
    assert "s3cr3t-pw" not in everything and "tok-SECRET-42" not in everything


def test_questions_from_an_mlflow_evaluation_dataset(setup: Setup, a2a_agent: Any) -> None:
    import mlflow
    from mlflow.genai.datasets import create_dataset

    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(setup.tracking_uri)
    try:
        experiment_id = setup.client().create_experiment(setup.experiment)
        name = f"questions-{uuid.uuid4().hex[:8]}"
        dataset = create_dataset(name=name, experiment_id=experiment_id)
        dataset.merge_records(
            [
                {"inputs": {"question": "What is a Pod?"}, "expectations": {"expected_response": "pod"}},
                {"inputs": {"question": "What is a Route?"}, "expectations": {"expected_response": "nope"}},
            ]
        )
    finally:
        mlflow.set_tracking_uri(before)
    result = setup.eval(f"mlflow-dataset:{name}", "--agent", f"agent={a2a_agent.url}", "--score", "contains")
    assert result.returncode == 0, result.stderr
    (run,) = setup.runs()
    assert run.data.params["dataset"] == name and run.data.metrics["score_contains"] == 0.5
    assert len(setup.traces(run.info.run_id)) == 2
    missing = setup.eval("mlflow-dataset:no-such-set", "--agent", a2a_agent.url)
    assert missing.returncode == 2 and missing.stderr.startswith("error: MLflow evaluation dataset 'no-such-set'")
    assert len(missing.stderr.strip().splitlines()) == 1
