"""The outbox relay (a singleton workflow kept alive by the `outbox-relay` watchdog schedule)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

OUTBOX_RELAY_WORKFLOW = "OutboxRelay"
RELAY_WORKFLOW_ID = "outbox-relay"

DRAIN_OUTBOX = "drain_outbox"
ENSURE_OUTBOX_RELAY = "ensure_outbox_relay"


@dataclass
class OutboxRelayInput:
    drain_seconds: float = 300.0
    # Drains before continue-as-new, which keeps the workflow's history short.
    drains_per_run: int = 50


@dataclass
class DrainOutboxParams:
    run_seconds: float


@dataclass
class DrainOutboxResult:
    delivered: int
    failed: int
    dead_lettered: int


@dataclass
class EnsureOutboxRelayInput:
    # Unused (the watchdog needs no time reference); kept like every job's input.
    scheduled_time: datetime | None = None


@dataclass
class EnsureOutboxRelayResult:
    workflow_id: str
    run_id: str
