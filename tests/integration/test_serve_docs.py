"""docs/pattern2.md cannot rot: its ``bash server`` blocks start servers, its ``bash`` and ``python`` blocks run
against them (directly on the scripted model, and through a real Llama Stack), each must exit 0 and print."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.agent_server import AgentServer, server_env, start_agent_server

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "pattern2.md"
README = REPO / "README.md"
BIN = Path(sys.executable).parent


def blocks(kind: str, text: str | None = None) -> list[str]:
    """Fenced blocks whose info string is exactly ``kind`` (``bash``, ``bash server``, ``python``)."""
    text = DOC.read_text() if text is None else text
    return [code for info, code in re.findall(r"```([^\n]*)\n(.*?)```", text, re.DOTALL) if info == kind]


def readme_pattern2(text: str | None = None) -> str:
    """The README's ``## Pattern 2 ...`` section (up to the next ``## `` heading); fails the test when it is gone,
    so renaming the heading cannot turn this check into a silent skip."""
    text = README.read_text() if text is None else text
    match = re.search(r"^## Pattern 2.*?(?=^## |\Z)", text, re.DOTALL | re.MULTILINE)
    if match is None:
        pytest.fail("README.md has no '## Pattern 2' section: its examples must stay runnable (update this test)")
    return match.group(0)


def substitute(code: str, urls: dict[str, str]) -> str:
    for placeholder, url in urls.items():
        code = code.replace(placeholder, url)
    return code


def doc_env(model_root: str) -> dict[str, str]:
    env = server_env(model_root, extra={"KAGENT_MLFLOW_AGENT": ""})
    env.pop("LLAMA_STACK_API_KEY", None)
    env.pop("KAGENT_MLFLOW_TRACING", None)  # tracing on, as documented
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def start_documented_server(code: str, urls: dict[str, str], env: dict[str, str]) -> AgentServer:
    code = re.sub(r"--port \d+", "--port 0", substitute(code, urls))
    code = code.replace("kagent-mlflow serve", "exec kagent-mlflow serve")  # the server is the shell's process
    return start_agent_server(
        urls["http://localhost:8321"],
        extra_env=env,
        command=["bash", "-euc", code],
        tracking_uri=urls["http://localhost:5000"],
    )


@pytest.fixture(params=["model", "llama_stack"])
def backend(request, mlflow_server) -> dict[str, str]:
    """Where the documented servers find their model: the scripted model directly, or real Llama Stack."""
    if request.param == "llama_stack":
        stack = request.getfixturevalue("llama_stack")
        model = request.getfixturevalue("llama_stack_model")
        return {
            "http://localhost:8321": stack.base_url,
            "http://localhost:5000": mlflow_server.url,
            "_root": model.root,
        }
    model = request.getfixturevalue("scripted_model")
    return {"http://localhost:8321": model.root, "http://localhost:5000": mlflow_server.url, "_root": model.root}


def test_doc_has_the_examples_this_test_runs():
    assert len(blocks("bash server")) == 2
    assert len(blocks("bash")) == 2
    assert len(blocks("python")) == 5


def test_documented_examples_run_against_the_documented_server(backend):
    urls = {k: v for k, v in backend.items() if not k.startswith("_")}
    env = doc_env(backend["_root"])
    server = start_documented_server(blocks("bash server")[0], urls, env)
    try:
        urls["http://localhost:8000"] = server.url
        assert httpx.get(f"{server.url}/health", timeout=10).json() == {"status": "healthy"}
        outputs = []
        for code in blocks("bash"):
            outputs.append(run(["bash", "-euc", substitute(code, urls)], env))
        for code in blocks("python"):
            outputs.append(run([sys.executable, "-c", substitute(code, urls)], env))
    finally:
        server.stop()
    curl_out, a2a_out, httpx_out, sdk_out, stream_out, trace_out, model_out = outputs
    assert "Scripted answer to: Which pods run in namespace shop?" in curl_out and "data: [DONE]" in curl_out
    assert "Scripted answer to: What is a Route in OpenShift?" in a2a_out  # `kagent-mlflow ask` over A2A
    assert httpx_out.startswith("Scripted answer to: What is a Route in OpenShift?\n{")
    assert sdk_out.splitlines()[1].startswith("Scripted answer to: And how do I create one? ")
    assert stream_out.startswith("Scripted answer to: What is a Route in OpenShift?\nusage: {")
    assert trace_out.splitlines()[:2] == ["AGENT LlamaStackAgent.invoke", "AGENT apredict"]
    assert "LLM" in trace_out and "total_tokens" in trace_out
    assert "Scripted answer to: What is a Route in OpenShift?" in model_out


def test_documented_custom_agent_server_starts_and_answers(scripted_model, mlflow_server):
    urls = {"http://localhost:8321": scripted_model.root, "http://localhost:5000": mlflow_server.url}
    server = start_documented_server(blocks("bash server")[1], urls, doc_env(scripted_model.root))
    try:
        resp = httpx.post(f"{server.url}/invocations", json={"input": [{"role": "user", "content": "hi"}]}, timeout=60)
        assert resp.status_code == 200, resp.text
        requests = scripted_model.chat_requests()
        offered = {t["function"]["name"] for t in requests[0]["tools"]}
        assert offered == {"ask_k8s_troubleshooter", "ask_openshift_docs"}  # the supervisor is what is served
    finally:
        server.stop()


def test_a_readme_without_the_pattern2_section_fails_the_docs_test() -> None:
    with pytest.raises(pytest.fail.Exception, match="no '## Pattern 2' section"):
        readme_pattern2("# kagent-mlflow\n\n## Pattern two, renamed\n\n```bash server\nkagent-mlflow serve\n```\n")
    assert readme_pattern2().startswith("## Pattern 2")


def test_readme_pattern2_examples_run(backend):
    section = readme_pattern2()
    servers = blocks("bash server", section)
    assert len(servers) == 1, "the README's Pattern 2 section starts one server (a ```bash server block)"
    urls = {k: v for k, v in backend.items() if not k.startswith("_")}
    env = doc_env(backend["_root"])
    server = start_documented_server(servers[0], urls, env)
    try:
        urls["http://localhost:8000"] = server.url
        examples = [["bash", "-euc", substitute(code, urls)] for code in blocks("bash", section)]
        examples += [[sys.executable, "-c", substitute(code, urls)] for code in blocks("python", section)]
        assert examples, "the README's Pattern 2 section has no bash/python example to run"
        for cmd in examples:
            assert "Scripted answer to: " in run(cmd, env)
    finally:
        server.stop()


def run(cmd: list[str], env: dict[str, str]) -> str:
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, (
        f"documented example failed:\n{cmd[-1]}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    )
    assert proc.stdout.strip()
    return proc.stdout
