"""The relay's long-running drain activity and the watchdog's start-if-not-running activity."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from temporalio import activity
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy

from activities.interfaces import implements
from learning_platform.core.settings import Settings
from learning_platform.jobs.outbox_relay import contracts
from learning_platform.jobs.outbox_relay.contracts import (
    OUTBOX_RELAY_WORKFLOW,
    RELAY_WORKFLOW_ID,
    DrainOutboxParams,
    DrainOutboxResult,
    EnsureOutboxRelayResult,
    OutboxRelayInput,
)
from learning_platform.jobs.outbox_relay.queries import (
    EventHandler,
    RetryPolicy,
    relay_batch,
    relay_partitions,
    set_relay_partitions,
)

NOTIFY_CHANNEL = "outbox_events"


def relay_workflow_id(settings: Settings, partition: int = 0) -> str:
    """Partition 0 keeps the id the singleton relay had; the others are numbered after it."""
    suffix = f"-{partition}" if partition else ""
    return f"{settings.schedule_id_prefix}{RELAY_WORKFLOW_ID}{suffix}"


@contextlib.asynccontextmanager
async def outbox_notifications(engine: AsyncEngine) -> AsyncIterator[asyncio.Event]:
    """An event set whenever a transaction that inserted outbox events commits."""
    wake = asyncio.Event()

    def on_notify(*_: Any) -> None:
        wake.set()

    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        listener = raw.driver_connection
        assert listener is not None
        await listener.add_listener(NOTIFY_CHANNEL, on_notify)
        try:
            yield wake
        finally:
            await listener.remove_listener(NOTIFY_CHANNEL, on_notify)


class OutboxRelayActivities:
    def __init__(
        self,
        engine: AsyncEngine,
        settings: Settings,
        temporal: Client,
        handlers: Mapping[str, EventHandler],
    ) -> None:
        self._engine = engine
        self._settings = settings
        self._temporal = temporal
        self._handlers = handlers
        self._retry = RetryPolicy(
            max_attempts=settings.outbox_max_attempts,
            base_seconds=settings.outbox_retry_base_seconds,
            max_seconds=settings.outbox_retry_max_seconds,
        )

    @implements(contracts.OutboxRelayActivities.drain_outbox)
    async def drain_outbox(self, params: DrainOutboxParams) -> DrainOutboxResult:
        """Deliver batches of one partition while there are events; between them, sleep until
        a NOTIFY (or the poll interval, which also picks up events whose retry delay ran out).
        Ends at once with `retired` if the partition count no longer includes the partition."""
        result = DrainOutboxResult(delivered=0, failed=0, dead_lettered=0)
        deadline = time.monotonic() + params.run_seconds
        batch_size = self._settings.outbox_batch_size
        async with (
            outbox_notifications(self._engine) as wake,
            self._engine.connect() as conn,
        ):
            while time.monotonic() < deadline and not activity.is_worker_shutdown():
                wake.clear()  # before the batch: a commit during it triggers the next one
                outcome = await relay_batch(
                    conn,
                    self._handlers,
                    limit=batch_size,
                    retry=self._retry,
                    partition=params.partition,
                )
                result.delivered += outcome.delivered
                result.failed += outcome.failed
                result.dead_lettered += outcome.dead_lettered
                activity.heartbeat(result.delivered)
                if outcome.claimed < batch_size:
                    # Nothing claimed: the moment to notice that this partition was retired
                    # (partition 0 never is).
                    if (
                        params.partition
                        and not outcome.claimed
                        and params.partition >= await self._partitions(conn)
                    ):
                        result.retired = True
                        break
                    timeout = min(self._settings.outbox_poll_seconds, deadline - time.monotonic())
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), max(timeout, 0))
        activity.logger.info(
            "outbox drained",
            extra={"delivered": result.delivered, "failed": result.failed,
                   "dead_lettered": result.dead_lettered, "partition": params.partition,
                   "retired": result.retired},
        )  # fmt: skip
        return result

    @staticmethod
    async def _partitions(conn: AsyncConnection) -> int:
        async with conn.begin():
            return await relay_partitions(conn)

    @implements(contracts.OutboxRelayActivities.ensure_outbox_relay)
    async def ensure_outbox_relay(self) -> EnsureOutboxRelayResult:
        """Write OUTBOX_RELAY_PARTITIONS for the claims, then start each partition's relay unless
        it runs; Temporal allows one open run per id."""
        partitions = self._settings.outbox_relay_partitions
        async with self._engine.begin() as conn:
            if await set_relay_partitions(conn, partitions):
                activity.logger.info("relay partitions set", extra={"partitions": partitions})
        handles = [
            await self._temporal.start_workflow(
                OUTBOX_RELAY_WORKFLOW,
                OutboxRelayInput(
                    drain_seconds=self._settings.outbox_drain_minutes * 60, partition=partition
                ),
                id=relay_workflow_id(self._settings, partition),
                task_queue=self._settings.task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            )
            for partition in range(partitions)
        ]
        return EnsureOutboxRelayResult(
            workflow_id=handles[0].id,
            run_id=handles[0].result_run_id or "",
            workflow_ids=[handle.id for handle in handles],
        )
