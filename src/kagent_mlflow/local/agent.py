"""The agent ``up`` serves: ``rh-analyze-simple`` (the seed's agent name) with one real tool that needs no cluster.

The tool looks a term up in a short built-in Kubernetes/OpenShift glossary, so a question can produce a TOOL span
in the trace even on a laptop with nothing to inspect. ``build_agent`` is what ``serve --agent`` loads.
"""

from __future__ import annotations

from typing import Any

AGENT_NAME = "rh-analyze-simple"
INSTRUCTIONS = (
    "You are rh-analyze-simple, an assistant for people who run applications on Kubernetes and OpenShift. "
    "Answer in one or two sentences. Use the glossary tool when a question asks what a term means."
)

GLOSSARY = {
    "kubernetes": "An open-source system that runs containers across a cluster of machines: it schedules them, "
    "restarts them when they fail, scales them and connects them over the network.",
    "openshift": "Red Hat's Kubernetes distribution: Kubernetes plus built-in builds, routes, a web console, "
    "stricter security defaults and operators for the platform itself.",
    "pod": "The smallest unit Kubernetes runs: one or more containers that share a network address and storage.",
    "deployment": "Keeps a given number of identical pods running and replaces them gradually on updates.",
    "service": "A stable name and address in front of a changing set of pods, balancing traffic between them.",
    "namespace": "A named partition of a cluster that groups resources and scopes names, quotas and access.",
    "node": "A machine (virtual or physical) of the cluster on which pods run.",
    "route": "OpenShift's way to expose a service outside the cluster under a host name, optionally with TLS.",
    "operator": "A controller that runs an application the way a human operator would: installs, upgrades, heals.",
    "configmap": "Key-value configuration kept in the cluster and handed to pods as files or environment variables.",
    "a2a": "Agent2Agent, a JSON-RPC protocol over HTTP that lets agents and clients ask each other for work.",
    "mlflow": "An open-source platform that records experiments, runs, metrics, artifacts and traces of AI apps.",
}


def glossary(term: str) -> str:
    """Look up what a Kubernetes or OpenShift term means.

    Args:
        term: The term to explain, e.g. "pod" or "route".
    """
    key = term.strip().lower().strip("?.!\"'").replace(" ", "")
    for candidate in (key, key.removesuffix("s")):
        if candidate in GLOSSARY:
            return GLOSSARY[candidate]
    return f"'{term}' is not in the glossary; known terms: {', '.join(sorted(GLOSSARY))}"


def build_agent() -> Any:
    """The local stack's agent: model settings from ``LLAMA_STACK_*`` (set by ``up``), the glossary tool."""
    from ..agent import LlamaStackAgent, tool

    return LlamaStackAgent(name=AGENT_NAME, instructions=INSTRUCTIONS, tools=[tool(glossary)])
