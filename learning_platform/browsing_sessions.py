"""Set-based SQL over browsing sessions, used by the session jobs' activities."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from learning_platform.models import ACTIVE_STATUSES, BrowsingSession

# One statement per batch: the sub-select takes at most `limit` rows, skipping rows another
# transaction holds, so concurrent runs split the work instead of waiting on each other.
_FAIL_STALE_BATCH = text(
    """
    UPDATE sessions
       SET status = 'failed', failure_reason = :reason, updated_at = now()
     WHERE id IN (
           SELECT id FROM sessions
            WHERE status IN ('recording', 'paused') AND updated_at < :cutoff
            LIMIT :limit
              FOR UPDATE SKIP LOCKED)
    """
)


async def fail_stale_batch(
    conn: AsyncConnection, *, cutoff: datetime, reason: str, limit: int
) -> int:
    """Mark up to `limit` active sessions last updated before `cutoff` as failed."""
    result = await conn.execute(
        _FAIL_STALE_BATCH, {"cutoff": cutoff, "reason": reason, "limit": limit}
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def count_active(conn: AsyncConnection) -> int:
    statement = select(func.count()).where(BrowsingSession.status.in_(ACTIVE_STATUSES))
    return int((await conn.execute(statement)).scalar_one())
