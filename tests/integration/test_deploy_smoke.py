"""Manifest smoke test: the rendered ``full`` overlay, run here as local processes (no cluster, no engine).

``kubectl kustomize deploy/overlays/full`` is run through :class:`tests.support.cluster.LocalCluster`: every
Deployment/StatefulSet/Job starts its container's command/args with its env (ConfigMaps and Secrets resolved,
Service names mapped to local addresses, the ports as written), from the image it names (the project image built
from ``deploy/image/Containerfile``, Llama Stack's venv, kagent's runtime), and must pass its readiness probe.
PostgreSQL is the machine's (a fresh database), MinIO is moto's S3 server, the model behind ``VLLM_URL`` is the
deterministic model server, and kagent's controller is a stand-in that runs each ``Agent`` as kagent would and
serves ``/api/a2a/<ns>/<agent>/``. Then what a user would do: the Pattern 1 Job asks ``rh-analyze-simple``
through kagent's URL and its run (metrics, artifacts as S3 objects) is read back from the smoke MLflow; the
Pattern 2 example client asks the Agent Server, whose trace is read back too; and the Job's command asks the BYO
Agent Server over A2A through kagent. This proves the commands, flags, env names, ports and probe paths.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.support.cluster import (
    KAGENT_CONTROLLER,
    WORKLOAD_KINDS,
    LocalCluster,
    Runtime,
    render,
)
from tests.support.cluster_standins import (
    KAGENT_RUNTIME_IMAGE,
    KagentController,
    kagent_workloads,
    start_moto_for_minio,
    use_local_postgres,
)
from tests.support.containerfile import Image
from tests.support.kagent_runtime import kagent_venv
from tests.support.llama_stack import llama_venv
from tests.support.model_server import ModelServerClient, start_subprocess, stop_subprocess
from tests.support.storage import require

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.timeout(1800)]

REPO = Path(__file__).resolve().parents[2]
ANSWER = "OpenShift is Red Hat's Kubernetes platform."
PODS_ANSWER = "Two pods run in prod."


@dataclass
class Smoke:
    cluster: LocalCluster
    model: ModelServerClient
    controller: KagentController
    s3_bucket: str

    def url(self, service: str, port: int) -> str:
        ip = self.cluster.service_ips[service]
        host, number = self.cluster.net.dial(ip, port)
        return f"http://{host}:{number}"

    def env_of(self, workload: str) -> dict[str, str]:
        return self.cluster.pods[workload].env


def _is_postgres(workload: dict[str, Any]) -> bool:
    return "postgres" in workload["spec"]["template"]["spec"]["containers"][0]["image"].rsplit("/", 1)[-1]


def _is_minio(workload: dict[str, Any]) -> bool:
    return "minio/minio" in workload["spec"]["template"]["spec"]["containers"][0]["image"]


def _model_endpoint(cluster: LocalCluster) -> tuple[str, int, str]:
    """Host, port and model id the manifests expect of the model endpoint (VLLM_URL, the agents' model)."""
    config = cluster.manifests.get("ConfigMap", "llama-stack")
    url = urlsplit(cluster.manifests.keys(config)["VLLM_URL"])
    model = cluster.manifests.of_kind("ModelConfig")[0]["spec"]["model"]  # "vllm/<id>" as Llama Stack lists it
    return url.hostname or "", url.port or 80, model.split("/", 1)[-1]


@pytest.fixture(scope="module")
def smoke(project_image: Image, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Smoke]:
    for venv, script in ((llama_venv(), "setup-llama-stack.sh"), (kagent_venv(), "setup-kagent-runtime.sh")):
        if not (venv / "bin" / "python").exists():
            require(f"no venv at {venv} (run scripts/{script})")
    work = tmp_path_factory.mktemp("smoke")
    objects = render("full")
    objects += kagent_workloads(objects, work)
    runtimes = {
        "ghcr.io/kagent-mlflow/kagent-mlflow": Runtime(image=project_image),
        "llamastack/distribution-": Runtime(path=[llama_venv() / "bin"]),
        KAGENT_RUNTIME_IMAGE: Runtime(path=[kagent_venv() / "bin"]),
    }
    cluster = LocalCluster(objects, work, runtimes)
    model: ModelServerClient | None = None
    try:
        workloads = [o for o in objects if o["kind"] in WORKLOAD_KINDS]
        cluster.route_services(workloads)
        # names outside the manifests: the model endpoint and kagent's controller
        host, port, model_id = _model_endpoint(cluster)
        model = start_subprocess(extra_args=["--model", model_id])
        model_url = urlsplit(model.root)
        cluster.net.add_external(host, port, (model_url.hostname or "", model_url.port or 80))
        name, namespace, ctrl_port = KAGENT_CONTROLLER
        controller = KagentController(cluster, cluster.net.allocate())
        cluster.net.add_service(name, namespace, controller.ip, {ctrl_port: (controller.ip, ctrl_port)})
        cluster.stoppers.append(controller.start().stop)
        # stand-ins for the state stores, then the bucket Job, then the servers
        jobs = [w for w in workloads if w["kind"] == "Job"]
        servers = [w for w in workloads if w["kind"] != "Job"]
        for workload in [w for w in servers if _is_postgres(w)]:
            use_local_postgres(cluster, workload)
        for workload in [w for w in servers if _is_minio(w)]:
            start_moto_for_minio(cluster, workload)
        cluster.forward_service_ports()
        bucket_jobs = [j for j in jobs if "bucket" in j["metadata"]["name"]]
        assert bucket_jobs, "no Job creates the MinIO bucket"
        for job in bucket_jobs:
            cluster.run_to_completion(job)
        bucket = cluster.pods[bucket_jobs[0]["metadata"]["name"]].env["S3_BUCKET"]
        started = [cluster.start_container(w) for w in servers if not (_is_postgres(w) or _is_minio(w))]
        for pod in started:
            cluster.wait_ready(pod)
        yield Smoke(cluster=cluster, model=model, controller=controller, s3_bucket=bucket)
    finally:
        cluster.stop()
        if model is not None:
            stop_subprocess(model)


def run_job(smoke: Smoke, name: str, **env: str) -> dict[str, Any]:
    """Run a Job of the manifests (as ``kubectl create job --from``) and parse its ``--json`` output."""
    workload = smoke.cluster.manifests.get("Job", name)
    pod = smoke.cluster.run_to_completion(workload, extra_env=env or None)
    out = pod.log_path.read_text()
    line = [ln for ln in out.splitlines() if ln.startswith("{")][-1]
    return json.loads(line)


def mlflow_client(smoke: Smoke) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=smoke.url("mlflow", 5000))


def s3_client(smoke: Smoke) -> Any:
    import boto3

    env = smoke.env_of("mlflow")
    return boto3.client(
        "s3",
        endpoint_url=env["MLFLOW_S3_ENDPOINT_URL"],
        region_name=env.get("AWS_DEFAULT_REGION", "us-east-1"),
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )


def wait_for(check: Any, what: str, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not there after {timeout:.0f} s")
        time.sleep(0.5)


def test_every_server_is_ready_on_its_probe(smoke: Smoke) -> None:
    pods = smoke.cluster.pods
    for name in ("mlflow", "llama-stack", "agent-server", "rh-analyze-simple", "mlflow-agent-server"):
        assert name in pods, sorted(pods)
        assert pods[name].process is not None and pods[name].process.poll() is None, pods[name].log_tail()
    assert pods["mlflow"].ready_url and pods["mlflow"].ready_url.endswith(":5000/health")
    assert pods["agent-server"].ready_url and pods["agent-server"].ready_url.endswith(":8000/health")
    assert pods["llama-stack"].ready_url and pods["llama-stack"].ready_url.endswith(":8321/v1/health")


def test_pattern1_job_logs_the_run_with_metrics_and_s3_artifacts(smoke: Smoke) -> None:
    smoke.model.set_script([{"match": "openshift", "reply": ANSWER}])
    result = run_job(smoke, "kagent-mlflow-ask")
    assert result["answer"] == ANSWER, result
    assert result.get("run_id"), result
    # through kagent's URL to the Declarative agent
    assert any("/api/a2a/" in path and "rh-analyze-simple" in path for _m, path in smoke.controller.requests)
    client = mlflow_client(smoke)
    run = client.get_run(result["run_id"])
    assert run.info.status == "FINISHED"
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == smoke.env_of("kagent-mlflow-ask")["MLFLOW_EXPERIMENT_NAME"]
    metrics = run.data.metrics
    assert metrics["latency_ms"] > 0
    assert metrics["input_tokens"] > 0 and metrics["output_tokens"] > 0, metrics
    assert metrics["total_tokens"] == metrics["input_tokens"] + metrics["output_tokens"]
    secrets = [v for s in smoke.cluster.manifests.of_kind("Secret") for v in smoke.cluster.manifests.keys(s).values()]
    logged = json.dumps([run.data.tags, run.data.params])
    assert not [v for v in secrets if len(v) >= 8 and v in logged], "a Secret value was logged to MLflow"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert artifacts, "no artifacts logged"
    listed = s3_client(smoke).list_objects_v2(Bucket=smoke.s3_bucket)
    keys = [o["Key"] for o in listed.get("Contents", [])]
    for path in artifacts:
        assert any(key.endswith(f"/{run.info.run_id}/artifacts/{path}") for key in keys), (path, keys)


def test_pattern2_example_client_answers_and_the_agent_server_traces(smoke: Smoke) -> None:
    smoke.model.set_script([{"match": "pods", "reply": PODS_ANSWER}])
    url = smoke.url("agent-server", 8000)
    env = {**os.environ, "AGENT_SERVER_URL": url}
    done = subprocess.run(
        [sys.executable, str(REPO / "examples" / "clients" / "httpx_client.py"), "Which pods run in prod?"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"answer: {PODS_ANSWER}" in done.stdout
    client = mlflow_client(smoke)
    experiment_name = smoke.env_of("agent-server")["MLFLOW_EXPERIMENT_NAME"]

    def traces() -> list[Any]:
        experiment = client.get_experiment_by_name(experiment_name)
        if experiment is None:
            return []
        found = client.search_traces(locations=[experiment.experiment_id])
        return [t for t in found if "Which pods run in prod?" in f"{t.info.request_preview} {t.data.request}"]

    trace = wait_for(traces, f"the Agent Server's trace in experiment {experiment_name!r}")[0]
    assert "OK" in str(getattr(trace.info, "state", None) or trace.info.status)
    assert PODS_ANSWER in f"{trace.info.response_preview} {trace.data.response}"
    assert any(span.span_type == "LLM" for span in trace.data.spans), [s.name for s in trace.data.spans]


def test_pattern1_client_asks_the_byo_agent_server_through_kagent(smoke: Smoke) -> None:
    """The same Job command, pointed (as a user would edit its ConfigMap) at the BYO Agent over kagent's URL."""
    smoke.model.set_script([{"match": "openshift", "reply": ANSWER}])
    name, namespace, port = KAGENT_CONTROLLER
    ns = smoke.cluster.manifests.namespace
    url = f"http://{smoke.controller.ip}:{port}/api/a2a/{ns}/mlflow-agent-server/"
    del name, namespace
    result = run_job(smoke, "kagent-mlflow-ask", A2A_URL=url)
    assert result["answer"] == ANSWER, result
    run = mlflow_client(smoke).get_run(result["run_id"])
    assert run.data.metrics["total_tokens"] > 0, run.data.metrics


def test_openshift_routes_reach_a_service_port() -> None:
    """Routes cannot run here: each must name a Service of the rendering and one of its ports."""
    objects = render("openshift")
    services = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Service"}
    routes = [o for o in objects if o["kind"] == "Route"]
    assert routes, "the openshift overlay has no Route"
    for route in routes:
        target = route["spec"]["to"]
        assert target["kind"] == "Service" and target["name"] in services, route["metadata"]["name"]
        ports = services[target["name"]]["spec"]["ports"]
        wanted = route["spec"].get("port", {}).get("targetPort")
        assert wanted is None or any(wanted in (p.get("name"), p.get("targetPort"), p["port"]) for p in ports), wanted


def test_the_cronjob_command_replays_then_asks(smoke: Smoke) -> None:
    """The CronJob's shell command (replay, then ask) runs as written, on its PVC."""
    smoke.model.set_script([{"match": "openshift", "reply": ANSWER}])
    cronjob = smoke.cluster.manifests.get("CronJob", "kagent-mlflow-ask")
    spec = cronjob["spec"]["jobTemplate"]["spec"]
    job = {"kind": "Job", "metadata": {"name": "kagent-mlflow-ask-cron"}, "spec": spec}
    pod = smoke.cluster.run_to_completion(job)
    result = json.loads([ln for ln in pod.log_path.read_text().splitlines() if ln.startswith("{")][-1])
    assert result["answer"] == ANSWER and result.get("run_id"), result
    assert mlflow_client(smoke).get_run(result["run_id"]).data.metrics["total_tokens"] > 0
