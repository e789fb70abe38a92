"""One evaluation over N shards (``--eval-name NAME --shard i/N``, e.g. the pods of an Indexed Job): one parent run
for the name, each shard's per-target runs as its children, and the metrics of the whole set merged on the parent by
whichever shard finishes last.

Why a name: the shards are separate processes (pods) with no channel between them but MLflow, so they meet on the
parent run tagged ``kagent_mlflow.eval_name``. Two shards starting at once may both create one; each then keeps the
oldest and deletes its own, so they converge on one parent.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .runs import KIND_TAG, TARGET_TAG
from .summary import target_metrics
from .targets import Answer

NAME_TAG = "kagent_mlflow.eval_name"
SHARD_TAG = "kagent_mlflow.shard"
GROUP_KIND = "evaluation-group"


def group_parent(mlflow: Any, experiment: str, name: str, shards: int, params: dict[str, Any]) -> str:
    """The parent run of the named evaluation: found, or created (and deduplicated against a concurrent creator)."""
    from mlflow.entities import Param

    found = _parents(mlflow, experiment, name)
    if found:
        return found[0].info.run_id
    run = mlflow.create_run(
        experiment,
        run_name=f"eval {name}"[:250],
        tags={NAME_TAG: name, KIND_TAG: GROUP_KIND, "shards": str(shards)},
    )
    mlflow.log_batch(run.info.run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items() if v is not None])
    oldest = _parents(mlflow, experiment, name)[0].info.run_id
    if oldest != run.info.run_id:
        mlflow.delete_run(run.info.run_id)
    return oldest


def _parents(mlflow: Any, experiment: str, name: str) -> list[Any]:
    query = f"tags.`{NAME_TAG}` = '{name}' and tags.`{KIND_TAG}` = '{GROUP_KIND}'"
    runs = mlflow.search_runs([experiment], filter_string=query, max_results=50)
    return sorted(runs, key=lambda r: (r.info.start_time, r.info.run_id))


def merge_if_complete(mlflow: Any, experiment: str, name: str, parent: str, shards: int, scorers: list[str]) -> bool:
    """If every shard of every target has finished, put the whole set's metrics on the parent; True if merged."""
    query = f"tags.`{NAME_TAG}` = '{name}' and tags.`{KIND_TAG}` = 'evaluation' and attributes.status = 'FINISHED'"
    runs = mlflow.search_runs([experiment], filter_string=query, max_results=5000)
    by_target: dict[str, dict[str, Any]] = {}
    for run in runs:
        by_target.setdefault(run.data.tags.get(TARGET_TAG, "?"), {})[run.data.tags.get(SHARD_TAG, "")] = run
    if not by_target or any(len(shard_runs) < shards for shard_runs in by_target.values()):
        return False
    import tempfile

    from mlflow.entities import Metric

    merged: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for target, shard_runs in by_target.items():
            answers: list[Answer] = []
            for index, run in enumerate(shard_runs.values()):
                path = mlflow.download_artifacts(run.info.run_id, "eval_results.json", str(Path(tmp) / str(index)))
                answers.extend(_answers(json.loads(Path(path).read_text()), target))
            merged[target] = target_metrics(answers, scorers)
    now = _now_ms()
    single = len(merged) == 1
    metrics = [
        Metric(key if single else f"{target}.{key}", float(value), now, 0)
        for target, values in merged.items()
        for key, value in values.items()
    ]
    for start in range(0, len(metrics), 500):
        mlflow.log_batch(parent, metrics=metrics[start : start + 500])
    mlflow.log_dict(parent, {"shards": shards, "metrics": merged}, "merged_metrics.json")
    from .runs import _end

    _end(mlflow, parent, "FINISHED", now)
    return True


def _answers(table: dict[str, Any], target: str) -> list[Answer]:
    columns = table["columns"]
    out = []
    for row in table["data"]:
        cell = dict(zip(columns, row, strict=False))
        scores = {
            key[6:]: {"value": value} for key, value in cell.items() if key.startswith("score_") and value is not None
        }
        out.append(
            Answer(
                qid=str(cell.get("question_id")),
                target=target,
                status=str(cell.get("status")),
                answer=cell.get("answer"),
                latency_ms=float(cell.get("latency_ms") or 0.0),
                ttft_ms=cell.get("ttft_ms"),
                input_tokens=cell.get("tokens_in"),
                output_tokens=cell.get("tokens_out"),
                total_tokens=cell.get("tokens_total"),
                tool_calls=[{}] * int(cell.get("tool_calls") or 0),
                scores=scores,
            )
        )
    return out


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)
