"""What ``GET /openapi.json`` says about the agent routes: request body, answers, every error status.

The routes read their body themselves (so they can check it off the event loop), which FastAPI cannot see; the
request model is therefore declared here and added to the schema's components, so clients and schema-based fuzzers
(schemathesis) know what to send.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from .request import InvocationRequest


class ErrorDetail(BaseModel):
    message: str = Field(description="One line: what was wrong and what to do.")
    type: str = Field(
        description="invalid_request_error, request_too_large, unsupported_media_type, model_unreachable, "
        "model_error, model_timeout, request_timeout or server_error"
    )
    code: int = Field(description="The HTTP status again.")


class ErrorBody(BaseModel):
    """Every error answer: an OpenAI-style ``error`` object, and MLflow's ``detail`` with the same message."""

    error: ErrorDetail
    detail: str


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


def route_docs(path: str) -> dict[str, Any]:
    """``add_api_route`` keywords documenting ``path`` (``/invocations`` or ``/responses``)."""
    from mlflow.types.responses import ResponsesAgentResponse

    note = "MLflow Agent Server's route." if path == "/invocations" else "For the OpenAI SDK's responses.create()."
    return {
        "summary": "Ask the agent (OpenAI Responses format)",
        "description": note,
        "openapi_extra": {
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/InvocationRequest"}}},
            }
        },
        "responses": {
            200: {
                "model": ResponsesAgentResponse,
                "description": 'The answer; with `"stream": true` server-sent events (`data: {event}` lines, '
                "last `data: [DONE]`).",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            },
            400: _error("The body is not valid JSON, is nested too deep, holds NaN/Infinity or breaks the schema."),
            413: _error("The body is larger than --max-body-bytes, or `input` has more than --max-input-items."),
            415: _error("Content-Type is not application/json (UTF-8)."),
            422: _error("`input` is empty or has no user message: nothing to answer."),
            500: _error("The agent failed (a bug in the agent or a tool); the message says how."),
            502: _error("The model endpoint could not be reached or answered with an error."),
            504: _error("The model endpoint (or the whole request) did not answer in time."),
        },
    }


def install(app: Any) -> None:
    """Make ``app.openapi()`` include :class:`~.request.InvocationRequest` (and the models it refers to)."""
    from fastapi.openapi.utils import get_openapi
    from pydantic.json_schema import models_json_schema

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            _, defs = models_json_schema(
                [(InvocationRequest, "validation")], ref_template="#/components/schemas/{model}"
            )
            schema.setdefault("components", {}).setdefault("schemas", {}).update(defs.get("$defs", {}))
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
