"""What the schemas cannot see: names that must meet inside one rendering.

Every ConfigMap/Secret/PVC a pod or a kagent resource names exists (with the key it reads), every Service selects
pods and reaches a port they expose, probes hit a declared port, every in-cluster URL names a Service of the same
rendering on one of its ports, and the values several objects must agree on (model id, bucket, database, namespace,
grace periods) agree.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import pytest

from tests.support.manifests import (
    OVERLAYS,
    byo_agents,
    container_env,
    containers,
    find,
    render,
    workloads,
)

# Addresses outside the rendering (kagent's controller, and the minimal overlay's existing model server and MLflow).
EXTERNAL_HOSTS = {
    "kagent-controller.kagent",
    "vllm.models.svc.cluster.local",
    "mlflow.mlflow.svc.cluster.local",
}


def _of_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def _keys(obj: dict[str, Any]) -> set[str]:
    return set(obj.get("data", {})) | set(obj.get("stringData", {}))


def _pod_specs(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any], list[dict[str, Any]]]]:
    """(label, pod spec, containers) for every workload, and the pod kagent makes from each BYO Agent."""
    for obj, template in workloads(objects):
        yield f"{obj['kind']}/{obj['metadata']['name']}", template["spec"], containers(template)
    for agent in byo_agents(objects):
        deployment = agent["spec"]["byo"]["deployment"]
        container = {"name": "kagent", **{k: deployment[k] for k in ("env", "volumeMounts") if k in deployment}}
        yield f"Agent/{agent['metadata']['name']}", {"volumes": deployment.get("volumes", [])}, [container]


def env_source_problems(objects: list[dict[str, Any]]) -> list[str]:
    maps, secrets = _of_kind(objects, "ConfigMap"), _of_kind(objects, "Secret")
    missing: list[str] = []
    for label, _, conts in _pod_specs(objects):
        for c in conts:
            for source in c.get("envFrom", []):
                for field, pool in (("configMapRef", maps), ("secretRef", secrets)):
                    if field in source and source[field]["name"] not in pool:
                        missing.append(f"{label}: envFrom {field} {source[field]['name']}")
            for entry in c.get("env", []):
                for field, pool in (("configMapKeyRef", maps), ("secretKeyRef", secrets)):
                    ref = entry.get("valueFrom", {}).get(field)
                    if ref and (ref["name"] not in pool or ref["key"] not in _keys(pool[ref["name"]])):
                        missing.append(f"{label}: {entry['name']} <- {field} {ref['name']}/{ref['key']}")
    return missing


def volume_problems(objects: list[dict[str, Any]]) -> list[str]:
    pools = {
        "configMap": _of_kind(objects, "ConfigMap"),
        "secret": _of_kind(objects, "Secret"),
        "persistentVolumeClaim": _of_kind(objects, "PersistentVolumeClaim"),
    }
    problems = []
    for obj, template in workloads(objects):
        claim_templates = {t["metadata"]["name"] for t in obj["spec"].get("volumeClaimTemplates", [])}
        volumes = {v["name"]: v for v in template["spec"].get("volumes", [])}
        for c in containers(template):
            for mount in c.get("volumeMounts", []):
                if mount["name"] not in volumes and mount["name"] not in claim_templates:
                    problems.append(f"{obj['metadata']['name']}: mount {mount['name']} has no volume")
        for volume in volumes.values():
            for field, pool in pools.items():
                if field in volume:
                    ref = volume[field].get("name") or volume[field].get("secretName") or volume[field]["claimName"]
                    if ref not in pool:
                        problems.append(f"{obj['metadata']['name']}: volume {volume['name']} -> missing {field} {ref}")
    for label, spec, conts in _pod_specs(objects):
        names = {v["name"] for v in spec.get("volumes", [])}
        for c in conts:
            if label.startswith("Agent/"):
                problems += [f"{label}: mount {m['name']}" for m in c.get("volumeMounts", []) if m["name"] not in names]
    return problems


def _container_ports(conts: list[dict[str, Any]]) -> tuple[set[str], set[int]]:
    ports = [p for c in conts for p in c.get("ports", [])]
    return {p["name"] for p in ports if "name" in p}, {p["containerPort"] for p in ports}


def probe_problems(objects: list[dict[str, Any]]) -> list[str]:
    problems = []
    for obj, template in workloads(objects):
        for c in containers(template):
            names, numbers = _container_ports([c])
            for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                probe = c.get(kind, {})
                for handler in ("httpGet", "tcpSocket"):
                    if handler in probe:
                        port = probe[handler]["port"]
                        if port not in names and port not in numbers:
                            problems.append(f"{obj['metadata']['name']}/{c['name']} {kind} port {port!r}")
    return problems


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_long_running_containers_are_probed(overlay: str) -> None:
    for obj, template in workloads(render(overlay)):
        if obj["kind"] in ("Deployment", "StatefulSet"):
            for c in containers(template):
                assert "readinessProbe" in c and "livenessProbe" in c, f"{obj['metadata']['name']}/{c['name']}"


def _selected_pods(objects: list[dict[str, Any]], selector: dict[str, str]) -> list[dict[str, Any]]:
    return [
        t
        for _, t in workloads(objects)
        if selector and all(t["metadata"].get("labels", {}).get(k) == v for k, v in selector.items())
    ]


def service_problems(objects: list[dict[str, Any]]) -> list[str]:
    problems = []
    for name, service in _of_kind(objects, "Service").items():
        pods = _selected_pods(objects, service["spec"]["selector"])
        if not pods:
            problems.append(f"Service/{name} selects no pod template")
            continue
        for template in pods:
            names, numbers = _container_ports(containers(template))
            for port in service["spec"]["ports"]:
                target = port.get("targetPort", port["port"])
                if target not in names and target not in numbers:
                    problems.append(f"Service/{name} port {port['port']} -> {target!r}: not a container port")
    for obj, template in workloads(objects):
        if obj["kind"] == "StatefulSet":
            if obj["spec"]["serviceName"] not in _of_kind(objects, "Service"):
                problems.append(f"{obj['metadata']['name']}: serviceName {obj['spec']['serviceName']}")
        selector = obj["spec"].get("selector", {}).get("matchLabels", {})
        labels = template["metadata"].get("labels", {})
        if not all(labels.get(k) == v for k, v in selector.items()):
            problems.append(f"{obj['metadata']['name']}: selector {selector} does not match its pods' labels")
    return problems


def _urls(value: str) -> list[str]:
    return re.findall(r"\b(?:https?|s3|postgresql\+psycopg2)://[^\s\"',]+", value)


def _all_urls(objects: list[dict[str, Any]]) -> Iterator[tuple[str, str]]:
    """(where, URL) for every URL in ConfigMaps, env values, container args and kagent specs."""
    for obj in objects:
        if obj["kind"] == "ConfigMap":
            for key, value in obj.get("data", {}).items():
                if key != "config.yaml":  # the Llama Stack run config: ${env.*} placeholders, checked below
                    yield from ((f"ConfigMap/{obj['metadata']['name']}:{key}", u) for u in _urls(value))
        if obj["kind"] == "ModelConfig":
            yield f"ModelConfig/{obj['metadata']['name']}", obj["spec"]["openAI"]["baseUrl"]
    for label, _, conts in _pod_specs(objects):
        for c in conts:
            for text in [*c.get("args", []), *(e.get("value", "") for e in c.get("env", []))]:
                yield from ((label, u) for u in _urls(text))
    for agent in byo_agents(objects):
        for text in agent["spec"]["byo"]["deployment"].get("args", []):
            yield from ((f"Agent/{agent['metadata']['name']}", u) for u in _urls(text))


def url_problems(objects: list[dict[str, Any]]) -> list[str]:
    services = _of_kind(objects, "Service")
    problems = []
    for where, url in _all_urls(objects):
        parsed = urlparse(url)
        if parsed.scheme == "s3":
            continue  # a bucket, checked in test_mlflow_storage_settings_agree
        host, port = parsed.hostname, parsed.port
        if host in EXTERNAL_HOSTS:
            continue
        if host not in services:
            problems.append(f"{where}: {url} -> no Service {host!r} in this rendering")
        elif port not in {p["port"] for p in services[host]["spec"]["ports"]}:
            problems.append(f"{where}: {url} -> Service {host} has no port {port}")
    return problems


def security_problems(objects: list[dict[str, Any]]) -> list[str]:
    problems = []
    for label, spec, conts in _pod_specs(objects):
        pod_security = spec.get("securityContext") or {}
        if label.startswith("Agent/"):
            continue  # checked in test_byo_agent_is_what_kagent_expects
        if pod_security.get("runAsNonRoot") is not True:
            problems.append(f"{label}: runAsNonRoot")
        for c in conts:
            security = c.get("securityContext", {})
            if security.get("allowPrivilegeEscalation") is not False or security.get("capabilities") != {
                "drop": ["ALL"]
            }:
                problems.append(f"{label}/{c['name']}: privilege escalation / capabilities")
            resources = c.get("resources", {})
            if not resources.get("requests") or "memory" not in resources.get("limits", {}):
                problems.append(f"{label}/{c['name']}: resources")
    return problems


CHECKS = {
    "env sources": env_source_problems,
    "volumes": volume_problems,
    "probe ports": probe_problems,
    "services": service_problems,
    "in-cluster URLs": url_problems,
    "security": security_problems,
}


@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_references_meet(overlay: str, check: str) -> None:
    problems = CHECKS[check](render(overlay))
    assert not problems, problems


def _container(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return containers(next(t for o, t in workloads(objects) if o["kind"] == kind and o["metadata"]["name"] == name))[0]


def _break_secret_key(objects: list[dict[str, Any]]) -> None:
    env = _container(objects, "Deployment", "mlflow")["env"]
    next(e for e in env if e["name"] == "PGPASSWORD")["valueFrom"]["secretKeyRef"]["key"] = "POSTGRES_PASWORD"


def _break_env_from(objects: list[dict[str, Any]]) -> None:
    _container(objects, "Deployment", "agent-server")["envFrom"][0]["configMapRef"]["name"] = "agent-sever"


def _break_byo_env(objects: list[dict[str, Any]]) -> None:
    env = find(objects, "Agent", "mlflow-agent-server")["spec"]["byo"]["deployment"]["env"]
    env[0]["valueFrom"]["configMapKeyRef"]["name"] = "agentserver"


def _break_config_volume(objects: list[dict[str, Any]]) -> None:
    pod = find(objects, "Deployment", "llama-stack")["spec"]["template"]["spec"]
    next(v for v in pod["volumes"] if "configMap" in v)["configMap"]["name"] = "llama-stack-cfg"


def _break_mount(objects: list[dict[str, Any]]) -> None:
    _container(objects, "Deployment", "agent-server")["volumeMounts"][0]["name"] = "dta"


def _break_probe(objects: list[dict[str, Any]]) -> None:
    _container(objects, "Deployment", "mlflow")["readinessProbe"]["httpGet"]["port"] = "htp"


def _break_selector(objects: list[dict[str, Any]]) -> None:
    find(objects, "Service", "mlflow")["spec"]["selector"] = {"app.kubernetes.io/name": "mlfow"}


def _break_target_port(objects: list[dict[str, Any]]) -> None:
    find(objects, "Service", "llama-stack")["spec"]["ports"][0]["targetPort"] = 8322


def _break_workload_selector(objects: list[dict[str, Any]]) -> None:
    find(objects, "Deployment", "agent-server")["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] = "x"


def _break_url_host(objects: list[dict[str, Any]]) -> None:
    find(objects, "ConfigMap", "agent-server")["data"]["MLFLOW_TRACKING_URI"] = "http://mlfow:5000"


def _break_url_port(objects: list[dict[str, Any]]) -> None:
    find(objects, "ModelConfig", "llama-stack")["spec"]["openAI"]["baseUrl"] = "http://llama-stack:8322/v1"


def _break_non_root(objects: list[dict[str, Any]]) -> None:
    del find(objects, "StatefulSet", "mlflow-minio")["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"]


def _break_limits(objects: list[dict[str, Any]]) -> None:
    del _container(objects, "Job", "kagent-mlflow-ask")["resources"]["limits"]


BROKEN = [
    ("env sources", _break_secret_key),
    ("env sources", _break_env_from),
    ("env sources", _break_byo_env),
    ("volumes", _break_config_volume),
    ("volumes", _break_mount),
    ("probe ports", _break_probe),
    ("services", _break_selector),
    ("services", _break_target_port),
    ("services", _break_workload_selector),
    ("in-cluster URLs", _break_url_host),
    ("in-cluster URLs", _break_url_port),
    ("security", _break_non_root),
    ("security", _break_limits),
]


@pytest.mark.parametrize(("check", "breakage"), BROKEN, ids=[b.__name__.lstrip("_") for _, b in BROKEN])
def test_a_broken_reference_is_caught(check: str, breakage: Any) -> None:
    objects = render("full")
    assert not CHECKS[check](objects)
    breakage(objects)
    assert CHECKS[check](objects), f"{check} did not notice {breakage.__name__}"


def test_openshift_pods_leave_uids_to_the_scc() -> None:
    """restricted-v2 admits only the namespace's uid range: no fixed runAsUser/runAsGroup/fsGroup anywhere."""
    objects = render("openshift")
    fixed = []
    for label, spec, conts in _pod_specs(objects):
        contexts = [spec.get("securityContext") or {}, *(c.get("securityContext") or {} for c in conts)]
        fixed += [f"{label}: {k}" for ctx in contexts for k in ("runAsUser", "runAsGroup", "fsGroup") if k in ctx]
    for agent in byo_agents(objects):
        ctx = agent["spec"]["byo"]["deployment"].get("podSecurityContext", {})
        fixed += [f"Agent/{agent['metadata']['name']}: {k}" for k in ("runAsUser", "runAsGroup") if k in ctx]
        assert ctx.get("runAsNonRoot") is True
    assert not fixed, fixed
    routes = _of_kind(objects, "Route")
    services = _of_kind(objects, "Service")
    assert set(routes) == {"mlflow", "agent-server"}
    for name, route in routes.items():
        service = services[route["spec"]["to"]["name"]]
        assert route["spec"]["port"]["targetPort"] in {p.get("name") for p in service["spec"]["ports"]}, name


def _arg(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def test_agent_server_outlives_its_trace_flush() -> None:
    """Kubernetes SIGKILLs after terminationGracePeriodSeconds: the server's --shutdown-grace must end first."""
    objects = render("full")
    deployment = find(objects, "Deployment", "agent-server")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    grace = float(_arg(container["args"], "--shutdown-grace"))
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= grace + 10
    env = container_env(objects, container)
    assert {"LLAMA_STACK_BASE_URL", "LLAMA_STACK_MODEL", "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME"} <= set(env)


def test_byo_agent_is_what_kagent_expects() -> None:
    """kagent deploys a BYO image with port 8080 and the default 30 s grace period, and needs the same settings."""
    objects = render("full")
    agent = find(objects, "Agent", "mlflow-agent-server")
    deployment = agent["spec"]["byo"]["deployment"]
    assert deployment["args"][0] == "serve"
    assert _arg(deployment["args"], "--port") == "8080"
    assert _arg(deployment["args"], "--host") == "0.0.0.0"
    assert float(_arg(deployment["args"], "--shutdown-grace")) <= 20
    assert deployment["podSecurityContext"]["runAsNonRoot"] is True
    plain = find(objects, "Deployment", "agent-server")["spec"]["template"]["spec"]["containers"][0]
    assert deployment["image"] == plain["image"]
    env = container_env(objects, {"env": deployment["env"]})
    plain_env = container_env(objects, plain)
    for name in ("LLAMA_STACK_BASE_URL", "LLAMA_STACK_MODEL", "MLFLOW_TRACKING_URI", "LLAMA_STACK_API_KEY"):
        assert env[name] == plain_env[name], name


def test_kagent_resources_meet() -> None:
    objects = render("full")
    model_config = find(objects, "ModelConfig", "llama-stack")["spec"]
    key_secret = find(objects, "Secret", model_config["apiKeySecret"])
    assert model_config["apiKeySecretKey"] in _keys(key_secret)
    assert urlparse(model_config["openAI"]["baseUrl"]).path == "/v1"
    declarative = find(objects, "Agent", "rh-analyze-simple")["spec"]["declarative"]
    find(objects, "ModelConfig", declarative["modelConfig"])
    agent_server_model = find(objects, "ConfigMap", "agent-server")["data"]["LLAMA_STACK_MODEL"]
    assert model_config["model"] == agent_server_model, "kagent and the Agent Server must ask for the same model"
    assert agent_server_model.startswith("vllm/"), "Llama Stack lists the remote vLLM provider's models as vllm/<id>"


@pytest.mark.parametrize("overlay", ["full", "openshift"])
def test_pattern1_asks_a_kagent_agent_of_this_rendering(overlay: str) -> None:
    objects = render(overlay)
    agents = _of_kind(objects, "Agent")
    a2a_url = find(objects, "ConfigMap", "kagent-mlflow-ask")["data"]["A2A_URL"]
    match = re.fullmatch(r"http://kagent-controller\.kagent:8083/api/a2a/([^/]+)/([^/]+)/", a2a_url)
    assert match, a2a_url
    namespace, agent = match.groups()
    assert agent in agents
    assert namespace == agents[agent]["metadata"]["namespace"]
    for kind in ("Job", "CronJob"):
        obj = find(objects, kind, "kagent-mlflow-ask")
        container = containers(next(t for o, t in workloads([obj])))[0]
        env = container_env(objects, container)
        assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
        assert "ask" in " ".join(container.get("command", []) + container["args"])
