"""The observability path: one pipeline (spool, sink, recorder parts), durable spool, replay. Idempotent by id."""

from .handles import Delivery, LiveGate, PendingRun
from .pipeline import Pipeline, build_pipeline
from .recorder import Recorder
from .replay import ReplayReport, replay
from .sink import Sink, is_retryable
from .spool import Spool
from .spool_status import SpoolStatus

__all__ = [
    "Delivery",
    "LiveGate",
    "PendingRun",
    "Pipeline",
    "Recorder",
    "ReplayReport",
    "Sink",
    "Spool",
    "SpoolStatus",
    "build_pipeline",
    "is_retryable",
    "replay",
]
