"""The whole stack on one machine: ``kagent-mlflow up`` / ``ps`` / ``logs`` / ``down``.

``up`` starts, as local processes with logs and a state file under ``KAGENT_MLFLOW_HOME/stack``: the MLflow server and
UI on the embedded store, an OpenAI-compatible server on a small real model (:mod:`.model_server`, needs the extra
``local``) or any endpoint given with ``--model-url``, and the Pattern 2 agent with its A2A face at the seed's default
URL (or the real kagent runtime with ``--runtime kagent``). While its state file says it runs, ``ask`` and the seed
script log to its MLflow server and ask its agent when no URL is configured (:func:`.state.running_stack_urls`).
"""
