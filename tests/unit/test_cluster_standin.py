"""The pieces the manifest smoke test and the image test rest on: Kubernetes' $(VAR) expansion, env resolution, the
DNS-name rewrite (names only where they stand as hosts, unknown ports refused), mount paths mapped once, and the
Containerfile parser (continuations, variables, paths a RUN line spells out)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from tests.support.cluster import ClusterError, LocalCluster, Manifests, Network, container_env, expand_k8s
from tests.support.containerfile import expand, literal_paths, parse, split_assignments


def test_k8s_expansion_follows_kubernetes_rules() -> None:
    env = {"A": "1", "B": "two"}
    assert expand_k8s("$(A)-$(B)", env) == "1-two"
    assert expand_k8s("$$(A)", env) == "$(A)"  # escaped
    assert expand_k8s("$(MISSING) $A ${A}", env) == "$(MISSING) $A ${A}"  # unknown names and shell forms stay


def test_env_from_then_env_with_refs_and_fields() -> None:
    objects = [
        {"kind": "ConfigMap", "metadata": {"name": "cm", "namespace": "ns"}, "data": {"X": "from-cm", "Y": "y"}},
        {
            "kind": "Secret",
            "metadata": {"name": "s", "namespace": "ns"},
            "data": {"K": base64.b64encode(b"k").decode()},
        },  # noqa: E501
    ]
    container = {
        "envFrom": [{"configMapRef": {"name": "cm"}}],
        "env": [
            {"name": "X", "value": "override-$(Y)"},
            {"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "s", "key": "K"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        ],
    }
    env = container_env(Manifests(objects), container, {"metadata.namespace": "ns"})
    assert env == {"X": "override-y", "Y": "y", "KEY": "k", "NS": "ns"}
    container["env"].append({"name": "BAD", "valueFrom": {"secretKeyRef": {"name": "s", "key": "nope"}}})
    with pytest.raises(ClusterError, match="no key 'nope'"):
        container_env(Manifests(objects), container, {"metadata.namespace": "ns"})


@pytest.fixture
def net() -> Network:
    net = Network("ns")
    net.add_service("mlflow", "ns", "127.1.2.3", {5000: ("127.1.2.3", 5000)})
    net.add_external("vllm.models.svc.cluster.local", 8000, ("127.0.0.1", 4321))
    return net


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://mlflow:5000", "http://127.1.2.3:5000"),
        ("http://mlflow.ns.svc.cluster.local:5000/x", "http://127.1.2.3:5000/x"),
        ("postgresql://u:p@mlflow:5000/db", "postgresql://u:p@127.1.2.3:5000/db"),
        ("mlflow:5000", "127.1.2.3:5000"),
        ("http://vllm.models.svc.cluster.local:8000/v1", "http://127.0.0.1:4321/v1"),
        ("mlflow server --host 0.0.0.0", "mlflow server --host 127.9.9.9"),  # a word, not a host
        ("s3://mlflow/artifacts", "s3://mlflow/artifacts"),  # a bucket
        ("kagent-mlflow mlflow-minio /mlflow", "kagent-mlflow mlflow-minio /mlflow"),
    ],
)
def test_names_are_rewritten_only_as_hosts(net: Network, text: str, expected: str) -> None:
    assert net.rewrite(text, "127.9.9.9") == expected


def test_a_port_nothing_serves_is_refused(net: Network) -> None:
    with pytest.raises(ClusterError, match="nothing listens on port 5001"):
        net.rewrite("http://mlflow:5001")


def test_mlflow_allowed_hosts_gain_the_addresses(net: Network) -> None:
    assert net.rewrite_allowed_hosts("mlflow,mlflow:*,localhost") == "mlflow,mlflow:*,localhost,127.1.2.3,127.1.2.3:*"


def test_mount_paths_are_mapped_once_longest_first() -> None:
    mounts = {"/tmp": Path("/w/tmp"), "/etc/app": Path("/tmp/w/app"), "/etc/app/sub": Path("/w/sub")}
    text = "/etc/app/config.yaml /etc/app/sub/x HOME=/tmp /tmpfoo /etc/application"
    mapped = "/tmp/w/app/config.yaml /w/sub/x HOME=/w/tmp /tmpfoo /etc/application"
    assert LocalCluster.map_paths(text, mounts) == mapped


def test_containerfile_parse_and_variables() -> None:
    cf = parse(
        "ARG BASE=python:3.11-slim\n"
        "FROM ${BASE} AS build\n"
        "# a comment\n"
        "ENV A=/opt/a \\\n"
        "    # a comment inside a continuation\n"
        '    B="two words"\n'
        'RUN echo "$A" \\\n'
        "    && true\n"
        "FROM ${BASE}\n"
        'ENTRYPOINT ["x"]\n'
    )
    assert [s.base for s in cf.stages] == ["python:3.11-slim", "python:3.11-slim"]
    assert cf.stages[0].name == "build" and cf.stage("build") == 0
    env_line, run_line = cf.stages[0].instructions
    assert split_assignments(env_line.value) == {"A": "/opt/a", "B": "two words"}
    assert run_line.value == 'echo "$A" && true'
    assert cf.final().instructions[0].exec_form() == ["x"]
    assert expand("${A}/bin:${MISSING:-dflt}:${A:+set}", {"A": "/v"}) == "/v/bin:dflt:set"


def test_literal_paths_in_run_lines_are_found() -> None:
    assert literal_paths('python -m venv "$VENV" && "$VENV/bin/pip" install "$1[x]" >/dev/null') == []
    assert literal_paths("rm -rf /wheels && pip --target=/opt/x y") == ["/wheels", "/opt/x"]
