"""Pattern 2 serving: the agent behind MLflow's Agent Server (``/invocations``, ``/responses``, ``/health``).

Entry points: ``kagent-mlflow serve``, ``python -m kagent_mlflow.serve``, ``uvicorn kagent_mlflow.serve.asgi:app``
and ``uvicorn --factory kagent_mlflow.serve.app:create_app``. Importing this package stays light; the app module
pulls in MLflow and FastAPI only when it is built.
"""

from __future__ import annotations

from typing import Any

from .config import ServeConfig

__all__ = ["ServeConfig", "create_app"]


def create_app(agent: Any = None, config: ServeConfig | None = None) -> Any:
    """See :func:`kagent_mlflow.serve.app.create_app`."""
    from .app import create_app as _create_app

    return _create_app(agent, config)
