"""Stand-ins for what the smoke test cannot run here (see :mod:`tests.support.cluster`).

- :func:`use_local_postgres`: the PostgreSQL StatefulSet -> the machine's PostgreSQL (127.0.0.1:5432, trust auth):
  the role its Secret names, a FRESH database (dropped at the end), and URIs naming the Secret's database rewritten
  to the fresh one.
- :func:`start_moto_for_minio`: the MinIO StatefulSet -> ``moto_server`` on the pod's address and S3 port (no MinIO
  binary can be installed here). moto accepts any key pair; MinIO's probe paths are checked, not requested.
- :func:`kagent_workloads`: what kagent's controller makes of each ``Agent`` (``kagent.dev/v1alpha2``): a
  Deployment and a Service on port 8080 with ``/health`` readiness, ``KAGENT_*`` env, as its translator does. BYO
  agents run their own image and args; Declarative agents run the real kagent runtime (``kagent-adk``, from
  ``.venvs/kagent``) on the config kagent would write (the ModelConfig's model, base URL and key, the system
  message), with ``run --local`` instead of ``static`` because ``static`` keeps sessions in the controller.
- :class:`KagentController`: kagent's A2A endpoint ``/api/a2a/<namespace>/<agent>/``: serves the agent card and
  forwards JSON-RPC (plain and streamed) to ``http://<agent>.<namespace>:8080/`` as kagent's controller does.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from tests.support.cluster import (
    KAGENT_AGENT_PORT,
    KAGENT_CONTROLLER,
    MINIO_PROBE_PATHS,
    ClusterError,
    LocalCluster,
    Pod,
    container_env,
    pod_spec,
)

KAGENT_RUNTIME_IMAGE = "cr.kagent.dev/kagent-dev/kagent/app"
FORWARDED_HEADERS = ("content-type", "accept", "traceparent", "authorization")

# ---------------------------------------------------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------------------------------------------------


def use_local_postgres(cluster: LocalCluster, workload: dict[str, Any]) -> tuple[str, str]:
    """Serve the PostgreSQL StatefulSet's Service with the local server; return (role, fresh database)."""
    from tests.support.storage import PG_HOST, PG_PORT, _admin_connect

    container = pod_spec(workload)["containers"][0]
    env = container_env(cluster.manifests, container, {})
    role, password, wanted = env.get("POSTGRES_USER", "postgres"), env.get("POSTGRES_PASSWORD", ""), env.get(
        "POSTGRES_DB") or env.get("POSTGRES_USER", "postgres")  # fmt: skip
    fresh = f"kagent_mlflow_smoke_{secrets.token_hex(4)}"
    conn = _admin_connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
            if not cur.fetchone():
                try:
                    cur.execute(f'CREATE ROLE "{role}" LOGIN PASSWORD %s', (password,))
                except Exception as err:  # noqa: BLE001 - another run created it meanwhile
                    if "already exists" not in str(err):
                        raise
            cur.execute(f'CREATE DATABASE "{fresh}" OWNER "{role}"')
    finally:
        conn.close()

    def drop() -> None:
        conn = _admin_connect()
        try:
            with conn.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{fresh}" WITH (FORCE)')
        finally:
            conn.close()

    cluster.stoppers.insert(0, drop)  # after every pod has stopped
    ip = cluster.ip_of(workload)
    for key, _target in list(cluster.net.ports.items()):
        if key[0] == ip:
            cluster.net.ports[key] = (PG_HOST, PG_PORT)
    # URIs that name the Secret's database on this server now name the fresh one
    pattern = re.compile(
        rf"(postgresql(?:\+\w+)?://[^/\s]*{re.escape(PG_HOST)}:{PG_PORT}/){re.escape(wanted)}(?![\w-])"
    )
    cluster.value_rewrites.append(lambda text: pattern.sub(lambda m: m.group(1) + fresh, text))
    for source in container.get("envFrom") or []:
        if "secretRef" in source and "POSTGRES_DB" in cluster.manifests.keys(
            cluster.manifests.get("Secret", source["secretRef"]["name"])
        ):
            cluster.set_key("Secret", source["secretRef"]["name"], "POSTGRES_DB", fresh)
    return role, fresh


# ---------------------------------------------------------------------------------------------------------------------
# MinIO -> moto
# ---------------------------------------------------------------------------------------------------------------------


def start_moto_for_minio(cluster: LocalCluster, workload: dict[str, Any]) -> Pod:
    """moto's S3 server on the MinIO pod's address and S3 port; MinIO's probe paths checked against its docs."""
    container = pod_spec(workload)["containers"][0]
    for probe_name in ("readinessProbe", "livenessProbe"):
        probe = container.get(probe_name)
        if probe and "httpGet" in probe:
            path = probe["httpGet"].get("path")
            if path not in MINIO_PROBE_PATHS:
                raise ClusterError(f"MinIO {probe_name} path {path!r} is not one of MinIO's {MINIO_PROBE_PATHS}")
    ip = cluster.ip_of(workload)
    s3_port = next(int(p["containerPort"]) for p in container["ports"] if p.get("name") in ("s3", "api", "minio"))
    name = workload["metadata"]["name"]
    folder = cluster.work / name
    folder.mkdir(parents=True, exist_ok=True)
    moto = Path(sys.executable).with_name("moto_server")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    log_path = folder / "output.log"
    pod = Pod(workload["kind"], name, ip, [str(moto), "-H", ip, "-p", str(s3_port)], env, log_path, container)
    with log_path.open("ab") as log:
        pod.process = subprocess.Popen(
            pod.argv, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    cluster.pods[name] = pod
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(f"http://{ip}:{s3_port}/moto-api/", timeout=2)
            return pod
        except httpx.HTTPError:
            if pod.process.poll() is not None or time.monotonic() > deadline:
                raise ClusterError(f"moto_server (for {name}) did not start:\n{pod.log_tail()}") from None
            time.sleep(0.2)


# ---------------------------------------------------------------------------------------------------------------------
# kagent: Agent -> Deployment + Service, and the controller's A2A endpoint
# ---------------------------------------------------------------------------------------------------------------------

AGENT_PY = '''\
"""Built from config.json by kagent's own AgentConfig, as `kagent-adk static` does."""

import json
from pathlib import Path

from kagent.adk.types import AgentConfig

_config = AgentConfig.model_validate(json.loads((Path(__file__).parent / "config.json").read_text()))
root_agent = _config.to_agent(Path(__file__).parent.name)
'''


def _kagent_env(namespace: str) -> list[dict[str, Any]]:
    name, ns, port = KAGENT_CONTROLLER
    return [
        {"name": "KAGENT_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "KAGENT_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
        {"name": "KAGENT_URL", "value": f"http://{name}.{ns}:{port}"},
    ]


def _workload(agent: dict[str, Any], container: dict[str, Any], volumes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    name, namespace = agent["metadata"]["name"], agent["metadata"]["namespace"]
    labels = {"app": "kagent", "kagent": name}
    container = {
        "name": "kagent",
        "ports": [{"name": "http", "containerPort": KAGENT_AGENT_PORT}],
        "readinessProbe": {"httpGet": {"path": "/.well-known/agent-card.json", "port": "http"}},
        **container,
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"serviceAccountName": name, "containers": [container], "volumes": volumes},
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "selector": labels,
            "ports": [{"name": "http", "port": KAGENT_AGENT_PORT, "targetPort": KAGENT_AGENT_PORT}],
        },
    }
    return [deployment, service]


def kagent_workloads(objects: list[dict[str, Any]], work: Path, kagent_version: str = "0.10.4") -> list[dict[str, Any]]:
    """The Deployments and Services kagent's controller would create for the rendering's Agents."""
    by_name = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    made: list[dict[str, Any]] = []
    for agent in (o for o in objects if o["kind"] == "Agent"):
        spec, name = agent["spec"], agent["metadata"]["name"]
        namespace = agent["metadata"]["namespace"]
        if spec["type"] == "BYO":
            dep = spec["byo"]["deployment"]
            container: dict[str, Any] = {
                "image": dep["image"],
                "env": [*(dep.get("env") or []), *_kagent_env(namespace)],
                "volumeMounts": dep.get("volumeMounts") or [],
            }
            if dep.get("cmd"):
                container["command"] = [dep["cmd"]]
            if dep.get("args"):
                container["args"] = dep["args"]
            made += _workload(agent, container, dep.get("volumes") or [])
            continue
        declarative = spec["declarative"]
        model = by_name.get(("ModelConfig", declarative["modelConfig"]))
        if model is None:
            raise ClusterError(f"Agent {name}: ModelConfig {declarative['modelConfig']!r} is not in the manifests")
        if model["spec"]["provider"] != "OpenAI":
            raise ClusterError(f"Agent {name}: only provider OpenAI is emulated here")
        module = name.replace("-", "_")
        config = {
            "model": {
                "type": "openai",
                "model": model["spec"]["model"],
                "base_url": model["spec"]["openAI"]["baseUrl"],
            },
            "description": spec.get("description", ""),
            "instruction": declarative["systemMessage"],
        }
        card = {
            "name": module,
            "description": spec.get("description", ""),
            "url": f"http://{name}.{namespace}:{KAGENT_AGENT_PORT}",
            "version": "0.1.0",
            "protocolVersion": "0.3.0",
            "capabilities": {"streaming": True, "pushNotifications": False, "stateTransitionHistory": True},
            "defaultInputModes": ["text"],
            "defaultOutputModes": ["text"],
            "skills": (declarative.get("a2aConfig") or {}).get("skills") or [],
        }
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": f"{name}-kagent-config", "namespace": namespace},
            "stringData": {
                "config.json": json.dumps(config),
                "agent-card.json": json.dumps(card),
                "agent.py": AGENT_PY,
            },
        }
        env = [*_kagent_env(namespace), {"name": "OTEL_TRACING_ENABLED", "value": "false"}]
        if model["spec"].get("apiKeySecret"):
            key_ref = {"name": model["spec"]["apiKeySecret"], "key": model["spec"]["apiKeySecretKey"]}
            env.append({"name": "OPENAI_API_KEY", "valueFrom": {"secretKeyRef": key_ref}})
        workdir = f"/kagent-agents/{name}"
        env.append({"name": "PYTHONPATH", "value": workdir})
        container = {
            "image": f"{KAGENT_RUNTIME_IMAGE}:{kagent_version}",
            "command": ["kagent-adk", "run", module, "--local", "--working-dir", workdir],
            "args": ["--host", "0.0.0.0", "--port", str(KAGENT_AGENT_PORT)],
            "env": env,
            "volumeMounts": [
                {"name": "agents", "mountPath": workdir},
                {"name": "config", "mountPath": f"{workdir}/{module}"},
            ],
        }
        volumes = [
            {"name": "agents", "emptyDir": {}},
            {"name": "config", "secret": {"secretName": secret["metadata"]["name"]}},
        ]
        made += [secret, *_workload(agent, container, volumes)]
    return made


class KagentController:
    """kagent's A2A endpoint on ``ip:8083``: ``/api/a2a/<namespace>/<agent>/`` -> ``http://<agent>.<ns>:8080/``."""

    def __init__(self, cluster: LocalCluster, ip: str) -> None:
        self.cluster = cluster
        self.ip = ip
        self.port = KAGENT_CONTROLLER[2]
        self.requests: list[tuple[str, str]] = []  # (method, path) seen
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def agent_url(self, namespace: str, name: str) -> str:
        ip = self.cluster.net.addresses.get(f"{name}.{namespace}")
        if ip is None:
            raise KeyError(f"{namespace}/{name}")
        target = self.cluster.net.dial(ip, KAGENT_AGENT_PORT)
        return f"http://{target[0]}:{target[1]}/"

    def card(self, namespace: str, name: str) -> dict[str, Any]:
        agent = self.cluster.manifests.get("Agent", name)
        public = f"http://{KAGENT_CONTROLLER[0]}.{KAGENT_CONTROLLER[1]}:{self.port}/api/a2a/{namespace}/{name}/"
        skills = ((agent["spec"].get("declarative") or {}).get("a2aConfig") or {}).get("skills") or []
        return {
            "name": name.replace("-", "_"),
            "description": agent["spec"].get("description", ""),
            "url": public,
            "version": "0.1.0",
            "protocolVersion": "0.3.0",
            "capabilities": {"streaming": True, "pushNotifications": False, "stateTransitionHistory": True},
            "defaultInputModes": ["text"],
            "defaultOutputModes": ["text"],
            "skills": skills,
        }

    def app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
        from starlette.routing import Route

        async def a2a(request: Request) -> Any:
            namespace, name = request.path_params["namespace"], request.path_params["name"]
            rest = request.path_params.get("rest", "")
            self.requests.append((request.method, request.url.path))
            try:
                upstream = self.agent_url(namespace, name)
            except KeyError:
                return JSONResponse({"error": f"agent {namespace}/{name} not found"}, status_code=404)
            if request.method == "GET" and rest.startswith(".well-known/"):
                return JSONResponse(self.card(namespace, name))
            body = await request.body()
            client = httpx.AsyncClient(timeout=httpx.Timeout(300, connect=10))
            req = client.build_request(
                request.method, upstream + rest, content=body,
                headers={k: v for k, v in request.headers.items() if k.lower() in FORWARDED_HEADERS},
            )  # fmt: skip
            resp = await client.send(req, stream=True)

            async def relay() -> Iterator[bytes]:  # type: ignore[misc]
                try:
                    async for chunk in resp.aiter_raw():
                        yield chunk
                finally:
                    await resp.aclose()
                    await client.aclose()

            headers = {k: v for k, v in resp.headers.items() if k.lower() in ("content-type", "cache-control")}
            return StreamingResponse(relay(), status_code=resp.status_code, headers=headers)

        async def health(_request: Request) -> Any:
            return PlainTextResponse("ok")

        methods = ["GET", "POST"]
        return Starlette(
            routes=[
                Route("/health", health),
                Route("/api/a2a/{namespace}/{name}", a2a, methods=methods),
                Route("/api/a2a/{namespace}/{name}/{rest:path}", a2a, methods=methods),
            ]
        )

    def start(self) -> KagentController:
        import uvicorn

        config = uvicorn.Config(self.app(), host=self.ip, port=self.port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=lambda: asyncio.run(self._server.serve()), daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise ClusterError(f"kagent controller stand-in did not start on {self.ip}:{self.port}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
