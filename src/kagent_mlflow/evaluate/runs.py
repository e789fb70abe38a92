"""The MLflow runs of an evaluation: one per target (params, metrics, results table, plots) and, for two or more
targets, a parent run linking them with the side-by-side comparison."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..sinks._transport import HttpPolicy, fail_fast
from .plots import comparison_figure, target_figure
from .summary import comparison_rows

EVAL_TAG = "kagent_mlflow.eval_id"
KIND_TAG = "kagent_mlflow.kind"
TARGET_TAG = "kagent_mlflow.target"
_POLICY = HttpPolicy(max_retries=3, timeout=30.0)


@dataclass
class EvalRuns:
    experiment_id: str
    run_ids: dict[str, str]  # target name -> run id
    parent_run_id: str | None


def client(tracking_uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def experiment_id(mlflow: Any, name: str, artifact_location: str | None = None) -> str:
    with fail_fast(_POLICY):
        found = mlflow.get_experiment_by_name(name)
        if found is not None:
            if found.lifecycle_stage == "deleted":
                mlflow.restore_experiment(found.experiment_id)
            return found.experiment_id
        try:
            return mlflow.create_experiment(name, artifact_location=artifact_location)
        except Exception:  # noqa: BLE001 - created meanwhile by another shard or process
            found = mlflow.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id


def open_runs(
    mlflow: Any,
    experiment: str,
    *,
    eval_id: str,
    dataset_name: str,
    targets: list[Any],
    params: dict[str, Any],
    existing: dict[str, Any] | None = None,
    group: str | None = None,
    shard: tuple[int, int] | None = None,
) -> EvalRuns:
    """Create the runs, or reopen those of the journal (``--resume``). With ``group`` (``--eval-name``) the parent is
    the named evaluation's, shared by its shards (:mod:`.shards`)."""
    existing = existing or {}
    with fail_fast(_POLICY):
        if existing.get("run_ids"):
            for run_id in [*existing["run_ids"].values(), existing.get("parent_run_id")]:
                if run_id:
                    mlflow.update_run(run_id, status="RUNNING")
            return EvalRuns(experiment, dict(existing["run_ids"]), existing.get("parent_run_id"))
        parent = None
        common = {EVAL_TAG: eval_id, "dataset": dataset_name}
        suffix = ""
        if group:
            from .shards import NAME_TAG, SHARD_TAG, group_parent

            count = shard[1] if shard else 1
            parent = group_parent(mlflow, experiment, group, count, {**params, "shard": None, "shards": count})
            common |= {NAME_TAG: group, SHARD_TAG: f"{shard[0]}/{shard[1]}" if shard else "0/1"}
            suffix = f" shard {shard[0]}/{shard[1]}" if shard else ""
        elif len(targets) > 1:
            names = " vs ".join(t.name for t in targets)
            parent = mlflow.create_run(
                experiment,
                run_name=f"compare {names} on {dataset_name}"[:250],
                tags={**common, KIND_TAG: "comparison"},
            ).info.run_id
            mlflow.log_batch(parent, params=_params({**params, "targets": ",".join(t.name for t in targets)}))
        run_ids = {}
        for target in targets:
            tags = {**common, KIND_TAG: "evaluation", TARGET_TAG: target.name, "target_url": target.shown_url}
            if parent:
                tags["mlflow.parentRunId"] = parent
            run_name = f"eval {target.name} on {dataset_name}{suffix}"[:250]
            run = mlflow.create_run(experiment, run_name=run_name, tags=tags)
            target_params = {
                **params,
                "target": target.name,
                "target_url": target.shown_url,
                "target_kind": target.kind,
            }
            mlflow.log_batch(run.info.run_id, params=_params(target_params))
            run_ids[target.name] = run.info.run_id
    return EvalRuns(experiment, run_ids, parent)


def _end(mlflow: Any, run_id: str, status: str, now_ms: int) -> None:
    """End a run without ``set_terminated``'s extra get_run and the link it prints to stdout."""
    from mlflow.entities import RunStatus

    from .._mlflow_compat import end_run, tracing_client

    end_run(tracing_client(mlflow.tracking_uri), run_id, RunStatus.from_string(status), now_ms)


def run_url(settings: Any, experiment_id: str, run_id: str) -> str:
    """The MLflow UI link of a run (a local store: where ``kagent-mlflow ui`` serves it by default)."""
    from ..config import LOCAL_UI_HOST, LOCAL_UI_PORT, without_credentials

    uri = settings.tracking_uri or ""
    base = (
        without_credentials(uri)
        if uri.startswith(("http://", "https://"))
        else f"http://{LOCAL_UI_HOST}:{LOCAL_UI_PORT}"
    )
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def _params(values: dict[str, Any]) -> list[Any]:
    from mlflow.entities import Param

    return [Param(k, str(v)[:6000]) for k, v in values.items() if v is not None]


def finish_runs(
    mlflow: Any,
    runs: EvalRuns,
    metrics: dict[str, dict[str, float]],
    tables: dict[str, dict[str, list[Any]]],
    latencies: dict[str, list[float]],
    tokens: dict[str, list[int]],
    *,
    complete: bool,
    group: str | None = None,
) -> None:
    """Metrics, the results table and plots on each target's run; the comparison on the parent; end the runs. In a
    named (sharded) evaluation the parent gets the merged metrics once every shard has finished (:mod:`.shards`)."""
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    status = "FINISHED" if complete else "FAILED"
    with fail_fast(_POLICY):
        for target, run_id in runs.run_ids.items():
            values = [Metric(k, float(v), now, 0) for k, v in metrics.get(target, {}).items()]
            for start in range(0, len(values), 500):
                mlflow.log_batch(run_id, metrics=values[start : start + 500])
            mlflow.log_table(run_id=run_id, data=tables.get(target, {}), artifact_file="eval_results.json")
            figure = target_figure(target, latencies.get(target, []), tokens.get(target, []))
            mlflow.log_figure(run_id, figure, "plots/latency_and_tokens.png")
            _end(mlflow, run_id, status, now)
        if runs.parent_run_id and group:
            from .shards import merge_if_complete

            shards = int(mlflow.get_run(runs.parent_run_id).data.tags.get("shards", "1"))
            scorers = sorted({k[6:] for m in metrics.values() for k in m if k.startswith("score_")} - {""})
            scorers = [s for s in scorers if not s.endswith("_count")]
            merge_if_complete(mlflow, runs.experiment_id, group, runs.parent_run_id, shards, scorers)
        elif runs.parent_run_id:
            rows = comparison_rows(metrics)
            table = {"metric": [label for label, _ in rows]}
            for index, target in enumerate(metrics):
                table[target] = [cells[index] for _, cells in rows]
            mlflow.log_table(run_id=runs.parent_run_id, data=table, artifact_file="comparison.json")
            mlflow.log_dict(runs.parent_run_id, {"runs": runs.run_ids, "metrics": metrics}, "comparison_metrics.json")
            mlflow.log_figure(runs.parent_run_id, comparison_figure(metrics, latencies), "plots/comparison.png")
            mlflow.set_tag(runs.parent_run_id, "kagent_mlflow.runs", json.dumps(runs.run_ids))
            _end(mlflow, runs.parent_run_id, status, now)
