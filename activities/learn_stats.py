"""Activities of learn-stats-daily and learn-stats-weekly."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from temporalio import activity

from activities.checkpoints import checkpoint, resumed_checkpoint
from activities.interfaces import implements
from learning_platform.core.checkpoints import Checkpoint
from learning_platform.jobs.learn_stats import contracts
from learning_platform.jobs.learn_stats import queries as learn_stats
from learning_platform.jobs.learn_stats.contracts import (
    LearnStatsDailyResult,
    LearnStatsJobParams,
    LearnStatsWeeklyResult,
)
from learning_platform.jobs.learn_stats.queries import BatchProgress

Batch = Callable[[AsyncConnection, int], Awaitable[BatchProgress]]


def _resume_from(resumed: Checkpoint | None) -> tuple[int, int]:
    """(changed so far, last user done) from a previous attempt, or a fresh start."""
    if resumed is None:
        return 0, 0
    return resumed.total, int(resumed.position)


class LearnStatsActivities:
    def __init__(self, engine: AsyncEngine, timezone: ZoneInfo, batch_size: int) -> None:
        self._engine = engine
        self._timezone = timezone
        self._batch_size = batch_size

    def _local_date(self, moment: datetime) -> date:
        return moment.astimezone(self._timezone).date()

    async def _all_batches(self, batch: Batch) -> int:
        """Keyset batches, each its own transaction, which also commits the running total
        and the position: a retried activity continues after the last committed batch with
        its count (repeating a batch would be harmless: each is idempotent)."""
        total, after = _resume_from(await resumed_checkpoint(self._engine))
        while True:
            async with self._engine.begin() as conn:
                progress = await batch(conn, after)
                total += progress.changed
                after = after if progress.next_after is None else progress.next_after
                await checkpoint(conn, Checkpoint(total, after))
            if progress.next_after is None:
                return total

    @implements(contracts.reset_broken_streaks)
    async def reset_broken_streaks(self, params: LearnStatsJobParams) -> LearnStatsDailyResult:
        yesterday = self._local_date(params.scheduled_time) - timedelta(days=1)

        async def batch(conn: AsyncConnection, after: int) -> BatchProgress:
            return await learn_stats.reset_broken_streaks_batch(
                conn, yesterday=yesterday, after=after, limit=self._batch_size
            )

        return LearnStatsDailyResult(
            yesterday=yesterday.isoformat(), reset_streaks=await self._all_batches(batch)
        )

    @implements(contracts.recalculate_learn_stats)
    async def recalculate_learn_stats(self, params: LearnStatsJobParams) -> LearnStatsWeeklyResult:
        today = self._local_date(params.scheduled_time)
        week_start = today - timedelta(days=today.weekday())

        async def batch(conn: AsyncConnection, after: int) -> BatchProgress:
            return await learn_stats.recalculate_batch(
                conn,
                week_start=week_start,
                yesterday=today - timedelta(days=1),
                after=after,
                limit=self._batch_size,
            )

        corrected = await self._all_batches(batch)
        activity.logger.info("learn stats recalculated", extra={"corrected_users": corrected})
        return LearnStatsWeeklyResult(week_start=week_start.isoformat(), corrected_users=corrected)
