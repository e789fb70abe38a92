"""Point MLflow tracing at the configured tracking server, cheaply and without ever breaking an answer.

Traces are exported by MLflow on background threads (``MLFLOW_ENABLE_ASYNC_TRACE_LOGGING``, on by default); a
tracking server that goes down costs log lines and (after ``MLFLOW_ASYNC_TRACE_LOGGING_RETRY_TIMEOUT``, 30 s here)
the traces of that time, never answers.

A tracking server that is down at START-UP needs care: until ``mlflow.set_experiment`` has succeeded, MLflow
resolves ``MLFLOW_EXPERIMENT_NAME`` with a blocking HTTP call (retried for minutes) when each trace starts, i.e. on
the request path. So the server starts with tracing off, says so, and a background thread turns it on once the
tracking server answers.

Cost: ingesting a trace costs the MLflow server CPU per HTTP call (measured here: ~27 ms for a 1-span trace, ~49 ms
for a 6-span trace with MLflow's default batches of 5 spans). Batching up to 100 spans per OTLP call brought the
6-span trace to ~30 ms, so that is our default (the variables below; any value set in the environment wins).
"""

from __future__ import annotations

import logging
import os
import threading
import time

from .config import ServeConfig

logger = logging.getLogger("kagent_mlflow.serve")

TRACE_EXPORT_DEFAULTS = {
    "MLFLOW_ENABLE_ASYNC_TRACE_LOGGING": "true",
    "MLFLOW_ASYNC_TRACE_LOGGING_MAX_SPAN_BATCH_SIZE": "100",
    "MLFLOW_ASYNC_TRACE_LOGGING_MAX_INTERVAL_MILLIS": "1000",
    "MLFLOW_ASYNC_TRACE_LOGGING_MAX_QUEUE_SIZE": "10000",
    "MLFLOW_ASYNC_TRACE_LOGGING_RETRY_TIMEOUT": "30",
}
RECONNECT_INTERVAL_S = 5.0


def configure_tracing(config: ServeConfig) -> None:
    import mlflow

    if not config.tracing:
        mlflow.tracing.disable()
        logger.info("MLflow tracing is off (KAGENT_MLFLOW_TRACING=false)")
        return
    for name, value in TRACE_EXPORT_DEFAULTS.items():
        os.environ.setdefault(name, value)
    if config.tracking_uri:
        mlflow.set_tracking_uri(config.tracking_uri)
    problem = _unreachable(config.tracking_uri)
    if problem is None and _set_experiment(config):
        mlflow.tracing.enable()
        return
    mlflow.tracing.disable()
    logger.warning(
        "MLflow at %s is not usable yet (%s): serving WITHOUT traces until it is; retrying every %.0f s",
        safe_uri(config.tracking_uri),
        problem or "see above",
        RECONNECT_INTERVAL_S,
    )
    threading.Thread(target=_enable_when_reachable, args=(config,), name="mlflow-reconnect", daemon=True).start()


def _unreachable(uri: str | None) -> str | None:
    """Why an http(s) tracking server does not answer ``/health`` right now (None: it does, or not http)."""
    if not uri or not uri.startswith(("http://", "https://")):
        return None
    import httpx

    try:
        httpx.get(f"{uri.rstrip('/')}/health", timeout=3.0)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
    return None


def _set_experiment(config: ServeConfig) -> bool:
    import mlflow

    try:
        mlflow.set_experiment(config.experiment_name)
        return True
    except Exception as exc:  # noqa: BLE001 - tracing must not stop the agent from serving
        logger.warning(
            "cannot use MLflow experiment %r at %s: %s",
            config.experiment_name,
            safe_uri(config.tracking_uri),
            " ".join(str(exc).split())[:300],
        )
        return False


def _enable_when_reachable(config: ServeConfig) -> None:
    import mlflow

    while True:
        time.sleep(RECONNECT_INTERVAL_S)
        if _unreachable(config.tracking_uri) is None and _set_experiment(config):
            mlflow.tracing.enable()
            logger.info("MLflow at %s is back: tracing is on", safe_uri(config.tracking_uri))
            return


def flush_traces() -> None:
    """Export the traces still queued (called when the server shuts down, so none are lost)."""
    try:
        import mlflow

        mlflow.flush_trace_async_logging(terminate=False)
    except Exception as exc:  # noqa: BLE001 - shutting down; say it and go
        logger.warning("could not flush queued traces: %s", " ".join(str(exc).split())[:300])


def safe_uri(uri: str | None) -> str:
    """The URI without ``user:password@``: credentials never reach a log line."""
    from ..config import without_credentials

    return without_credentials(uri) if uri else "(default)"
