"""Check a Llama Stack run config the way ``llama stack run`` reads it, with unknown keys rejected.

Runs in the Llama Stack venv (Python 3.12, llama-stack 0.7.x): ``python llama_stack_config_check.py < request.json``
with ``{"config": "<yaml text>", "env": {...}}``. Prints ``OK <providers>`` or one line saying what is wrong and
exits 1. Strictness: the top-level keys must be StackConfig fields, each provider's ``config`` must validate against
its provider's config class with extra keys forbidden.
"""

from __future__ import annotations

import importlib
import json
import os
import sys

import yaml
from pydantic import ConfigDict


def main() -> int:
    request = json.load(sys.stdin)
    os.environ.clear()
    os.environ.update(request["env"])
    from llama_stack.core.datatypes import StackConfig
    from llama_stack.core.distribution import get_provider_registry
    from llama_stack.core.stack import replace_env_vars

    raw = yaml.safe_load(request["config"])
    known = set(StackConfig.model_fields) | {f.alias for f in StackConfig.model_fields.values() if f.alias}
    unknown = set(raw) - known
    if unknown:
        print(f"unknown top-level keys: {sorted(unknown)}")
        return 1
    resolved = replace_env_vars(raw)
    config = StackConfig(**resolved)
    registry = get_provider_registry(config)
    checked = []
    for api_name, providers in config.providers.items():
        api = next(a for a in registry if a.value == api_name)
        for provider in providers:
            spec = registry[api].get(provider.provider_type)
            if spec is None:
                print(f"{api_name}: unknown provider_type {provider.provider_type!r}")
                return 1
            module, _, name = spec.config_class.rpartition(".")
            config_class = getattr(importlib.import_module(module), name)
            strict = type(f"Strict{name}", (config_class,), {"model_config": ConfigDict(extra="forbid")})
            strict.model_validate(provider.config)
            checked.append(f"{api_name}:{provider.provider_id}={provider.provider_type}")
    print("OK " + " ".join(checked))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as exc:  # one line for the test's assertion message
        print(f"{type(exc).__name__}: " + " | ".join(line.strip() for line in str(exc).splitlines()))
        sys.exit(1)
