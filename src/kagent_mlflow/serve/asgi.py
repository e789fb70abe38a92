"""Container entry point: ``uvicorn kagent_mlflow.serve.asgi:app --host 0.0.0.0 --port 8000``.

The app is built at import from the environment (see :class:`~kagent_mlflow.serve.config.ServeConfig` and the agent's
``LLAMA_STACK_*`` variables).
"""

from __future__ import annotations

from .app import create_app

app = create_app()
