"""Run the app under uvicorn on an already-bound socket, so ``--port 0`` can report the port it got."""

from __future__ import annotations

import socket
import sys

from .app import create_app
from .config import ServeConfig


def run(config: ServeConfig) -> None:
    import uvicorn

    app = create_app(config=config)
    sock = _bind(config.host, config.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    uv_config = uvicorn.Config(app, log_level=config.log_level.lower(), access_log=False, timeout_graceful_shutdown=5)
    server = uvicorn.Server(uv_config)
    print(f"READY http://{shown}:{port}", flush=True)
    sys.stdout.flush()
    server.run(sockets=[sock])


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        from ..errors import ConfigError

        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}; pick another --host/--port") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock
