"""Activities of learn-stats-daily and learn-stats-weekly."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from functools import partial
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity

from activities.batches import run_batches
from activities.interfaces import implements
from learning_platform.jobs.learn_stats import contracts
from learning_platform.jobs.learn_stats import queries as learn_stats
from learning_platform.jobs.learn_stats.contracts import (
    LearnStatsDailyResult,
    LearnStatsJobParams,
    LearnStatsWeeklyResult,
)


class LearnStatsActivities:
    def __init__(self, engine: AsyncEngine, timezone: ZoneInfo, batch_size: int) -> None:
        self._engine = engine
        self._timezone = timezone
        self._batch_size = batch_size

    def _local_date(self, moment: datetime) -> date:
        return moment.astimezone(self._timezone).date()

    @implements(contracts.LearnStatsActivities.reset_broken_streaks)
    async def reset_broken_streaks(self, params: LearnStatsJobParams) -> LearnStatsDailyResult:
        yesterday = self._local_date(params.scheduled_time) - timedelta(days=1)
        batch = partial(learn_stats.reset_broken_streaks_batch, yesterday=yesterday)
        reset = await run_batches(self._engine, batch, limit=self._batch_size)
        return LearnStatsDailyResult(yesterday=yesterday.isoformat(), reset_streaks=reset)

    @implements(contracts.LearnStatsActivities.recalculate_learn_stats)
    async def recalculate_learn_stats(self, params: LearnStatsJobParams) -> LearnStatsWeeklyResult:
        today = self._local_date(params.scheduled_time)
        week_start = today - timedelta(days=today.weekday())
        batch = partial(
            learn_stats.recalculate_batch,
            week_start=week_start,
            yesterday=today - timedelta(days=1),
        )
        corrected = await run_batches(self._engine, batch, limit=self._batch_size)
        activity.logger.info("learn stats recalculated", extra={"corrected_users": corrected})
        return LearnStatsWeeklyResult(week_start=week_start.isoformat(), corrected_users=corrected)
