"""`kagent-mlflow status` and `replay` as a user runs them (the MLflow sink replaced by the in-process fake)."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kagent_mlflow.cli import app
from kagent_mlflow.delivery import Spool

from .test_delivery_recorder import FakeSink, make

runner = CliRunner()


@pytest.fixture
def spool_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "spool"
    monkeypatch.setenv("KAGENT_MLFLOW_SPOOL_DIR", str(directory))
    monkeypatch.setenv("KAGENT_MLFLOW_HOME", str(tmp_path / "home"))
    return directory


@pytest.fixture
def fake_sink(monkeypatch: pytest.MonkeyPatch) -> FakeSink:
    sink = FakeSink()
    module = types.ModuleType("kagent_mlflow.sinks.mlflow")
    module.MlflowSink = lambda settings, **_: sink  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "kagent_mlflow.sinks.mlflow", module)
    return sink


def spool_some(directory: Path, n: int) -> None:
    spool = Spool(directory)
    for i in range(n):
        spool.append(make(i))
    spool.close()


def test_status_counts_what_waits(spool_dir: Path) -> None:
    empty = runner.invoke(app, ["status"])
    assert empty.exit_code == 0 and "nothing" in empty.output
    spool_some(spool_dir, 3)
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 0
    assert "Waiting: 3 interaction(s)" in result.output and str(spool_dir) in result.output
    data = json.loads(runner.invoke(app, ["status", "--json"]).output)
    assert data["pending"] == 3 and data["spool"] == str(spool_dir) and data["oldest_ms"] > 0


def test_replay_delivers_then_has_nothing_left(spool_dir: Path, fake_sink: FakeSink) -> None:
    spool_some(spool_dir, 5)
    result = runner.invoke(app, ["replay", "--workers", "2"])
    assert result.exit_code == 0, result.output
    assert "Delivered 5" in result.output and "still waiting 0" in result.output
    assert fake_sink.complete() == 5
    again = runner.invoke(app, ["replay"])
    assert again.exit_code == 0 and "Nothing to replay" in again.output
    assert len(fake_sink.runs) == 5


def test_replay_with_mlflow_down_exits_nonzero_and_keeps_records(spool_dir: Path, fake_sink: FakeSink) -> None:
    spool_some(spool_dir, 4)
    fake_sink.down = True
    result = runner.invoke(app, ["replay", "--attempts", "1"])
    assert result.exit_code == 4
    assert "run replay again later" in result.output and "Traceback" not in result.output
    assert Spool(spool_dir).status().pending == 4
