"""The evaluation's Indexed Job (deploy/base/eval, in the full overlay): pod i runs `eval --shard i/N` with N the
Job's completions, all pods record into one named evaluation, and the question set it mounts is one `eval` reads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kagent_mlflow.evaluate.dataset import load_questions, parse_shard, select
from tests.support.manifests import find, render


@pytest.fixture(scope="module")
def rendered() -> list[dict]:
    return render("full")


def test_each_index_runs_its_own_shard_of_one_named_evaluation(rendered: list[dict], tmp_path: Path) -> None:
    job = find(rendered, "Job", "kagent-mlflow-eval")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    count = spec["completions"]
    assert spec["parallelism"] == count
    (container,) = job["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert args[0] == "eval" and "--resume" in args
    shard = args[args.index("--shard") + 1]
    assert re.fullmatch(rf"\$\(JOB_COMPLETION_INDEX\)/{count}", shard), "--shard's N must equal completions"
    env = {e["name"]: e for e in container["env"]}
    assert env["JOB_COMPLETION_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    )
    config = find(rendered, "ConfigMap", "kagent-mlflow-eval")["data"]
    assert config["KAGENT_MLFLOW_EVAL_NAME"] and config["EVAL_AGENT"].startswith("http")
    assert args[args.index("--agent") + 1] == "$(EVAL_AGENT)"

    mount = next(m for m in container["volumeMounts"] if m["name"] == "questions")["mountPath"]
    assert args[1] == f"{mount}/questions.jsonl"
    path = tmp_path / "questions.jsonl"
    path.write_text(config["questions.jsonl"])
    questions = load_questions(path).questions
    shards = [
        select(questions, shard=parse_shard(shard.replace("$(JOB_COMPLETION_INDEX)", str(i)))) for i in range(count)
    ]
    assert sorted(q.id for s in shards for q in s) == sorted(q.id for q in questions)  # every question once
