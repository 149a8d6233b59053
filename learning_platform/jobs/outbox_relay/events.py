"""Producing outbox events inside the caller's transaction (the relay delivers them)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from learning_platform.core.notifications import checked_event_name
from learning_platform.core.tracing import current_trace_context
from learning_platform.jobs.outbox_relay.models import OutboxEvent


async def enqueue_event(
    conn: AsyncConnection,
    *,
    aggregate_type: str,
    aggregate_id: str | int,
    event_type: str,
    payload: dict[str, Any],
) -> int:
    """Write one event in the caller's transaction; it is delivered only if that commits.

    `event_type` follows the event-name convention (core/notifications.py). The current trace
    context goes with it, so the relay's delivery continues the trace."""
    statement = (
        insert(OutboxEvent)
        .values(
            aggregate_type=aggregate_type,
            aggregate_id=str(aggregate_id),
            event_type=checked_event_name(event_type),
            payload=payload,
            trace_context=current_trace_context(),
        )
        .returning(OutboxEvent.id)
    )
    return (await conn.execute(statement)).scalar_one()
