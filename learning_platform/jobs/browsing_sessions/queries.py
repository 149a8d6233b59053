"""Set-based SQL over browsing sessions, used by the session jobs' activities."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from learning_platform.jobs.browsing_sessions.models import ACTIVE_STATUSES, BrowsingSession

# Batches walk the (status, updated_at, id) index in key order, each starting after the last
# row of the previous one. Restarting every batch from the beginning of the index would re-read
# the dead index entries that earlier batches left behind (status is indexed, so these updates
# are never HOT) and make the sweep quadratic: 5x slower than one UPDATE at 300 k rows.
#
# The batch is read without `FOR UPDATE SKIP LOCKED`: the UPDATE re-checks the stale condition
# on each row's latest version instead (READ COMMITTED re-evaluates it after waiting for a
# concurrent writer). A session the app touched meanwhile, or one a concurrent sweep already
# failed, is left alone, and no row is written twice; taking row locks first would write every
# row twice (lock, then update) and made the job 2.4x slower than one UPDATE.
_FAIL_STALE_BATCH = text(
    """
    WITH batch AS (
        SELECT id, updated_at FROM sessions
         WHERE status = :status AND updated_at < :cutoff
           AND (updated_at, id) > (:after_updated_at, :after_id)
         ORDER BY updated_at, id
         LIMIT :limit
    ), failed AS (
        UPDATE sessions SET status = 'failed', failure_reason = :reason, updated_at = now()
         WHERE id = ANY (ARRAY(SELECT id FROM batch))
           AND status = :status AND updated_at < :cutoff
        RETURNING id
    )
    SELECT (SELECT count(*) FROM batch) AS read, (SELECT count(*) FROM failed) AS failed,
           updated_at, id
      FROM batch ORDER BY updated_at DESC, id DESC LIMIT 1
    """
)


@dataclass(frozen=True)
class SweepPosition:
    """Where a sweep of one status stopped: the last (updated_at, id) it handled."""

    status: str
    updated_at: datetime
    id: int


@dataclass(frozen=True)
class BatchOutcome:
    read: int
    failed: int
    position: SweepPosition


async def fail_stale_batch(
    conn: AsyncConnection, *, after: SweepPosition, cutoff: datetime, reason: str, limit: int
) -> BatchOutcome:
    """Fail the next `limit` sessions of `after.status` last updated before `cutoff`.

    `read < limit` means the sweep of this status is complete.
    """
    row = (
        await conn.execute(
            _FAIL_STALE_BATCH,
            {
                "status": after.status,
                "cutoff": cutoff,
                "after_updated_at": after.updated_at,
                "after_id": after.id,
                "reason": reason,
                "limit": limit,
            },
        )
    ).one_or_none()
    if row is None:
        return BatchOutcome(0, 0, after)
    return BatchOutcome(row.read, row.failed, SweepPosition(after.status, row.updated_at, row.id))


async def count_active(conn: AsyncConnection) -> int:
    statement = select(func.count()).where(BrowsingSession.status.in_(ACTIVE_STATUSES))
    return int((await conn.execute(statement)).scalar_one())
