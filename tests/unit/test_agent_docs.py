"""The code in docs/tool-calling.md and docs/multi-agent.md runs and says what the agent really does."""

from __future__ import annotations

import json
import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _blocks(page: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", (DOCS / page).read_text(), re.DOTALL)


def test_tool_calling_example_schema_is_what_the_model_sees(monkeypatch) -> None:
    monkeypatch.setenv("LLAMA_STACK_BASE_URL", "http://127.0.0.1:9")  # constructing an agent makes no request
    namespace: dict = {}
    exec(_blocks("tool-calling.md", "python")[0], namespace)  # noqa: S102 - our own documentation
    documented = json.loads(_blocks("tool-calling.md", "json")[0])
    assert namespace["list_pods"].spec() == documented
    assert list(namespace["agent"].tools) == ["list_pods"]


def test_multi_agent_example_builds_the_documented_supervisor(monkeypatch) -> None:
    monkeypatch.setenv("LLAMA_STACK_BASE_URL", "http://127.0.0.1:9")
    code = _blocks("multi-agent.md", "python")[0]
    code = code.replace("boss.predict(", "_unused = (")  # building is offline; answering needs a model
    namespace: dict = {}
    exec(code, namespace)  # noqa: S102
    boss = namespace["boss"]
    assert list(boss.tools) == ["ask_k8s_troubleshooter", "ask_openshift_docs"]
    assert "Finds why workloads fail" in boss.tools["ask_k8s_troubleshooter"].description
