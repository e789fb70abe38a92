"""Llama Stack between the agent and the model, when ``up`` finds a ``llama`` executable (or is given one).

Its remote vLLM provider speaks plain OpenAI ``/v1`` to the model server and lists its models as ``vllm/<id>``.
``llama stack run --providers ...`` binds every interface, so a config naming 127.0.0.1 is written instead (in
``<home>/stack/llama-stack/``), with its SQLite stores beside it.
"""

from __future__ import annotations

from pathlib import Path

from .processes import Spec

CONFIG_TEMPLATE = """\
version: 2
distro_name: kagent-mlflow-up
apis:
- inference
providers:
  inference:
  - provider_id: vllm
    provider_type: remote::vllm
    config:
      base_url: {model_url}
      max_tokens: 1024
      api_token: unused
storage:
  backends:
    kv_default:
      type: kv_sqlite
      db_path: {store_dir}/kvstore.db
    sql_default:
      type: sql_sqlite
      db_path: {store_dir}/sql_store.db
  stores:
    metadata:
      namespace: registry
      backend: kv_default
    inference:
      table_name: inference_store
      backend: sql_default
    conversations:
      table_name: openai_conversations
      backend: sql_default
    prompts:
      namespace: prompts
      backend: kv_default
server:
  host: 127.0.0.1
  port: {port}
"""


def llama_stack_spec(llama: str, model_url: str, options: object, stack_dir: Path) -> Spec:
    port: int = options.llama_stack_port  # type: ignore[attr-defined]
    work_dir = stack_dir / "llama-stack"
    store_dir = work_dir / "store"
    store_dir.mkdir(parents=True, exist_ok=True)
    config = work_dir / "config.yaml"
    config.write_text(CONFIG_TEMPLATE.format(model_url=model_url, store_dir=store_dir, port=port))
    base = f"http://127.0.0.1:{port}"
    return Spec(
        "llama-stack",
        [llama, "stack", "run", str(config), "--port", str(port)],
        f"{base}/v1",
        f"{base}/v1/health",
        "Llama Stack (OpenAI-compatible /v1) in front of the model",
        env={
            "VLLM_URL": model_url,
            "LLAMA_STACK_CONFIG_DIR": str(work_dir / "home"),
            "SQLITE_STORE_DIR": str(store_dir),
            "LLAMA_STACK_LOGGING": "all=warning",
            "PYTHONUNBUFFERED": "1",
        },
        unset=("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"),
        cwd=str(work_dir),
    )
