"""kagent-mlflow: ask kagent agents over A2A and make every interaction measurable in MLflow."""

from typing import TYPE_CHECKING, Any

from .config import Settings
from .errors import (
    AgentError,
    AgentProtocolError,
    AgentTaskError,
    AgentTimeoutError,
    AgentUnreachableError,
    ConfigError,
    DeliveryError,
    KagentMlflowError,
)
from .logger import KagentMLflowLogger
from .records import Interaction, TokenUsage
from .result import QuestionResult, RunOutcome

if TYPE_CHECKING:
    from .a2a.stream import StreamEvent
    from .conversation import Conversation
    from .question_stream import QuestionStream

__all__ = [
    "AgentError",
    "AgentProtocolError",
    "AgentTaskError",
    "AgentTimeoutError",
    "AgentUnreachableError",
    "ConfigError",
    "Conversation",
    "DeliveryError",
    "Interaction",
    "KagentMLflowLogger",
    "KagentMlflowError",
    "QuestionResult",
    "QuestionStream",
    "RunOutcome",
    "Settings",
    "StreamEvent",
    "TokenUsage",
]

_LAZY = {"Conversation": ".conversation", "QuestionStream": ".question_stream", "StreamEvent": ".a2a.stream"}


def __getattr__(name: str) -> Any:
    """The streaming names load on first use: they pull in httpx, and `kagent-mlflow --help` stays instant."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__version__ = "0.1.0"
