"""Helpers for the outbox relay and learning statistics tests (no fixtures: plain functions)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from activities.outbox_handlers import build_handlers
from learning_platform.core.settings import Settings
from learning_platform.jobs.learn_stats.queries import record_learning
from learning_platform.jobs.outbox_relay.events import enqueue_event
from learning_platform.jobs.outbox_relay.queries import (
    EventHandler,
    RelayedBatch,
    RetryPolicy,
    relay_batch,
)

FAST_RETRY = RetryPolicy(max_attempts=3, base_seconds=0.01, max_seconds=0.05)


async def record(
    engine: AsyncEngine, user_id: int, solved_at: datetime, correct: bool = True
) -> int:
    async with engine.begin() as conn:
        return await record_learning(
            conn, user_id=user_id, question_id=1, solved_at=solved_at, correct=correct
        )


async def enqueue(
    engine: AsyncEngine, event_type: str, payload: dict[str, Any], aggregate_id: str | int = 1
) -> int:
    async with engine.begin() as conn:
        return await enqueue_event(
            conn,
            aggregate_type="test",
            aggregate_id=aggregate_id,
            event_type=event_type,
            payload=payload,
        )


async def pending_events(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(text("SELECT count(*) FROM outbox_events")) or 0)


async def drain(
    engine: AsyncEngine,
    handlers: Mapping[str, EventHandler],
    *,
    limit: int = 100,
    retry: RetryPolicy = FAST_RETRY,
    within: float = 20,
) -> RelayedBatch:
    """Relay batches until the outbox is empty (retry delays are waited out by polling)."""
    total = RelayedBatch()
    deadline = time.monotonic() + within
    while await pending_events(engine):
        assert time.monotonic() < deadline, "outbox not drained in time"
        outcome = await relay_batch(engine, handlers, limit=limit, retry=retry)
        total.delivered += outcome.delivered
        total.failed += outcome.failed
        total.dead_lettered += outcome.dead_lettered
        if not outcome.claimed:
            await asyncio.sleep(0.01)
    return total


def production_handlers(client: Client, settings: Settings) -> Mapping[str, EventHandler]:
    return build_handlers(client, settings)


async def stats(engine: AsyncEngine, user_id: int) -> dict[str, Any]:
    async with engine.connect() as conn:
        row = (
            await conn.execute(text("SELECT * FROM learn_stats WHERE user_id = :u"), {"u": user_id})
        ).one()
    return dict(row._mapping)


async def wait_for(
    condition: Callable[[], Awaitable[bool]], within: float = 20, interval: float = 0.05
) -> None:
    """Poll with a deadline, for state that has no event to await."""
    deadline = time.monotonic() + within
    while not await condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(interval)
