"""Delivering outbox events to their handlers: claim a batch, handle, remove, in one transaction.

A handler whose effect is in this database writes it on the relay's connection, so the effect
and the event's removal commit together (exactly-once effect). Claims use FOR UPDATE SKIP
LOCKED, so any number of relays split the events and none is delivered twice. Events of one
aggregate are delivered in id order: an event waits while an earlier one of its aggregate is
pending (in another relay's batch, or waiting to be retried).

Partitions: with OUTBOX_RELAY_PARTITIONS = N, relay k claims only aggregates whose hash is k
modulo N, N read from `outbox_relay_partitions` by every claim, so all relays switch at the same
statement when the watchdog changes it. A change of N needs no hand-over step: an event a relay
of the old N holds is row-locked until that relay commits, and the new owner's claim treats it as
a pending predecessor of the aggregate's later events (`blocked`), so it delivers them only in a
batch that starts after the old owner's commit. Partitions only keep relays off each other's rows;
order and exactly-once rest on the row locks, as for relays competing on one partition.

Each batch first takes the fast path: the claim also removes the deliverable events, the
handlers run without savepoints, and everything commits together (four round trips). If any
handler raises, that transaction is rolled back and the batch is run again carefully: each run
of one event type in a savepoint, a failing run one event at a time, failures recorded for retry.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from learning_platform.core.errors import ServiceError
from learning_platform.core.metrics import observe_many
from learning_platform.jobs.outbox_relay import metrics as outbox_metrics

log = logging.getLogger(__name__)


# Not frozen: a frozen dataclass's __init__ costs three times as much, paid per event.
@dataclass(slots=True)
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
# With :remove (the fast path) the deliverable events are deleted by the same statement; the
# rollback of a failed fast path puts them back. `age` is how long ago the event committed.
_CLAIM = text(
    """
    WITH claimed AS (
        SELECT e.id, e.aggregate_type, e.aggregate_id, e.event_type, e.payload, e.attempts,
               e.trace_context, e.created_at
          FROM outbox_events e
         WHERE e.available_at <= now()
           AND (hashtext(e.aggregate_type || '/' || e.aggregate_id) & 2147483647)
               % coalesce((SELECT partitions FROM outbox_relay_partitions), 1) = :partition
           AND NOT EXISTS (
               SELECT 1 FROM outbox_events p
                WHERE p.aggregate_type = e.aggregate_type AND p.aggregate_id = e.aggregate_id
                  AND p.id < e.id AND p.available_at > now())
         ORDER BY e.id
         LIMIT :limit
           FOR UPDATE SKIP LOCKED
    ), checked AS (
        SELECT c.*, EXISTS (
                   SELECT 1 FROM outbox_events p
                    WHERE p.aggregate_type = c.aggregate_type
                      AND p.aggregate_id = c.aggregate_id
                      AND p.id < c.id AND p.id NOT IN (SELECT id FROM claimed)) AS blocked
          FROM claimed c
    ), removed AS (
        DELETE FROM outbox_events
         WHERE :remove AND id IN (SELECT id FROM checked WHERE NOT blocked)
    )
    SELECT id, aggregate_type, aggregate_id, event_type, payload, attempts, trace_context,
           blocked, extract(epoch FROM clock_timestamp() - created_at) AS age
      FROM checked
     ORDER BY id
    """
)

# No row (a fresh or truncated table) means one partition.
_PARTITIONS = text("SELECT coalesce((SELECT partitions FROM outbox_relay_partitions), 1)")
_SET_PARTITIONS = text(
    """
    INSERT INTO outbox_relay_partitions AS p (singleton, partitions) VALUES (true, :n)
    ON CONFLICT (singleton) DO UPDATE SET partitions = EXCLUDED.partitions
     WHERE p.partitions <> EXCLUDED.partitions
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


async def relay_partitions(conn: AsyncConnection) -> int:
    """How many partitions the relays split the aggregates into now."""
    return int((await conn.execute(_PARTITIONS)).scalar_one())


async def set_relay_partitions(conn: AsyncConnection, partitions: int) -> bool:
    """Make the claims of every relay use `partitions`; True if that changed it."""
    result = await conn.execute(_SET_PARTITIONS, {"n": partitions})
    return bool(result.rowcount)  # type: ignore[attr-defined]


@dataclass
class _Claim:
    locked: int
    events: list[PendingEvent]
    ages: list[float]
    claimed_at: float


async def claim_batch(
    conn: AsyncConnection, limit: int, *, partition: int = 0, remove: bool = False
) -> _Claim:
    """Lock up to `limit` events of `partition`; keep those deliverable now (and delete them
    in the same statement if `remove`)."""
    rows: Sequence[Any] = (
        await conn.execute(_CLAIM, {"limit": limit, "partition": partition, "remove": remove})
    ).all()
    claim = _Claim(locked=len(rows), events=[], ages=[], claimed_at=time.monotonic())
    # Unpacked by position: a Row's attribute access by name costs more than the event.
    for id_, aggregate_type, aggregate_id, event_type, payload, attempts, trace, blocked, age in (
        rows
    ):  # fmt: skip
        if not blocked:
            event = PendingEvent(
                id_, aggregate_type, aggregate_id, event_type, payload, attempts, trace
            )
            claim.events.append(event)
            claim.ages.append(float(age))
    return claim


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


class _HandlerFailed(ServiceError):
    """The fast path hit a failing handler (or an event type without one); never leaves
    relay_batch, which runs the batch carefully instead."""


async def relay_batch(
    db: AsyncEngine | AsyncConnection,
    handlers: Mapping[str, EventHandler],
    *,
    limit: int,
    retry: RetryPolicy,
    partition: int = 0,
) -> RelayedBatch:
    """Deliver one batch of `partition` in one transaction; failed events are retried later
    with backoff and dead-lettered after `retry.max_attempts`. A relay that runs many batches
    passes its own connection (no pool check-out and ping per batch)."""
    if isinstance(db, AsyncEngine):
        async with db.connect() as conn:
            return await relay_batch(conn, handlers, limit=limit, retry=retry, partition=partition)
    try:
        return await _fast_batch(db, handlers, limit=limit, partition=partition)
    except _HandlerFailed:
        return await _careful_batch(db, handlers, limit=limit, retry=retry, partition=partition)


async def _fast_batch(
    conn: AsyncConnection, handlers: Mapping[str, EventHandler], *, limit: int, partition: int
) -> RelayedBatch:
    async with conn.begin():
        claim = await claim_batch(conn, limit, partition=partition, remove=True)
        # Consecutive runs of one type keep the id order across types within an aggregate.
        for event_type, run in groupby(claim.events, key=lambda event: event.event_type):
            handler = handlers.get(event_type)
            if handler is None:
                raise _HandlerFailed(event_type)
            try:
                await handler(conn, list(run))
            except Exception as exc:
                raise _HandlerFailed(event_type) from exc
    committed_after = time.monotonic() - claim.claimed_at
    latencies = [age + committed_after for age in claim.ages]
    _count(claim.events, [], [], latencies)
    return RelayedBatch(claimed=claim.locked, delivered=len(claim.events), latencies=latencies)


async def _careful_batch(
    conn: AsyncConnection,
    handlers: Mapping[str, EventHandler],
    *,
    limit: int,
    retry: RetryPolicy,
    partition: int,
) -> RelayedBatch:
    outcome = RelayedBatch()
    dead_types: list[str] = []
    async with conn.begin():
        claim = await claim_batch(conn, limit, partition=partition)
        outcome.claimed = claim.locked
        if not claim.events:
            return outcome
        delivery = _Delivery(conn, handlers)
        await delivery.run(claim.events)
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
    _count(delivery.delivered, [event for event, _ in delivery.failures], dead_types,
           outcome.latencies)  # fmt: skip
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


def _count(
    delivered: Sequence[PendingEvent],
    failed: Sequence[PendingEvent],
    dead_types: Sequence[str],
    latencies: Sequence[float],
) -> None:
    for metric, event_types in (
        (outbox_metrics.DELIVERED, [event.event_type for event in delivered]),
        (outbox_metrics.FAILED, [event.event_type for event in failed]),
        (outbox_metrics.DEAD_LETTERED, dead_types),
    ):
        for event_type, count in Counter(event_types).items():
            metric.labels(event_type).inc(count)
    observe_many(outbox_metrics.DELIVERY_LATENCY, latencies)
