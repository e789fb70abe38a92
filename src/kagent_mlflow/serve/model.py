"""Log the agent as an MLflow model from code, so it can be registered, versioned and loaded anywhere.

    from kagent_mlflow.serve.model import log_agent_model
    info = log_agent_model()                       # inside an active run, or one is started
    agent = mlflow.pyfunc.load_model(info.model_uri)
    agent.predict({"input": [{"role": "user", "content": "Hi"}]})

The logged artifact is :mod:`.agent_model` (the code, not a pickle); settings come from the environment at load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

AGENT_MODEL_FILE = Path(__file__).with_name("agent_model.py")


def log_agent_model(name: str = "agent", **kwargs: Any) -> Any:
    """``mlflow.pyfunc.log_model`` for the agent file; returns MLflow's ``ModelInfo``. ``kwargs`` pass through
    (e.g. ``registered_model_name``, ``pip_requirements``)."""
    import mlflow

    kwargs.setdefault("pip_requirements", ["kagent-mlflow", f"mlflow=={mlflow.__version__}", "openai"])
    return mlflow.pyfunc.log_model(name=name, python_model=str(AGENT_MODEL_FILE), **kwargs)
