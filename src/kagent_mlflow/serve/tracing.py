"""Point MLflow tracing at the configured tracking server, cheaply, boundedly and without ever breaking an answer.

For an http(s) tracking server, finished traces are exported by :mod:`.trace_export`: many traces per OTLP request
to ``/v1/traces`` from several exporter threads, at most ``trace_memory_mb`` held in memory, the rest spilled to
disk (:mod:`.trace_spill`) and exported later; :func:`flush_traces` exports what fits in the shutdown grace time and
persists the rest. Other tracking URIs (a local ``sqlite:///`` store) keep MLflow's own asynchronous exporter.

A tracking server that is down at START-UP needs care: until ``mlflow.set_experiment`` has succeeded, MLflow
resolves ``MLFLOW_EXPERIMENT_NAME`` with a blocking HTTP call (retried for minutes) when each trace starts, i.e. on
the request path. So the server starts with tracing off, says so, and a background thread turns it on once the
tracking server answers. Traces spilled by an earlier run are exported meanwhile, as soon as MLflow accepts them.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from .config import ServeConfig
from .otlp_exporter import OtlpTraceExporter
from .trace_export import ExportLimits, ExportPool

logger = logging.getLogger("kagent_mlflow.serve")

# MLflow's own exporter (local stores only): batch spans, never block a request on export.
TRACE_EXPORT_DEFAULTS = {
    "MLFLOW_ENABLE_ASYNC_TRACE_LOGGING": "true",
    "MLFLOW_ASYNC_TRACE_LOGGING_MAX_SPAN_BATCH_SIZE": "100",
    "MLFLOW_ASYNC_TRACE_LOGGING_MAX_INTERVAL_MILLIS": "1000",
    "MLFLOW_ASYNC_TRACE_LOGGING_MAX_QUEUE_SIZE": "10000",
    "MLFLOW_ASYNC_TRACE_LOGGING_RETRY_TIMEOUT": "30",
}
RECONNECT_INTERVAL_S = 5.0

_pool: ExportPool | None = None
_experiment_id: str | None = None


def configure_tracing(config: ServeConfig) -> None:
    import mlflow

    if not config.tracing:
        mlflow.tracing.disable()
        logger.info("MLflow tracing is off (KAGENT_MLFLOW_TRACING=false)")
        return
    _start_exporter(config)
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


def _start_exporter(config: ServeConfig) -> None:
    """Our batching, bounded exporter for an http(s) tracking server; MLflow's own for anything else."""
    global _pool
    from .._mlflow_compat import install_span_exporter

    if _pool is not None:  # a second app in this process (tests, benchmarks): the old one's traces go to disk
        _pool.close(deadline=0)
        _pool = None
    uri = config.tracking_uri or ""
    if not uri.startswith(("http://", "https://")):
        for name, value in TRACE_EXPORT_DEFAULTS.items():
            os.environ.setdefault(name, value)
        install_span_exporter(None)
        return
    limits = ExportLimits(
        exporters=config.trace_exporters,
        batch_traces=config.trace_batch,
        memory_bytes=int(config.trace_memory_mb * (1 << 20)),
    )
    pool = ExportPool(uri, config.trace_spill_dir, limits).start()
    install_span_exporter(lambda _uri: OtlpTraceExporter(pool, lambda: _experiment_id))
    _pool = pool


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
    global _experiment_id
    import mlflow

    try:
        _experiment_id = mlflow.set_experiment(config.experiment_name).experiment_id
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


def flush_traces(deadline: float | None = None, grace: float = 20.0) -> None:
    """At shutdown: export queued traces until ``deadline`` (``time.monotonic()``; default now + ``grace``), write
    the rest to the spill directory, and say what happened."""
    global _pool
    if _pool is None:
        _flush_mlflow_exporter()
        return
    pool, _pool = _pool, None
    report = pool.close(deadline if deadline is not None else time.monotonic() + grace)
    message = "traces at shutdown: %d exported in %.1f s, %d written to %s (exported at the next start or by " + (
        "`kagent-mlflow replay`)"
    )
    level = logging.WARNING if report.persisted else logging.INFO
    logger.log(level, message, report.exported, report.seconds, report.persisted, pool.spill_dir)


def _flush_mlflow_exporter() -> None:
    try:
        import mlflow

        mlflow.flush_trace_async_logging(terminate=False)
    except Exception as exc:  # noqa: BLE001 - shutting down; say it and go
        logger.warning("could not flush queued traces: %s", " ".join(str(exc).split())[:300])


def safe_uri(uri: str | None) -> str:
    """The URI without ``user:password@``: credentials never reach a log line."""
    from ..config import without_credentials

    return without_credentials(uri) if uri else "(default)"
