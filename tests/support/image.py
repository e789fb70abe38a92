"""The project's container image, built here without an engine: ``deploy/image/Containerfile`` run step by step by
:mod:`tests.support.containerfile` (the wheel built from this checkout, installed with its dependencies into a
clean venv by the Containerfile's own RUN lines).

Fixture ``project_image`` (session scoped) -> :class:`~tests.support.containerfile.Image`. The build takes about
two to three minutes on a 2-core machine (installing MLflow's dependencies dominates); pip's cache is kept, as a
build cache mount would (the only change to the Containerfile's environment).

For repeated local runs, ``KAGENT_MLFLOW_TEST_IMAGE_DIR=/some/dir`` keeps the build there and reuses it while the
inputs (Containerfile, pyproject, sources) hash the same; unset (as in CI), every session builds afresh.

:func:`start_image` runs the image's default command (or Kubernetes-style ``command``/``args``) as a process with
the image's environment plus the given variables, the way ``podman run -e NAME=value`` would.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.containerfile import Image, build, parse

REPO = Path(__file__).resolve().parents[2]
CONTAINERFILE = REPO / "deploy" / "image" / "Containerfile"
IMAGE_NAME = "ghcr.io/kagent-mlflow/kagent-mlflow"
INPUTS = ("deploy/image/Containerfile", "pyproject.toml", "README.md", "kagent_mlflow_logger.py", "src")


def inputs_digest() -> str:
    """A hash of everything the image is built from (to reuse a kept build only while it is current)."""
    digest = hashlib.sha256()
    for name in INPUTS:
        path = REPO / name
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        files = [f for f in files if "__pycache__" not in f.parts]
        for file in files:
            digest.update(str(file.relative_to(REPO)).encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()


def build_project_image(root: Path) -> Image:
    """Run the Containerfile into ``root`` (pip's cache kept)."""
    return build(parse(CONTAINERFILE.read_text()), REPO, root, env_overrides={"PIP_NO_CACHE_DIR": None})


def _kept_build(folder: Path) -> Image:
    stamp = folder / "inputs.sha256"
    state = folder / "image.pickle"
    digest = inputs_digest()
    if stamp.is_file() and stamp.read_text() == digest and state.is_file():
        import pickle

        return pickle.loads(state.read_bytes())  # noqa: S301 - our own file, written below
    shutil.rmtree(folder, ignore_errors=True)
    image = build_project_image(folder)
    import pickle

    state.write_bytes(pickle.dumps(image))
    stamp.write_text(digest)
    return image


@pytest.fixture(scope="session")
def project_image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Image]:
    """The image built from ``deploy/image/Containerfile`` (see the module doc)."""
    kept = os.environ.get("KAGENT_MLFLOW_TEST_IMAGE_DIR")
    if kept:
        yield _kept_build(Path(kept))
    else:
        yield build_project_image(tmp_path_factory.mktemp("image"))


def image_env(image: Image, tmp: Path, overrides: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a container of ``image`` starts with (only the image's ENV: nothing from this process)."""
    env = image.env(tmp)
    env.update(overrides or {})
    return env


def start_image(
    image: Image,
    tmp: Path,
    *,
    env: dict[str, str] | None = None,
    command: list[str] | None = None,
    args: list[str] | None = None,
    log_path: Path,
) -> subprocess.Popen[bytes]:
    """Start a process of the image (its own session, output to ``log_path``); the caller stops it."""
    full_env = image_env(image, tmp, env)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            image.argv(full_env, command, args),
            cwd=image.workdir(tmp),
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def describe(image: Image) -> str:
    """One line for assertion messages."""
    state = image.state
    return json.dumps({"entrypoint": state.entrypoint, "cmd": state.cmd, "user": state.user, "expose": state.exposed})
