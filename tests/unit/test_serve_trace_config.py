"""Trace export and shutdown settings of the Agent Server: defaults, environment, flags, bad values in one line."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from kagent_mlflow.errors import ConfigError
from kagent_mlflow.serve.__main__ import config_from_args, main
from kagent_mlflow.serve.config import ServeConfig

ENV = (
    "KAGENT_MLFLOW_SHUTDOWN_GRACE",
    "KAGENT_MLFLOW_TRACE_SPILL_DIR",
    "KAGENT_MLFLOW_TRACE_MEMORY_MB",
    "KAGENT_MLFLOW_TRACE_EXPORTERS",
    "KAGENT_MLFLOW_TRACE_BATCH",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def test_defaults_keep_shutdown_inside_a_kubernetes_grace_period(monkeypatch, tmp_path):
    monkeypatch.setenv("KAGENT_MLFLOW_HOME", str(tmp_path))
    config = ServeConfig.from_env()
    assert config.shutdown_grace <= 20
    assert (config.trace_memory_mb, config.trace_exporters, config.trace_batch) == (16, 4, 100)
    assert config.trace_spill_dir == tmp_path / "trace-spill"


def test_environment_then_flags(monkeypatch, tmp_path):
    monkeypatch.setenv("KAGENT_MLFLOW_SHUTDOWN_GRACE", "12.5")
    monkeypatch.setenv("KAGENT_MLFLOW_TRACE_SPILL_DIR", str(tmp_path / "s"))
    monkeypatch.setenv("KAGENT_MLFLOW_TRACE_MEMORY_MB", "0.5")
    monkeypatch.setenv("KAGENT_MLFLOW_TRACE_EXPORTERS", "2")
    monkeypatch.setenv("KAGENT_MLFLOW_TRACE_BATCH", "10")
    config = ServeConfig.from_env()
    assert (config.shutdown_grace, config.trace_memory_mb, config.trace_exporters, config.trace_batch) == (
        12.5,
        0.5,
        2,
        10,
    )
    assert config.trace_spill_dir == tmp_path / "s"
    assert config_from_args(["--shutdown-grace", "3"]).shutdown_grace == 3


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("KAGENT_MLFLOW_SHUTDOWN_GRACE", "soon"),
        ("KAGENT_MLFLOW_SHUTDOWN_GRACE", "nan"),
        ("KAGENT_MLFLOW_SHUTDOWN_GRACE", "inf"),
        ("KAGENT_MLFLOW_SHUTDOWN_GRACE", "-1"),
        ("KAGENT_MLFLOW_SHUTDOWN_GRACE", "86400"),
        ("KAGENT_MLFLOW_TRACE_MEMORY_MB", "NaN"),
        ("KAGENT_MLFLOW_TRACE_MEMORY_MB", "0"),
        ("KAGENT_MLFLOW_TRACE_EXPORTERS", "0"),
        ("KAGENT_MLFLOW_TRACE_EXPORTERS", "two"),
        ("KAGENT_MLFLOW_TRACE_BATCH", "1e3"),
    ],
)
def test_bad_values_are_refused_with_a_message_naming_them(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match="KAGENT_MLFLOW_|shutdown grace"):
        ServeConfig.from_env()


@pytest.mark.parametrize("value", ["0", "nan", "-3", "99999"])
def test_bad_shutdown_grace_flag_is_one_line_and_exit_2(capsys, value):
    assert main(["--shutdown-grace", value]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: shutdown grace") and "\n" not in err


def test_kagent_mlflow_serve_shutdown_grace_flag(monkeypatch):
    from kagent_mlflow import cli
    from kagent_mlflow.serve import runner

    seen = []
    monkeypatch.setattr(runner, "run", seen.append)
    result = CliRunner().invoke(cli.app, ["serve", "--shutdown-grace", "7"])
    assert result.exit_code == 0, result.output
    assert seen[0].shutdown_grace == 7
