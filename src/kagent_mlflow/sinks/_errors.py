"""Turn whatever MLflow, requests, boto3 or SQLAlchemy raised into one short cause and a retryable flag."""

from __future__ import annotations

import re

_MAX = 300
# Causes found in MLflow's wrapped requests/urllib3 messages, most specific first.
_NETWORK = (
    ("Connection refused", "connection refused"),
    ("Name or service not known", "host name not found"),
    ("nodename nor servname", "host name not found"),
    ("Temporary failure in name resolution", "host name not found"),
    ("Read timed out", "timed out waiting for the server"),
    ("timed out", "timed out"),
    ("timeout", "timed out"),
    ("RemoteDisconnected", "server closed the connection"),
    ("Connection aborted", "server closed the connection"),
    ("Connection reset", "connection reset"),
    ("Max retries exceeded", "cannot connect"),
)
_RETRYABLE_STATUS = {408, 425, 429}


def _one_line(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= _MAX else text[: _MAX - 3] + "..."


def describe(err: BaseException) -> tuple[str, bool]:
    """(cause, retryable) for a failure while writing to MLflow."""
    from mlflow.exceptions import MlflowException, RestException

    if isinstance(err, RestException):
        status = err.get_http_status_code()
        retryable = status >= 500 or status in _RETRYABLE_STATUS
        return _one_line(f"HTTP {status} {err.error_code}: {err.message}"), retryable

    name = type(err).__name__
    module = type(err).__module__
    text = str(err)
    if module.startswith(("botocore", "boto3", "s3transfer")):
        code = getattr(err, "response", {}).get("Error", {}).get("Code") if hasattr(err, "response") else None
        return _one_line(f"S3 error {code or name}: {text}"), True
    if module.startswith("sqlalchemy"):
        return _one_line(f"database error {name}: {text}"), True
    if isinstance(err, MlflowException):
        if status := re.search(r"too many (\d{3}) error responses", text):
            return f"HTTP {status.group(1)}", True
        for needle, cause in _NETWORK:
            if needle.lower() in text.lower():
                return cause, True
        if "S3" in text or "boto" in text:
            return _one_line(text), True
        code = str(err.error_code)
        permanent = code in ("INVALID_PARAMETER_VALUE", "BAD_REQUEST", "INVALID_STATE")
        return _one_line(f"{code}: {err.message}"), not permanent
    if module.startswith("requests") and getattr(err, "response", None) is not None:
        status = err.response.status_code  # type: ignore[attr-defined]
        return _one_line(f"HTTP {status}: {text}"), status >= 500 or status in _RETRYABLE_STATUS
    if isinstance(err, OSError):
        return _one_line(f"{name}: {text}"), True
    return _one_line(f"{name}: {text}"), True
