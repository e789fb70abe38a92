"""One Settings object: explicit arguments > environment variables > defaults.

MLflow's own environment names are honoured, so a user's existing shell set-up keeps working.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from ._urls import safe_url as without_credentials
from .errors import ConfigError

DEFAULT_A2A_URL = "http://localhost:8083/api/a2a/kagent/rh-analyze-simple/"
DEFAULT_EXPERIMENT = "rh-analyze-mvp"
DEFAULT_QUESTION = "In one sentence, what is OpenShift?"
APP_NAME = "kagent-mlflow"
LOCAL_UI_HOST, LOCAL_UI_PORT = "127.0.0.1", 5000  # where `kagent-mlflow ui` serves by default (MLflow's own)

_TRACKING_SCHEMES = {"http", "https", "file", "sqlite", "postgresql", "mysql", "databricks"}
MAX_EXPERIMENT_NAME = 500  # MLflow's own limit (mlflow.utils.validation.MAX_EXPERIMENT_NAME_LENGTH)


def default_home() -> Path:
    """The tool's data directory: ``KAGENT_MLFLOW_HOME`` or the platform's user data dir."""
    env = os.environ.get("KAGENT_MLFLOW_HOME")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir(APP_NAME, appauthor=False))


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


class Settings(BaseModel):
    """Everything the logger needs to know. Secrets are ``SecretStr`` so they never print."""

    model_config = ConfigDict(frozen=True)

    a2a_url: str = DEFAULT_A2A_URL
    tracking_uri: str | None = None
    experiment_name: str = DEFAULT_EXPERIMENT
    s3_endpoint_url: str | None = None
    aws_access_key_id: SecretStr | None = None
    aws_secret_access_key: SecretStr | None = None
    a2a_token: SecretStr | None = None
    home: Path = Field(default_factory=default_home)
    spool_dir: Path | None = None
    timeout: float = 120.0

    @field_validator("experiment_name")
    @classmethod
    def _valid_experiment(cls, name: str) -> str:
        return check_experiment_name(name)

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Build settings from the environment, letting non-None ``overrides`` win."""
        values: dict[str, object] = {
            "a2a_url": _env("A2A_URL"),
            "tracking_uri": _env("MLFLOW_TRACKING_URI"),
            "experiment_name": _env("MLFLOW_EXPERIMENT", "MLFLOW_EXPERIMENT_NAME"),
            "s3_endpoint_url": _env("MLFLOW_S3_ENDPOINT_URL"),
            "aws_access_key_id": _env("AWS_ACCESS_KEY_ID"),
            "aws_secret_access_key": _env("AWS_SECRET_ACCESS_KEY"),
            "a2a_token": _env("A2A_TOKEN"),
            "spool_dir": _env("KAGENT_MLFLOW_SPOOL_DIR"),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        if not values["tracking_uri"] or not values["a2a_url"]:
            values |= _local_stack_defaults(values)
        return cls(**{k: v for k, v in values.items() if v is not None})

    @property
    def is_embedded(self) -> bool:
        """True when no tracking server is configured and we log to the local store."""
        return not self.tracking_uri

    @property
    def effective_tracking_uri(self) -> str:
        """The tracking URI actually used: the configured one, else the embedded SQLite store."""
        if self.tracking_uri:
            return self.tracking_uri
        return f"sqlite:///{self.home / 'mlflow.db'}"

    @property
    def embedded_artifact_root(self) -> Path:
        return self.home / "artifacts"

    @property
    def effective_spool_dir(self) -> Path:
        return self.spool_dir or self.home / "spool"

    def validate_for_ask(self) -> None:
        """Reject malformed URLs before any network call."""
        check_http_url(self.a2a_url, "A2A URL")
        if self.tracking_uri:
            check_tracking_uri(self.tracking_uri)
        if self.s3_endpoint_url:
            check_http_url(self.s3_endpoint_url, "S3 endpoint URL")


def _local_stack_defaults(values: dict[str, object]) -> dict[str, object]:
    """The URLs of a running ``kagent-mlflow up`` stack for the settings nobody gave (flag, argument or env):
    its MLflow server instead of writing the embedded store directly (it serves that same store), its agent's A2A
    URL (the seed's default, unless ``up`` was given other ports). Nothing while no stack runs."""
    from .local.state import running_stack_urls

    urls = running_stack_urls(Path(str(values.get("home") or default_home())))
    if urls is None:
        return {}
    return {"tracking_uri": values["tracking_uri"] or urls[0], "a2a_url": values["a2a_url"] or urls[1]}


def check_tracking_uri(uri: str) -> None:
    """Reject a tracking URI MLflow could not use, before anything is sent."""
    scheme = urlparse(uri).scheme
    dialect = scheme.split("+", 1)[0]  # SQLAlchemy's dialect+driver, e.g. postgresql+psycopg2
    if dialect not in _TRACKING_SCHEMES and not Path(uri).is_absolute():
        raise ConfigError(
            f"tracking URI {without_credentials(uri)!r} has unsupported scheme {scheme!r}; "
            "use http(s)://host:port for a server, or leave it unset for the local store"
        )


def check_experiment_name(name: str) -> str:
    """An experiment name MLflow accepts: not blank, at most 500 characters, no control characters.

    Checked when settings are made, so a bad name stops ``ask`` before the agent is asked (never a record that
    no MLflow would take).
    """
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(
            f"experiment name {name!r} is empty; give one with --experiment NAME (or MLFLOW_EXPERIMENT_NAME)"
        )
    if len(name) > MAX_EXPERIMENT_NAME:
        raise ConfigError(
            f"experiment name is {len(name)} characters long; MLflow accepts at most {MAX_EXPERIMENT_NAME}"
        )
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ConfigError(f"experiment name {name!r} contains control characters; use printable text")
    return name


def check_http_url(url: str, what: str) -> None:
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(
            f"{what} {without_credentials(url)!r} is not an http(s) URL; give one like http://host:port/path/"
        )


def check_question(question: str | None) -> str:
    if question is None or not question.strip():
        raise ConfigError("the question is empty; pass the text to ask, e.g. kagent-mlflow ask 'What is Kubernetes?'")
    return question
