"""Every overlay renders with ``kubectl kustomize``, and every object it renders matches its schema strictly.

Built-in kinds against the Kubernetes API schemas (kubernetes-validate, strict: unknown fields fail), kagent's
``kagent.dev/v1alpha2`` kinds and OpenShift Routes against the hand-written schemas in ``schemas/``. The negative
tests prove each schema really rejects a misspelt field (a validator that accepts everything would pass the rest).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.deploy.strict_schemas import K8S_VERSIONS, SchemaError, validate
from tests.support.manifests import DEPLOY, OVERLAYS, find, kustomize, render


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders(overlay: str) -> None:
    objects = render(overlay)
    assert objects, f"{overlay} rendered nothing"
    names = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert len(names) == len(set(names)), f"{overlay} renders an object twice: {names}"
    assert {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"} == {"kagent-mlflow"}


@pytest.mark.parametrize("component", sorted(p.name for p in (DEPLOY / "base").iterdir() if p.is_dir()))
def test_each_base_component_renders_alone(component: str) -> None:
    assert "kind:" in kustomize(DEPLOY / "base" / component)


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_matches_its_schema_strictly(overlay: str, version: str) -> None:
    problems = []
    for obj in render(overlay):
        try:
            validate(obj, version)
        except SchemaError as exc:
            problems.append(str(exc))
    assert not problems, "\n".join(problems)


def _mutated(overlay: str, kind: str, name: str, path: list[Any], key: str, value: Any) -> dict[str, Any]:
    """A copy of one rendered object with ``key: value`` added under ``path``."""
    obj = copy.deepcopy(find(render(overlay), kind, name))
    node: Any = obj
    for step in path:
        node = node[step]
    node[key] = value
    return obj


POD = ["spec", "template", "spec"]
CONTAINER = [*POD, "containers", 0]
BYO = ["spec", "byo", "deployment"]

MISSPELT = [
    # built-in kinds: the Kubernetes schema
    ("full", "Deployment", "agent-server", CONTAINER, "imagePulPolicy", "Always"),
    ("full", "Deployment", "mlflow", [*CONTAINER, "readinessProbe", "httpGet"], "paht", "/health"),
    ("full", "Deployment", "agent-server", POD, "terminationGracePeriod", 45),
    ("full", "StatefulSet", "mlflow-postgres", [*POD, "securityContext"], "runAsNonroot", True),
    ("full", "Service", "mlflow", ["spec"], "selecter", {"app": "mlflow"}),
    ("full", "Job", "kagent-mlflow-ask", [*CONTAINER, "envFrom", 0], "configMapRef2", {"name": "x"}),
    ("full", "CronJob", "kagent-mlflow-ask", ["spec"], "schedual", "* * * * *"),
    ("full", "ConfigMap", "agent-server", [], "datta", {}),
    ("full", "Secret", "mlflow-postgres", [], "stringdata", {}),
    ("full", "PersistentVolumeClaim", "kagent-mlflow-ask-spool", ["spec"], "accessMode", ["ReadWriteOnce"]),
    ("full", "Namespace", "kagent-mlflow", ["metadata"], "label", {}),
    # kagent kinds: schemas/kagent.dev-v1alpha2.json
    ("full", "Agent", "rh-analyze-simple", ["spec", "declarative"], "systemMesage", "hi"),
    ("full", "Agent", "rh-analyze-simple", ["spec"], "modelConfig", "llama-stack"),
    ("full", "Agent", "rh-analyze-simple", ["spec", "declarative", "a2aConfig", "skills", 0], "example", ["x"]),
    ("full", "Agent", "mlflow-agent-server", BYO, "imge", "x"),
    ("full", "Agent", "mlflow-agent-server", BYO, "envFrom", [{"configMapRef": {"name": "agent-server"}}]),
    ("full", "Agent", "mlflow-agent-server", [*BYO, "env", 0, "valueFrom"], "configMapKeyref", {}),
    ("full", "Agent", "mlflow-agent-server", [*BYO, "podSecurityContext"], "runAsNonroot", True),
    ("full", "ModelConfig", "llama-stack", ["spec", "openAI"], "baseURL", "http://llama-stack:8321/v1"),
    ("full", "ModelConfig", "llama-stack", ["spec"], "apiKeySecretRef", "x"),
    ("full", "ModelConfig", "llama-stack", ["metadata"], "nmae", "x"),
    # OpenShift Route: schemas/route.openshift.io-v1.json
    ("openshift", "Route", "mlflow", ["spec", "tls"], "terminaton", "edge"),
    ("openshift", "Route", "agent-server", ["spec", "to"], "namespace", "other"),
]


@pytest.mark.parametrize(("overlay", "kind", "name", "path", "key", "value"), MISSPELT)
def test_a_misspelt_field_fails(overlay: str, kind: str, name: str, path: list[Any], key: str, value: Any) -> None:
    obj = _mutated(overlay, kind, name, path, key, value)
    with pytest.raises(SchemaError, match=key):
        validate(obj)


WRONG_VALUES = [
    ("full", "Agent", "mlflow-agent-server", ["spec"], "type", "Byo"),
    ("full", "Agent", "mlflow-agent-server", ["spec"], "type", "Declarative"),  # CEL: declarative required
    ("full", "ModelConfig", "llama-stack", ["spec"], "provider", "Anthropic"),  # CEL: openAI only with OpenAI
    ("full", "ModelConfig", "llama-stack", ["spec"], "apiKeySecret", "Not_A_Name"),
    ("full", "Deployment", "agent-server", POD, "terminationGracePeriodSeconds", "45"),
    ("openshift", "Route", "mlflow", ["spec", "tls"], "termination", "Edge"),
    ("openshift", "Route", "mlflow", ["spec", "to"], "kind", "Deployment"),
]


@pytest.mark.parametrize(("overlay", "kind", "name", "path", "key", "value"), WRONG_VALUES)
def test_a_wrong_value_fails(overlay: str, kind: str, name: str, path: list[Any], key: str, value: Any) -> None:
    with pytest.raises(SchemaError):
        validate(_mutated(overlay, kind, name, path, key, value))


def test_a_missing_required_field_fails() -> None:
    obj = copy.deepcopy(find(render("full"), "ModelConfig", "llama-stack"))
    del obj["spec"]["apiKeySecret"]
    with pytest.raises(SchemaError, match="apiKeySecret"):
        validate(obj)
    byo = copy.deepcopy(find(render("full"), "Agent", "mlflow-agent-server"))
    del byo["spec"]["byo"]["deployment"]["image"]
    with pytest.raises(SchemaError, match="image"):
        validate(byo)


@pytest.mark.parametrize(
    ("api_version", "kind"),
    [("kagent.dev/v1alpha2", "RemoteMCPServer"), ("kagent.dev/v1alpha1", "Agent"), ("example.com/v1", "Widget")],
)
def test_a_kind_without_a_schema_fails(api_version: str, kind: str) -> None:
    with pytest.raises(SchemaError, match="schema"):
        validate({"apiVersion": api_version, "kind": kind, "metadata": {"name": "x"}, "spec": {}})
