"""learn-stats-daily and learn-stats-weekly (the Pullit document, section 3)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from learning_platform.jobs.learn_stats.contracts import (
    LearnStatsActivities,
    LearnStatsDailyInput,
    LearnStatsDailyResult,
    LearnStatsJobParams,
    LearnStatsWeeklyInput,
    LearnStatsWeeklyResult,
)
from workflows.job_run import job_run, scheduled_time
from workflows.retry_policies import batch_activity


@workflow.defn(name="LearnStatsDaily")
class LearnStatsDaily:
    """Users with no learning on the day before the scheduled time lose their current streak."""

    @workflow.run
    async def run(self, params: LearnStatsDailyInput) -> LearnStatsDailyResult:
        async with job_run("learn-stats-daily") as run:
            result = await batch_activity(
                LearnStatsActivities.reset_broken_streaks,
                LearnStatsJobParams(scheduled_time=scheduled_time(params.scheduled_time)),
                start_to_close=timedelta(hours=1),
                heartbeat=timedelta(minutes=1),
            )
            run.counts.update(yesterday=result.yesterday, reset_streaks=result.reset_streaks)
        return result


@workflow.defn(name="LearnStatsWeekly")
class LearnStatsWeekly:
    """Weekly counters start a new week; cumulative statistics are recomputed from the records."""

    @workflow.run
    async def run(self, params: LearnStatsWeeklyInput) -> LearnStatsWeeklyResult:
        async with job_run("learn-stats-weekly") as run:
            result = await batch_activity(
                LearnStatsActivities.recalculate_learn_stats,
                LearnStatsJobParams(scheduled_time=scheduled_time(params.scheduled_time)),
                start_to_close=timedelta(hours=3),
                heartbeat=timedelta(minutes=2),
            )
            run.counts.update(week_start=result.week_start, corrected_users=result.corrected_users)
        return result
