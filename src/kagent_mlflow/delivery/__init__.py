"""The observability path: non-blocking recorder, durable spool, replay. Idempotent by interaction id."""

from .recorder import Delivery, PendingRun, Recorder
from .replay import ReplayReport, replay
from .sink import Sink, is_retryable
from .spool import Spool, SpoolStatus

__all__ = [
    "Delivery",
    "PendingRun",
    "Recorder",
    "ReplayReport",
    "Sink",
    "Spool",
    "SpoolStatus",
    "is_retryable",
    "replay",
]
