"""docs/deploy.md says what the manifests do: its example overlay renders and replaces every placeholder it claims
to, its commands name objects that exist, and the README links the guide."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from tests.deploy.strict_schemas import validate
from tests.support.manifests import DEPLOY, REPO, config_value, find, kustomize, render

GUIDE = REPO / "docs" / "deploy.md"
MARKER = "<!-- deploy-overlay-example"


def _example_overlay() -> str:
    text = GUIDE.read_text()
    after = text[text.index(MARKER) :]
    return re.search(r"```yaml\n(.*?)```", after, re.S).group(1)


@pytest.mark.parametrize("base", ["full", "openshift"])
def test_the_guides_example_overlay_replaces_the_placeholders(tmp_path: Path, base: str) -> None:
    overlay = _example_overlay().replace("../deploy/overlays/full", f"../deploy/overlays/{base}")
    target = os.path.relpath(DEPLOY / "overlays" / base, tmp_path)
    (tmp_path / "kustomization.yaml").write_text(overlay.replace(f"../deploy/overlays/{base}", target))
    (tmp_path / "postgres.env").write_text("POSTGRES_USER=mlflow\nPOSTGRES_PASSWORD=s3cret-pg\nPOSTGRES_DB=mlflow\n")
    (tmp_path / "minio.env").write_text("MINIO_ROOT_USER=mlflow-s3\nMINIO_ROOT_PASSWORD=s3cret-minio\n")
    objects = [o for o in yaml.safe_load_all(kustomize(tmp_path)) if o]
    for obj in objects:
        validate(obj)
    assert config_value(objects, "Secret", "mlflow-postgres", "POSTGRES_PASSWORD") == "s3cret-pg"
    assert config_value(objects, "Secret", "mlflow-minio", "MINIO_ROOT_USER") == "mlflow-s3"
    model = "vllm/granite-3.3-8b-instruct"
    assert config_value(objects, "ConfigMap", "agent-server", "LLAMA_STACK_MODEL") == model
    assert find(objects, "ModelConfig", "llama-stack")["spec"]["model"] == model
    assert config_value(objects, "ConfigMap", "llama-stack", "VLLM_URL").endswith("/v1")
    assert config_value(objects, "ConfigMap", "agent-server", "MLFLOW_TRACKING_URI") == "http://mlflow:5000"
    images = {c["image"] for o in objects for c in _containers(o)}
    images |= {o["spec"]["byo"]["deployment"]["image"] for o in objects if o["kind"] == "Agent" and "byo" in o["spec"]}
    assert "registry.example.com/you/kagent-mlflow:0.1.0" in images
    assert not any(i.startswith("ghcr.io/kagent-mlflow/") for i in images)
    rendered = yaml.safe_dump_all(objects)
    assert "REPLACE_ME" not in rendered


def _containers(obj: dict) -> list[dict]:
    spec = obj.get("spec", {})
    template = spec.get("template") or spec.get("jobTemplate", {}).get("spec", {}).get("template")
    return template["spec"]["containers"] if template else []


def test_commands_in_the_guide_name_real_objects() -> None:
    text = GUIDE.read_text()
    objects = render("full")
    names = {(o["kind"].lower(), o["metadata"]["name"]) for o in objects}
    for kind, name in re.findall(r"\b(svc|deployment|statefulset|job|cronjob)/([a-z0-9-]+)", text):
        kind = {"svc": "service"}.get(kind, kind)
        if (kind, name) == ("service", "kagent-controller"):
            continue  # kagent's own, in namespace kagent
        if kind == "job" and name == "ask-now":
            continue  # made by the command itself
        assert (kind, name) in names, f"docs/deploy.md names {kind}/{name}, which the full overlay does not render"
    for agent in re.findall(r"/api/a2a/kagent-mlflow/([a-z0-9-]+)/", text):
        assert ("agent", agent) in names


def test_the_readme_links_the_guide() -> None:
    assert "(docs/deploy.md)" in (REPO / "README.md").read_text()
