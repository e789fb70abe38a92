"""Models-from-code file: MLflow executes this to build the agent when the logged model is loaded.

Logged with ``mlflow.pyfunc.log_model(name="agent", python_model=<this file>)`` (see :func:`.model.log_agent_model`);
loaded with ``mlflow.pyfunc.load_model(uri)``, which runs this file in the loading process, so the agent is built
from THAT process's environment (``LLAMA_STACK_BASE_URL``, ``LLAMA_STACK_MODEL``, ``KAGENT_MLFLOW_AGENT``...): no
endpoint or key is baked into the model.
"""

import os

import mlflow

from kagent_mlflow.serve.app import load_agent

mlflow.models.set_model(load_agent(os.environ.get("KAGENT_MLFLOW_AGENT") or None))
