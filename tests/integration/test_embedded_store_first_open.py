"""Several processes opening one fresh SQLite store at once: MLflow's table creation and migrations must run once.

Without the lock, 7 of 9 processes opening a new store together failed here ("table alembic_version already exists",
"duplicate column name: step"), and two ``ask`` commands on a fresh machine lost their delivery to it."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.support.a2a_agents import A2AAgent, answer_for
from tests.support.storage import sqlite_rows, stored_run

from .test_storage_backends import CLI, clean_env

pytestmark = pytest.mark.integration

OPEN_STORE = """
import sys
from kagent_mlflow.embedded_store import first_open_lock
from mlflow.tracking import MlflowClient
uri = sys.argv[1]
with first_open_lock(uri):
    client = MlflowClient(tracking_uri=uri)
client.create_experiment(sys.argv[2])
"""


def test_processes_opening_a_fresh_store_together_all_succeed(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'new folder' / 'mlflow.db'}"
    procs = [
        subprocess.Popen([sys.executable, "-c", OPEN_STORE, uri, f"exp-{i}"], stderr=subprocess.PIPE, text=True)
        for i in range(4)
    ]
    failures = [p.stderr.read()[-400:] for p in procs if p.wait(timeout=300) != 0]  # type: ignore[union-attr]
    assert failures == []
    from mlflow.tracking import MlflowClient

    names = {e.name for e in MlflowClient(tracking_uri=uri).search_experiments()}
    assert {f"exp-{i}" for i in range(4)} <= names


def test_concurrent_asks_on_a_fresh_machine_are_all_delivered(a2a_agent: A2AAgent, tmp_path: Path) -> None:
    home = tmp_path / "fresh home"
    questions = [f"First question {i} {uuid.uuid4().hex[:6]}?" for i in range(3)]
    procs = [
        subprocess.Popen(
            [
                str(CLI),
                "ask",
                q,
                "--json",
                "--a2a-url",
                a2a_agent.url,
                "--experiment",
                "fresh",
                "--flush-timeout",
                "120",
            ],
            env=clean_env(home),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for q in questions
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    for proc, (_out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    rows = sqlite_rows(home / "mlflow.db")
    for question, (out, _) in zip(questions, outputs, strict=True):
        result = json.loads(out.strip().splitlines()[-1])
        assert result["answer"] == answer_for(question)
        run = stored_run(rows, result["run_id"])
        assert run is not None and run.status == "FINISHED"
