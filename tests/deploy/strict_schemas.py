"""Strict schema validation of rendered objects: unknown or misspelt fields fail.

- Built-in kinds: the Kubernetes API schemas shipped by ``kubernetes-validate`` (offline), strict variant (every
  object ``additionalProperties: false``), for the oldest and the newest Kubernetes release we claim to support.
- kagent ``kagent.dev/v1alpha2`` kinds and OpenShift ``Route``: the JSON schemas in ``schemas/``, written by hand from
  the projects' Go API types; their core-type fields ($ref) use the same strict Kubernetes definitions.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
from referencing import Registry, Resource

SCHEMAS = Path(__file__).parent / "schemas"
# OpenShift 4.16 runs Kubernetes 1.29; the newest schema kubernetes-validate ships is checked too.
K8S_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
OWN_SCHEMAS = {
    "kagent.dev/v1alpha2": ("kagent.dev-v1alpha2.json", ("Agent", "ModelConfig")),
    "route.openshift.io/v1": ("route.openshift.io-v1.json", ("Route",)),
}


class SchemaError(AssertionError):
    """An object does not match its schema (the message names the object, the path and the problem)."""


def _name(obj: dict[str, Any]) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


@functools.cache
def _k8s_definitions(version: str) -> Resource:
    folder = f"v{kubernetes_validate.utils.major_minor(version)}.0-local-strict"
    contents = kubernetes_validate.utils.schema_contents(f"kubernetes-json-schema/{folder}/_definitions.json", version)
    return Resource.from_contents(contents)


@functools.cache
def _own_schema(file_name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / file_name).read_text())


def _validate_own(obj: dict[str, Any], file_name: str, version: str) -> None:
    document = _own_schema(file_name)
    registry = Registry().with_resources(
        [
            (document["$id"], Resource.from_contents(document)),
            ("https://kubernetes.io/api/_definitions.json", _k8s_definitions(version)),
        ]
    )
    schema = {"$ref": f"{document['$id']}#/$defs/{obj['kind']}"}
    validator = jsonschema.Draft202012Validator(schema, registry=registry)
    errors = sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors[:5]]
        raise SchemaError(f"{_name(obj)} does not match {file_name}: " + "; ".join(lines))


def validate(obj: dict[str, Any], version: str = K8S_VERSIONS[0]) -> None:
    """Raise :class:`SchemaError` unless ``obj`` matches its schema strictly (no unknown kind passes either)."""
    own = OWN_SCHEMAS.get(obj.get("apiVersion", ""))
    if own is not None:
        file_name, kinds = own
        if obj.get("kind") not in kinds:
            raise SchemaError(f"{_name(obj)}: no schema for kind {obj.get('kind')!r} of {obj['apiVersion']}")
        _validate_own(obj, file_name, version)
        return
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = "/".join(map(str, exc.absolute_path)) or "<root>"
        raise SchemaError(f"{_name(obj)} (Kubernetes {exc.version}): {path}: {exc.message}") from None
    except kubernetes_validate.SchemaNotFoundError as exc:
        raise SchemaError(f"{_name(obj)}: {exc.message}") from None
