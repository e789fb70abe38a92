"""Two specialists and a supervisor: a worked multi-agent example for kagent-mlflow's Pattern 2.

- ``k8s_troubleshooter``: reads pods, logs and events (from a bundled snapshot, so the example runs anywhere;
  replace the three tool bodies with Kubernetes API calls for a live cluster).
- ``openshift_docs``: searches a small bundled set of OpenShift documentation notes.
- ``build_supervisor()``: consults either or both and writes the answer (agents-as-tools).
- ``build_router()``: hands the question to exactly one specialist and returns its answer unchanged.

Model settings come from ``LLAMA_STACK_BASE_URL`` / ``LLAMA_STACK_MODEL`` / ``LLAMA_STACK_API_KEY``.
Serve the supervisor with the Agent Server::

    PYTHONPATH=examples/multi_agent KAGENT_MLFLOW_AGENT=agents:build_supervisor kagent-mlflow serve --port 8080
"""

from __future__ import annotations

from kagent_mlflow.agent import LlamaStackAgent, supervisor, tool

# -- a snapshot of a small cluster: namespace -> pods, logs, events ------------------------------------------------

CLUSTER = {
    "shop": {
        "pods": {
            "web-7d9f8-abcde": "CrashLoopBackOff (restarts: 12)",
            "web-7d9f8-fghij": "CrashLoopBackOff (restarts: 11)",
            "db-0": "Running",
        },
        "logs": {
            "web-7d9f8-abcde": "Starting server on :8080\nConnecting to db:5432\nFATAL: out of memory",
            "db-0": "database system is ready to accept connections",
        },
        "events": [
            "Warning OOMKilled pod/web-7d9f8-abcde container web exceeded memory limit 128Mi",
            "Warning BackOff pod/web-7d9f8-abcde Back-off restarting failed container",
        ],
    },
    "payments": {
        "pods": {"api-5c6b7-xyz12": "ImagePullBackOff", "worker-0": "Running"},
        "logs": {"worker-0": "processed 1200 jobs"},
        "events": ["Warning Failed pod/api-5c6b7-xyz12 Failed to pull image quay.io/acme/api:v9: not found"],
    },
}

DOCS = [
    (
        "Routes",
        "An OpenShift Route exposes a Service at a host name, e.g. `oc expose service web`. "
        "TLS termination can be edge, passthrough or re-encrypt.",
    ),
    (
        "Resource limits and OOMKilled",
        "A container killed with OOMKilled exceeded its memory limit. Raise `resources.limits.memory` in the "
        "Deployment (`oc set resources deployment/web --limits=memory=512Mi`) or reduce the application's usage.",
    ),
    (
        "CrashLoopBackOff",
        "CrashLoopBackOff means the container keeps exiting; read `oc logs <pod> --previous` and the pod's events.",
    ),
    (
        "Image pull errors",
        "ImagePullBackOff means the image or tag does not exist or the pull secret is missing. Check the image "
        "reference and link a pull secret with `oc secrets link default <secret> --for=pull`.",
    ),
    (
        "Security context constraints",
        "OpenShift runs containers with a random UID under the restricted-v2 SCC; images must not require root.",
    ),
]


# -- Kubernetes tools ----------------------------------------------------------------------------------------------


def _namespace(namespace: str) -> dict:
    if namespace not in CLUSTER:
        raise ValueError(f"namespace {namespace!r} not found; known: {', '.join(sorted(CLUSTER))}")
    return CLUSTER[namespace]


@tool
def list_pods(namespace: str) -> dict[str, str]:
    """List the pods of a namespace with their status.

    Args:
        namespace: Kubernetes namespace, e.g. "shop".
    """
    return _namespace(namespace)["pods"]


@tool
def pod_logs(namespace: str, pod: str, tail: int = 20) -> str:
    """The last lines of a pod's log.

    Args:
        namespace: Kubernetes namespace.
        pod: Pod name as listed by list_pods.
        tail: How many lines to return.
    """
    logs = _namespace(namespace)["logs"]
    if pod not in logs:
        raise ValueError(f"no logs for pod {pod!r} in {namespace!r}")
    return "\n".join(logs[pod].splitlines()[-tail:])


@tool
def recent_events(namespace: str) -> list[str]:
    """Recent warning events of a namespace (OOMKilled, BackOff, image pull failures...).

    Args:
        namespace: Kubernetes namespace.
    """
    return _namespace(namespace)["events"]


# -- documentation tool --------------------------------------------------------------------------------------------


@tool
def search_docs(query: str, max_results: int = 2) -> list[dict[str, str]]:
    """Search the OpenShift documentation notes; returns the best-matching sections.

    Args:
        query: Keywords, e.g. "OOMKilled memory limit".
        max_results: How many sections to return.
    """
    words = {w.strip(".,?!").lower() for w in query.split() if len(w) > 2}
    scored = []
    for title, text in DOCS:
        haystack = f"{title} {text}".lower()
        score = sum(haystack.count(w) for w in words)
        if score:
            scored.append((score, title, text))
    scored.sort(key=lambda s: -s[0])
    return [{"title": title, "text": text} for _, title, text in scored[:max_results]]


# -- agents --------------------------------------------------------------------------------------------------------


def build_k8s_troubleshooter(**settings) -> LlamaStackAgent:
    return LlamaStackAgent(
        name="k8s_troubleshooter",
        description="Inspects pods, logs and events of a namespace to find why workloads fail.",
        instructions=(
            "You are a Kubernetes troubleshooting specialist. Use the tools to inspect the namespace you are asked "
            "about: list pods, read logs of failing pods, check events. Report the root cause in two sentences."
        ),
        tools=[list_pods, pod_logs, recent_events],
        **settings,
    )


def build_openshift_docs(**settings) -> LlamaStackAgent:
    return LlamaStackAgent(
        name="openshift_docs",
        description="Answers how-to questions from the OpenShift documentation, with the oc commands to run.",
        instructions=(
            "You are an OpenShift documentation specialist. Search the docs and answer with the relevant "
            "procedure and oc commands. Only use what the docs say."
        ),
        tools=[search_docs],
        **settings,
    )


def build_supervisor(**settings) -> LlamaStackAgent:
    """Agents-as-tools: the supervisor may ask both specialists and combines their answers."""
    return supervisor(
        [build_k8s_troubleshooter(**settings), build_openshift_docs(**settings)],
        name="platform_supervisor",
        instructions=(
            "You help application teams on OpenShift. For a failing workload, ask k8s_troubleshooter for the root "
            "cause, then ask openshift_docs how to fix it. Answer with the cause and the fix."
        ),
        **settings,
    )


def build_router(**settings) -> LlamaStackAgent:
    """Router: exactly one specialist answers, unchanged."""
    return supervisor(
        [build_k8s_troubleshooter(**settings), build_openshift_docs(**settings)],
        name="platform_router",
        route=True,
        **settings,
    )
