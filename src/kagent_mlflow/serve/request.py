"""The request body of ``POST /invocations`` and ``/responses``: checked at the edge, before anything else runs.

Everything a caller can get wrong is answered here with a 4xx and a one-line message (see :class:`RequestRejected`),
so it never reaches the agent, the model or the trace exporter: bodies past ``max_body_bytes`` (413), JSON nested
deeper than ``max_json_depth`` (checked by a bracket scan before any parser recurses), invalid UTF-8 or lone
surrogates, ``NaN``/``Infinity`` anywhere, wrong types (``"stream": "yes"``), unknown roles or item types, more than
``max_input_items`` items (413), and an ``input`` with no user message (422).

The pydantic model :class:`InvocationRequest` is strict (no coercion) where the agent acts on a value and lets
unknown top-level fields through (OpenAI clients send more than the agent uses); MLflow's own
``ResponsesAgentRequest`` is then built from the checked data. :func:`parse_request` is plain CPU work: the server
runs it on a worker thread, so a big body never holds the event loop.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    JsonValue,
    StrictBool,
    StrictInt,
    StrictStr,
    Tag,
    TypeAdapter,
    ValidationError,
    field_validator,
)
from pydantic_core import from_json

from .config import Limits
from .errors import ServeError

EXAMPLE = '{"input": [{"role": "user", "content": "Hi"}]}'


class RequestRejected(Exception):
    """The caller's mistake, as the HTTP answer it gets."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.error = ServeError(status, kind, message)


# -- the documented request model ------------------------------------------------------------------------------------

_STRICT = ConfigDict(strict=True, allow_inf_nan=False, extra="allow")


class ContentPart(BaseModel):
    """One part of a message's content: text (``input_text``/``output_text``), a refusal, an image or a file."""

    model_config = _STRICT
    type: Literal["input_text", "output_text", "refusal", "input_image", "input_file"]
    text: StrictStr | None = None


class MessageItem(BaseModel):
    """A chat message; ``type`` may be left out."""

    model_config = _STRICT
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: StrictStr | list[ContentPart]


class FunctionCallItem(BaseModel):
    """A tool call the model made earlier in the conversation."""

    model_config = _STRICT
    type: Literal["function_call"]
    call_id: StrictStr
    name: StrictStr
    arguments: StrictStr


class FunctionCallOutputItem(BaseModel):
    """The result of an earlier tool call."""

    model_config = _STRICT
    type: Literal["function_call_output"]
    call_id: StrictStr
    output: StrictStr | list[dict[str, JsonValue]]


OtherType = Literal[
    "reasoning", "mcp_approval_request", "mcp_approval_response", "file_search_call", "computer_call", "web_search_call"
]
_OTHER_TYPES = frozenset(OtherType.__args__)
_ITEM_TYPES = ("message", "function_call", "function_call_output", *sorted(_OTHER_TYPES))


class OtherItem(BaseModel):
    """Output items a client may send back; the agent passes over them."""

    model_config = _STRICT
    type: OtherType


def _item_tag(item: Any) -> str | None:
    kind = item.get("type", "message") if isinstance(item, dict) else getattr(item, "type", "message")
    if not isinstance(kind, str):  # e.g. {"type": {}}: no tag, so pydantic reports the item type as wrong
        return None
    return "other" if kind in _OTHER_TYPES else kind


InputItem = Annotated[
    Annotated[MessageItem, Tag("message")]
    | Annotated[FunctionCallItem, Tag("function_call")]
    | Annotated[FunctionCallOutputItem, Tag("function_call_output")]
    | Annotated[OtherItem, Tag("other")],
    Discriminator(
        _item_tag,
        custom_error_type="item_type",
        custom_error_message=f"unknown item type; use one of {', '.join(_ITEM_TYPES)}",
    ),
]


class ChatContext(BaseModel):
    """Who is asking: ``conversation_id`` becomes the trace's session, ``user_id`` its user."""

    model_config = _STRICT
    conversation_id: StrictStr | None = None
    user_id: StrictStr | None = None


class InvocationRequest(BaseModel):
    """An OpenAI Responses request (the subset the agent uses; other fields are accepted and passed on)."""

    model_config = ConfigDict(
        strict=True,
        allow_inf_nan=False,
        extra="allow",
        json_schema_extra={"examples": [{"input": [{"role": "user", "content": "Which pods run in prod?"}]}]},
    )
    input: list[InputItem] = Field(description="The conversation, oldest first; a string is one user message.")
    stream: StrictBool = Field(False, description="Answer as server-sent events.")
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    max_output_tokens: Annotated[StrictInt, Field(gt=0)] | None = None
    instructions: StrictStr | None = None
    model: StrictStr | None = None
    user: StrictStr | None = None
    context: ChatContext | None = None
    metadata: dict[str, StrictStr] | None = None
    custom_inputs: dict[str, JsonValue] | None = None
    tools: list[dict[str, JsonValue]] | None = None
    parallel_tool_calls: StrictBool | None = None

    @field_validator("input", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        """``"input": "text"`` (what ``client.responses.create(input="...")`` sends) is one user message."""
        return [{"role": "user", "content": value}] if isinstance(value, str) else value


# -- parsing ---------------------------------------------------------------------------------------------------------

# One token at a time (so a worker thread running this lets the event loop in between): a string (skipped: it may
# hold brackets or the letters of NaN), a bracket, NaN/Infinity, or a number literal that overflows to inf (3-digit
# exponent, 300+ digits) - pydantic would let those into free-form fields and they would reach the model as bad JSON.
_TOKEN = re.compile(
    rb'"(?:[^"\\]|\\.)*"'  # a string
    rb"|[\[{]|[\]}]|NaN|Infinity"
    rb"|[0-9]+(?:\.[0-9]*)?[eE][+-]?[0-9]{3,}|[0-9]{300,}(?:\.[0-9]*)?"  # numbers that may overflow
)


def check_json_text(body: bytes, max_depth: int) -> None:
    """Reject nesting deeper than ``max_depth`` and non-finite numbers, without parsing (so without recursion)."""
    depth = 0
    for match in _TOKEN.finditer(body):
        first = body[match.start()]
        if first == 0x22:  # '"'
            continue
        if first in b"[{":
            depth += 1
            if depth > max_depth:
                raise RequestRejected(400, f"request body is nested deeper than {max_depth} levels; flatten it")
        elif first in b"]}":
            depth -= 1
        elif first in b"NI" or not math.isfinite(float(match.group())):
            raise RequestRejected(400, "request body holds NaN or Infinity (not JSON); send finite numbers")


def parse_request(body: bytes, limits: Limits) -> tuple[Any, bool]:
    """``(ResponsesAgentRequest, stream)`` for ``body``, or :class:`RequestRejected` saying what is wrong."""
    if len(body) > limits.max_body_bytes:
        raise too_large(limits)
    if not body.strip():
        raise RequestRejected(400, f"request body is empty; send a JSON object like {EXAMPLE}")
    check_json_text(body, limits.max_json_depth)
    try:
        data = from_json(body, allow_inf_nan=False)
    except ValueError as exc:  # invalid UTF-8, lone surrogates, syntax
        raise RequestRejected(400, f"request body is not valid JSON: {exc}") from None
    items = data.get("input") if isinstance(data, dict) else None
    if isinstance(items, list) and len(items) > limits.max_input_items:
        raise RequestRejected(
            413,
            f"input has {len(items)} items, more than the server's limit of {limits.max_input_items}; "
            "send a shorter conversation",
            "request_too_large",
        )
    request = _validate(data)
    if not any(isinstance(item, MessageItem) and item.role == "user" for item in request.input):
        what = "is empty" if not request.input else "has no user message"
        raise RequestRejected(422, f"input {what}; nothing to answer. Send e.g. {EXAMPLE}")
    return to_agent_request(request), request.stream


_ITEMS: TypeAdapter[list[Any]] = TypeAdapter(list[InputItem])
CHUNK = 256


def _validate(data: Any) -> InvocationRequest:
    """Strict validation; a long ``input`` a chunk at a time, so no single call holds the GIL (and with it the
    event loop) for long."""
    items = data.get("input") if isinstance(data, dict) else None
    if isinstance(items, list) and len(items) > CHUNK:
        checked: list[Any] = []
        for start in range(0, len(items), CHUNK):
            try:
                checked += _ITEMS.validate_python(items[start : start + CHUNK])
            except ValidationError as exc:
                raise RequestRejected(400, describe(exc, offset=start)) from None
        data = {**data, "input": checked}
    try:
        return InvocationRequest.model_validate(data)
    except ValidationError as exc:
        raise RequestRejected(400, describe(exc)) from None


def to_agent_request(request: InvocationRequest) -> Any:
    """MLflow's ``ResponsesAgentRequest`` (what agents take) for an already checked request."""
    from mlflow.types.responses import ResponsesAgentRequest

    data = request.model_dump(exclude_unset=True, exclude={"stream", "input"})
    data["input"] = [item.model_dump(exclude_unset=True) | {"type": item.type} for item in request.input]
    try:
        return ResponsesAgentRequest(**data)
    except (ValidationError, ValueError) as exc:  # MLflow's own rules (e.g. an output message needs its id)
        raise RequestRejected(400, f"invalid request: {_one_line(exc)}") from None


def too_large(limits: Limits) -> RequestRejected:
    return RequestRejected(
        413,
        f"request body is larger than the server's limit of {limits.max_body_bytes} bytes; send less",
        "request_too_large",
    )


def describe(exc: ValidationError, offset: int | None = None) -> str:
    """One line naming where the body is wrong and how, e.g. ``input[0].role: Input should be 'user', ...``.
    ``offset``: the errors are of ``input[offset:]`` (validated on its own)."""
    problems = []
    for error in exc.errors(include_url=False)[:3]:
        if error["type"] == "model_type" and not error["loc"]:
            return f"request body must be a JSON object with an 'input' list; send {EXAMPLE}"
        loc = error["loc"]
        if offset is not None:
            loc = ("input", loc[0] + offset, *loc[1:]) if loc and isinstance(loc[0], int) else ("input", *loc)
        where = _location(loc)
        got = "" if error["type"] == "missing" else f" (got {_short(error.get('input'))})"
        problems.append(f"{where}: {error['msg']}{got}")
    more = len(exc.errors()) - len(problems)
    return "; ".join(problems) + (f"; and {more} more" if more > 0 else "")


_TAGS = {"message", "function_call", "function_call_output", "other"}


def _location(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part not in _TAGS and part != "str" and not str(part).startswith(("list[", "function-")):
            text += f".{part}" if text else str(part)
    return text or "body"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:500]
