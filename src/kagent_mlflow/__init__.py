"""kagent-mlflow: ask kagent agents over A2A and make every interaction measurable in MLflow."""

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

__all__ = [
    "AgentError",
    "AgentProtocolError",
    "AgentTaskError",
    "AgentTimeoutError",
    "AgentUnreachableError",
    "ConfigError",
    "DeliveryError",
    "Interaction",
    "KagentMLflowLogger",
    "KagentMlflowError",
    "QuestionResult",
    "RunOutcome",
    "Settings",
    "TokenUsage",
]
__version__ = "0.1.0"
