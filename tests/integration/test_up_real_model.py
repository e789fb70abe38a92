"""The one real-model test: ``kagent-mlflow up`` with the bundled SmolLM2-135M-Instruct (extra ``local``), which must
answer for real — through its OpenAI-compatible server (streaming, usage) and through the agent at the A2A URL, with
the interaction read back from the stack's MLflow server.

Slow by nature (the model loads in ~20 s on an idle 2-core machine, minutes on a loaded one; a reply takes seconds),
so it is the only one; every other ``up`` test uses ``--model-url``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient

from tests.support.local_stack import LocalStack

pytestmark = pytest.mark.integration


def require_local_extra() -> None:
    from kagent_mlflow.local.engine import missing_packages

    if missing := missing_packages():
        reason = f"the extra 'local' is not installed ({', '.join(missing)}): pip install -e '.[dev,local]'"
        if os.environ.get("KAGENT_MLFLOW_CI") == "1":
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.mark.timeout(2400)
def test_the_bundled_model_answers_for_real(tmp_path: Path) -> None:
    require_local_extra()
    stack = LocalStack.create(tmp_path)
    try:
        stack.up()
        status = stack.ps()
        assert [p["name"] for p in status["processes"]] == ["mlflow", "model", "agent"]
        model_url = status["urls"]["model"]
        loaded = stack.cli("logs", "model", "-n", "100").stdout
        assert "model SmolLM2-135M-Instruct loaded in" in loaded

        # The model server itself, streaming, as the OpenAI SDK asks.
        request = {
            "model": "SmolLM2-135M-Instruct",
            "messages": [{"role": "user", "content": "Name one planet of the solar system."}],
            "max_tokens": 24,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        with httpx.stream("POST", f"{model_url}/chat/completions", json=request, timeout=900) as response:
            assert response.status_code == 200
            events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        chunks = [json.loads(e) for e in events[:-1]]
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
        assert len(text.split()) >= 2, text
        assert chunks[-1]["usage"]["completion_tokens"] > 0 and chunks[-1]["usage"]["prompt_tokens"] > 0

        # Through the agent at the A2A URL, no URL given: a real answer, logged to the stack's MLflow.
        done = stack.cli("ask", "--json", "--timeout", "1200", "What is Kubernetes?", timeout=1500)
        assert done.returncode == 0, done.stdout + done.stderr
        result = json.loads(done.stdout.strip().splitlines()[-1])
        answer = result["answer"]
        print(f"\nSmolLM2's answer: {answer}")
        assert len(answer.split()) >= 3 and "Scripted answer" not in answer
        client = MlflowClient(tracking_uri=stack.mlflow_url)
        run = client.get_run(result["run_id"])
        assert run.info.status == "FINISHED"
        assert Path(client.download_artifacts(run.info.run_id, "answer.txt")).read_text() == answer
        assert run.data.metrics["total_tokens"] > run.data.metrics["output_tokens"] > 0
    finally:
        stack.down()
