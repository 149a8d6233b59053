"""Learning sources: the SQL of source-cleanup (objects are deleted by the caller)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


@dataclass(frozen=True)
class DeletableSource:
    id: int
    storage_key: str


# FOR UPDATE (not only SKIP LOCKED) keeps the rows as they are until the caller's transaction
# ends: no set can start referring to a locked source (its foreign-key check waits for the
# lock) while its object is being deleted.
_LOCK_DELETABLE = text(
    """
    SELECT id, storage_key FROM sources s
     WHERE status = 'delete_pending' AND deletion_requested_at <= :requested_before
       AND NOT EXISTS (SELECT 1 FROM question_sets q WHERE q.source_id = s.id)
     ORDER BY deletion_requested_at, id
     LIMIT :limit
       FOR UPDATE SKIP LOCKED
    """
)


async def lock_deletable_batch(
    conn: AsyncConnection, *, requested_before: datetime, limit: int
) -> list[DeletableSource]:
    """Lock up to `limit` sources marked for deletion that no question set refers to."""
    rows = await conn.execute(
        _LOCK_DELETABLE, {"requested_before": requested_before, "limit": limit}
    )
    return [DeletableSource(id=row.id, storage_key=row.storage_key) for row in rows]


async def delete_rows(conn: AsyncConnection, source_ids: Sequence[int]) -> int:
    result = await conn.execute(
        text("DELETE FROM sources WHERE id = ANY(:ids)"), {"ids": list(source_ids)}
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
