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
    "Settings",
    "TokenUsage",
]
__version__ = "0.1.0"
