"""Point MLflow tracing at the configured tracking server, cheaply and without ever breaking an answer.

Traces are exported by MLflow on background threads (``MLFLOW_ENABLE_ASYNC_TRACE_LOGGING``, on by default); a
tracking server that is down costs log lines, not answers. If the experiment cannot be set at start-up the server
still starts and says so.
"""

from __future__ import annotations

import logging
import os

from .config import ServeConfig

logger = logging.getLogger("kagent_mlflow.serve")


def configure_tracing(config: ServeConfig) -> None:
    import mlflow

    if not config.tracing:
        mlflow.tracing.disable()
        logger.info("MLflow tracing is off (KAGENT_MLFLOW_TRACING=false)")
        return
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING", "true")
    if config.tracking_uri:
        mlflow.set_tracking_uri(config.tracking_uri)
    try:
        mlflow.set_experiment(config.experiment_name)
    except Exception as exc:  # noqa: BLE001 - tracing must not stop the agent from serving
        logger.warning(
            "cannot use MLflow experiment %r at %s (%s); serving anyway, traces may be lost",
            config.experiment_name,
            config.tracking_uri,
            " ".join(str(exc).split())[:300],
        )
    mlflow.tracing.enable()
