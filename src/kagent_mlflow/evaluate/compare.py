"""``kagent-mlflow compare RUN_A RUN_B ...``: the side-by-side table of existing evaluation runs, from MLflow.

A comparison (parent) run given alone stands for its per-target runs.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import ConfigError
from .runs import KIND_TAG, TARGET_TAG
from .summary import comparison_rows


def load_runs(mlflow: Any, run_ids: list[str]) -> dict[str, dict[str, float]]:
    """{column name: metrics} for the runs, in the order given."""
    from mlflow.exceptions import MlflowException

    expanded: list[Any] = []
    for run_id in run_ids:
        try:
            run = mlflow.get_run(run_id)
        except MlflowException as err:
            raise ConfigError(f"run {run_id!r}: {str(err).splitlines()[0][:200]}") from None
        if run.data.tags.get(KIND_TAG) == "comparison" and run.data.tags.get("kagent_mlflow.runs"):
            for child in json.loads(run.data.tags["kagent_mlflow.runs"]).values():
                expanded.append(mlflow.get_run(child))
        else:
            expanded.append(run)
    if len(expanded) < 2:
        raise ConfigError("give two or more evaluation runs (or one comparison run) to compare")
    columns: dict[str, dict[str, float]] = {}
    for run in expanded:
        name = run.data.tags.get(TARGET_TAG) or run.info.run_name or run.info.run_id
        if name in columns:
            name = f"{name} ({run.info.run_id[:8]})"
        columns[name] = dict(run.data.metrics)
    return columns


def render(columns: dict[str, dict[str, float]]) -> Any:
    from rich.table import Table

    table = Table(title="kagent-mlflow comparison")
    table.add_column("metric")
    for name in columns:
        table.add_column(name, justify="right")
    for label, cells in comparison_rows(columns):
        table.add_row(label, *cells)
    return table
