"""Run rendered Kubernetes manifests as local processes: a stand-in cluster for the manifest smoke test.

There is no cluster and no container engine here, so :class:`LocalCluster` does what the kubelet, kube-proxy,
CoreDNS and kagent's controller would do, for the objects of one rendering (``kubectl kustomize``):

- **Pods.** Each Deployment/StatefulSet/Job (and the Deployment kagent makes from each ``Agent``) runs its
  container's ``command``/``args`` with its ``env``/``envFrom`` (ConfigMap and Secret keys resolved, ``fieldRef``
  answered, ``$(VAR)`` expanded as Kubernetes does) as one local process. The program comes from the image it names:
  the project image (built from ``deploy/image/Containerfile`` by :mod:`tests.support.image`), Llama Stack's image
  (the Llama Stack venv, ``.venvs/llama``), kagent's runtime image (``.venvs/kagent``). Volume mounts are folders;
  ConfigMap/Secret volumes hold their keys as files.
- **Network.** Every Service gets its own loopback address (``127.a.b.c``, random per run) and its pods listen on
  it, on the ports the manifests say (a Service port that differs from its target port gets a TCP forwarder).
  DNS names in host positions (``mlflow``, ``mlflow:5000``, ``mlflow.ns.svc.cluster.local``, ``http://mlflow``)
  are rewritten to those addresses in env values, arguments and mounted files; ``0.0.0.0`` (listen everywhere)
  becomes the pod's address. A name:port that no Service or stand-in serves fails the run: that is a wrong port.
  ``MLFLOW_SERVER_ALLOWED_HOSTS`` gets the addresses next to the names it lists (in a cluster the Host header is
  the DNS name).
- **Stand-ins** for what cannot run here: the PostgreSQL StatefulSet is the machine's PostgreSQL (a fresh database
  and the Secret's role); the MinIO StatefulSet is a moto S3 server (no MinIO binary can be installed here; moto
  speaks the same S3 API but not MinIO's admin or health endpoints, so its probe paths are checked against MinIO's
  documented ones instead of being requested); names outside the manifests (the model endpoint behind
  ``VLLM_URL``) are mapped by the test to local servers; kagent's controller is a small proxy that serves
  ``/api/a2a/<namespace>/<agent>/`` as kagent does (forwarding JSON-RPC to ``http://<agent>.<namespace>:8080/``).
- **Probes.** ``readinessProbe`` (``httpGet``/``tcpSocket``) is polled until it answers, or the process exits.
"""

from __future__ import annotations

import base64
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support.containerfile import Image

REPO = Path(__file__).resolve().parents[2]
PROJECT_IMAGE = "ghcr.io/kagent-mlflow/kagent-mlflow"
LLAMA_STACK_IMAGES = ("llamastack/distribution-",)
KAGENT_CONTROLLER = ("kagent-controller", "kagent", 8083)  # name, namespace, port (kagent's install)
KAGENT_AGENT_PORT = 8080  # kagent's controller gives every agent's pod and Service this port
MINIO_PROBE_PATHS = ("/minio/health/live", "/minio/health/ready", "/minio/health/cluster")
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job")
READY_TIMEOUT_S = float(os.environ.get("KAGENT_MLFLOW_TEST_SMOKE_READY_TIMEOUT", "600"))


class ClusterError(AssertionError):
    """The manifests cannot run as written (a missing reference, an unknown port, a process that died...)."""


def render(overlay: str) -> list[dict[str, Any]]:
    """``kubectl kustomize deploy/overlays/<overlay>`` as a list of objects."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise ClusterError("kubectl is not installed")
    done = subprocess.run(
        [kubectl, "kustomize", str(REPO / "deploy" / "overlays" / overlay)], capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        raise ClusterError(f"kubectl kustomize {overlay} failed: {done.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


# ---------------------------------------------------------------------------------------------------------------------
# Objects and values
# ---------------------------------------------------------------------------------------------------------------------


class Manifests:
    """The rendered objects, looked up by kind and name (one namespace per rendering is assumed, as ours have)."""

    def __init__(self, objects: list[dict[str, Any]]) -> None:
        self.objects = objects
        spaces = {o["metadata"].get("namespace") for o in objects if o["metadata"].get("namespace")}
        if len(spaces) > 1:
            raise ClusterError(f"objects in several namespaces: {sorted(spaces)}")
        self.namespace = spaces.pop() if spaces else "default"

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        for obj in self.of_kind(kind):
            if obj["metadata"]["name"] == name:
                return obj
        raise ClusterError(f"{kind} {name!r} is referenced but not in the manifests")

    def key(self, kind: str, name: str, key: str) -> str:
        """One key of a ConfigMap or Secret (``data`` base64-decoded for Secrets, ``stringData`` as is)."""
        obj = self.get(kind, name)
        values = self.keys(obj)
        if key not in values:
            raise ClusterError(f"{kind} {name!r} has no key {key!r} (has {sorted(values)})")
        return values[key]

    @staticmethod
    def keys(obj: dict[str, Any]) -> dict[str, str]:
        values: dict[str, str] = {}
        if obj["kind"] == "Secret":
            values.update({k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()})
            values.update({k: str(v) for k, v in (obj.get("stringData") or {}).items()})
        else:
            values.update({k: str(v) for k, v in (obj.get("data") or {}).items()})
        return values

    def services_for(self, labels: dict[str, str]) -> list[dict[str, Any]]:
        """Services whose selector matches these pod labels."""
        return [
            s
            for s in self.of_kind("Service")
            if s["spec"].get("selector") and all(labels.get(k) == v for k, v in s["spec"]["selector"].items())
        ]


_K8S_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand_k8s(text: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion in command, args and env values (``$$`` escapes; unknown names stay)."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return _K8S_VAR.sub(one, text)


def container_env(manifests: Manifests, container: dict[str, Any], fields: dict[str, str]) -> dict[str, str]:
    """The environment Kubernetes gives the container: ``envFrom`` first, then ``env`` in order."""
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            obj = manifests.get("ConfigMap", source["configMapRef"]["name"])
        else:
            obj = manifests.get("Secret", source["secretRef"]["name"])
        env.update({prefix + k: v for k, v in Manifests.keys(obj).items()})
    for item in container.get("env") or []:
        name = item["name"]
        if "value" in item:
            env[name] = expand_k8s(str(item["value"]), env)
            continue
        source = item.get("valueFrom") or {}
        if "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            env[name] = manifests.key("ConfigMap", ref["name"], ref["key"])
        elif "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            env[name] = manifests.key("Secret", ref["name"], ref["key"])
        elif "fieldRef" in source:
            path = source["fieldRef"]["fieldPath"]
            if path not in fields:
                raise ClusterError(f"env {name}: fieldRef {path} is not emulated")
            env[name] = fields[path]
        else:
            env[name] = ""
    return env


# ---------------------------------------------------------------------------------------------------------------------
# Network: loopback addresses for Services, DNS names rewritten where they stand as hosts
# ---------------------------------------------------------------------------------------------------------------------


def _random_block() -> str:
    """A random 127.a.b.0/24 (the whole 127/8 is loopback on Linux), so runs on one machine do not meet."""
    return f"127.{random.randint(10, 250)}.{random.randint(1, 250)}"


class Network:
    """Host names (and their ports) -> local addresses. ``rewrite`` applies it to any text a program reads."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.block = _random_block()
        self.next_host = 10
        self.addresses: dict[str, str] = {}  # DNS name -> local IP
        self.ports: dict[tuple[str, int], tuple[str, int]] = {}  # (IP, port) as named -> (host, port) to dial

    def allocate(self) -> str:
        self.next_host += 1
        return f"{self.block}.{self.next_host}"

    def add_service(self, name: str, namespace: str, ip: str, ports: dict[int, tuple[str, int]]) -> None:
        """Register ``name`` (and its longer DNS forms) at ``ip``; ``ports``: Service port -> where it is served."""
        for dns in (f"{name}.{namespace}.svc.cluster.local", f"{name}.{namespace}.svc", f"{name}.{namespace}"):
            self.addresses[dns] = ip
        if namespace == self.namespace:
            self.addresses[name] = ip
        for port, target in ports.items():
            self.ports[(ip, port)] = target

    def add_external(self, host: str, port: int, target: tuple[str, int]) -> None:
        """A name outside the manifests (e.g. the model endpoint) served by a local server at ``target``."""
        ip = self.addresses.get(host) or self.allocate()
        self.addresses[host] = ip
        self.ports[(ip, port)] = target

    def dial(self, ip: str, port: int) -> tuple[str, int]:
        return self.ports.get((ip, port), (ip, port))

    def _host_pattern(self) -> re.Pattern[str]:
        names = sorted(self.addresses, key=len, reverse=True)
        alternatives = "|".join(re.escape(n) for n in names)
        # a host after scheme:// (optionally user:pass@), or a bare name:port
        return re.compile(
            rf"(?P<pre>(?<![\w.-])(?:[a-z][a-z0-9+.-]*://(?:[^/@\s]*@)?)?)(?P<host>{alternatives})"
            rf"(?P<port>:\d+)?(?![\w.-])"
        )

    def rewrite(self, text: str, pod_ip: str | None = None) -> str:
        """DNS names -> addresses (where they stand as hosts); ``0.0.0.0`` -> the pod's own address."""
        if not self.addresses:
            return text
        pattern = self._host_pattern()

        def one(match: re.Match[str]) -> str:
            pre, host, port = match.group("pre"), match.group("host"), match.group("port")
            is_url = "://" in pre
            if not is_url and not port:
                return match.group(0)  # a bare word ("mlflow server", a bucket name): not a host
            if pre.startswith("s3://"):
                return match.group(0)  # s3://<bucket>/...
            ip = self.addresses[host]
            if port:
                number = int(port[1:])
                target = self.ports.get((ip, number))
                if target is None:
                    served = sorted(p for (i, p) in self.ports if i == ip)
                    raise ClusterError(f"{host}{port} in {text!r}: nothing listens on port {number} (has {served})")
                return f"{pre}{target[0]}:{target[1]}"
            return f"{pre}{ip}"

        text = pattern.sub(one, text)
        if pod_ip:
            text = re.sub(r"(?<![\d.])0\.0\.0\.0(?![\d.])", pod_ip, text)
        return text

    def rewrite_allowed_hosts(self, value: str) -> str:
        """MLflow's Host-header allow list: add each listed name's address (``name``, ``name:*``)."""
        items = [item.strip() for item in value.split(",") if item.strip()]
        extra = []
        for item in items:
            host, _, port = item.partition(":")
            if host in self.addresses:
                extra.append(self.addresses[host] + (f":{port}" if port else ""))
        return ",".join(dict.fromkeys(items + extra))


# ---------------------------------------------------------------------------------------------------------------------
# Pods
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class Pod:
    """One running container of a workload."""

    kind: str
    name: str
    ip: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    container: dict[str, Any]
    process: subprocess.Popen[bytes] | None = None
    ready_url: str | None = None  # what was polled

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        proc = self.process
        if proc is None:
            return
        for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        self.process = None


@dataclass
class Runtime:
    """What runs a container of some image here: a PATH and, for the project image, the built image itself."""

    path: list[Path] = field(default_factory=list)
    image: Image | None = None


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    return workload["spec"]["template"].get("metadata", {}).get("labels", {})


def container_port(container: dict[str, Any], port: int | str) -> int:
    """A probe's or Service's ``port``/``targetPort``: a number, or the name of one of the container's ports."""
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for item in container.get("ports") or []:
        if item.get("name") == port:
            return int(item["containerPort"])
    raise ClusterError(f"container {container['name']!r} has no port named {port!r}")


class LocalCluster:
    """Runs one rendering here (see the module doc). Call :meth:`stop` at the end."""

    def __init__(self, objects: list[dict[str, Any]], work: Path, runtimes: dict[str, Runtime]) -> None:
        self.manifests = Manifests(objects)
        self.net = Network(self.manifests.namespace)
        self.work = work
        self.runtimes = runtimes
        self.pods: dict[str, Pod] = {}
        self.stoppers: list[Callable[[], None]] = []
        self.service_ips: dict[str, str] = {}
        self.value_rewrites: list[Callable[[str], str]] = []  # after the DNS rewrite (e.g. a fresh DB name)
        work.mkdir(parents=True, exist_ok=True)

    # -- wiring ---------------------------------------------------------------------------------------------------

    def route_services(self, workloads: list[dict[str, Any]]) -> None:
        """Give every Service an address; its pods listen there (one replica each)."""
        for svc in self.manifests.of_kind("Service"):
            name = svc["metadata"]["name"]
            ip = self.net.allocate()
            self.service_ips[name] = ip
            backends = [w for w in workloads if svc["spec"].get("selector") and svc in self.manifests.services_for(
                pod_labels(w))]  # fmt: skip
            ports: dict[int, tuple[str, int]] = {}
            for item in svc["spec"]["ports"]:
                target: int | str = item.get("targetPort", item["port"])
                if backends:
                    containers = pod_spec(backends[0])["containers"]
                    numbers = {container_port(c, target) for c in containers if self._has_port(c, target)}
                    if not numbers:
                        raise ClusterError(f"Service {name}: targetPort {target!r} is no port of its pods")
                    target = numbers.pop()
                ports[int(item["port"])] = (ip, int(target))
            self.net.add_service(name, self.manifests.namespace, ip, ports)

    @staticmethod
    def _has_port(container: dict[str, Any], port: int | str) -> bool:
        try:
            number = container_port(container, port)
        except ClusterError:
            return False
        return isinstance(port, int) or str(port).isdigit() or number > 0

    def forward_service_ports(self) -> None:
        """Where a Service port differs from its target port, forward it (kube-proxy's job)."""
        from tests.support.storage import TcpProxy

        for (ip, port), (target_ip, target_port) in list(self.net.ports.items()):
            if target_ip == ip and target_port != port:
                proxy = TcpProxy(target_ip, target_port, listen_host=ip, port=port).start()
                self.stoppers.append(proxy.stop)

    def ip_of(self, workload: dict[str, Any]) -> str:
        """The pod's address: its Service's, or a fresh one for pods no Service selects (Jobs)."""
        services = self.manifests.services_for(pod_labels(workload))
        if services:
            return self.service_ips[services[0]["metadata"]["name"]]
        return self.net.allocate()

    # -- running a container --------------------------------------------------------------------------------------

    def runtime_for(self, image: str) -> Runtime:
        repo = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
        for prefix, runtime in self.runtimes.items():
            if repo == prefix or repo.endswith("/" + prefix) or prefix in repo:
                return runtime
        raise ClusterError(f"no local runtime for image {image!r}")

    def set_key(self, kind: str, name: str, key: str, value: str) -> None:
        """Change one ConfigMap/Secret key for every consumer (e.g. the fresh database's name)."""
        obj = self.manifests.get(kind, name)
        (obj.get("data") or {}).pop(key, None)
        obj.setdefault("stringData" if kind == "Secret" else "data", {})[key] = value

    def rewrite(self, text: str, ip: str, mounts: dict[str, Path] | None = None) -> str:
        """What a program here reads instead of ``text``: addresses for names, folders for mounted paths."""
        text = self.net.rewrite(text, ip)
        for rewrite in self.value_rewrites:
            text = rewrite(text)
        return self.map_paths(text, mounts) if mounts else text

    def mounts(self, workload_name: str, spec: dict[str, Any], container: dict[str, Any], ip: str) -> dict[str, Path]:
        """Each volume mount as a folder: ConfigMap/Secret keys as files (rewritten like env values)."""
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        claims = {t["metadata"]["name"] for t in (spec.get("_volumeClaimTemplates") or [])}
        mounts: dict[str, Path] = {}
        for mount in sorted(container.get("volumeMounts") or [], key=lambda m: len(m["mountPath"])):
            parents = [p for p in mounts if mount["mountPath"].startswith(p.rstrip("/") + "/")]
            if parents:  # a mount inside another one is a folder inside the other's
                parent = max(parents, key=len)
                folder = mounts[parent] / mount["mountPath"][len(parent.rstrip("/")) + 1 :]
            else:
                folder = self.work / workload_name / "volumes" / mount["name"]
            folder.mkdir(parents=True, exist_ok=True)
            volume = volumes.get(mount["name"])
            if volume is None and mount["name"] not in claims:
                raise ClusterError(f"{workload_name}: volumeMount {mount['name']!r} names no volume")
            source = None
            if volume and "configMap" in volume:
                source = Manifests.keys(self.manifests.get("ConfigMap", volume["configMap"]["name"]))
            elif volume and "secret" in volume:
                source = Manifests.keys(self.manifests.get("Secret", volume["secret"]["secretName"]))
            elif volume and "persistentVolumeClaim" in volume:
                self.manifests.get("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
            for key, text in (source or {}).items():
                (folder / key).write_text(self.rewrite(text, ip))
            target = folder / mount["subPath"] if mount.get("subPath") else folder
            mounts[mount["mountPath"]] = target
        return mounts

    @staticmethod
    def map_paths(text: str, mounts: dict[str, Path]) -> str:
        """Container paths under a mount -> the mount's folder here (one pass: a result is never mapped again)."""
        if not mounts:
            return text
        by_path = {m.rstrip("/") or "/": folder for m, folder in mounts.items()}
        alternatives = "|".join(re.escape(m) for m in sorted(by_path, key=len, reverse=True))
        pattern = re.compile(rf"(?<![\w./-])({alternatives})(?=/|$|[\s\"':;,}}])")
        return pattern.sub(lambda match: str(by_path[match.group(1)]), text)

    def start_container(self, workload: dict[str, Any], *, extra_env: dict[str, str] | None = None) -> Pod:
        """Start the workload's (first) container as a process on its pod address."""
        name = workload["metadata"]["name"]
        spec = dict(pod_spec(workload))
        spec["_volumeClaimTemplates"] = workload["spec"].get("volumeClaimTemplates") or []
        container = spec["containers"][0]
        ip = self.ip_of(workload)
        fields = {
            "metadata.name": f"{name}-0",
            "metadata.namespace": self.manifests.namespace,
            "status.podIP": ip,
            "spec.serviceAccountName": spec.get("serviceAccountName", name),
        }
        env = container_env(self.manifests, container, fields)
        mounts = self.mounts(name, spec, container, ip)
        runtime = self.runtime_for(container["image"])
        home = self.work / name / "container-tmp"
        base_env: dict[str, str] = {"PATH": os.pathsep.join([*map(str, runtime.path), "/usr/bin", "/bin"])}
        if runtime.image is not None:
            base_env = runtime.image.env(home)
        for key, value in env.items():
            value = self.rewrite(value, ip, mounts)
            if key == "MLFLOW_SERVER_ALLOWED_HOSTS":
                value = self.net.rewrite_allowed_hosts(env[key])
            base_env[key] = value
        base_env.update(extra_env or {})
        command = [self.rewrite(expand_k8s(a, env), ip, mounts) for a in container.get("command") or []]
        args = [self.rewrite(expand_k8s(a, env), ip, mounts) for a in container.get("args") or []]
        if runtime.image is not None:
            argv = runtime.image.argv(base_env, command or None, args if "args" in container else None)
            cwd = runtime.image.workdir(home)
        else:
            if not command:
                raise ClusterError(f"{name}: image {container['image']} needs an explicit command here")
            found = shutil.which(command[0], path=base_env["PATH"])
            if found is None:
                raise ClusterError(f"{name}: {command[0]!r} not found for image {container['image']}")
            argv = [found, *command[1:], *args]
            cwd = self.work / name
        log_path = self.work / name / "output.log"
        pod = Pod(workload["kind"], name, ip, argv, base_env, log_path, container)
        with log_path.open("ab") as log:
            pod.process = subprocess.Popen(
                argv, cwd=cwd, env=base_env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        self.pods[name] = pod
        return pod

    # -- readiness -------------------------------------------------------------------------------------------------

    def wait_ready(self, pod: Pod, timeout: float = READY_TIMEOUT_S) -> None:
        """Poll the readiness probe (``httpGet`` or ``tcpSocket``) until it answers; fail if the process exits."""
        probe = pod.container.get("readinessProbe") or pod.container.get("startupProbe")
        if probe is None:
            raise ClusterError(f"{pod.name} has no readinessProbe")
        deadline = time.monotonic() + timeout
        while True:
            if pod.process is None or pod.process.poll() is not None:
                code = None if pod.process is None else pod.process.returncode
                raise ClusterError(f"{pod.kind} {pod.name} exited ({code}) before ready:\n{pod.log_tail()}")
            if self.probe(pod, probe):
                return
            if time.monotonic() > deadline:
                raise ClusterError(f"{pod.kind} {pod.name} not ready after {timeout:.0f} s:\n{pod.log_tail()}")
            time.sleep(0.5)

    def probe(self, pod: Pod, probe: dict[str, Any]) -> bool:
        if "httpGet" in probe:
            get = probe["httpGet"]
            port = container_port(pod.container, get["port"])
            pod.ready_url = f"http://{pod.ip}:{port}{get.get('path', '/')}"
            try:
                return 200 <= httpx.get(pod.ready_url, timeout=5).status_code < 400
            except httpx.HTTPError:
                return False
        if "tcpSocket" in probe:
            port = container_port(pod.container, probe["tcpSocket"]["port"])
            try:
                socket.create_connection((pod.ip, port), timeout=2).close()
                return True
            except OSError:
                return False
        raise ClusterError(f"{pod.name}: probe {sorted(probe)} is not emulated")

    def run_to_completion(self, workload: dict[str, Any], timeout: float = 300, **kwargs: Any) -> Pod:
        """Run a Job's container and wait for it to exit 0."""
        pod = self.start_container(workload, **kwargs)
        assert pod.process is not None
        try:
            code = pod.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pod.stop()
            raise ClusterError(f"Job {pod.name} still running after {timeout:.0f} s:\n{pod.log_tail()}") from None
        if code != 0:
            raise ClusterError(f"Job {pod.name} exited with {code}:\n{pod.log_tail()}")
        return pod

    def stop(self) -> None:
        for pod in reversed(list(self.pods.values())):
            pod.stop()
        for stop in reversed(self.stoppers):
            try:
                stop()
            except Exception:  # noqa: BLE001 - best effort at teardown
                pass
