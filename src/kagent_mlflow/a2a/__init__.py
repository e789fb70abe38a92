"""The live path: ask an A2A agent (protocol 1.0 or 0.3) and get a parsed ``AgentReply``.

``AgentClient`` is imported lazily, so importing the models (as ``records`` does) stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .models import AgentReply, ToolCall

if TYPE_CHECKING:
    from .client import AgentClient

__all__ = ["AgentClient", "AgentReply", "ToolCall"]


def __getattr__(name: str) -> Any:
    if name == "AgentClient":
        from .client import AgentClient

        return AgentClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
