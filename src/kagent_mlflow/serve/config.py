"""Run configuration of the Agent Server: flags > environment variables > defaults.

The model side (``LLAMA_STACK_BASE_URL``, ``LLAMA_STACK_MODEL``, ``LLAMA_STACK_API_KEY``) is read by the agent itself;
this object holds what the server needs: where it listens, where traces go and how requests are run.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

from ..config import DEFAULT_EXPERIMENT, Settings
from ..errors import ConfigError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_REQUEST_TIMEOUT = 300.0
DEFAULT_SHUTDOWN_GRACE = 20.0  # below Kubernetes' default 30 s terminationGracePeriodSeconds, with room to spare
DEFAULT_TRACE_MEMORY_MB = 16.0
DEFAULT_TRACE_EXPORTERS = 4
DEFAULT_TRACE_BATCH = 100
DEFAULT_A2A_PATH = "/a2a/"
DEFAULT_A2A_MAX_CONTEXTS = 1000  # conversations remembered; the least recently used one is forgotten first
DEFAULT_A2A_MAX_TURNS = 20  # question/answer turns kept per conversation; older ones are dropped
A2A_PROTOCOLS = ("1.0", "0.3")
_A2A_PATH = re.compile(r"^/(?:[A-Za-z0-9._~-]+/)*$")


@dataclass(frozen=True)
class Limits:
    """What one request may hold; past them the caller gets a 4xx and the agent is never called."""

    max_body_bytes: int = 1024 * 1024  # 1 MiB: ~250,000 tokens of text, past the context window of the models here
    max_json_depth: int = 64  # Responses requests nest ~6 levels; tool schemas a few more
    max_input_items: int = 10_000


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={value!r} is not a boolean; use true or false")


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not a whole number") from None
    return _positive(name, number)


def _positive(name: str, number: int) -> int:
    if number <= 0:
        raise ConfigError(f"{name} must be > 0, got {number}")
    return number


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not a number") from None
    if not math.isfinite(number) or number <= 0:
        raise ConfigError(f"{name} must be a finite number > 0, got {value!r}")
    return number


@dataclass(frozen=True)
class ServeConfig:
    """What ``kagent-mlflow serve`` and ``python -m kagent_mlflow.serve`` run with."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    tracking_uri: str | None = None
    experiment_name: str = DEFAULT_EXPERIMENT
    tracing: bool = True
    # "module:attribute" naming a ResponsesAgent instance or a zero-argument factory; None = the built-in agent.
    agent: str | None = None
    # Benchmarks only: register the agent's synchronous predict directly, as a naive server would.
    blocking: bool = False
    # Upper bound on one request; past it the client gets 504 instead of waiting forever.
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    log_level: str = "info"
    max_body_bytes: int = Limits.max_body_bytes
    max_json_depth: int = Limits.max_json_depth
    max_input_items: int = Limits.max_input_items
    # SIGTERM -> exit: in-flight requests finish, queued traces are exported until this many seconds after the
    # signal, the rest is written to trace_spill_dir.
    shutdown_grace: float = DEFAULT_SHUTDOWN_GRACE
    trace_spill_dir: Path = Path("trace-spill")
    trace_memory_mb: float = DEFAULT_TRACE_MEMORY_MB  # finished traces held in memory; past it they spill to disk
    trace_exporters: int = DEFAULT_TRACE_EXPORTERS  # concurrent OTLP export requests
    trace_batch: int = DEFAULT_TRACE_BATCH  # traces per export request
    # The A2A face (see :mod:`.a2a`): on/off, where it is mounted, the public URL its card names (None: the URL the
    # card was fetched through), the protocol versions the card offers (first = preferred) and the chat memory.
    a2a: bool = True
    a2a_path: str = DEFAULT_A2A_PATH
    a2a_url: str | None = None
    a2a_protocols: tuple[str, ...] = A2A_PROTOCOLS
    a2a_max_contexts: int = DEFAULT_A2A_MAX_CONTEXTS
    a2a_max_turns: int = DEFAULT_A2A_MAX_TURNS

    def __post_init__(self) -> None:
        if not 0 < self.shutdown_grace <= 3600:  # also false for NaN
            raise ConfigError(
                f"shutdown grace {self.shutdown_grace!r} must be > 0 and <= 3600 seconds (--shutdown-grace)"
            )
        object.__setattr__(self, "a2a_path", normalize_a2a_path(self.a2a_path))
        object.__setattr__(self, "a2a_protocols", parse_a2a_protocols(self.a2a_protocols))
        if self.a2a_url is not None and not self.a2a_url.startswith(("http://", "https://")):
            raise ConfigError(f"A2A URL {self.a2a_url!r} must start with http:// or https:// (--a2a-url)")

    @property
    def limits(self) -> Limits:
        return Limits(self.max_body_bytes, self.max_json_depth, self.max_input_items)

    @classmethod
    def from_env(cls, **overrides: object) -> ServeConfig:
        """Read ``KAGENT_MLFLOW_SERVE_*`` and MLflow's own variables; non-None ``overrides`` win."""
        settings = Settings.from_env()
        values: dict[str, object] = {
            "host": os.environ.get("KAGENT_MLFLOW_SERVE_HOST") or DEFAULT_HOST,
            "port": _port(os.environ.get("KAGENT_MLFLOW_SERVE_PORT") or DEFAULT_PORT),
            "tracking_uri": settings.effective_tracking_uri,
            "experiment_name": settings.experiment_name,
            "tracing": _env_bool("KAGENT_MLFLOW_TRACING", True),
            "agent": os.environ.get("KAGENT_MLFLOW_AGENT") or None,
            "blocking": _env_bool("KAGENT_MLFLOW_SERVE_BLOCKING", False),
            "request_timeout": _env_float("KAGENT_MLFLOW_REQUEST_TIMEOUT", DEFAULT_REQUEST_TIMEOUT),
            "log_level": os.environ.get("KAGENT_MLFLOW_LOG_LEVEL") or "info",
            "max_body_bytes": _env_int("KAGENT_MLFLOW_MAX_BODY_BYTES", Limits.max_body_bytes),
            "max_json_depth": _env_int("KAGENT_MLFLOW_MAX_JSON_DEPTH", Limits.max_json_depth),
            "max_input_items": _env_int("KAGENT_MLFLOW_MAX_INPUT_ITEMS", Limits.max_input_items),
            "shutdown_grace": _env_float("KAGENT_MLFLOW_SHUTDOWN_GRACE", DEFAULT_SHUTDOWN_GRACE),
            "trace_spill_dir": trace_spill_dir(settings),
            "trace_memory_mb": _env_float("KAGENT_MLFLOW_TRACE_MEMORY_MB", DEFAULT_TRACE_MEMORY_MB),
            "trace_exporters": _env_int("KAGENT_MLFLOW_TRACE_EXPORTERS", DEFAULT_TRACE_EXPORTERS),
            "trace_batch": _env_int("KAGENT_MLFLOW_TRACE_BATCH", DEFAULT_TRACE_BATCH),
            "a2a": _env_bool("KAGENT_MLFLOW_A2A", True),
            "a2a_path": os.environ.get("KAGENT_MLFLOW_A2A_PATH") or DEFAULT_A2A_PATH,
            "a2a_url": os.environ.get("KAGENT_MLFLOW_A2A_URL") or None,
            "a2a_protocols": os.environ.get("KAGENT_MLFLOW_A2A_PROTOCOLS") or A2A_PROTOCOLS,
            "a2a_max_contexts": _env_int("KAGENT_MLFLOW_A2A_MAX_CONTEXTS", DEFAULT_A2A_MAX_CONTEXTS),
            "a2a_max_turns": _env_int("KAGENT_MLFLOW_A2A_MAX_TURNS", DEFAULT_A2A_MAX_TURNS),
        }
        config = cls(**values)  # type: ignore[arg-type]
        return config.with_overrides(**overrides)

    def with_overrides(self, **overrides: object) -> ServeConfig:
        given = {k: v for k, v in overrides.items() if v is not None}
        if "port" in given:
            given["port"] = _port(given["port"])
        for name in ("max_body_bytes", "max_json_depth", "max_input_items", "a2a_max_contexts", "a2a_max_turns"):
            if name in given:
                given[name] = _positive(f"--{name.replace('_', '-')}", int(given[name]))  # type: ignore[call-overload]
        return replace(self, **given)  # type: ignore[arg-type]


def trace_spill_dir(settings: Settings) -> Path:
    """Where the Agent Server spills traces (env ``KAGENT_MLFLOW_TRACE_SPILL_DIR``, default <data dir>/trace-spill)."""
    return Path(os.environ.get("KAGENT_MLFLOW_TRACE_SPILL_DIR") or settings.home / "trace-spill")


def _port(value: object) -> int:
    try:
        port = int(str(value))
    except ValueError:
        raise ConfigError(f"port {value!r} is not a number; give one like 8000") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"port {port} is out of range; use 0-65535 (0 = any free port)")
    return port


def normalize_a2a_path(value: str) -> str:
    """``a2a`` / ``/api/a2a/kagent/x`` -> ``/a2a/`` / ``/api/a2a/kagent/x/``: one leading and one trailing slash."""
    text = str(value).strip()
    path = "/" + text.strip("/") + "/"
    path = "/" if path == "//" and text else path  # "/" = the root, where kagent sends a BYO agent's A2A requests
    if not _A2A_PATH.match(path) or {".", ".."} & set(path.split("/")):
        raise ConfigError(
            f"A2A path {value!r} must be / or a URL path of letters, digits and ._~- (e.g. /a2a/, or / for a "
            "kagent BYO agent); --a2a-path or KAGENT_MLFLOW_A2A_PATH"
        )
    return path


def parse_a2a_protocols(value: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """``"1.0,0.3"`` -> ``("1.0", "0.3")``: the versions the agent card offers, the preferred first."""
    items = value.split(",") if isinstance(value, str) else list(value)
    versions = tuple(dict.fromkeys(v.strip() for v in items if v.strip()))
    if not versions or any(v not in A2A_PROTOCOLS for v in versions):
        raise ConfigError(
            f"A2A protocols {value!r} must be a comma-separated list of {', '.join(A2A_PROTOCOLS)} "
            "(--a2a-protocols or KAGENT_MLFLOW_A2A_PROTOCOLS)"
        )
    return versions
