"""Activities of learn-stats-daily and learn-stats-weekly."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from temporalio import activity

from contracts.learn_stats import (
    RECALCULATE_LEARN_STATS,
    RESET_BROKEN_STREAKS,
    LearnStatsDailyResult,
    LearnStatsJobParams,
    LearnStatsWeeklyResult,
)
from learning_platform import learn_stats
from learning_platform.learn_stats import BatchProgress

Batch = Callable[[AsyncConnection, int], Awaitable[BatchProgress]]


def _resume_from(details: Sequence[Any]) -> tuple[int, int]:
    """(changed so far, last user done) from a previous attempt's heartbeat, or a fresh start."""
    if len(details) < 2:
        return 0, 0
    return int(details[0]), int(details[1])


class LearnStatsActivities:
    def __init__(self, engine: AsyncEngine, timezone: ZoneInfo, batch_size: int) -> None:
        self._engine = engine
        self._timezone = timezone
        self._batch_size = batch_size

    def _local_date(self, moment: datetime) -> date:
        return moment.astimezone(self._timezone).date()

    async def _all_batches(self, batch: Batch) -> int:
        """Keyset batches, each its own transaction. The heartbeat carries the running total
        and the position, so a retried activity continues after the last batch it reported
        (repeating a batch would be harmless: each is idempotent)."""
        total, after = _resume_from(activity.info().heartbeat_details)
        while True:
            async with self._engine.begin() as conn:
                progress = await batch(conn, after)
            total += progress.changed
            if progress.next_after is None:
                return total
            after = progress.next_after
            activity.heartbeat(total, after)

    @activity.defn(name=RESET_BROKEN_STREAKS)
    async def reset_broken_streaks(self, params: LearnStatsJobParams) -> LearnStatsDailyResult:
        yesterday = self._local_date(params.scheduled_time) - timedelta(days=1)

        async def batch(conn: AsyncConnection, after: int) -> BatchProgress:
            return await learn_stats.reset_broken_streaks_batch(
                conn, yesterday=yesterday, after=after, limit=self._batch_size
            )

        return LearnStatsDailyResult(
            yesterday=yesterday.isoformat(), reset_streaks=await self._all_batches(batch)
        )

    @activity.defn(name=RECALCULATE_LEARN_STATS)
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
