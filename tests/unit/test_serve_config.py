"""Request limits of the Agent Server: defaults, environment, flags (flags win), and bad values named clearly."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from kagent_mlflow.errors import ConfigError
from kagent_mlflow.serve.__main__ import config_from_args
from kagent_mlflow.serve.config import Limits, ServeConfig

LIMIT_ENV = ("KAGENT_MLFLOW_MAX_BODY_BYTES", "KAGENT_MLFLOW_MAX_JSON_DEPTH", "KAGENT_MLFLOW_MAX_INPUT_ITEMS")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in LIMIT_ENV:
        monkeypatch.delenv(name, raising=False)


def test_documented_defaults():
    expected = Limits(max_body_bytes=1024 * 1024, max_json_depth=64, max_input_items=10_000)
    assert ServeConfig.from_env().limits == expected


def test_environment_then_flags(monkeypatch):
    monkeypatch.setenv("KAGENT_MLFLOW_MAX_BODY_BYTES", "1000")
    monkeypatch.setenv("KAGENT_MLFLOW_MAX_JSON_DEPTH", "8")
    monkeypatch.setenv("KAGENT_MLFLOW_MAX_INPUT_ITEMS", "50")
    assert ServeConfig.from_env().limits == Limits(1000, 8, 50)
    assert config_from_args(["--max-input-items", "7", "--max-json-depth", "9"]).limits == Limits(1000, 9, 7)


@pytest.mark.parametrize("value", ["lots", "0", "-5", "1.5"])
def test_bad_environment_values_name_the_variable(monkeypatch, value):
    monkeypatch.setenv("KAGENT_MLFLOW_MAX_INPUT_ITEMS", value)
    with pytest.raises(ConfigError, match="KAGENT_MLFLOW_MAX_INPUT_ITEMS"):
        ServeConfig.from_env()


def test_python_m_rejects_a_zero_limit_with_one_line(capsys):
    from kagent_mlflow.serve.__main__ import main

    assert main(["--max-body-bytes", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: --max-body-bytes must be > 0, got 0"


def test_kagent_mlflow_serve_flags_reach_the_server_config(monkeypatch):
    from kagent_mlflow import cli
    from kagent_mlflow.serve import runner

    seen = []
    monkeypatch.setattr(runner, "run", seen.append)
    args = ["serve", "--max-body-bytes", "2048", "--max-json-depth", "5", "--max-input-items", "3"]
    result = CliRunner().invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    assert seen[0].limits == Limits(2048, 5, 3)
