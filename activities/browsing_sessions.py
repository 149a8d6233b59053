"""Activities of the browsing-session jobs."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from sqlalchemy.ext.asyncio import AsyncEngine

from activities.batches import run_batches
from activities.interfaces import implements
from learning_platform.core.gauges import store_gauge
from learning_platform.jobs.browsing_sessions import contracts
from learning_platform.jobs.browsing_sessions import queries as browsing_sessions
from learning_platform.jobs.browsing_sessions.contracts import (
    ACTIVE_SESSIONS_GAUGE,
    FailStaleSessionsParams,
)


@dataclass(frozen=True, eq=False)
class BrowsingSessionActivities:
    engine: AsyncEngine
    batch_size: int

    @implements(contracts.BrowsingSessionActivities.fail_stale_sessions)
    async def fail_stale_sessions(self, params: FailStaleSessionsParams) -> int:
        """Batch after batch, each its own short transaction, through every active status.

        Idempotent: a retried or repeated run finds the rows already failed and changes nothing.
        """
        batch = partial(
            browsing_sessions.fail_stale_batch,
            cutoff=params.cutoff,
            reason=params.reason,
        )
        return await run_batches(self.engine, batch, limit=self.batch_size)

    @implements(contracts.BrowsingSessionActivities.record_active_sessions)
    async def record_active_sessions(self) -> int:
        async with self.engine.begin() as conn:
            count = await browsing_sessions.count_active(conn)
            await store_gauge(conn, ACTIVE_SESSIONS_GAUGE, count)
        return count
