"""The agent logged as an MLflow model from code (to a real tracking server) and loaded back to answer."""

from __future__ import annotations

import mlflow
import pytest
from mlflow import MlflowClient

from kagent_mlflow.serve.model import log_agent_model

pytestmark = pytest.mark.integration


def test_log_agent_model_then_load_and_predict(mlflow_server, scripted_model, monkeypatch, tmp_path):
    scripted_model.set_script([{"match": "logged", "reply": "Answered by the logged model."}])
    monkeypatch.setenv("LLAMA_STACK_BASE_URL", scripted_model.root)
    monkeypatch.setenv("LLAMA_STACK_API_KEY", "test-key")
    monkeypatch.delenv("KAGENT_MLFLOW_AGENT", raising=False)
    previous_uri = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(mlflow_server.url)
    try:
        check_logged_model_answers(mlflow_server, scripted_model)
    finally:
        # predict() traced to the session server: export now, while it runs (not at exit, when it is gone)
        mlflow.flush_trace_async_logging()
        mlflow.set_tracking_uri(previous_uri)


def check_logged_model_answers(mlflow_server, scripted_model) -> None:
    mlflow.set_experiment("agent-model-from-code")
    with mlflow.start_run() as run:
        info = log_agent_model()

    # the model is in MLflow: a logged model linked to the run, whose artifacts hold the code file
    logged = MlflowClient(tracking_uri=mlflow_server.url).get_logged_model(info.model_id)
    assert logged.source_run_id == run.info.run_id
    loaded = mlflow.pyfunc.load_model(info.model_uri)
    result = loaded.predict({"input": [{"role": "user", "content": "Is this the logged model?"}]})
    message = [item for item in result["output"] if item["type"] == "message"][-1]
    assert message["content"][0]["text"] == "Answered by the logged model."
    assert result["usage"]["total_tokens"] > 0
    assert scripted_model.chat_requests()[-1]["messages"][-1]["content"] == "Is this the logged model?"
