"""Turn what went wrong into an HTTP answer a client can act on.

MLflow's Agent Server answers every exception of the agent with a bare ``500 {"detail": str(exc)}`` and, when
streaming, with an SSE ``{"error": ...}`` event after a ``200``. Here the agent's failures are classified (model
endpoint unreachable -> 502, timed out -> 504, answered with an error -> 502, anything else -> 500) and every error
body carries an OpenAI-style ``error`` object next to MLflow's ``detail``, so both kinds of client can read it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServeError:
    """One failed request: HTTP status, OpenAI-style error type, and a one-line message."""

    status: int
    kind: str
    message: str

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "code": self.status}, "detail": self.message}


class RequestTimeoutError(Exception):
    """The request ran past the server's ``request_timeout``."""


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def classify(exc: BaseException) -> ServeError:
    """Map an exception raised while answering (anywhere in its cause chain) to a :class:`ServeError`.

    Matches by class name so the server does not import ``openai``/``httpx`` error types it may never see.
    """
    for err in _chain(exc):
        names = _names(err)
        text = _one_line(err)
        if isinstance(err, RequestTimeoutError):
            return ServeError(504, "request_timeout", f"the request took too long: {text}")
        if names & {"RequestTimeoutError", "TimeoutError", "APITimeoutError", "TimeoutException", "ModelTimeoutError"}:
            return ServeError(504, "model_timeout", f"the model endpoint did not answer in time: {text}")
        if names & {"APIConnectionError", "ConnectError", "ModelUnreachableError", "ConnectionError"}:
            return ServeError(502, "model_unreachable", f"cannot reach the model endpoint: {text}")
        if names & {"APIStatusError", "ModelProtocolError", "HTTPStatusError", "ModelError"}:
            status = getattr(err, "status_code", None)
            where = f" (HTTP {status})" if status else ""
            return ServeError(502, "model_error", f"the model endpoint answered with an error{where}: {text}")
        if names & {"APIResponseValidationError", "JSONDecodeError"}:
            return ServeError(502, "model_error", f"the model endpoint sent an unusable answer: {text}")
    return ServeError(500, "server_error", f"the agent failed: {_one_line(exc)}")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    url = _request_url(exc)
    if url and url not in text:
        text = f"{text} ({url})"
    return text[:1000]


def _request_url(exc: BaseException) -> str | None:
    request = getattr(exc, "request", None)
    try:
        return str(request.url) if request is not None else None
    except Exception:  # noqa: BLE001 - a best-effort detail for the message
        return None
