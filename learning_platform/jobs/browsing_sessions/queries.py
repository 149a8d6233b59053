"""Set-based SQL over browsing sessions, used by the session jobs' activities."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from learning_platform.core.batches import (
    BatchOutcome,
    Keyset,
    after_parameters,
    outcome_of_row,
    rows_after,
)
from learning_platform.jobs.browsing_sessions.models import ACTIVE_STATUSES, BrowsingSession

# The sweep walks the (status, updated_at, id) index in key order, one active status after
# another, each batch starting after the last row of the previous one; its position is that
# row's index key, or `(status,)` before the first row of a status. Each batch's SQL reads one
# status (`status = :status AND updated_at < :cutoff`, an index range that ends at the cutoff),
# so the fresh sessions of a status are never read. Restarting every batch from the beginning
# of the index would re-read the dead index entries that earlier batches left behind (status is
# indexed, so these updates are never HOT) and make the sweep quadratic: 5x slower than one
# UPDATE at 300 k rows.
#
# The batch is read without `FOR UPDATE SKIP LOCKED`: the UPDATE re-checks the stale condition
# on each row's latest version instead (READ COMMITTED re-evaluates it after waiting for a
# concurrent writer). A session the app touched meanwhile, or one a concurrent sweep already
# failed, is left alone, and no row is written twice; taking row locks first would write every
# row twice (lock, then update) and made the job 2.4x slower than one UPDATE.
_FAIL_STALE_BATCH = """
    WITH batch AS (
        SELECT id, updated_at FROM sessions
         WHERE status = :status AND updated_at < :cutoff AND {after}
         ORDER BY updated_at, id
         LIMIT :limit
    ), failed AS (
        UPDATE sessions SET status = 'failed', failure_reason = :reason, updated_at = now()
         WHERE id = ANY (ARRAY(SELECT id FROM batch))
           AND status = :status AND updated_at < :cutoff
        RETURNING id
    )
    SELECT (SELECT count(*) FROM batch) AS read, (SELECT count(*) FROM failed) AS changed,
           CAST(:status AS text) AS status, updated_at, id
      FROM batch ORDER BY updated_at DESC, id DESC LIMIT 1
    """

# In the index's order, so a position compares as the index key it is.
SWEPT_STATUSES = tuple(sorted(str(status) for status in ACTIVE_STATUSES))
_WITHIN_STATUS = ("updated_at", "id")


async def fail_stale_batch(
    conn: AsyncConnection, *, after: Keyset | None, cutoff: datetime, reason: str, limit: int
) -> BatchOutcome:
    """Fail the next `limit` sessions of one active status last updated before `cutoff`, after
    `after` (None: from the first); the sweep moves to the next status after a short batch."""
    status, within = (SWEPT_STATUSES[0], ()) if after is None else (str(after[0]), after[1:])
    sql = _FAIL_STALE_BATCH.format(after=rows_after(_WITHIN_STATUS, within))
    parameters = {"status": status, "cutoff": cutoff, "reason": reason, "limit": limit}
    row = (await conn.execute(text(sql), parameters | after_parameters(within))).one_or_none()
    outcome = outcome_of_row(row, ("status", *_WITHIN_STATUS), limit=limit, after=(status, *within))
    following = SWEPT_STATUSES[SWEPT_STATUSES.index(status) + 1 :]
    if outcome.last_batch and following:
        return BatchOutcome(outcome.changed, (following[0],), last_batch=False)
    return outcome


async def count_active(conn: AsyncConnection) -> int:
    statement = select(func.count()).where(BrowsingSession.status.in_(ACTIVE_STATUSES))
    return int((await conn.execute(statement)).scalar_one())
