"""How the MLflow sink talks to the network: fail fast, and S3 settings scoped to this sink.

Fail fast. MLflow's HTTP layer retries a failed request up to 7 times with exponential backoff and waits up to
120 s per attempt (``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` / ``MLFLOW_HTTP_REQUEST_TIMEOUT``, read from the process
environment on every call). Against a dead server that is minutes per record, while our delivery layer has its own
retries and spool. Setting those environment variables would change every other MLflow user in the process (the
Pattern 2 agent's tracing, a user's own code), so instead :func:`fail_fast` sets a ``ContextVar`` and a thin
wrapper around MLflow's ``_get_http_response_with_retries`` (``_mlflow_compat``; the single function all of MLflow's
REST, OTLP and proxied-artifact requests go through) applies our retry count and timeout only while that variable
is set, i.e. only to calls made by this sink in the current thread. Everyone else sees MLflow's defaults.

S3. ``S3ArtifactRepository`` takes credentials as constructor arguments but reads the endpoint from
``MLFLOW_S3_ENDPOINT_URL`` in the environment. :class:`ScopedS3` builds a boto3 client from *our* settings
(endpoint, keys, short timeouts, no retries) and :func:`artifact_repository` hands it to MLflow's S3 repository, so
nothing leaks into the process environment. Without S3 settings, MLflow's own resolution (env, IAM ...) applies.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from .. import _mlflow_compat as compat


@dataclass(frozen=True)
class HttpPolicy:
    max_retries: int = 0
    timeout: float = 10.0


_POLICY: ContextVar[HttpPolicy | None] = ContextVar("kagent_mlflow_http_policy", default=None)
_install_lock = threading.Lock()
_MARK = "_kagent_mlflow_wrapped"


def _install() -> None:
    """Wrap MLflow's retrying HTTP helper once per process; behaviour is unchanged unless a policy is set."""
    with _install_lock:
        original = compat.http_request_function()
        if original is None or getattr(original, _MARK, False):
            return  # already wrapped, or a future MLflow renamed it: its own retry settings then apply

        def wrapped(method, url, max_retries, backoff_factor, backoff_jitter, retry_codes, *args, **kwargs):  # type: ignore[no-untyped-def]
            policy = _POLICY.get()
            if policy is not None:
                max_retries, backoff_factor, backoff_jitter = policy.max_retries, 0, 0
                kwargs["timeout"] = policy.timeout
                # Hand back the final error response instead of urllib3's "too many 500 error responses", so
                # MLflow's own error handling reports the server's status and message.
                if args:
                    args = (False, *args[1:])
                else:
                    kwargs["raise_on_status"] = False
            return original(method, url, max_retries, backoff_factor, backoff_jitter, retry_codes, *args, **kwargs)

        setattr(wrapped, _MARK, True)
        wrapped.__wrapped__ = original  # type: ignore[attr-defined]
        compat.replace_http_request_function(wrapped)


@contextlib.contextmanager
def fail_fast(policy: HttpPolicy) -> Iterator[None]:
    """Within this block (this thread/context only), MLflow HTTP calls use ``policy`` instead of the defaults."""
    _install()
    token = _POLICY.set(policy)
    try:
        yield
    finally:
        _POLICY.reset(token)


class ScopedS3:
    """A boto3 S3 client built from explicit settings, created on first use and shared by one sink."""

    def __init__(
        self, endpoint_url: str | None, access_key_id: str | None, secret_access_key: str | None, timeout: float
    ) -> None:
        self.endpoint_url = endpoint_url
        self._access_key_id = access_key_id
        self._secret_access_key = secret_access_key
        self._timeout = timeout
        self._client: Any = None
        self._lock = threading.Lock()

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                import boto3
                from botocore.config import Config

                self._client = boto3.client(
                    "s3",
                    endpoint_url=self.endpoint_url,
                    aws_access_key_id=self._access_key_id,
                    aws_secret_access_key=self._secret_access_key,
                    config=Config(
                        signature_version="s3v4",
                        connect_timeout=self._timeout,
                        read_timeout=self._timeout,
                        retries={"max_attempts": 1, "mode": "standard"},
                    ),
                )
            return self._client


def artifact_repository(artifact_uri: str, tracking_uri: str, s3: ScopedS3 | None) -> Any:
    """The artifact repository for ``artifact_uri``; S3 URIs use this sink's own S3 client when configured."""
    if s3 is not None and artifact_uri.startswith("s3://"):
        return compat.s3_repository(artifact_uri, tracking_uri, s3.client)
    return compat.artifact_repository(artifact_uri, tracking_uri)
