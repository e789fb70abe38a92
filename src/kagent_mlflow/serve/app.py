"""Build the ASGI app: MLflow Agent Server's routes around our agent, with checked input and clear errors.

Routes (MLflow Agent Server's interface): ``POST /invocations`` and ``POST /responses`` (OpenAI Responses format;
``"stream": true`` for server-sent events; see :mod:`.routes`), ``GET /health``, ``GET /agent/info``, and the
OpenAPI schema at ``GET /openapi.json`` (``/docs`` renders it); and the same agent over A2A under ``--a2a-path``
(default ``/a2a/``, see :mod:`.a2a`).

For uvicorn: ``uvicorn --factory kagent_mlflow.serve.app:create_app`` or ``uvicorn kagent_mlflow.serve.asgi:app``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from .. import __version__
from ..errors import ConfigError
from . import openapi
from .config import ServeConfig
from .handlers import async_handlers, blocking_handlers
from .middleware import ErrorMiddleware
from .routes import add_agent_routes
from .tracing import configure_tracing, flush_traces, safe_uri

logger = logging.getLogger("kagent_mlflow.serve")


def create_app(agent: Any = None, config: ServeConfig | None = None) -> Any:
    """The FastAPI app serving ``agent`` (default: ``config.agent``, else the built-in Llama Stack agent)."""
    import mlflow
    from fastapi import FastAPI

    config = config or ServeConfig.from_env()
    if agent is None:
        agent = load_agent(config.agent)  # first: a misconfigured agent fails before MLflow is touched
    configure_tracing(config)
    _import_early()
    if config.blocking:
        invoke, stream = blocking_handlers(agent)
    else:
        invoke, stream = async_handlers(agent, config.request_timeout)

    app = FastAPI(title="kagent-mlflow Agent Server", version=__version__, lifespan=_lifespan)
    add_agent_routes(app, invoke, stream, config.limits)
    app.state.a2a = None
    if config.a2a:
        from .a2a import add_a2a_routes

        add_a2a_routes(app, agent, invoke, stream, config)
    info = {"name": getattr(agent, "name", None) or type(agent).__name__, "use_case": "agent"}
    info |= {"mlflow_version": mlflow.__version__, "agent_api": "responses"}

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "healthy"}

    @app.get("/agent/info")
    async def agent_info() -> dict[str, str]:
        return info

    openapi.install(app)
    app.add_middleware(ErrorMiddleware)
    app.state.agent = agent
    app.state.config = config
    mode = "blocking" if config.blocking else "async"
    if config.a2a:
        logger.info("A2A agent at %s (card %s.well-known/agent-card.json)", config.a2a_path, config.a2a_path)
    traces = f"traces to {safe_uri(config.tracking_uri)}" if config.tracing else "tracing off"
    logger.info("serving %s (%s handlers), %s", type(agent).__name__, mode, traces)
    _freeze_startup_heap()
    return app


def _import_early() -> None:
    """What a first request would otherwise import on the event loop (``openai`` alone: ~1 s of CPU here)."""
    for name in ("openai", "mlflow.pyfunc", "mlflow.tracing.constant"):
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


def _freeze_startup_heap() -> None:
    """Keep what startup built (MLflow's, pydantic's and the SDK's objects: most of the heap) out of the garbage
    collector's full passes. A big request allocates enough to trigger one, and walking that heap took ~0.5 s here,
    with every thread - the event loop too - stopped."""
    gc.collect()
    gc.freeze()


@contextlib.asynccontextmanager
async def _lifespan(app: Any) -> AsyncIterator[None]:
    yield
    if app.state.a2a is not None:  # A2A tasks still running: cancelled, their traces closed as errors
        with contextlib.suppress(Exception):
            await asyncio.wait_for(app.state.a2a.handler.aclose(), 1.0)
    if app.state.config.tracing:  # deadline set by the runner at SIGTERM; else the grace counts from now
        deadline = getattr(app.state, "shutdown_deadline", None)
        await asyncio.to_thread(flush_traces, deadline, app.state.config.shutdown_grace)


def load_agent(spec: str | None) -> Any:
    """The agent named by ``spec`` (``"module:attribute"``, an instance or a zero-argument factory), or the default."""
    if not spec:
        from ..agent import default_agent  # the built-in agent, configured from LLAMA_STACK_* variables

        return default_agent()
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"agent {spec!r} is not 'module:attribute'; e.g. KAGENT_MLFLOW_AGENT=my_agents:build_agent")
    try:
        target = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load agent {spec!r}: {exc}") from None
    agent = target() if callable(target) and not hasattr(target, "predict") else target
    if not hasattr(agent, "predict") or not hasattr(agent, "predict_stream"):
        raise ConfigError(f"agent {spec!r} has no predict/predict_stream; give a ResponsesAgent instance or factory")
    return agent
