"""Learning sources: the SQL of source-cleanup (objects are deleted through the caller's
`delete_objects`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from learning_platform.core.batches import (
    BatchOutcome,
    Keyset,
    after_parameters,
    keyset_outcome,
    rows_after,
)

# Batches walk the partial index on marked sources' deletion_requested_at in key order, each
# after the last row the previous one locked, so a source still referred to by a question set
# is read once per run, not once per batch.
#
# FOR UPDATE (not only SKIP LOCKED) keeps the rows as they are until the caller's transaction
# ends: no set can start referring to a locked source (its foreign-key check waits for the
# lock) while its object is being deleted. Rows another cleanup holds are skipped: it deletes
# them, or its retry does.
_LOCK_DELETABLE = """
    SELECT id, storage_key, deletion_requested_at FROM sources s
     WHERE status = 'delete_pending' AND deletion_requested_at <= :requested_before
       AND {after}
       AND NOT EXISTS (SELECT 1 FROM question_sets q WHERE q.source_id = s.id)
     ORDER BY deletion_requested_at, id
     LIMIT :limit
       FOR UPDATE SKIP LOCKED
    """
_KEY = ("deletion_requested_at", "id")


async def delete_unused_batch(
    conn: AsyncConnection,
    *,
    delete_objects: Callable[[Sequence[str]], Awaitable[None]],
    requested_before: datetime,
    after: Keyset | None,
    limit: int,
) -> BatchOutcome:
    """Delete the next `limit` sources marked for deletion before `requested_before` that no
    question set refers to: their objects (`delete_objects`), then their rows.

    A row goes only after its object is gone; if the transaction fails after the objects were
    deleted, the rows stay `delete_pending` and the next try deletes them (an object already
    gone counts as deleted).
    """
    sql = _LOCK_DELETABLE.format(after=rows_after(_KEY, after))
    parameters = {"requested_before": requested_before, "limit": limit}
    locked = (await conn.execute(text(sql), parameters | after_parameters(after))).all()
    if locked:
        await delete_objects([row.storage_key for row in locked])
        await conn.execute(
            text("DELETE FROM sources WHERE id = ANY(:ids)"), {"ids": [row.id for row in locked]}
        )
    return keyset_outcome(
        changed=len(locked),
        read=len(locked),
        limit=limit,
        after=after,
        last_key=(locked[-1].deletion_requested_at, locked[-1].id) if locked else None,
    )
