"""Shared pytest set-up. Fixtures for real servers live in tests/support/ and are loaded as plugins."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

pytest_plugins: list[str] = [
    "tests.support.model_server",
    "tests.support.llama_stack",
    "tests.support.mlflow_server",
    "tests.support.agent_server",
    "tests.support.kagent_runtime",
    "tests.support.a2a_agents",
    "tests.support.storage",
    "tests.support.image",
]

# The tool's data folders for the whole run. Set in os.environ so every subprocess (the CLI, servers) inherits them;
# XDG_DATA_HOME also moves the platform's user data dir, for tests that unset KAGENT_MLFLOW_HOME on purpose. The spool
# is <home>/spool: a KAGENT_MLFLOW_SPOOL_DIR from the shell is dropped (tests that give a home expect its spool there).
SUITE_DIRS = {"KAGENT_MLFLOW_HOME": "home", "XDG_DATA_HOME": "xdg-data"}
DROPPED = ("KAGENT_MLFLOW_SPOOL_DIR",)


@pytest.fixture(scope="session", autouse=True)
def suite_data_dirs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Point the tool's home and spool into this run's temporary folder, so no test writes to the user's data dir
    or shares a spool with another run on the same machine."""
    root = tmp_path_factory.mktemp("kagent-mlflow-data")
    values = {name: str(root / sub) for name, sub in SUITE_DIRS.items()}
    before = {name: os.environ.get(name) for name in (*values, *DROPPED)}
    os.environ.update(values)
    for name in DROPPED:
        os.environ.pop(name, None)
    yield values
    for name, old in before.items():
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old
