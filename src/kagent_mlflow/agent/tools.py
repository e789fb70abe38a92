"""Tools: typed Python functions the model may call, with a JSON schema derived from signature and docstring.

Execution never raises into the agent loop: a tool that raises, gets bad arguments, is unknown or hangs past its
timeout produces an ``"Error: ..."`` text that goes back to the model as the call's output. This module prepares a
call and words its outcome; :mod:`.toolrun` runs it (blocking tools on the bounded pool of :mod:`.threads`).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

DEFAULT_TOOL_TIMEOUT = 30.0
_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def _parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """Summary and per-argument descriptions from a Google-style (``Args:``) or Sphinx (``:param x:``) docstring."""
    if not doc:
        return "", {}
    doc = inspect.cleandoc(doc)
    params: dict[str, str] = {}
    for match in re.finditer(r"^:param\s+(\w+):\s*(.+)$", doc, re.MULTILINE):
        params[match.group(1)] = match.group(2).strip()
    summary_lines: list[str] = []
    section: str | None = None
    current: str | None = None
    for line in doc.splitlines():
        stripped = line.strip()
        header = stripped.rstrip(":").lower()
        if stripped.endswith(":") and header in {"args", "arguments", "parameters", "returns", "raises", "yields"}:
            section, current = header, None
            continue
        if section in {"args", "arguments", "parameters"}:
            m = re.match(r"^(\w+)\s*(\([^)]*\))?\s*:\s*(.*)$", stripped)
            if m and not line.startswith(" " * 8):
                current = m.group(1)
                params[current] = m.group(3).strip()
            elif current and stripped:
                params[current] = f"{params[current]} {stripped}".strip()
        elif section is None and not stripped.startswith(":"):
            summary_lines.append(stripped)
    return " ".join(x for x in summary_lines if x).strip(), params


def _args_model(func: Callable[..., Any], descriptions: Mapping[str, str]) -> type[BaseModel]:
    sig = inspect.signature(func)
    try:
        hints = get_type_hints(func)
    except Exception:  # unresolvable forward refs: fall back to the raw annotations
        hints = {}
    fields: dict[str, Any] = {}
    for pname, param in sig.parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        annotation = hints.get(pname, param.annotation)
        if annotation is inspect.Parameter.empty:
            annotation = Any
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[pname] = (annotation, Field(default, description=descriptions.get(pname)))
    return create_model(f"{func.__name__}_args", __config__=ConfigDict(extra="forbid"), **fields)


def _clean_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Drop pydantic's cosmetic ``title`` keys so the schema the model sees is small."""
    if isinstance(schema, dict):
        return {k: _clean_schema(v) for k, v in schema.items() if k != "title" or not isinstance(v, str)}
    if isinstance(schema, list):
        return [_clean_schema(v) for v in schema]
    return schema


@dataclass
class Tool:
    """A function the model may call. ``func`` runs in the blocking loop, ``afunc`` (if any) in the async loop."""

    name: str
    description: str
    parameters: dict[str, Any]
    func: Callable[..., Any] | None = None
    afunc: Callable[..., Awaitable[Any]] | None = None
    timeout: float | None = None
    return_direct: bool = False  # the tool's output is the agent's final answer (used for routing)
    # A delegation to a sub-agent: its blocking form runs on a thread of its own, not on the bounded tool pool, so
    # agents that wait for their own tools can never starve that pool (it is bounded by its own model/tool timeouts).
    delegates: bool = False
    args_model: type[BaseModel] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise ValueError(f"tool name {self.name!r} must be 1-64 letters, digits, '_' or '-'")
        if self.func is None and self.afunc is None:
            raise ValueError(f"tool {self.name!r} needs a function")

    @classmethod
    def from_function(
        cls,
        func: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        timeout: float | None = None,
        return_direct: bool = False,
    ) -> Tool:
        """Build a tool from a typed function; its docstring summary and ``Args:`` become the descriptions."""
        summary, arg_docs = _parse_docstring(func.__doc__)
        model = _args_model(func, arg_docs)
        schema = _clean_schema(model.model_json_schema())
        schema.setdefault("properties", {})
        is_async = inspect.iscoroutinefunction(func)
        return cls(
            name=name or func.__name__,
            description=description or summary or (name or func.__name__),
            parameters=schema,
            func=None if is_async else func,
            afunc=func if is_async else None,
            timeout=timeout,
            return_direct=return_direct,
            args_model=model,
        )

    def spec(self) -> dict[str, Any]:
        """The entry for the chat-completions ``tools`` list."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }

    def parse_arguments(self, arguments: str) -> dict[str, Any]:
        """Arguments as keyword arguments, validated (and coerced) against the signature. Raises ``ValueError``."""
        try:
            raw = json.loads(arguments) if arguments and arguments.strip() else {}
        except json.JSONDecodeError as exc:
            raise ValueError(f"arguments are not valid JSON ({exc.msg})") from None
        if not isinstance(raw, dict):
            raise ValueError("arguments must be a JSON object")
        if self.args_model is None:
            return raw
        try:
            parsed = self.args_model.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in exc.errors())
            raise ValueError(f"invalid arguments: {problems}") from None
        return {k: getattr(parsed, k) for k in type(parsed).model_fields}


def tool(
    func: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    return_direct: bool = False,
) -> Any:
    """Decorator: ``@tool`` or ``@tool(name=..., timeout=...)`` turns a typed function into a :class:`Tool`."""

    def wrap(f: Callable[..., Any]) -> Tool:
        return Tool.from_function(f, name=name, description=description, timeout=timeout, return_direct=return_direct)

    return wrap(func) if func is not None else wrap


def as_tool(obj: Tool | Callable[..., Any]) -> Tool:
    return obj if isinstance(obj, Tool) else Tool.from_function(obj)


def render_output(value: Any) -> str:
    """Tool results as text for the model: strings as-is, everything else as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return str(value)


@dataclass
class ToolResult:
    output: str
    error: str | None = None  # set when output is an error message for the model


def _error(message: str) -> ToolResult:
    return ToolResult(output=f"Error: {message}", error=message)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _lookup(tools: Mapping[str, Tool], name: str, arguments: str) -> tuple[Tool, dict[str, Any]] | ToolResult:
    found = tools.get(name)
    if found is None:
        available = ", ".join(sorted(tools)) or "none"
        return _error(f"unknown tool {name!r}; available tools: {available}")
    try:
        return found, found.parse_arguments(arguments)
    except ValueError as exc:
        return _error(f"tool {name!r}: {exc}")


@dataclass
class PreparedCall:
    """A call ready to run: the tool, its validated arguments and its timeout."""

    tool: Tool
    kwargs: dict[str, Any]
    timeout: float

    @property
    def label(self) -> str:
        return f"tool {self.tool.name!r}"

    def blocking(self) -> Callable[[], Any]:
        """What a thread runs for this call (an ``async def`` tool gets an event loop of its own there)."""
        if self.tool.func is not None:
            return functools.partial(self.tool.func, **self.kwargs)
        afunc = self.tool.afunc
        assert afunc is not None
        return lambda: asyncio.run(afunc(**self.kwargs))

    def returned(self, value: Any) -> ToolResult:
        return ToolResult(render_output(value))

    def raised(self, exc: BaseException) -> ToolResult:
        return _error(f"{self.label} raised {_describe(exc)}")

    def timed_out(self) -> ToolResult:
        return _error(f"{self.label} timed out after {self.timeout:g} s")


def prepare_call(
    tools: Mapping[str, Tool], name: str, arguments: str, default_timeout: float
) -> PreparedCall | ToolResult:
    """The call ready to run, or the error the model gets instead (unknown tool, invalid arguments)."""
    looked = _lookup(tools, name, arguments)
    if isinstance(looked, ToolResult):
        return looked
    found, kwargs = looked
    return PreparedCall(found, kwargs, found.timeout or default_timeout)
