"""``up --runtime kagent``: the real kagent agent runtime (PyPI ``kagent-adk``) instead of the Pattern 2 agent.

kagent-adk 0.10.x needs ``a2a-sdk<1``, so it lives in its own venv (``scripts/setup-kagent-runtime.sh`` makes
``<repo>/.venvs/kagent``; ``KAGENT_VENV`` names another). It serves A2A at its root, so, as kagent's controller does
in a cluster, a small proxy (:mod:`.a2a_proxy`) serves it at ``/api/a2a/kagent/rh-analyze-simple/`` on the agent port;
the runtime itself listens on the next port.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from ..errors import ConfigError
from .processes import Spec

AGENT_NAME = "rh-analyze-simple"
AGENT_MODULE = "rh_analyze_simple"  # ADK loads agents by Python module name
NAMESPACE = "kagent"

AGENT_PY = '''\
"""rh-analyze-simple, written by kagent-mlflow up: kagent's AgentConfig.to_agent plus the glossary tool."""

import json
from pathlib import Path

from kagent.adk.types import AgentConfig

GLOSSARY = json.loads((Path(__file__).parent / "glossary.json").read_text())


def glossary(term: str) -> str:
    """Look up what a Kubernetes or OpenShift term means."""
    key = term.strip().lower().strip("?.!\\"'").replace(" ", "")
    for candidate in (key, key.removesuffix("s")):
        if candidate in GLOSSARY:
            return GLOSSARY[candidate]
    return f"'{term}' is not in the glossary; known terms: {', '.join(sorted(GLOSSARY))}"


_config = AgentConfig.model_validate(json.loads((Path(__file__).parent / "config.json").read_text()))
root_agent = _config.to_agent("rh_analyze_simple")
root_agent.tools.append(glossary)
'''


def kagent_adk() -> Path:
    """The ``kagent-adk`` executable: ``KAGENT_VENV``, else the source checkout's ``.venvs/kagent``, else PATH."""
    candidates = []
    if os.environ.get("KAGENT_VENV"):
        candidates.append(Path(os.environ["KAGENT_VENV"]) / "bin" / "kagent-adk")
    candidates.append(Path(__file__).resolve().parents[3] / ".venvs" / "kagent" / "bin" / "kagent-adk")
    if found := shutil.which("kagent-adk"):
        candidates.append(Path(found))
    for path in candidates:
        if path.exists():
            return path
    raise ConfigError(
        "the kagent runtime is not installed: run scripts/setup-kagent-runtime.sh (or set KAGENT_VENV to a venv "
        "with kagent-adk 0.10), or use the default runtime"
    )


def model_name(options: object, model_url: str) -> str:
    """The model id the runtime asks for: ``--model``, the bundled one, else the first one the endpoint lists."""
    given = getattr(options, "model", None)
    if given:
        return given
    if getattr(options, "model_url", None) is None and "llama" not in model_url:
        from .engine import MODEL_ID

        return MODEL_ID
    import httpx

    try:
        listing = httpx.get(model_url.rstrip("/") + "/models", timeout=10).json()
        return listing["data"][0]["id"]
    except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError):
        raise ConfigError(f"cannot list the models of {model_url}; name one with --model") from None


def write_agent_dir(work_dir: Path, model_url: str, model: str, port: int) -> None:
    from .agent import GLOSSARY, INSTRUCTIONS

    agent_dir = work_dir / AGENT_MODULE
    agent_dir.mkdir(parents=True, exist_ok=True)
    config = {
        "model": {"type": "openai", "model": model, "base_url": model_url},
        "description": "Answers questions about Kubernetes and OpenShift.",
        "instruction": INSTRUCTIONS,
    }
    card = {
        "name": AGENT_NAME,
        "description": config["description"],
        "url": f"http://127.0.0.1:{port}/",
        "version": "0.1.0",
        "protocolVersion": "0.3.0",
        "capabilities": {"streaming": True},
        "defaultInputModes": ["text"],
        "defaultOutputModes": ["text"],
        "skills": [{"id": "analyze", "name": "Analyze", "description": config["description"], "tags": ["kubernetes"]}],
    }
    (agent_dir / "agent.py").write_text(AGENT_PY)
    (agent_dir / "glossary.json").write_text(json.dumps(GLOSSARY, indent=2))
    (agent_dir / "config.json").write_text(json.dumps(config, indent=2))
    (agent_dir / "agent-card.json").write_text(json.dumps(card, indent=2))


def kagent_specs(options: object, model_url: str, stack_dir: Path) -> list[Spec]:
    from .stack import DEFAULT_A2A_PATH, HOST

    executable = kagent_adk()
    agent_port: int = options.agent_port  # type: ignore[attr-defined]
    runtime_port = agent_port + 1
    work_dir = stack_dir / "kagent"
    write_agent_dir(work_dir, model_url, model_name(options, model_url), runtime_port)
    runtime_url = f"http://{HOST}:{runtime_port}/"
    runtime = Spec(
        "kagent-runtime",
        [str(executable), "run", AGENT_MODULE, "--local", "--working-dir", str(work_dir)]
        + ["--host", HOST, "--port", str(runtime_port)],
        runtime_url,
        f"{runtime_url}.well-known/agent-card.json",
        "real kagent agent runtime (kagent-adk), A2A 0.3",
        env={
            "KAGENT_URL": "http://127.0.0.1:9",  # required by kagent-adk; never called with --local
            "KAGENT_NAME": AGENT_NAME,
            "KAGENT_NAMESPACE": NAMESPACE,
            "OPENAI_API_KEY": os.environ.get("OPENAI_API_KEY") or "unused-by-local-models",
            "OTEL_TRACING_ENABLED": "false",
            "OTEL_LOGGING_ENABLED": "false",
            "PYTHONPATH": str(work_dir),
            "NO_PROXY": "127.0.0.1,localhost",
        },
        unset=("VIRTUAL_ENV",),
        cwd=str(work_dir),
    )
    proxy = Spec(
        "agent",
        [sys.executable, "-m", "kagent_mlflow.local.a2a_proxy", "--host", HOST, "--port", str(agent_port)]
        + ["--path", DEFAULT_A2A_PATH, "--target", runtime_url],
        options.a2a_url,  # type: ignore[attr-defined]
        f"http://{HOST}:{agent_port}{DEFAULT_A2A_PATH}.well-known/agent-card.json",
        f"A2A path {DEFAULT_A2A_PATH} -> the kagent runtime, as kagent's controller routes it",
    )
    return [runtime, proxy]
