"""The suite itself never writes to the user's data dir (issue 8, Why #8)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def _inside(path: str | Path, root: Path) -> bool:
    return Path(path).resolve().is_relative_to(root.resolve())


def test_home_spool_and_user_data_dir_are_in_this_runs_temp_folder(tmp_path_factory: pytest.TempPathFactory) -> None:
    from platformdirs import user_data_dir

    from kagent_mlflow.config import Settings

    base = tmp_path_factory.getbasetemp()
    settings = Settings.from_env()
    assert _inside(settings.home, base), settings.home
    assert _inside(settings.effective_spool_dir, base), settings.effective_spool_dir
    assert _inside(user_data_dir("kagent-mlflow", appauthor=False), base)


def test_subprocesses_inherit_the_temporary_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    code = (
        "import json; from kagent_mlflow.config import Settings; s = Settings.from_env(); "
        "print(json.dumps([str(s.home), str(s.effective_spool_dir)]))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    home, spool = json.loads(done.stdout)
    base = tmp_path_factory.getbasetemp()
    assert _inside(home, base) and _inside(spool, base)
