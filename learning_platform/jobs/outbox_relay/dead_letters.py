"""Outbox events that failed too often: listing them and putting them back in the outbox."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncConnection

from learning_platform.core.errors import UsageError

# A requeued event gets a new id (it goes to the back of the queue) and a fresh attempt count.
# The statement answers with the dead letters' ids, so that a caller can tell which of the
# asked-for ids did not exist; the INSERT runs whether or not its output is read.
_REQUEUE = text(
    """
    WITH moved AS (
        DELETE FROM outbox_dead_letters
         WHERE id IN (SELECT id FROM outbox_dead_letters
                       WHERE :all OR id = ANY(CAST(:ids AS bigint[]))
                       ORDER BY id LIMIT :limit)
        RETURNING *
    ), requeued AS (
        INSERT INTO outbox_events (aggregate_type, aggregate_id, event_type, payload)
        SELECT aggregate_type, aggregate_id, event_type, payload FROM moved ORDER BY id
    )
    SELECT id FROM moved
    """
)
# How many missing ids an error names before it only counts the rest.
NAMED_IDS = 20


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
    """Move the given dead letters (or up to `limit` of all of them) back to the outbox.

    Given ids must all exist: otherwise UsageError names the missing ones and the caller's
    transaction must be rolled back (nothing requeued) — an operator who mistyped one id
    should not have to find out which of the others went through.
    """
    wanted = set(ids)
    result = await conn.execute(
        _REQUEUE,
        {"all": everything, "ids": sorted(wanted), "limit": limit if everything else len(wanted)},
    )
    moved = {row.id for row in result}
    missing = sorted(wanted - moved)
    if missing and not everything:
        named = ", ".join(map(str, missing[:NAMED_IDS]))
        more = f" and {len(missing) - NAMED_IDS} more" if len(missing) > NAMED_IDS else ""
        raise UsageError(
            f"no dead letter with id {named}{more}; nothing was requeued "
            "(`learning-jobs outbox dead-letters list` shows the ids)"
        )
    return len(moved)
