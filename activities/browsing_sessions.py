"""Activities of the browsing-session jobs."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity

from contracts.browsing_sessions import (
    ACTIVE_SESSIONS_GAUGE,
    FAIL_STALE_SESSIONS,
    RECORD_ACTIVE_SESSIONS,
    FailStaleSessionsParams,
)
from learning_platform import browsing_sessions
from learning_platform.job_gauges import store_gauge


class BrowsingSessionActivities:
    def __init__(self, engine: AsyncEngine, batch_size: int) -> None:
        self._engine = engine
        self._batch_size = batch_size

    @activity.defn(name=FAIL_STALE_SESSIONS)
    async def fail_stale_sessions(self, params: FailStaleSessionsParams) -> int:
        """Batch after batch, each its own short transaction, until a batch comes back short.

        Idempotent: a retried or repeated run finds the rows already failed and changes nothing.
        """
        total = 0
        while True:
            async with self._engine.begin() as conn:
                changed = await browsing_sessions.fail_stale_batch(
                    conn, cutoff=params.cutoff, reason=params.reason, limit=self._batch_size
                )
            total += changed
            activity.heartbeat(total)
            if changed < self._batch_size:
                return total

    @activity.defn(name=RECORD_ACTIVE_SESSIONS)
    async def record_active_sessions(self) -> int:
        async with self._engine.begin() as conn:
            count = await browsing_sessions.count_active(conn)
            await store_gauge(conn, ACTIVE_SESSIONS_GAUGE, count)
        return count
