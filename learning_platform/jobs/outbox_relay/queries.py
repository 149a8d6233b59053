"""Delivering outbox events to their handlers: claim a batch, handle, remove, in one transaction.

A handler whose effect is in this database writes it on the relay's connection, so the effect
and the event's removal commit together (exactly-once effect). Claims use FOR UPDATE SKIP
LOCKED, so any number of relays split the events and none is delivered twice. Events of one
aggregate are delivered in id order: an event waits while an earlier one of its aggregate is
pending (in another relay's batch, or waiting to be retried).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from learning_platform.core.errors import ServiceError
from learning_platform.jobs.outbox_relay import metrics as outbox_metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PendingEvent:
    id: int
    aggregate_type: str
    aggregate_id: str
    event_type: str
    payload: dict[str, Any]
    attempts: int
    trace_context: dict[str, str] | None = None

    @property
    def aggregate(self) -> tuple[str, str]:
        return (self.aggregate_type, self.aggregate_id)


# Handles events of one type, in id order; raising fails all of them (they are then retried
# one by one to find the culprit).
EventHandler = Callable[[AsyncConnection, Sequence[PendingEvent]], Awaitable[None]]


class MalformedEvent(ServiceError, ValueError):
    """The payload cannot be handled however often it is retried."""


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    base_seconds: float
    max_seconds: float


@dataclass
class RelayedBatch:
    """What one relay batch did with the events it claimed (claims, not a keyset walk)."""

    claimed: int = 0
    delivered: int = 0
    failed: int = 0
    dead_lettered: int = 0
    latencies: list[float] = field(default_factory=list)


# Events behind a predecessor that waits for a retry are left out before the LIMIT, so a
# failing aggregate cannot fill every batch. A predecessor locked by another relay is only
# known after locking: such events come back with `blocked` and are left for a later batch.
_CLAIM = text(
    """
    WITH claimed AS (
        SELECT e.id, e.aggregate_type, e.aggregate_id, e.event_type, e.payload, e.attempts,
               e.trace_context
          FROM outbox_events e
         WHERE e.available_at <= now()
           AND NOT EXISTS (
               SELECT 1 FROM outbox_events p
                WHERE p.aggregate_type = e.aggregate_type AND p.aggregate_id = e.aggregate_id
                  AND p.id < e.id AND p.available_at > now())
         ORDER BY e.id
         LIMIT :limit
           FOR UPDATE SKIP LOCKED
    )
    SELECT c.*, EXISTS (
               SELECT 1 FROM outbox_events p
                WHERE p.aggregate_type = c.aggregate_type AND p.aggregate_id = c.aggregate_id
                  AND p.id < c.id AND p.id NOT IN (SELECT id FROM claimed)) AS blocked
      FROM claimed c
     ORDER BY c.id
    """
)

_DELETE_DELIVERED = text(
    """
    DELETE FROM outbox_events WHERE id = ANY(CAST(:ids AS bigint[]))
    RETURNING event_type, extract(epoch FROM clock_timestamp() - created_at) AS latency
    """
)

_RECORD_FAILURES = text(
    """
    UPDATE outbox_events e
       SET attempts = e.attempts + 1,
           last_error = f.error,
           available_at = now() + make_interval(
               secs => least(:base * power(2, e.attempts), :cap))
      FROM unnest(CAST(:ids AS bigint[]), CAST(:errors AS text[])) AS f(id, error)
     WHERE e.id = f.id
    """
)

_DEAD_LETTER = text(
    """
    WITH moved AS (
        DELETE FROM outbox_events
         WHERE id = ANY(CAST(:ids AS bigint[])) AND attempts >= :max_attempts
        RETURNING *
    )
    INSERT INTO outbox_dead_letters
           (id, aggregate_type, aggregate_id, event_type, payload, created_at, attempts,
            last_error)
    SELECT id, aggregate_type, aggregate_id, event_type, payload, created_at, attempts,
           coalesce(last_error, '')
      FROM moved
    RETURNING event_type
    """
)


async def claim_batch(conn: AsyncConnection, limit: int) -> tuple[int, list[PendingEvent]]:
    """Lock up to `limit` events; return how many were locked and those deliverable now."""
    rows = (await conn.execute(_CLAIM, {"limit": limit})).all()
    deliverable = [
        PendingEvent(
            id=row.id,
            aggregate_type=row.aggregate_type,
            aggregate_id=row.aggregate_id,
            event_type=row.event_type,
            payload=row.payload,
            attempts=row.attempts,
            trace_context=row.trace_context,
        )
        for row in rows
        if not row.blocked
    ]
    return len(rows), deliverable


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]


class _Delivery:
    """One batch: which events were handled, which failed (and why)."""

    def __init__(self, conn: AsyncConnection, handlers: Mapping[str, EventHandler]) -> None:
        self._conn = conn
        self._handlers = handlers
        self.delivered: list[PendingEvent] = []
        self.failures: list[tuple[PendingEvent, str]] = []
        self._failed_aggregates: set[tuple[str, str]] = set()

    async def run(self, events: Sequence[PendingEvent]) -> None:
        # Consecutive runs of one type keep the id order across types within an aggregate.
        for event_type, run in groupby(events, key=lambda event: event.event_type):
            segment = [e for e in run if e.aggregate not in self._failed_aggregates]
            if segment:
                await self._deliver_segment(event_type, segment)

    async def _deliver_segment(self, event_type: str, segment: list[PendingEvent]) -> None:
        handler = self._handlers.get(event_type)
        if handler is None:
            self._fail(segment, f"no handler for event type {event_type!r}")
            return
        try:
            async with self._conn.begin_nested():
                await handler(self._conn, segment)
        except Exception:
            await self._deliver_one_by_one(handler, segment)
        else:
            self.delivered.extend(segment)

    async def _deliver_one_by_one(self, handler: EventHandler, segment: list[PendingEvent]) -> None:
        for event in segment:
            if event.aggregate in self._failed_aggregates:
                continue
            try:
                async with self._conn.begin_nested():
                    await handler(self._conn, [event])
            except Exception as exc:
                log.warning(
                    "outbox event failed",
                    extra={"event_id": event.id, "event_type": event.event_type,
                           "attempt": event.attempts + 1, "error": describe(exc)},
                )  # fmt: skip
                self._fail([event], describe(exc))
            else:
                self.delivered.append(event)

    def _fail(self, events: Sequence[PendingEvent], error: str) -> None:
        for event in events:
            self.failures.append((event, error))
            self._failed_aggregates.add(event.aggregate)


async def relay_batch(
    engine: AsyncEngine,
    handlers: Mapping[str, EventHandler],
    *,
    limit: int,
    retry: RetryPolicy,
) -> RelayedBatch:
    """Deliver one batch in one transaction; failed events are retried later with backoff and
    dead-lettered after `retry.max_attempts`."""
    outcome = RelayedBatch()
    dead_types: list[str] = []
    async with engine.begin() as conn:
        outcome.claimed, events = await claim_batch(conn, limit)
        if not events:
            return outcome
        delivery = _Delivery(conn, handlers)
        await delivery.run(events)
        if delivery.delivered:
            removed = await conn.execute(
                _DELETE_DELIVERED, {"ids": [event.id for event in delivery.delivered]}
            )
            outcome.latencies = [float(row.latency) for row in removed]
        if delivery.failures:
            dead_types = await _record_failures(conn, delivery.failures, retry)
    outcome.delivered = len(delivery.delivered)
    outcome.failed = len(delivery.failures)
    outcome.dead_lettered = len(dead_types)
    _count(delivery, dead_types, outcome.latencies)
    return outcome


async def _record_failures(
    conn: AsyncConnection, failures: Sequence[tuple[PendingEvent, str]], retry: RetryPolicy
) -> list[str]:
    ids = [event.id for event, _ in failures]
    await conn.execute(
        _RECORD_FAILURES,
        {
            "ids": ids,
            "errors": [error for _, error in failures],
            "base": retry.base_seconds,
            "cap": retry.max_seconds,
        },
    )
    moved = await conn.execute(_DEAD_LETTER, {"ids": ids, "max_attempts": retry.max_attempts})
    dead_types = [row.event_type for row in moved]
    if dead_types:
        log.error("outbox events dead-lettered", extra={"count": len(dead_types)})
    return dead_types


def _count(delivery: _Delivery, dead_types: Sequence[str], latencies: Sequence[float]) -> None:
    for event in delivery.delivered:
        outbox_metrics.DELIVERED.labels(event.event_type).inc()
    for event, _ in delivery.failures:
        outbox_metrics.FAILED.labels(event.event_type).inc()
    for event_type in dead_types:
        outbox_metrics.DEAD_LETTERED.labels(event_type).inc()
    for latency in latencies:
        outbox_metrics.DELIVERY_LATENCY.observe(latency)
