"""The outbox relay: one workflow per partition, kept alive by the `outbox-relay` watchdog."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from learning_platform.jobs.contracts import (
    Activity,
    ActivityInterfaces,
    JobSchedule,
    NoInputActivity,
)

if TYPE_CHECKING:
    from learning_platform.core.settings import Settings

OUTBOX_RELAY_WORKFLOW = "OutboxRelay"
RELAY_WORKFLOW_ID = "outbox-relay"


@dataclass
class OutboxRelayInput:
    drain_seconds: float = 300.0
    # Drains before continue-as-new, which keeps the workflow's history short.
    drains_per_run: int = 50
    # Which hash partition of the aggregates this relay delivers (of OUTBOX_RELAY_PARTITIONS).
    partition: int = 0


@dataclass
class DrainOutboxParams:
    run_seconds: float
    partition: int = 0


@dataclass
class DrainOutboxResult:
    delivered: int
    failed: int
    dead_lettered: int
    # The partition count fell to or below this relay's partition: the relay ends.
    retired: bool = False


@dataclass
class EnsureOutboxRelayInput:
    # Unused (the watchdog needs no time reference); kept like every job's input.
    scheduled_time: datetime | None = None


@dataclass
class EnsureOutboxRelayResult:
    workflow_id: str
    run_id: str
    # Every relay's workflow id (the first is `workflow_id`: partition 0 keeps the old id).
    workflow_ids: list[str] = field(default_factory=list)


# `make dev` triggers it at start, so the relay does not wait for its first tick.
RELAY_WATCHDOG_SCHEDULE_ID = "outbox-relay"


def schedules(settings: Settings) -> list[JobSchedule]:
    return [
        JobSchedule(
            schedule_id=RELAY_WATCHDOG_SCHEDULE_ID,
            workflow="EnsureOutboxRelay",
            arg=EnsureOutboxRelayInput(),
            description="Watchdog: start each partition's outbox relay unless it is running",
            every=timedelta(minutes=1),
        ),
    ]


class OutboxRelayActivities(ActivityInterfaces):
    """The activities as workflows call them (`activities/outbox_relay.py` implements each)."""

    drain_outbox: Activity[DrainOutboxParams, DrainOutboxResult]
    """Deliver batches of one partition while there are events; between them, sleep until a NOTIFY
    (or the poll interval, which also picks up events whose retry delay ran out). Ends at once
    with `retired` if the partition count no longer includes the partition."""

    ensure_outbox_relay: NoInputActivity[EnsureOutboxRelayResult]
    """Write OUTBOX_RELAY_PARTITIONS for the claims, then start each partition's relay unless it
    runs; Temporal allows one open run per id."""
