"""Outbox events that failed too often: listing them and putting them back in the outbox."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncConnection

# A requeued event gets a new id (it goes to the back of the queue) and a fresh attempt count.
_REQUEUE = text(
    """
    WITH moved AS (
        DELETE FROM outbox_dead_letters
         WHERE id IN (SELECT id FROM outbox_dead_letters
                       WHERE :all OR id = ANY(CAST(:ids AS bigint[]))
                       ORDER BY id LIMIT :limit)
        RETURNING *
    )
    INSERT INTO outbox_events (aggregate_type, aggregate_id, event_type, payload)
    SELECT aggregate_type, aggregate_id, event_type, payload FROM moved ORDER BY id
    RETURNING id
    """
)


async def list_dead_letters(conn: AsyncConnection, limit: int) -> Sequence[Row[tuple[object, ...]]]:
    rows = await conn.execute(
        text(
            "SELECT id, event_type, aggregate_type, aggregate_id, attempts, dead_lettered_at, "
            "last_error, payload FROM outbox_dead_letters ORDER BY id LIMIT :limit"
        ),
        {"limit": limit},
    )
    return rows.all()


async def requeue(
    conn: AsyncConnection, ids: Sequence[int] = (), *, everything: bool = False, limit: int = 1000
) -> int:
    """Move the given dead letters (or up to `limit` of all of them) back to the outbox."""
    result = await conn.execute(_REQUEUE, {"all": everything, "ids": list(ids), "limit": limit})
    return len(result.all())
