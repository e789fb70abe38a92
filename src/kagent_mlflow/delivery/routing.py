"""Which spooled record goes where: each to its own destination, or - only when asked - somewhere else.

``kagent-mlflow replay`` makes one pass over the spool per destination server (each pass through a sink built for
that server), so a dev and a prod MLflow each get exactly their own records. Re-targeting is explicit
(:class:`Retarget`: ``replay --to URI``, ``--experiment NAME``, ``--s3-endpoint-url URL``, narrowed by ``--from``);
records spooled before records carried a destination (``destination`` None) are delivered only with ``--to``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..records import Destination, Interaction, store_uri
from .replay import Route
from .spool_status import SpoolStatus

UNKNOWN = "unknown"  # ``--from unknown``: the records that do not name their MLflow


@dataclass(frozen=True)
class Retarget:
    """Explicit changes to where records go; every field None means: each record to its own destination."""

    to: Destination | None = None  # tracking URI (+ artifact location for an embedded store); experiment unused
    experiment_name: str | None = None
    s3_endpoint_url: str | None = None
    source: str | None = None  # only records whose destination tracking URI is this (or UNKNOWN)

    def selects(self, destination: Destination | None) -> bool:
        if self.source is None:
            return True
        if destination is None:
            return self.source == UNKNOWN
        return self.source != UNKNOWN and store_uri(self.source) == destination.tracking_uri

    def target(self, destination: Destination | None, experiment_name: str) -> Destination | None:
        """Where a record with this destination and experiment goes now; None: it stays in the spool."""
        if not self.selects(destination):
            return None
        if self.to is not None:
            base = Destination(
                tracking_uri=self.to.tracking_uri,
                experiment_name=experiment_name,
                artifact_location=self.to.artifact_location,
            )
        elif destination is not None:
            base = destination
        else:
            return None  # does not say where it belongs: only an explicit --to sends it anywhere
        changes: dict[str, object] = {}
        if self.experiment_name is not None:
            changes["experiment_name"] = self.experiment_name
        if self.s3_endpoint_url is not None:
            changes["s3_endpoint_url"] = store_uri(self.s3_endpoint_url)
        return base.model_copy(update=changes) if changes else base

    def route(self, server: tuple[str, str | None]) -> Route:
        """The records of one pass: those whose target is ``server``, re-targeted if asked."""

        def route(interaction: Interaction) -> Interaction | None:
            target = self.target(interaction.destination, interaction.experiment_name)
            if target is None or target.server != server:
                return None
            return interaction if target == interaction.destination else interaction.to(target)

        return route


@dataclass
class Pass:
    """One replay pass: the records bound for one server."""

    destination: Destination  # builds the sink (its experiment is the first group's; records carry their own)
    pending: int = 0
    experiments: list[str] = field(default_factory=list)


@dataclass
class Plan:
    passes: list[Pass]
    unrouted: int = 0  # records that do not name their MLflow and no --to was given
    unselected: int = 0  # records left out by --from


def plan(status: SpoolStatus, retarget: Retarget) -> Plan:
    """Group what waits (``status.waiting``) into passes, one per target server, oldest first."""
    passes: dict[tuple[str, str | None], Pass] = {}
    result = Plan(passes=[])
    for group in status.waiting:
        target = retarget.target(group.destination, group.experiment_name)
        if target is None:
            if not retarget.selects(group.destination):
                result.unselected += group.pending
            else:
                result.unrouted += group.pending
            continue
        one = passes.setdefault(target.server, Pass(target))
        one.pending += group.pending
        if target.experiment_name not in one.experiments:
            one.experiments.append(target.experiment_name)
    result.passes = list(passes.values())
    return result
