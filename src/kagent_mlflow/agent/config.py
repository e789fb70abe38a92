"""Where the agent finds its model: constructor arguments > environment variables > defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from urllib.parse import urlparse

from .._urls import safe_url
from ..errors import ConfigError

DEFAULT_BASE_URL = "http://localhost:8321"
DEFAULT_TIMEOUT = 60.0
DEFAULT_API_KEY = "none"  # Llama Stack does not check it, but the openai SDK insists on one


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


def _float_env(name: str) -> float | None:
    raw = os.environ.get(name)
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number; set it to e.g. 0.2 or unset it") from None


def openai_base_url(url: str) -> str:
    """The OpenAI-compatible base URL for a Llama Stack server root or an URL that already ends in ``/v1``."""
    url = url.strip().rstrip("/")
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(
            f"model URL {safe_url(url)!r} is not an http(s) URL; set LLAMA_STACK_BASE_URL to e.g. http://localhost:8321"
        )
    return url if url.endswith("/v1") else f"{url}/v1"


@dataclass(frozen=True)
class ModelConfig:
    """How to reach the model. ``base_url`` is normalised to the ``.../v1`` OpenAI base; ``api_key`` never prints."""

    base_url: str = DEFAULT_BASE_URL
    model: str | None = None
    api_key: str = field(default=DEFAULT_API_KEY, repr=False)
    temperature: float | None = None
    timeout: float = DEFAULT_TIMEOUT
    max_retries: int = 0
    max_tokens: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_url", openai_base_url(self.base_url))
        if self.timeout <= 0:
            raise ConfigError(f"model timeout must be positive, got {self.timeout}")

    @classmethod
    def from_env(cls, **overrides: object) -> ModelConfig:
        """``LLAMA_STACK_BASE_URL`` (or ``LLAMA_STACK_CLIENT_BASE_URL``), ``LLAMA_STACK_MODEL``,
        ``LLAMA_STACK_API_KEY``, ``LLAMA_STACK_TEMPERATURE``, ``LLAMA_STACK_TIMEOUT``; non-None overrides win."""
        values: dict[str, object] = {
            "base_url": _env("LLAMA_STACK_BASE_URL", "LLAMA_STACK_CLIENT_BASE_URL"),
            "model": _env("LLAMA_STACK_MODEL"),
            "api_key": _env("LLAMA_STACK_API_KEY"),
            "temperature": _float_env("LLAMA_STACK_TEMPERATURE"),
            "timeout": _float_env("LLAMA_STACK_TIMEOUT"),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**{k: v for k, v in values.items() if v is not None})  # type: ignore[arg-type]

    def with_model(self, model: str) -> ModelConfig:
        return replace(self, model=model)
