"""The observability path, assembled in one place from ``Settings``: spool, sink, live gate and recorder.

Why one builder: the logger, ``kagent-mlflow replay`` / ``status`` and the benchmarks must agree on where the spool
is, which sink writes where, how many workers a store takes (one writer for the embedded SQLite store) and that
deliveries step aside for live requests. Built here, they cannot drift apart. Nothing starts until it is used: the
sink (and MLflow's import) on the first write, the recorder's threads on the first question.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from ..config import Settings
from ..records import Destination
from .handles import LiveGate
from .recorder import Recorder
from .replay import ProgressFn, ReplayReport, replay
from .sink import Sink
from .spool import Spool
from .spool_status import SpoolStatus

YIELD_LIMIT = 0.25  # longest a delivery step waits for a live request to finish (delivery must not starve)


class Pipeline:
    """Spool + sink + live gate + (lazily) the recorder and its threads. ``close`` is explicit."""

    def __init__(
        self,
        settings: Settings,
        spool: Spool,
        *,
        sink_factory: Callable[[], Sink] | None = None,
        recorder_options: dict[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.spool = spool
        self.gate = LiveGate()
        self._sink_factory = sink_factory or self._mlflow_sink
        self._sink: Sink | None = None
        self._recorder: Recorder | None = None
        self._options = dict(recorder_options or {})
        self._lock = threading.Lock()

    def sink(self) -> Sink:
        """The one sink of this pipeline (created on first use; MLflow is imported then)."""
        if self._sink is None:
            with self._lock:
                if self._sink is None:
                    self._sink = self._sink_factory()
        return self._sink

    def recorder(self) -> Recorder:
        """The background recorder (its threads start on first use; a closed one is replaced)."""
        with self._lock:
            if self._recorder is None:
                self._recorder = Recorder(self.sink, self.spool, gate=self.gate, **self._options)
            return self._recorder

    @property
    def started(self) -> bool:
        return self._recorder is not None

    def step_aside(self, *_: object) -> None:
        """Between MLflow calls: wait (bounded) while a live request is in flight."""
        self.gate.wait_idle(YIELD_LIMIT)

    def flush(self, timeout: float | None = None) -> bool:
        return True if self._recorder is None else self._recorder.flush(timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Flush (bounded), stop the recorder's threads; undelivered records stay in the spool. Safe to repeat."""
        with self._lock:
            recorder, self._recorder = self._recorder, None
        return True if recorder is None else recorder.close(timeout)

    def status(self) -> SpoolStatus:
        return self.spool.status()

    def replay(
        self, *, workers: int = 4, attempts: int = 3, progress: ProgressFn | None = None, total: int | None = None
    ) -> ReplayReport:
        """Deliver what waits in the spool for this pipeline's own destination, through its sink."""
        return replay(self.spool, self.sink(), workers=workers, attempts=attempts, progress=progress, total=total)

    def sink_for(self, destination: Destination) -> Sink:
        """A sink writing to ``destination`` (``replay`` makes one pass per destination server)."""
        from ..sinks.mlflow import MlflowSink

        return MlflowSink(self.settings, destination=destination)

    def _mlflow_sink(self) -> Sink:
        """The settings' own destination; between MLflow calls it steps aside for live requests."""
        from ..sinks.mlflow import MlflowSink

        return MlflowSink(self.settings, on_step=self.step_aside)


def build_pipeline(
    settings: Settings,
    *,
    sink_factory: Callable[[], Sink] | None = None,
    spool_dir: Any = None,
    **recorder_options: Any,
) -> Pipeline:
    """The observability path for ``settings``. ``recorder_options`` override ``Recorder``'s (tests, benchmarks)."""
    recorder_options.setdefault("workers", 1 if settings.is_embedded else 2)  # 1 writer for SQLite; 2 measured best
    recorder_options.setdefault("yield_limit", YIELD_LIMIT)
    spool = Spool(spool_dir if spool_dir is not None else settings.effective_spool_dir)
    return Pipeline(settings, spool, sink_factory=sink_factory, recorder_options=recorder_options)
