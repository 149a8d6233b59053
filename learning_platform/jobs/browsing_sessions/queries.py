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

# The sweep walks the (status, updated_at, id) index in (updated_at, id) order over both active
# statuses at once: one ordered range scan per status (`status = ... AND updated_at < :cutoff`,
# which ends at the cutoff, so fresh sessions are never read), merged (Merge Append), each
# batch starting after the last row of the previous one. Restarting every batch from the
# beginning of the index would re-read the dead index entries that earlier batches left behind
# (status is indexed, so these updates are never HOT) and make the sweep quadratic: 5x slower
# than one UPDATE at 300 k rows. Walking one status after the other visited every heap page
# once per status (recording and paused sessions share pages): at 1 M sessions it read 60 % more
# pages than one UPDATE and took 1.2-1.5x as long; merged it reads what the UPDATE reads.
#
# The batch is read without `FOR UPDATE SKIP LOCKED`: the UPDATE re-checks the stale condition
# on each row's latest version instead (READ COMMITTED re-evaluates it after waiting for a
# concurrent writer). A session the app touched meanwhile, or one a concurrent sweep already
# failed, is left alone, and no row is written twice; taking row locks first would write every
# row twice (lock, then update) and made the job 2.4x slower than one UPDATE.
SWEPT_STATUSES = tuple(sorted(str(status) for status in ACTIVE_STATUSES))
_ORDER = ("updated_at", "id")


def _fail_stale_sql(after: Keyset) -> str:
    branches = " UNION ALL ".join(
        f"""(SELECT id, updated_at FROM sessions
              WHERE status = '{status}' AND updated_at < :cutoff AND {rows_after(_ORDER, after)}
              ORDER BY updated_at, id LIMIT :limit)"""
        for status in SWEPT_STATUSES
    )
    return f"""
    WITH batch AS (
        SELECT id, updated_at FROM ({branches}) AS active ORDER BY updated_at, id LIMIT :limit
    ), failed AS (
        UPDATE sessions SET status = 'failed', failure_reason = :reason, updated_at = now()
         WHERE id = ANY (ARRAY(SELECT id FROM batch))
           AND status = ANY (CAST(:statuses AS text[])) AND updated_at < :cutoff
        RETURNING id
    )
    SELECT (SELECT count(*) FROM batch) AS read, (SELECT count(*) FROM failed) AS changed,
           CAST(:last_status AS text) AS status, updated_at, id
      FROM batch ORDER BY updated_at DESC, id DESC LIMIT 1
    """


# A position is a key of the status index, (status, updated_at, id), and the walk writes its
# positions with the last status swept: (recording, t, id) says every active session before
# (t, id) is done, which the status-by-status walk of earlier releases meant by it too (all
# paused sessions, then recording ones up to there). Any other position is an earlier
# release's, in the middle of an earlier status or before a status began: the walk starts
# again, which is exact (the rows it changed no longer match) and only slower.
def _resumed_at(after: Keyset | None) -> Keyset:
    if after is not None and len(after) == 3 and after[0] == SWEPT_STATUSES[-1]:
        return after[1:]
    return ()


async def fail_stale_batch(
    conn: AsyncConnection, *, after: Keyset | None, cutoff: datetime, reason: str, limit: int
) -> BatchOutcome:
    """Fail the next `limit` active sessions last updated before `cutoff`, in (updated_at, id)
    order after `after` (None: from the first)."""
    within = _resumed_at(after)
    parameters = {
        "cutoff": cutoff,
        "reason": reason,
        "limit": limit,
        "statuses": list(SWEPT_STATUSES),
        "last_status": SWEPT_STATUSES[-1],
    }
    sql = _fail_stale_sql(within)
    row = (await conn.execute(text(sql), parameters | after_parameters(within))).one_or_none()
    return outcome_of_row(row, ("status", *_ORDER), limit=limit, after=after)


async def count_active(conn: AsyncConnection) -> int:
    statement = select(func.count()).where(BrowsingSession.status.in_(ACTIVE_STATUSES))
    return int((await conn.execute(statement)).scalar_one())
