"""Run the app under uvicorn and announce the address it got (``--port 0`` = a free port chosen by the OS).

uvicorn binds the port itself: handing it a socket bound beforehand left replies without TCP_NODELAY here, so every
keep-alive reply waited ~40 ms for a delayed ACK.

Shutdown (SIGTERM or Ctrl-C) is bounded by ``config.shutdown_grace`` counted from the signal: requests in flight get
up to half of it to finish (then they are cancelled), queued traces are exported until the grace time is nearly up,
and the rest is written to the trace spill, so the process is gone well inside Kubernetes' 30 s default.
"""

from __future__ import annotations

import logging
import socket
import time
from typing import Any

from ..errors import ConfigError
from .app import create_app
from .config import ServeConfig

PERSIST_RESERVE_S = 1.0  # of the grace time, kept for writing unexported traces to disk and exiting


def run(config: ServeConfig) -> None:
    import uvicorn

    _check_bindable(config.host, config.port)
    logging.basicConfig(
        level=config.log_level.upper() if config.log_level.upper() in logging._nameToLevel else "INFO",
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    app = create_app(config=config)

    class _Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            if getattr(app.state, "shutdown_deadline", None) is None:
                app.state.shutdown_deadline = time.monotonic() + config.shutdown_grace - PERSIST_RESERVE_S
            super().handle_exit(sig, frame)

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started:
                print(f"READY {_address(self.servers)}", flush=True)

    uv_config = uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        log_level=config.log_level.lower(),
        access_log=False,
        timeout_graceful_shutdown=max(config.shutdown_grace / 2, 1.0),
        backlog=2048,
    )
    _Server(uv_config).run()


def _address(servers: list[Any]) -> str:
    host, port = servers[0].sockets[0].getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _check_bindable(host: str, port: int) -> None:
    """Fail with one line, before MLflow is even imported, when the address cannot be used."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}; pick another --host/--port") from None
